"""Text files and YAML: read with a message naming the file, parse with the line of a syntax error,
write atomically. Errors are ConfigError, so every caller reports them the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import ConfigError


def parse_yaml(text: str, source: str | None = None) -> Any:
    """YAML text -> Python data, with a message naming the line on a syntax error."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([("", f"{where}invalid YAML ({exc.problem or exc.context})")], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"invalid YAML ({exc})")], source) from None
    return {} if data is None else data


def read_text_file(path: str | Path, what: str = "text file") -> str:
    """A UTF-8 text file's contents (a BOM is dropped), or a ConfigError naming the file and the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([("", "file not found")], str(path)) from None
    except IsADirectoryError:
        raise ConfigError([("", f"is a directory, not a {what}")], str(path)) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read: {exc.strerror}")], str(path)) from None
    if b"\x00" in raw:
        raise ConfigError([("", f"a binary file, not a {what}")], str(path))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([("", f"not UTF-8 text (byte {exc.start})")], str(path)) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file so that a reader sees the old or the new contents, never half of them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
