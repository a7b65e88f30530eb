"""ConfigError: a config, preset or file that cannot be used, with a message per field.

Every module that validates input raises it, and the page, the CLI and the API show its messages
(``errors`` as (field, message), field "" for the whole input; ``source`` the file it came from).
"""

from __future__ import annotations

from pydantic import ValidationError

from trainer.secret_shapes import looks_like_secret_value


class ConfigError(ValueError):
    """A config that cannot be used. ``errors`` is a list of (field, message), field "" for the whole."""

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None):
        self.errors = errors
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{field}: {msg}" if field else f"{prefix}{msg}" for field, msg in errors]
        super().__init__("\n".join(lines))

    def by_field(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for field, msg in self.errors:
            out[field] = f"{out[field]}; {msg}" if field in out else msg
        return out


class CombinationError(ValueError):
    """Several cross-field problems found at once by TrainConfig's rules, each (field, message)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


def pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """A pydantic ValidationError as (field, message) pairs a user can act on."""
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, CombinationError):
            errors.extend(inner.problems)
            continue
        loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith(("literal[", "function-"))]
        # For unions pydantic repeats the error per branch; keep the field name only.
        field = loc[0] if loc else ""
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        got = err.get("input")
        # A secret-shaped value is never echoed back: the message would carry it into logs and pages.
        if err.get("type") not in ("missing",) and not isinstance(got, (dict, list)) and field \
                and not looks_like_secret_value(got):
            msg = f"{msg} (got {got!r})"
        if (field, msg) not in errors:
            errors.append((field, msg))
    # A union field (e.g. lora_target) reports one error per branch: keep the first per field.
    seen: dict[str, str] = {}
    for field, msg in errors:
        seen.setdefault(field, msg)
    return list(seen.items()) if len(seen) < len(errors) else errors
