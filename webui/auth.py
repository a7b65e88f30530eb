"""Who may use the dashboard and what each user may do: sign-in sources, users, roles, ownership.

Sign-in, from the environment only (never a flag, a config or a log):

- **Hugging Face** on a Space with `hf_oauth: true` (Gradio's OAuth; the Space sets OAUTH_CLIENT_ID),
  optionally only for members of the organisations in TUNEDECK_HF_ORGS ("org1,org2").
- **Passwords**: TUNEDECK_AUTH="alice:pw1,bob:pw2" and/or a users file (TUNEDECK_USERS_FILE) of
  `name:scrypt$...` lines written by `python -m webui.auth add-user NAME` (the password is read from a
  prompt or stdin, never argv). Passwords are kept only as scrypt hashes, compared in constant time.
- **Open** (none of the above): anyone who reaches the page acts as the operator `local`.

Roles: admins are the names in TUNEDECK_ADMINS. Everyone signed in sees every run (the team's runs and
their live charts); only a run's owner or an admin aborts, resumes, deletes, renames or overwrites it,
and only an admin reorders the queue. Runs made before logins were turned on belong to `local`: once
logins are on nobody is `local`, so only admins act on them. On an open page the operator is an admin.

Page handlers call ``user_of(request)`` then ``require_modify(user, owner, action)`` (or ``can_modify``),
and ``config_refusal(user, cfg, runs_root)`` before starting a run;
``open_notice(user)`` is the banner an open page shows; ``upload_dir(root, user)`` is each uploader's
folder. No gradio import: the API and the tests use this module as it is.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from trainer.access import (
    ADMINS_ENV, AUTH_ENV, USER_NAME, USERS_FILE_ENV, Access, hf_oauth_available, signed_in_access, user_uploads_dir,
)
from trainer.errors import ConfigError

HF_ORGS_ENV = "TUNEDECK_HF_ORGS"
LOCAL = "local"  # the owner of runs made on an open page, and of those made before logins were turned on

OPEN, PASSWORD, HUGGING_FACE = "open", "password", "huggingface"

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1  # ~16 MB and tens of ms per check: slow for a guesser
_MAX_SECRET_BYTES = 1024  # a longer "password" is refused before it costs a hash


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool = False


LOCAL_USER = User(LOCAL, is_admin=True)  # an open page: whoever reaches it is the operator


def check_user_name(name: str) -> str:
    """A login name usable as an owner and a folder name; ValueError naming the rule otherwise."""
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise ValueError(f"user name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    if name == LOCAL:
        raise ValueError(f"user name '{LOCAL}' is reserved for runs made without a login")
    return name


# --- hashing --------------------------------------------------------------------------------------

def hash_secret(secret: str) -> str:
    """`scrypt$N$r$p$salt$hash` (base64): what a users file or the token store keeps instead of the secret."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_secret(secret: str, encoded: str) -> bool:
    """Does `secret` match the hash? Constant-time compare; a malformed hash never matches."""
    try:
        kind, n, r, p, salt, digest = encoded.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY_HASH = hash_secret(secrets.token_hex(8))  # checked for unknown names, so timing does not tell who exists


class VerifiedCache:
    """Recently verified (name, secret) pairs, so a script's every request does not cost a scrypt. Keys are
    HMACs under a per-process random key: the secret itself is never kept."""

    def __init__(self, ttl_s: float = 300.0, capacity: int = 1024):
        self.ttl_s, self.capacity = ttl_s, capacity
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def _digest(self, kind: str, name: str, secret: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{name}\0{secret}".encode(), hashlib.sha256).digest()

    def get(self, kind: str, name: str, secret: str) -> str | None:
        key = self._digest(kind, name, secret)
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            return hit[1]

    def put(self, kind: str, name: str, secret: str, who: str) -> None:
        with self._lock:
            if len(self._entries) >= self.capacity:
                self._entries.clear()
            self._entries[self._digest(kind, name, secret)] = (time.monotonic() + self.ttl_s, who)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --- password accounts ------------------------------------------------------------------------------

def logins_from_env(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]] | None:
    """TUNEDECK_AUTH as (user, password) pairs ("user:password,user2:password2"; a password may hold ':'
    but not ','); None when unset."""
    raw = (os.environ if environ is None else environ).get(AUTH_ENV, "").strip()
    if not raw:
        return None
    pairs = []
    for item in raw.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{AUTH_ENV}: expected user:password[,user2:password2], got an entry without both")
        pairs.append((check_user_name(user), password))
    return pairs


