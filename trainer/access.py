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

from trainer.datasets.sources import SHIPPED_DATASETS
from trainer.errors import ConfigError
from trainer.local_names import (  # noqa: F401 - AUTH_ENV, USERS_FILE_ENV and the sign-in checks: re-exported
    AUTH_ENV, FILE_SUFFIXES, USERS_FILE_ENV, hf_oauth_available, hub_id_only, hub_id_shaped, sign_in_configured,
)

ADMINS_ENV = "TUNEDECK_ADMINS"  # "alice,carol": who may turn on trust_remote_code on a shared server
ALLOWED_PATHS_ENV = "TUNEDECK_ALLOWED_PATHS"  # folders every user may read, separated by os.pathsep or ","
UPLOADS_SUBDIR = "uploads"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # the sign-in's own rule for names
PATH_FIELDS = ("model_name_or_path", "dataset", "resume_from_checkpoint")
RESUME_KEYWORDS = ("last", "latest", "true")  # this run's own newest checkpoint (trainer/run/layout.py)
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
    runs_root: Optional[Path] = None  # resolved: where the user's own runs (and their checkpoints) are

    def own_checkpoint(self, real: Path) -> bool:
        """Whether a resolved path lies in the checkpoints of a run this user owns (a new run may start from
        any of them; another user's checkpoints stay theirs). The registry says who owns a run."""
        if self.runs_root is None or not self.user:
            return False
        try:
            parts = real.relative_to(self.runs_root).parts
        except ValueError:
            return False
        if len(parts) < 3 or parts[1] != "checkpoints":
            return False
        from trainer.jobs.registry import owner_of_run  # the registry is only asked for this field

        return owner_of_run(self.runs_root, parts[0]) == self.user

    def allows(self, path: str | Path) -> bool:
        """Whether a local path (after symlinks and `..` are resolved) lies under an allowed folder. An admin
        runs the server and may name any of its files."""
        if not self.shared or self.admin:
            return True
        real = Path(os.path.realpath(Path(path).expanduser()))
        return any(real == root or root in real.parents for root in self.allowed_roots)

    def check_path(self, value: Optional[str], field: str, builtin: Iterable[str] = BUILTIN_NAMES) -> None:
        """ConfigError naming the field for a local path outside the allowed folders (shared mode only).

        For a field that takes Hub ids (the model, the datasets) a bare relative `org/name` is a Hub id on a
        shared server whatever the disk holds (trainer/local_names.py); every other value is a local path.
        The disk is never asked whether the path exists: the answer is the same either way."""
        name = (value or "").strip()
        if not self.shared or self.admin or not name or name in builtin:
            return
        if field == "resume_from_checkpoint":
            if name.lower() in RESUME_KEYWORDS or self.own_checkpoint(Path(os.path.realpath(Path(name).expanduser()))):
                return
        elif hub_id_shaped(name):
            return
        if not self.allows(name):
            own = "a checkpoint of one of your runs, " if field == "resume_from_checkpoint" else ""
            raise ConfigError([(field, f"the path '{name}' is not allowed on this shared server: use {own}a file "
                                       "you uploaded, or one in the folders the admin allows (TUNEDECK_ALLOWED_PATHS)")])

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
    """A value meant as a local path, not a Hub id: a path-like spelling, or (on a page without sign-in) a
    file of that name here. On a shared server a Hub-id-shaped name is a Hub id (trainer/local_names.py)."""
    if hub_id_only(name):
        return False
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
                  allowed_roots=tuple(Path(os.path.realpath(Path(r).expanduser())) for r in roots),
                  runs_root=Path(os.path.realpath(Path(runs_root).expanduser())))


