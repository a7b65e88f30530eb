"""What an access token or key looks like: one home for the shapes that every input check refuses.

A value of one of these shapes typed into any field (run_name, dataset, a preset's description) would be
written to config.yaml, runs.db, events, TensorBoard and every page that shows the run. Tokens come from
the environment or a login only, so such a value is refused at the field (TrainConfig, run names) or
stripped and said (presets)."""

from __future__ import annotations

import re
from typing import Any

# (what it is, its shape). Prefixes are what the issuers document for their tokens and keys.
SECRET_SHAPES: tuple[tuple[str, str], ...] = (
    ("a Hugging Face token (hf_...)", r"\bhf_[A-Za-z0-9]{20,}"),
    ("a tunedeck API token (tdk_...)", r"\btdk_[0-9a-f]{12}_[A-Za-z0-9_\-]{20,}"),
    ("an OpenAI-style API key (sk-...)", r"\bsk-[A-Za-z0-9_\-]{16,}"),
    ("a GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"),
    ("an AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a Slack token", r"\bxox[baprs]-[A-Za-z0-9\-]{10,}"),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("a bearer token", r"\bBearer\s+[A-Za-z0-9._\-]{16,}"),
    ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
_SHAPES = [(what, re.compile(shape)) for what, shape in SECRET_SHAPES]


def secret_kind(value: Any) -> str | None:
    """What kind of secret a text looks like ("a Hugging Face token (hf_...)"), None when it looks like none."""
    if not isinstance(value, str):
        return None
    for what, shape in _SHAPES:
        if shape.search(value):
            return what
    return None


def looks_like_secret_value(value: Any) -> bool:
    return secret_kind(value) is not None


def secret_refusal(value: Any) -> str | None:
    """The message for a field holding a secret-shaped value (never repeating the value), None when clean."""
    kind = secret_kind(value)
    if kind is None:
        return None
    return (f"looks like {kind}: a token or key is never stored with a run; it comes from the environment "
            "(HF_TOKEN) or your login. Remove it from this field")