def read_users_file(path: str | Path) -> dict[str, str]:
    """name -> password hash from a users file (`name:scrypt$...` lines; # comments)."""
    users: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"{USERS_FILE_ENV}: cannot read {path} ({exc.strerror})") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        if not sep or not encoded.startswith("scrypt$"):
            raise ValueError(f"{path}:{number}: expected name:scrypt$... (write it with "
                             "`python -m webui.auth add-user NAME`)")
        users[check_user_name(name)] = encoded
    return users


def write_user(path: str | Path, name: str, password: str | None) -> None:
    """Add or replace (password None: remove) one user of a users file; atomic, readable by its owner only."""
    check_user_name(name)
    path = Path(path)
    kept = [line for line in (path.read_text(encoding="utf-8").splitlines() if path.exists() else [])
            if line.partition(":")[0].strip() != name]
    if password is not None:
        kept.append(f"{name}:{hash_secret(password)}")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Accounts:
    """Password logins (hashes only) and the admin list."""

    def __init__(self, hashes: Mapping[str, str], admins: Iterable[str] = ()):
        self._hashes = dict(hashes)
        self.admins = frozenset(admins)
        self._cache = VerifiedCache()

    def __bool__(self) -> bool:
        return bool(self._hashes)

    @property
    def names(self) -> list[str]:
        return sorted(self._hashes)

    def user(self, name: str) -> User:
        return User(name, is_admin=name in self.admins)

    def check_password(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (an unknown name costs the same time)."""
        if not isinstance(name, str) or not isinstance(password, str) or len(password.encode()) > _MAX_SECRET_BYTES:
            return None
        if self._cache.get("password", name, password) == name:
            return self.user(name)
        encoded = self._hashes.get(name)
        ok = verify_secret(password, encoded or _DUMMY_HASH) and encoded is not None
        if not ok:
            return None
        self._cache.put("password", name, password, name)
        return self.user(name)

    async def gradio_auth(self, name: str, password: str) -> bool:
        """The `auth=` callable for the page's own sign-in form. A coroutine (Gradio awaits it) that hashes in
        a worker thread: a flood of sign-in attempts never stalls the server's event loop."""
        return await asyncio.to_thread(self.check_password, name, password) is not None


# --- the sign-in of one server ----------------------------------------------------------------------

@dataclass(frozen=True)
class SignIn:
    mode: str  # OPEN, PASSWORD or HUGGING_FACE
    accounts: Accounts
    hf_orgs: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_open(self) -> bool:
        return self.mode == OPEN

    def user(self, name: str | None) -> User:
        """The User a signed-in name stands for; on an open server, the operator."""
        if self.is_open:
            return LOCAL_USER
        if not name:
            raise PermissionError("sign in first")
        return self.accounts.user(name)

    def describe(self) -> str:
        if self.mode == HUGGING_FACE:
            orgs = f" (members of {', '.join(sorted(self.hf_orgs))} only)" if self.hf_orgs else ""
            return f"sign-in with Hugging Face{orgs}"
        if self.mode == PASSWORD:
            return f"sign-in with a password ({len(self.accounts.names)} users)"
        return "OPEN to anyone who reaches it: no sign-in (set TUNEDECK_AUTH or TUNEDECK_USERS_FILE)"


def _names(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def sign_in_from_env(environ: Mapping[str, str] | None = None) -> SignIn:
    """The sign-in this server uses; ValueError (one line, naming the variable) for a bad setting."""
    environ = os.environ if environ is None else environ
    hashes = {name: hash_secret(password) for name, password in logins_from_env(environ) or []}
    users_file = environ.get(USERS_FILE_ENV, "").strip()
    if users_file:
        for name, encoded in read_users_file(users_file).items():
            hashes.setdefault(name, encoded)
    try:
        admins = [check_user_name(name) for name in _names(environ.get(ADMINS_ENV, ""))]
    except ValueError as exc:
        raise ValueError(f"{ADMINS_ENV}: {exc}") from None
    accounts = Accounts(hashes, admins)
    orgs = frozenset(_names(environ.get(HF_ORGS_ENV, "")))
    if hf_oauth_available(environ):
        return SignIn(HUGGING_FACE, accounts, orgs)
    if orgs:
        raise ValueError(f"{HF_ORGS_ENV} is set but Hugging Face sign-in is not available here (it needs a Space "
                         "with hf_oauth: true in its README)")
    return SignIn(PASSWORD if accounts else OPEN, accounts)


def hf_user_from_session(session: Mapping[str, Any], orgs: frozenset[str]) -> tuple[str | None, str | None]:
    """(user name, None) for a valid Hugging Face session, (None, why) otherwise. `orgs` non-empty: the
    user must be a member of one of them (the organisations the user shared with the Space)."""
    info = session.get("oauth_info") if isinstance(session, Mapping) else None
    if not isinstance(info, dict):
        return None, "not signed in"
    expires = info.get("expires_at")
    if isinstance(expires, (int, float)) and expires < time.time():
        return None, "the sign-in expired"
    userinfo = info.get("userinfo") if isinstance(info.get("userinfo"), dict) else {}
    name = userinfo.get("preferred_username")
    try:
        check_user_name(name)
    except ValueError:
        return None, "the Hugging Face account has no usable user name"
    if orgs:
        member_of = {org.get("preferred_username") for org in userinfo.get("orgs") or [] if isinstance(org, dict)}
        if not member_of & orgs:
            return None, (f"{name} is not a member of {', '.join(sorted(orgs))} (or did not share that "
                          "organisation with this Space when signing in)")
    return name, None


# --- roles and ownership -----------------------------------------------------------------------------

def can_view(user: User | None, owner: str) -> bool:
    """Everyone signed in sees the team's runs and presets."""
    return user is not None


def can_modify(user: User | None, owner: str) -> bool:
    """Abort, resume, delete, cancel, rename, overwrite: the owner or an admin (`local` things: admins)."""
    return user is not None and (user.is_admin or user.name == owner)


def can_reorder_queue(user: User | None) -> bool:
    return user is not None and user.is_admin


def require_modify(user: User | None, owner: str, action: str, what: str = "run") -> None:
    """PermissionError with a message for the page or the API when `user` may not `action` it."""
    if not can_modify(user, owner):
        who = user.name if user is not None else "nobody signed in"
        raise PermissionError(f"this {what} belongs to '{owner}': only its owner or an admin may {action} it "
                              f"(you are '{who}')")


def config_refusal(user: User, cfg: Any, runs_root: str | Path) -> str | None:
    """Why `user` may not start `cfg` on this server, or None: the one access policy (trainer/access.py) —
    on a shared server, local paths only from the allowed folders and the user's own uploads, and
    trust_remote_code only for admins. For the API and the page's Start alike."""
    access = Access(user=user.name) if user.name == LOCAL else signed_in_access(user.name, user.is_admin, runs_root)
    try:
        access.check_config(cfg)
    except ConfigError as exc:
        return " ".join(str(exc).split())
    return None


def user_of(request: Any, sign_in: SignIn | None = None) -> User:
    """The user behind a page event (a gr.Request, whose `username` Gradio fills from the sign-in)."""
    name = getattr(request, "username", None) if request is not None else None
    if sign_in is not None:
        return sign_in.user(name)
    if not name:
        return LOCAL_USER  # no sign-in configured: Gradio lets every request through as nobody
    admins = frozenset(_names(os.environ.get(ADMINS_ENV, "")))
    return User(str(name), is_admin=str(name) in admins)


def open_notice(user: User) -> str | None:
    """The warning an open page shows (None once people sign in)."""
    if user.name != LOCAL:
        return None
    return ("This dashboard is open: anyone who can reach it may start, abort and delete runs. Set "
            "TUNEDECK_AUTH or TUNEDECK_USERS_FILE (or use Hugging Face sign-in on a Space) to require a login.")


def upload_dir(runs_root: str | Path, user: User) -> Path:
    """`<runs root>/uploads/<user>/`: each uploader's files apart, so nobody replaces another's."""
    return user_uploads_dir(runs_root, user.name)


# --- `python -m webui.auth add-user NAME` -------------------------------------------------------------

def _read_password(stdin: Any) -> str:
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise ValueError("the two passwords differ")
    else:
        first = stdin.readline().rstrip("\r\n")
    if len(first) < 8:
        raise ValueError("a password needs at least 8 characters")
    if len(first.encode()) > _MAX_SECRET_BYTES:
        raise ValueError(f"a password may have at most {_MAX_SECRET_BYTES} bytes")
    return first


def main(argv: list[str] | None = None, stdin: Any = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m webui.auth",
                                     description="manage the users file (hashed passwords) of a tunedeck server")
    parser.add_argument("command", choices=["add-user", "remove-user", "list-users"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--file", default=os.environ.get(USERS_FILE_ENV) or "users.txt",
                        help=f"the users file (default ${USERS_FILE_ENV}, else ./users.txt)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list-users":
            print("\n".join(read_users_file(args.file)))
            return 0
        if not args.name:
            raise ValueError(f"{args.command} needs a user name")
        check_user_name(args.name)
        password = _read_password(stdin or sys.stdin) if args.command == "add-user" else None
        write_user(args.file, args.name, password)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = "added (password stored as a scrypt hash)" if password is not None else "removed"
    print(f"{args.name}: {done} in {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
