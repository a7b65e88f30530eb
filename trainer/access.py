"""Who may read which local files, and who may run a model's own code: the access policy of one request.

On a single-user page (no sign-in configured) its user reads any path they can anyway, so nothing is
limited; `trust_remote_code` only gets a warning. On a shared server (any sign-in configured) local
model, dataset and checkpoint paths must lie under the allowed folders (TUNEDECK_ALLOWED_PATHS and the
user's own uploads), and `trust_remote_code` is for admins only. A refusal names the field and never
says anything about the file itself (whether it exists, what it holds), so the form cannot be used to
probe the server's disk.

Pure: an `Access` is built per request by the page (webui/context.py) or the training subprocess from
the environment, and checks values; it reads nothing but the path names' resolved forms.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from trainer.datasets.sources import FILE_SUFFIXES, SHIPPED_DATASETS
from trainer.errors import ConfigError

AUTH_ENV = "TUNEDECK_AUTH"  # "user:password,...": any sign-in makes the server shared
USERS_FILE_ENV = "TUNEDECK_USERS_FILE"  # a file of name:scrypt-hash lines (python -m webui.auth add-user)
ADMINS_ENV = "TUNEDECK_ADMINS"  # "alice,carol": who may turn on trust_remote_code on a shared server
ALLOWED_PATHS_ENV = "TUNEDECK_ALLOWED_PATHS"  # folders every user may read, separated by os.pathsep or ","
UPLOADS_SUBDIR = "uploads"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the sign-in's own rule for names
PATH_FIELDS = ("model_name_or_path", "dataset", "resume_from_checkpoint")
BUILTIN_NAMES = frozenset({"demo", *SHIPPED_DATASETS})  # the shipped demo model and datasets: never local paths
REMOTE_CODE_WARNING = ("trust_remote_code is on: the model repository's own Python code will run in the "
                       "training and data-preview processes. Turn it on only for a model you trust.")


@dataclass(frozen=True)
class Access:
    """One user's rights. `shared`: a sign-in is configured; `allowed_roots`: folders they may read."""

    user: Optional[str] = None
    admin: bool = True
    shared: bool = False
    allowed_roots: tuple[Path, ...] = ()

    def allows(self, path: str | Path) -> bool:
        """Whether a local path (after symlinks and `..` are resolved) lies under an allowed folder. An admin
        runs the server and may name any of its files."""
        if not self.shared or self.admin:
            return True
        real = Path(os.path.realpath(Path(path).expanduser()))
        return any(real == root or root in real.parents for root in self.allowed_roots)

    def check_path(self, value: Optional[str], field: str, builtin: Iterable[str] = BUILTIN_NAMES) -> None:
        """ConfigError naming the field for a local path outside the allowed folders (shared mode only).

        A Hub id (`org/name`) is not a local path unless a file of that name exists here; the message is
        the same whether the path exists or not."""
        name = (value or "").strip()
        if not self.shared or self.admin or not name or name in builtin or name.lower() in ("last", "latest", "true"):
            return
        if looks_local(name) and not self.allows(name):
            raise ConfigError([(field, f"the path '{name}' is not allowed on this shared server: use a file you "
                                       "uploaded, or one in the folders the admin allows (TUNEDECK_ALLOWED_PATHS)")])

    def check_remote_code(self, enabled: bool) -> Optional[str]:
        """A warning when it is on; ConfigError for a non-admin on a shared server."""
        if not enabled:
            return None
        if self.shared and not self.admin:
            raise ConfigError([("trust_remote_code", "only an admin may turn on trust_remote_code on this shared "
                                                     "server: it runs the model repository's Python code")])
        return REMOTE_CODE_WARNING

    def check_config(self, cfg: Any) -> list[str]:
        """Every path field and trust_remote_code of a config; all refusals at once (ConfigError), else
        the warnings to show."""
        problems: list[tuple[str, str]] = []
        warnings: list[str] = []
        for field in PATH_FIELDS:
            try:
                self.check_path(getattr(cfg, field, None), field)
            except ConfigError as exc:
                problems += exc.errors
        try:
            warning = self.check_remote_code(bool(getattr(cfg, "trust_remote_code", False)))
            warnings += [warning] if warning else []
        except ConfigError as exc:
            problems += exc.errors
        if problems:
            raise ConfigError(problems)
        return warnings


def looks_local(name: str) -> bool:
    """A value meant as a local path, not a Hub id: a path-like spelling, or a file of that name here."""
    return (name.startswith(("/", ".", "~", "\\")) or name.count("/") > 1 or "\\" in name
            or (len(name) > 1 and name[1] == ":") or name.lower().endswith(FILE_SUFFIXES) or os.path.lexists(name))


def user_uploads_dir(runs_root: str | Path, user: Optional[str]) -> Path:
    """A user's own upload folder: <runs root>/uploads/<user> ("local" on a page without sign-in). A name
    that is not a plain user name is refused rather than cleaned up: two names must never share a folder."""
    name = user or "local"
    if not USER_NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a user name (letters, digits, '.', '_' and '-'; at most 64)")
    return Path(runs_root) / UPLOADS_SUBDIR / name


def env_list(name: str, environ: Optional[dict[str, str]] = None) -> list[str]:
    raw = (environ if environ is not None else os.environ).get(name, "")
    return [part.strip() for part in raw.replace(",", os.pathsep).split(os.pathsep) if part.strip()]


_HF_OAUTH_VARIABLES = ("SPACE_ID", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL")


def hf_oauth_available(environ: dict[str, str]) -> bool:
    """On a Space whose README asks for `hf_oauth: true`: the Space then sets these variables (and
    SYSTEM=spaces, which Gradio's OAuth checks too)."""
    return environ.get("SYSTEM") == "spaces" and all(environ.get(name) for name in _HF_OAUTH_VARIABLES)


def sign_in_configured(environ: Optional[dict[str, str]] = None) -> bool:
    """Whether people sign in to this server (passwords, a users file, or Hugging Face on a Space): the
    server is then shared, and the policy below applies."""
    environ = environ if environ is not None else dict(os.environ)
    return bool(environ.get(AUTH_ENV, "").strip() or environ.get(USERS_FILE_ENV, "").strip()
                or hf_oauth_available(environ))


def access_from_env(user: Optional[str], runs_root: str | Path, environ: Optional[dict[str, str]] = None) -> Access:
    """The policy for `user` as the environment configures it: shared when a sign-in is configured; admins
    from TUNEDECK_ADMINS; allowed folders TUNEDECK_ALLOWED_PATHS plus the user's own uploads in `runs_root`."""
    environ = environ if environ is not None else dict(os.environ)
    if not sign_in_configured(environ):
        return Access(user=user)
    return signed_in_access(user, bool(user) and user in set(env_list(ADMINS_ENV, environ)), runs_root, environ)


def signed_in_access(user: Optional[str], admin: bool, runs_root: str | Path,
                     environ: Optional[dict[str, str]] = None) -> Access:
    """The policy for a signed-in user (the server is shared): the allowed folders and their own uploads."""
    roots = [*env_list(ALLOWED_PATHS_ENV, environ), str(user_uploads_dir(runs_root, user))]
    return Access(user=user, admin=admin, shared=True,
                  allowed_roots=tuple(Path(os.path.realpath(Path(r).expanduser())) for r in roots))


