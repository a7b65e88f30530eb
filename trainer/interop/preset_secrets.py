"""Secrets never reach a preset: keys whose name says they hold one (token, password, secret, API key,
...) and values that look like one (trainer/secret_shapes.py: ``hf_...``, ``sk-...``, a private key, ...) are
stripped, and each is reported with why."""

from __future__ import annotations

import re
from typing import Any

from trainer.config import TrainConfig
from trainer.secret_shapes import looks_like_secret_value

_SECRET_KEY_RE = re.compile(
    r"(^|[_\-.])(hf_?token|token|access_?token|auth_?token|api_?token|password|passwd|pwd|secret|"
    r"client_?secret|api_?key|apikey|access_?key|secret_?key|private_?key|credentials?|auth)($|[_\-.])",
    re.IGNORECASE)


def looks_like_secret_key(key: str) -> bool:
    """A key whose name says it holds a secret. Schema fields never do (none is a secret)."""
    return key not in TrainConfig.model_fields and bool(_SECRET_KEY_RE.search(key))


def strip_secrets(data: dict[str, Any], _prefix: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """(a copy of data without secrets, {dotted key: why it was stripped}). Recurses into mappings and lists."""
    clean: dict[str, Any] = {}
    stripped: dict[str, str] = {}
    for key, value in data.items():
        name = f"{_prefix}{key}"
        if isinstance(key, str) and looks_like_secret_key(key):
            stripped[name] = "its name says it holds a secret (token, password, key): secrets come from the " \
                             "environment only and are never stored in a preset"
            continue
        if looks_like_secret_value(value):
            stripped[name] = "its value looks like a secret (an access token or key): removed, never stored in a preset"
            continue
        if isinstance(value, dict):
            value, inner = strip_secrets(value, f"{name}.")
            stripped.update(inner)
        elif isinstance(value, list):
            kept = []
            for i, item in enumerate(value):
                if looks_like_secret_value(item):
                    stripped[f"{name}[{i}]"] = "its value looks like a secret: removed, never stored in a preset"
                    continue
                if isinstance(item, dict):
                    item, inner = strip_secrets(item, f"{name}[{i}].")
                    stripped.update(inner)
                kept.append(item)
            value = kept
        clean[key] = value
    return clean, stripped
