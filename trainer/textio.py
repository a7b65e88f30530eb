"""Text files and YAML: read with a message naming the file, parse with the line of a syntax error,
write atomically. Errors are ConfigError, so every caller reports them the same way.

Every YAML this project reads (configs, presets, LLaMA-Factory imports, `check`, `convert`, the form's
mapping fields) goes through `parse_yaml`, which refuses what a config never needs and an attacker
uses to exhaust a server: anchors and aliases (a few hundred bytes expand into billions of nodes), deep
nesting (recursion), duplicate keys (the last one would silently win) and texts over a size limit.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import ConfigError

MAX_YAML_BYTES = 1_000_000  # a config or preset is a few KB; LLaMA-Factory's largest examples ~10 KB
MAX_YAML_DEPTH = 50  # a config nests 3 levels at most (column_mapping, lists of names)
MAX_TEXT_FILE_BYTES = MAX_YAML_BYTES


def load_json(text: str) -> Any:
    """json.loads for text a user gave (a row, a cell, dataset_info.json): nesting deeper than Python's
    recursion limit is a JSONDecodeError like any other malformed JSON, so the caller's message names the
    file and line, instead of a RecursionError that escapes every handler."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


class _Refused(yaml.MarkedYAMLError):
    """A YAML construct this project refuses, raised at its mark so the message names the line."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors, aliases, deep nesting or duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(problem=f"YAML aliases (*{event.anchor}) are not allowed: write the value out",
                           problem_mark=event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise _Refused(problem=f"YAML anchors and aliases (&{event.anchor}) are not allowed: write the value out",
                           problem_mark=event.start_mark)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _Refused(problem=f"nested too deeply (more than {MAX_YAML_DEPTH} levels)", problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeConstructor reports it below
                    continue
                if first != key_node.start_mark.line + 1:
                    raise _Refused(problem=f"duplicate key '{key}' (first on line {first}): keep one",
                                   problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str | None = None) -> Any:
    """YAML text -> Python data, with a message naming the line on a syntax error or a refused construct."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError([("", f"{len(text):,} characters is too large for a config (at most {MAX_YAML_BYTES:,})")],
                          source)
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except _Refused as exc:
        mark = exc.problem_mark
        raise ConfigError([("", f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}")], source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([("", f"{where}invalid YAML ({exc.problem or exc.context})")], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"invalid YAML ({exc})")], source) from None
    except RecursionError:  # a nesting the depth limit did not see (e.g. inside one flow scalar)
        raise ConfigError([("", "invalid YAML (nested too deeply)")], source) from None
    finally:
        loader.dispose()
    return {} if data is None else data


def read_text_file(path: str | Path, what: str = "text file", max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """A UTF-8 text file's contents (a BOM is dropped), or a ConfigError naming the file and the problem.

    Only a regular file is read, and at most `max_bytes` of it: /dev/zero or a FIFO is refused before
    a byte is read, a file larger than the limit is refused by its size."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (forever) before the check
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError([("", f"not a regular file, not a {what}")], str(path))
            if info.st_size > max_bytes:
                raise ConfigError([("", f"{info.st_size:,} bytes is too large for a {what} (at most {max_bytes:,})")],
                                  str(path))
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError([("", "file not found")], str(path)) from None
    except IsADirectoryError:
        raise ConfigError([("", f"is a directory, not a {what}")], str(path)) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read: {exc.strerror}")], str(path)) from None
    if len(raw) > max_bytes:  # grew while being read
        raise ConfigError([("", f"too large for a {what} (at most {max_bytes:,} bytes)")], str(path))
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
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # named after the file asked for, not the temporary one beside it
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
