"""Per-user API tokens for scripts: created and revoked in the page or through the API, kept only as scrypt
hashes in `<runs root>/api_tokens.json` (readable by the server's user only).

A token reads `tdk_<id>_<secret>`: the id finds its record, the secret is checked against the hash. The
whole token is shown once, when it is made; nothing can show it again.

With Hugging Face sign-in a token is as good as its owner's last sign-in on the page, which is where the
organisation membership is checked: each page visit renews the owner's tokens (`renew`), and a token
whose owner has not been seen for `TUNEDECK_HF_TOKEN_DAYS` days (30) is refused until they sign in again.
Someone removed from the organisation cannot sign in, so their tokens lapse.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from trainer.secret_shapes import secret_refusal
from webui.auth import User, VerifiedCache, can_modify, hash_secret, verify_secret

TOKENS_FILE = "api_tokens.json"
MAX_TOKENS_PER_USER = 20
RENEW_EVERY_S = 3600  # a page polls every second: its owner's tokens are rewritten at most once an hour
DEFAULT_HF_TOKEN_DAYS = 30
_TOKEN = re.compile(r"^tdk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,64})$")


class SecretLabelError(ValueError):
    """A token label that looks like a token or key: refused, as every field is."""


class TokenNeedsSignIn(Exception):
    """A right token whose owner has not signed in on the page for longer than the store allows."""

    def __init__(self, owner: str, days: float):
        super().__init__(f"this API token belongs to {owner}, who has not signed in on the page for over {days:g} "
                         "days; sign in on the page again (it checks the organisation membership), and the token "
                         "works again")
        self.owner = owner


def hf_token_days(environ: Any = None) -> float:
    """TUNEDECK_HF_TOKEN_DAYS: how long a Hugging Face user's tokens outlive their last sign-in (default 30)."""
    raw = str((environ if environ is not None else os.environ).get("TUNEDECK_HF_TOKEN_DAYS", "") or "").strip()
    try:
        days = float(raw) if raw else DEFAULT_HF_TOKEN_DAYS
    except ValueError:
        raise ValueError(f"TUNEDECK_HF_TOKEN_DAYS: expects a number of days, got {raw[:40]!r}") from None
    if not 0 < days <= 3650:
        raise ValueError(f"TUNEDECK_HF_TOKEN_DAYS: expects 0 < days <= 3650, got {raw[:40]!r}")
    return days


class TokenStore:
    def __init__(self, runs_root: str | Path, *, max_age_days: float | None = None):
        """`max_age_days`: tokens whose owner was last verified longer ago are refused (Hugging Face sign-in);
        None: a token lives until it is revoked (password logins: removing the login removes its tokens)."""
        self.path = Path(runs_root) / TOKENS_FILE
        self.max_age_days = max_age_days
        self._lock = threading.Lock()
        self._cache = VerifiedCache()
        self._renewed: dict[str, float] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{self.path} is unreadable ({exc}); move it away (every token is then revoked)") \
                from None
        return data if isinstance(data, dict) else {}

    def _save(self, tokens: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(tokens, fh, indent=1)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def create(self, user: User, label: str = "", verified_at: float | None = None) -> tuple[str, str]:
        """A new token for `user`: (token id, the token itself — shown once, never stored). `verified_at`: when
        the user was last verified, if not now (a token made with another token inherits that one's age, so
        tokens cannot keep each other alive)."""
        label = " ".join(str(label or "").split())[:80]
        refusal = secret_refusal(label)
        if refusal:  # the label is stored and listed in plain: never a secret
            raise SecretLabelError(f"label: {refusal}")
        with self._lock:
            tokens = self._load()
            if sum(1 for t in tokens.values() if t.get("owner") == user.name) >= MAX_TOKENS_PER_USER:
                raise ValueError(f"'{user.name}' already has {MAX_TOKENS_PER_USER} API tokens: revoke one first")
            token_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            now = time.time()
            tokens[token_id] = {"owner": user.name, "label": label, "created_at": now,
                                "verified_at": min(now, verified_at) if verified_at is not None else now,
                                "hash": hash_secret(secret)}
            self._save(tokens)
        return token_id, f"tdk_{token_id}_{secret}"

    def list(self, user: User) -> list[dict[str, Any]]:
        """The user's tokens (an admin: everyone's), without hashes."""
        with self._lock:
            tokens = self._load()
        return [{"id": token_id, "owner": t.get("owner"), "label": t.get("label", ""),
                 "created_at": t.get("created_at")}
                for token_id, t in sorted(tokens.items(), key=lambda item: item[1].get("created_at") or 0)
                if user.is_admin or t.get("owner") == user.name]

    def revoke(self, user: User, token_id: str) -> None:
        """Remove a token: its owner or an admin. KeyError when there is no such token (or it is not theirs to
        see), PermissionError when it is someone else's."""
        with self._lock:
            tokens = self._load()
            record = tokens.get(token_id) if isinstance(token_id, str) else None
            if record is None:
                raise KeyError(f"no API token '{token_id}'")
            if not can_modify(user, str(record.get("owner"))):
                raise PermissionError("only its owner or an admin may revoke an API token")
            del tokens[token_id]
            self._save(tokens)
        self._cache.clear()

    def owner_of(self, token: str) -> str | None:
        """The user a presented token belongs to, or None (malformed, unknown, revoked, wrong secret).
        Raises TokenNeedsSignIn for a right token whose owner's last verification is too old."""
        found = self.verified_owner(token)
        return found[0] if found else None

    def verified_owner(self, token: str) -> tuple[str, float] | None:
        """(owner, when the owner was last verified) of a presented token; see owner_of."""
        match = _TOKEN.match(token or "")
        if not match:
            return None
        token_id, secret = match.groups()
        with self._lock:
            record = self._load().get(token_id)
        if not isinstance(record, dict):
            return None
        owner = str(record.get("owner") or "")
        if self._cache.get("token", token_id, secret) != owner:
            if not verify_secret(secret, str(record.get("hash", ""))):
                return None
            self._cache.put("token", token_id, secret, owner)
        verified = record.get("verified_at", record.get("created_at"))
        verified = float(verified) if isinstance(verified, (int, float)) else 0.0
        if self.max_age_days is not None and time.time() - verified > self.max_age_days * 86400:
            raise TokenNeedsSignIn(owner, self.max_age_days)
        return owner, verified

    def renew(self, owner: str | None) -> None:
        """`owner` was just verified (a page request with a valid sign-in): their tokens count from now.
        Cheap on every request: the file is rewritten at most once per RENEW_EVERY_S per owner."""
        if not owner or self.max_age_days is None:
            return
        now = time.time()
        if now - self._renewed.get(owner, 0.0) < RENEW_EVERY_S:
            return
        self._renewed[owner] = now
        try:
            with self._lock:
                tokens = self._load()
                mine = [t for t in tokens.values() if isinstance(t, dict) and t.get("owner") == owner]
                if not mine:
                    return
                for record in mine:
                    record["verified_at"] = now
                self._save(tokens)
        except (OSError, RuntimeError):  # a full disk or a damaged file: the page keeps answering; next hour
            self._renewed.pop(owner, None)
