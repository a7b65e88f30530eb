"""Datasets: sources, formats, validation with line numbers, tokenization with loss masks, previews,
token-length statistics.

Flow: ``load_examples(cfg)`` reads the source (shipped name, local file, Hub id), renames columns,
detects the format, validates every row (1-based line numbers for JSON lines, row numbers for JSON
arrays, CSV, Parquet and Hub datasets) and normalizes rows to
``{"messages": [{"role", "content"}, ...]}`` or ``{"text": ...}``; then ``tokenize_examples`` renders
them through a chat template and marks the tokens that carry the loss (``completion_mask``).

Problems are never silent: a bad row stops loading with a ``DataError`` naming the file and line,
unless ``skip_invalid_rows`` is on, in which case the row is dropped and counted in ``.skipped`` and
listed in ``.issues``. Warnings (duplicates, truncated rows) are listed but do not stop anything.

No torch import here; the tokenizer is whatever object the caller passes (a transformers tokenizer).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from trainer.config import TrainConfig
from trainer.plan.resolve import (CPU, Hardware, length_group_rows, pack_best_fit_decreasing, packing_factor, padding_efficiency,
                   resolve_packing)
from trainer.templates import (AUTO, FALLBACK_TEMPLATE, NAMED_TEMPLATES, Segment, chat_template_jinja, render_named,
                        unknown_template_message)

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SHIPPED_DATASETS: dict[str, Path] = {"demo": DATA_DIR / "demo.jsonl", "demo-chat": DATA_DIR / "demo_chat.jsonl"}
SHIPPED_DESCRIPTIONS = {
    "demo": "360 single-turn instructions (alpaca): reverse, count, uppercase, add, capitals, numbered lists",
    "demo-chat": "120 multi-turn conversations (messages) on the same tasks, a third with a system prompt",
}


def shipped_datasets() -> list[tuple[str, str]]:
    """(name, description) of the datasets that ship with tunedeck, for pickers and docs."""
    return [(name, SHIPPED_DESCRIPTIONS[name]) for name in SHIPPED_DATASETS]
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")
MAX_LISTED_PROBLEMS = 10
_ROW_LIST_COLUMNS = {"messages", "conversations", "prompt", "completion", "history"}
# Column names people use for what a format calls otherwise: suggested in a column_mapping hint.
_SYNONYMS = {
    "output": ("response", "answer", "completion", "target", "output_text", "chosen"),
    "instruction": ("prompt", "question", "query", "input", "instruction_text"),
    "text": ("content", "document", "body", "sentence", "passage"),
    "completion": ("response", "answer", "output", "target"),
    "prompt": ("question", "query", "instruction", "input"),
    "messages": ("conversations", "conversation", "dialog", "chat"),
    "conversations": ("messages", "conversation", "dialog", "chat"),
}

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}
MESSAGE_ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file and the line or row."""

    def __init__(self, message: str, issues: Optional[list["RowIssue"]] = None, source: Optional[str] = None):
        super().__init__(message)
        self.issues = issues or []
        self.source = source


@dataclass(frozen=True)
class RowIssue:
    """A problem with one row. ``kind`` says what ``row`` counts: a file "line" or a "row" index."""

    row: int  # 1-based
    field: str
    message: str
    kind: str = "line"
    severity: str = "error"  # "error" (row unusable) or "warning"

    @property
    def where(self) -> str:
        return f"{self.kind} {self.row}"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "kind": self.kind, "field": self.field, "message": self.message,
                "severity": self.severity}


class Example(dict):
    """A normalized example (a plain dict) that also remembers where it came from."""

    row: int = 0
    kind: str = "row"
    source: str = ""

    @property
    def where(self) -> str:
        return f"{self.kind} {self.row}"


def _example(data: dict[str, Any], row: int, kind: str, source: str) -> Example:
    ex = Example(data)
    ex.row, ex.kind, ex.source = row, kind, source
    return ex


@dataclass
class LoadedData:
    train: list[dict]
    eval: list[dict]
    format: str
    source: str
    issues: list[RowIssue] = field(default_factory=list)
    skipped: int = 0
    num_rows: int = 0  # rows read from the source (after max_samples), valid or not

    @property
    def errors(self) -> list[RowIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[str]:
        return [str(i) for i in self.issues if i.severity == "warning"]

    @property
    def examples(self) -> list[dict]:
        return self.train + self.eval


@dataclass
class _Record:
    row: int
    kind: str
    value: Any  # the parsed row (a dict when it is usable)


# --- sources -------------------------------------------------------------------------------------

def resolve_source(dataset: str, base_dir: Optional[str | Path] = None, split: str = "train") -> tuple[str, str]:
    """("file", path) for a shipped name or a local file, ("hub", id) for a Hub dataset id.

    A name that looks like a path (a file suffix, a leading / . ~, a backslash) but does not exist is a
    DataError naming the path; anything else that does not exist locally is taken as a Hub id. A
    directory (a downloaded dataset repository) stands for its one data file, or the one whose name
    holds the split (train.jsonl, data/train-00000.parquet).
    """
    name = dataset.strip()
    if name in SHIPPED_DATASETS:
        return "file", str(SHIPPED_DATASETS[name])
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.exists():
        if path.is_dir():
            return "file", str(_data_file_in(path, split))
        return "file", str(path)
    looks_local = (name.lower().endswith(FILE_SUFFIXES) or name.startswith(("/", ".", "~")) or "\\" in name
                   or name.count("/") > 1)
    if looks_local:
        raise DataError(f"dataset file not found: {path}")
    return "hub", name


def _data_file_in(directory: Path, split: str) -> Path:
    files = sorted(p for p in directory.rglob("*")
                   if p.suffix.lower() in FILE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    if len(files) == 1:
        return files[0]
    named = [p for p in files if split.lower() in p.name.lower()]
    if len(named) == 1:
        return named[0]
    if not files:
        raise DataError(f"{directory}: is a directory with no .jsonl, .json, .csv or .parquet file in it")
    shown = ", ".join(str(p.relative_to(directory)) for p in (named or files)[:5])
    more = ", ..." if len(named or files) > 5 else ""
    raise DataError(f"{directory}: is a directory with several data files ({shown}{more}): name one of them")


def _read_file(path: Path) -> tuple[list[_Record], list[RowIssue]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path), []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})", source=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{path}: not UTF-8 text (line {line}, column {column}: byte 0x{raw[exc.start]:02x}): "
                        "save the file as UTF-8", source=str(path)) from None
    if suffix == ".csv":
        return _read_csv(text, path), []
    if suffix == ".json":
        stripped = text.lstrip()
        if stripped.startswith("["):
            return _read_json_document(text, path), []
        if stripped.startswith("{"):
            try:
                document = json.loads(text)
            except json.JSONDecodeError:
                return _read_json_lines(text)  # one object per line in a .json file
            return _records_from_document(document, path), []
    if suffix == ".jsonl" and text.lstrip().startswith("["):
        try:  # a JSON array saved as .jsonl: read it as what it is
            return _records_from_document(json.loads(text), path), []
        except json.JSONDecodeError:
            pass
    if suffix in (".jsonl", ".json"):
        return _read_json_lines(text)
    raise DataError(f"{path}: unsupported file type '{path.suffix}': use .jsonl, .json, .csv or .parquet",
                    source=str(path))


def _read_json_lines(text: str) -> tuple[list[_Record], list[RowIssue]]:
    records: list[_Record] = []
    issues: list[RowIssue] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            issues.append(RowIssue(number, "", f"invalid JSON: {exc.msg} (column {exc.colno})", "line"))
            records.append(_Record(number, "line", None))
            continue
        records.append(_Record(number, "line", value))
    return records, issues


def _read_json_document(text: str, path: Path) -> list[_Record]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                        source=str(path)) from None
    return _records_from_document(document, path)


def _records_from_document(document: Any, path: Path) -> list[_Record]:
    if isinstance(document, dict):
        (key, value), = list(document.items())[:1] or [(None, None)]
        # {"data": [...]} wraps the rows; {"messages": [...]} is itself one row.
        if len(document) == 1 and isinstance(value, list) and key not in _ROW_LIST_COLUMNS:
            document = value
        else:
            document = [document]
    if not isinstance(document, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {_type_name(document)}", source=str(path))
    return [_Record(i, "row", value) for i, value in enumerate(document, 1)]


def _read_csv(text: str, path: Path) -> list[_Record]:
    header = text.split("\n", 1)[0]
    # A spreadsheet's "CSV" is often separated by semicolons or tabs: take the header's separator.
    delimiter = max((",", ";", "\t"), key=header.count) if header else ","
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}: invalid CSV: {exc}", source=str(path)) from None
    if reader.fieldnames is None:
        return []
    records = []
    for i, row in enumerate(rows, 1):
        extra = row.pop(None, None)  # cells beyond the header
        if extra:
            records.append(_Record(i, "row", {"__csv_extra__": len(extra), **row}))
        else:
            records.append(_Record(i, "row", {k: v for k, v in row.items() if k is not None}))
    return records


def _read_parquet(path: Path) -> list[_Record]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read Parquet: {exc}", source=str(path)) from None
    return [_Record(i, "row", value) for i, value in enumerate(table.to_pylist(), 1)]


def _read_hub(name: str, cfg: TrainConfig) -> list[_Record]:
    try:
        import datasets
        from datasets.exceptions import DatasetNotFoundError
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError("the `datasets` package is needed to load Hub datasets: pip install datasets") from None
    offline = _hub_offline()
    try:
        dataset = datasets.load_dataset(name, cfg.dataset_subset, split=cfg.dataset_split)
    except DatasetNotFoundError as exc:
        if offline or "offline" in str(exc).lower():
            raise _hub_unreachable(name) from None
        raise DataError(f"dataset '{name}' was not found on the Hugging Face Hub, nor as a local file "
                        "(check the name; for a gated or private dataset set HF_TOKEN in the environment)",
                        source=name) from None
    except (ConnectionError, OSError, TimeoutError) as exc:
        if offline or _is_network_error(exc):
            raise _hub_unreachable(name) from None
        raise DataError(f"cannot load dataset '{name}' from the Hugging Face Hub: {exc}", source=name) from None
    except ValueError as exc:  # unknown split or subset
        raise DataError(f"cannot load dataset '{name}' (split '{cfg.dataset_split}', subset "
                        f"'{cfg.dataset_subset}'): {exc}", source=name) from None
    except Exception as exc:
        if offline or _is_network_error(exc):
            raise _hub_unreachable(name) from None
        raise DataError(f"cannot load dataset '{name}' from the Hugging Face Hub: {exc}", source=name) from None
    return [_Record(i, "row", dict(value)) for i, value in enumerate(dataset, 1)]


def _hub_offline() -> bool:
    import os

    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _is_network_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connection", "offline", "timed out", "timeout", "resolve", "network",
                                   "unreachable", "max retries"))


def _hub_unreachable(name: str) -> DataError:
    return DataError(f"cannot reach the Hugging Face Hub to load dataset '{name}' (offline or no network): "
                     "connect to the internet, or download it and set dataset to the local file", source=name)


# --- formats -------------------------------------------------------------------------------------

def detect_format(rows: Iterable[dict]) -> Optional[str]:
    """The format the rows' columns point to, or None."""
    keys: set[str] = set()
    for i, row in enumerate(rows):
        if i >= 50:
            break
        if isinstance(row, dict):
            keys.update(k for k, v in row.items() if v is not None)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys or ("output" in keys and "input" in keys):
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    return None


class _RowProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
            type(None): "null", str: "text"}.get(type(value), type(value).__name__)


def _text_field(row: dict, name: str, *, required: bool = True, allow_empty: bool = False) -> str:
    if name not in row:
        if not required:
            return ""
        raise _RowProblem(name, f"missing field '{name}'")
    value = row[name]
    if value is None:  # null in JSON, an empty Parquet cell
        if required and not allow_empty:
            raise _RowProblem(name, f"field '{name}' is empty")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _RowProblem(name, f"field '{name}' must be text, got {_type_name(value)}")
    if isinstance(value, float) and math.isnan(value):  # an empty CSV/Parquet cell read by pandas-like tools
        value = ""
    text = str(value)
    if required and not allow_empty and not text.strip():
        raise _RowProblem(name, f"field '{name}' is empty")
    return text


def _list_field(row: dict, name: str) -> list:
    if name not in row:
        raise _RowProblem(name, f"missing field '{name}'")
    value = row[name]
    if value is None:
        raise _RowProblem(name, f"field '{name}' is empty")
    if isinstance(value, str):  # CSV cells hold conversations as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowProblem(name, f"field '{name}' is not a JSON list: {exc.msg} (column {exc.colno})") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list):
        raise _RowProblem(name, f"field '{name}' must be a list of turns, got {_type_name(value)}")
    if not value:
        raise _RowProblem(name, f"field '{name}' is empty")
    return value


def _content_text(value: Any, field_name: str, turn: int) -> str:
    if isinstance(value, list):  # OpenAI content parts: [{"type": "text", "text": ...}]
        parts = []
        for part in value:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise _RowProblem(field_name, f"turn {turn}: only text content is supported")
        value = "".join(parts)
    if value is None:
        raise _RowProblem(field_name, f"turn {turn}: empty content")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _RowProblem(field_name, f"turn {turn}: content must be text, got {_type_name(value)}")
    text = str(value)
    if not text.strip():
        raise _RowProblem(field_name, f"turn {turn}: empty content")
    return text


def _check_turns(messages: list[dict[str, str]], field_name: str) -> None:
    """Optional system first, then user/assistant alternating from a user turn, ending with an answer."""
    expected = "user"
    previous = None
    for turn, m in enumerate(messages, 1):
        role = m["role"]
        if role == "system":
            if turn != 1:
                raise _RowProblem(field_name, f"turn {turn}: a system turn must be the first turn")
            continue
        if role != expected:
            if role == previous:
                raise _RowProblem(field_name, f"turn {turn}: two {role} turns in a row")
            raise _RowProblem(field_name, f"turn {turn}: the conversation must start with a user turn, "
                              f"not {role}")
        previous, expected = role, ("assistant" if role == "user" else "user")
    if previous is None:
        raise _RowProblem(field_name, "no user or assistant turn")
    if previous == "user":
        raise _RowProblem(field_name, f"turn {len(messages)}: the conversation ends with a user turn; "
                          "it must end with an assistant answer")


def _turns(row: dict, name: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    turns = _list_field(row, name)
    messages = []
    for turn, item in enumerate(turns, 1):
        if not isinstance(item, dict):
            raise _RowProblem(name, f"turn {turn}: expected an object with '{role_key}' and '{content_key}', "
                              f"got {_type_name(item)}")
        # Accept either spelling of a turn in either format (from/value or role/content).
        rk = role_key if role_key in item else ("role" if "role" in item else "from")
        ck = content_key if content_key in item else ("content" if "content" in item else "value")
        if rk not in item:
            raise _RowProblem(name, f"turn {turn}: missing '{role_key}'")
        raw_role = item[rk]
        role = roles.get(str(raw_role).strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            known = ", ".join(dict.fromkeys(k for k in roles))
            raise _RowProblem(name, f"turn {turn}: unknown role {raw_role!r} (expected one of: {known})")
        if ck not in item:
            raise _RowProblem(name, f"turn {turn}: missing '{content_key}'")
        messages.append({"role": role, "content": _content_text(item[ck], name, turn)})
    return messages


def _with_system(row: dict, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = row.get("system")
    if isinstance(system, str) and system.strip() and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def _normalize_alpaca(row: dict) -> dict:
    instruction = _text_field(row, "instruction", allow_empty=True) if "instruction" in row else None
    extra_input = _text_field(row, "input", required=False)
    if instruction is None:
        if not extra_input.strip():
            raise _RowProblem("instruction", "missing field 'instruction'")
        instruction = ""
    if not instruction.strip() and not extra_input.strip():
        raise _RowProblem("instruction", "field 'instruction' is empty")
    output = _text_field(row, "output")
    prompt = "\n\n".join(p for p in (instruction, extra_input) if p.strip())
    messages: list[dict[str, str]] = []
    system = _text_field(row, "system", required=False)
    if system.strip():
        messages.append({"role": "system", "content": system})
    history = row.get("history")
    if hasattr(history, "tolist"):
        history = history.tolist()
    if isinstance(history, str) and history.strip():
        try:
            history = json.loads(history)
        except json.JSONDecodeError:
            raise _RowProblem("history", "field 'history' must be a list of [instruction, answer] pairs") from None
    if history:
        if not isinstance(history, list):
            raise _RowProblem("history", "field 'history' must be a list of [instruction, answer] pairs")
        for turn, pair in enumerate(history, 1):
            if hasattr(pair, "tolist"):
                pair = pair.tolist()
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(p, str) and p.strip() for p in pair)):
                raise _RowProblem("history", f"history pair {turn} must be [instruction, answer], both non-empty text")
            messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _normalize_sharegpt(row: dict) -> dict:
    messages = _with_system(row, _turns(row, "conversations", "from", "value", SHAREGPT_ROLES))
    _check_turns(messages, "conversations")
    return {"messages": messages}


def _normalize_messages(row: dict) -> dict:
    roles = {r: r for r in MESSAGE_ROLES}
    messages = _with_system(row, _turns(row, "messages", "role", "content", roles))
    _check_turns(messages, "messages")
    return {"messages": messages}


def _normalize_prompt_completion(row: dict) -> dict:
    if isinstance(row.get("prompt"), list) or isinstance(row.get("completion"), list):
        roles = {r: r for r in MESSAGE_ROLES}
        prompt = _turns(row, "prompt", "role", "content", roles)
        completion = _turns(row, "completion", "role", "content", roles)
        messages = _with_system(row, prompt + completion)
        _check_turns(messages, "completion")
        return {"messages": messages}
    prompt = _text_field(row, "prompt")
    completion = _text_field(row, "completion")
    return {"messages": _with_system(row, [{"role": "user", "content": prompt},
                                           {"role": "assistant", "content": completion}])}


def _normalize_text(row: dict) -> dict:
    return {"text": _text_field(row, "text")}


_NORMALIZERS = {
    "alpaca": _normalize_alpaca,
    "sharegpt": _normalize_sharegpt,
    "messages": _normalize_messages,
    "prompt_completion": _normalize_prompt_completion,
    "text": _normalize_text,
}


def normalize_row(row: Any, fmt: str) -> dict:
    """One raw row -> a normalized example; raises _RowProblem."""
    if not isinstance(row, dict):
        raise _RowProblem("", f"expected a JSON object, got {_type_name(row)}")
    extra = row.get("__csv_extra__")
    if extra:
        raise _RowProblem("", f"{extra} more cell{'s' if extra > 1 else ''} than the header has columns")
    return _NORMALIZERS[fmt](row)


# --- loading -------------------------------------------------------------------------------------

def load_examples(cfg: TrainConfig, base_dir: Optional[str | Path] = None) -> LoadedData:
    """Read, validate and normalize the configured dataset, then split it into train and eval."""
    kind, where = resolve_source(cfg.dataset, base_dir, cfg.dataset_split)
    if kind == "hub":
        records, issues = _read_hub(where, cfg), []
        source = where
    else:
        records, issues = _read_file(Path(where))
        source = where
    if cfg.max_samples is not None:
        records = records[:cfg.max_samples]
        kept_rows = {(r.kind, r.row) for r in records}
        issues = [i for i in issues if (i.kind, i.row) in kept_rows]
    if not records:
        raise DataError(f"{source}: the dataset is empty: no rows", source=source)

    records = _apply_column_mapping(records, cfg.column_mapping, source)
    fmt = cfg.dataset_format
    if fmt == "auto":
        fmt = detect_format(r.value for r in records if isinstance(r.value, dict))
        if fmt is None:
            columns = sorted({k for r in records[:50] if isinstance(r.value, dict) for k in r.value})
            shown = ", ".join(columns) if columns else "none"
            raise DataError(
                f"{source}: cannot tell the dataset format from its columns ({shown}): expected instruction/"
                "output (alpaca), conversations (sharegpt), messages, prompt/completion, or text. Set "
                "dataset_format, or column_mapping to rename the columns", source=source)

    broken = {(i.kind, i.row) for i in issues}
    examples: list[Example] = []
    for record in records:
        if (record.kind, record.row) in broken:
            continue
        try:
            normalized = normalize_row(record.value, fmt)
        except _RowProblem as problem:
            issues.append(RowIssue(record.row, problem.field, problem.message, record.kind))
            continue
        examples.append(_example(normalized, record.row, record.kind, source))

    errors = sorted(issues, key=lambda i: i.row)
    if not examples:
        raise DataError(_problem_list(f"{source}: no usable rows: all {len(records)} rows are invalid:", errors)
                        + _mapping_hint(errors, records, fmt), errors, source)
    if errors and not cfg.skip_invalid_rows:
        raise DataError(_problem_list(
            f"{source}: {len(errors)} of {len(records)} rows are invalid (fix them, or set skip_invalid_rows "
            "to train without them):", errors), errors, source)

    warnings = _duplicates(examples)
    train, evaluation = split_examples(examples, cfg.val_size, cfg.seed, source)
    return LoadedData(train=train, eval=evaluation, format=fmt, source=source,
                      issues=sorted(errors + warnings, key=lambda i: (i.row, i.severity)),
                      skipped=len(errors), num_rows=len(records))


def _problem_list(head: str, issues: Sequence[RowIssue]) -> str:
    lines = [head] + [f"  {i}" for i in issues[:MAX_LISTED_PROBLEMS]]
    if len(issues) > MAX_LISTED_PROBLEMS:
        lines.append(f"  ... and {len(issues) - MAX_LISTED_PROBLEMS} more")
    return "\n".join(lines)


def _mapping_hint(errors: Sequence[RowIssue], records: Sequence[_Record], fmt: str) -> str:
    """When every row lacks the same field, the columns probably have other names: say which to map."""
    fields = {i.field for i in errors}
    if len(fields) != 1 or not all(i.message == f"missing field '{i.field}'" for i in errors):
        return ""
    wanted = fields.pop()
    columns = sorted({k for r in records[:50] if isinstance(r.value, dict) for k in r.value})
    if not columns:
        return ""
    guess = next((c for c in _SYNONYMS.get(wanted, ()) if c in columns), columns[0])
    return (f"\nThe rows have the columns {', '.join(columns)}, but the {fmt} format needs '{wanted}': rename one "
            f"with column_mapping, e.g. {{{guess}: {wanted}}}, or set dataset_format")


def _apply_column_mapping(records: list[_Record], mapping: dict[str, str], source: str) -> list[_Record]:
    if not mapping:
        return records
    columns: set[str] = set()
    for r in records:
        if isinstance(r.value, dict):
            columns.update(r.value)
    missing = [old for old in mapping if old not in columns]
    if missing:
        raise DataError(f"{source}: column_mapping names column '{missing[0]}', which is not in the dataset "
                        f"(its columns: {', '.join(sorted(columns)) or 'none'})", source=source)
    out = []
    for r in records:
        if isinstance(r.value, dict):
            value = {k: v for k, v in r.value.items() if k not in mapping}
            value.update({new: r.value[old] for old, new in mapping.items()})
            r = _Record(r.row, r.kind, value)
        out.append(r)
    return out


def _duplicates(examples: Sequence[Example]) -> list[RowIssue]:
    first_seen: dict[str, Example] = {}
    warnings = []
    for ex in examples:
        key = json.dumps(ex, sort_keys=True, ensure_ascii=False)
        if key in first_seen:
            warnings.append(RowIssue(ex.row, "", f"duplicate of {first_seen[key].where}", ex.kind, "warning"))
        else:
            first_seen[key] = ex
    return warnings


def split_examples(examples: list, val_size: float, seed: int, source: str = "dataset") -> tuple[list, list]:
    """(train, eval): val_size below 1 is a fraction (rounded up, as datasets' train_test_split does), 1 or
    more a row count.

    The held-out rows are drawn with a fixed seed; both parts keep the file's order.
    """
    n = len(examples)
    if not val_size:
        return list(examples), []
    count = int(val_size) if val_size >= 1 else math.ceil(n * val_size)
    if count >= n:
        raise DataError(f"{source}: val_size {val_size:g} holds out {count} of {n} rows and leaves no training "
                        "rows: lower val_size", source=source)
    held = set(random.Random(seed).sample(range(n), count))
    return ([ex for i, ex in enumerate(examples) if i not in held],
            [ex for i, ex in enumerate(examples) if i in held])


# --- templates and tokenization ------------------------------------------------------------------

def template_label(tokenizer: Any, cfg: TrainConfig) -> str:
    """Which template renders the conversations: the tokenizer's own, or a named one."""
    if cfg.template == AUTO:
        return "the tokenizer's chat template" if getattr(tokenizer, "chat_template", None) else FALLBACK_TEMPLATE
    return cfg.template


def chat_template_for_saving(tokenizer: Any, cfg: TrainConfig) -> Optional[str]:
    """The jinja chat_template to save with a trained model when a named template (or the `auto` fallback)
    rendered its data, so generation renders prompts exactly as training did; None when the
    tokenizer's own template was used."""
    if cfg.template == AUTO:
        return None if getattr(tokenizer, "chat_template", None) else chat_template_jinja(FALLBACK_TEMPLATE)
    return chat_template_jinja(cfg.template) if cfg.template in NAMED_TEMPLATES else None


def render_segments(example: dict, tokenizer: Any, cfg: TrainConfig) -> list[Segment]:
    """The text the model sees for one example, as (text, is_answer) segments."""
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    if "text" in example and "messages" not in example:
        return [(bos + example["text"] + eos, True)]
    messages = example["messages"]
    name = cfg.template
    if name == AUTO:
        if getattr(tokenizer, "chat_template", None):
            return _render_jinja(messages, tokenizer, example)
        name = FALLBACK_TEMPLATE
    if name not in NAMED_TEMPLATES:
        raise DataError(f"template: {unknown_template_message(name)}")
    return render_named(name, messages, bos, eos)


def _apply_template(tokenizer: Any, messages: list, add_generation_prompt: bool, example: dict) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises TemplateError, its own raise_exception(), TypeError...
        where = f" ({getattr(example, 'source', '')}: {example.where})" if isinstance(example, Example) else ""
        raise DataError(f"bad chat template: the tokenizer's chat template failed to render a "
                        f"conversation{where}: {exc}. Set template to a named one "
                        f"({', '.join(NAMED_TEMPLATES)})") from None
    if not isinstance(text, str):
        raise DataError("bad chat template: the tokenizer's chat template did not return text")
    return text


def _render_jinja(messages: list[dict], tokenizer: Any, example: dict) -> list[Segment]:
    """Answer spans of a jinja template found by rendering prefixes of the conversation.

    The answer of turn i spans from the end of render(turns before i, generation prompt) to the end of
    render(turns up to i). Templates that rewrite earlier turns break the prefix property; then each
    answer is located by its text, in order.
    """
    full = _apply_template(tokenizer, messages, False, example)
    spans: list[tuple[int, int]] = []
    prefix_ok = True
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = _apply_template(tokenizer, messages[:i], True, example)
        end_text = _apply_template(tokenizer, messages[:i + 1], False, example)
        if not (full.startswith(end_text) and end_text.startswith(start_text) and len(end_text) > len(start_text)):
            prefix_ok = False
            break
        spans.append((len(start_text), len(end_text)))
    if not prefix_ok:
        spans = _find_answers(full, messages, getattr(tokenizer, "eos_token", None) or "")
    segments: list[Segment] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            segments.append((full[cursor:start], False))
        segments.append((full[start:end], True))
        cursor = end
    if cursor < len(full):
        segments.append((full[cursor:], False))
    return segments


END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def _find_answers(full: str, messages: list[dict], eos: str) -> list[tuple[int, int]]:
    """Answer spans located by their text, turn by turn, for templates that rewrite earlier turns.

    Every turn is searched after the previous one, so an answer that repeats the prompt's words is not
    found inside the prompt. An answer the template rewrote (reasoning stripped from earlier turns) is
    looked up by what follows its </think>; one not found at all carries no loss.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for m in messages:
        content = m["content"]
        candidates = [content]
        if m["role"] == "assistant" and "</think>" in content:
            candidates.append(content.split("</think>")[-1].strip())
        start, found = -1, ""
        for candidate in candidates:
            if candidate:
                start = full.find(candidate, cursor)
                if start >= 0:
                    found = candidate
                    break
        if start < 0:
            continue
        end = start + len(found)
        if m["role"] == "assistant":
            tail = full[end:].lstrip(" ")
            # The end-of-turn marker right after an answer is part of what the model must learn to emit.
            for marker in (eos, *END_OF_TURN_MARKERS):
                if marker and tail.startswith(marker):
                    end = full.index(marker, end) + len(marker)
                    break
            spans.append((start, end))
        cursor = end
    return spans


@dataclass
class TokenizedRow:
    input_ids: list[int]
    completion_mask: list[int]
    full_length: int  # before truncation
    text: str  # the rendered text
    offsets: list[tuple[int, int]]  # char span of each kept token in text


def _answer_spans(segments: Sequence[Segment], train_all: bool) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for t, is_answer in segments:
        if is_answer or train_all:
            spans.append((pos, pos + len(t)))
        pos += len(t)
    return spans


def _mask_from_offsets(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for each token whose characters overlap an answer span."""
    starts = [a for a, _ in spans]
    mask = []
    for s, e in offsets:
        k = bisect.bisect_right(starts, s) - 1
        hit = 0
        # The span at or before the token's start, and the next one, which the token may reach into.
        for j in (k, k + 1):
            if 0 <= j < len(spans):
                a, b = spans[j]
                if (s < b and e > a) or (s == e and a <= s < b):
                    hit = 1
        mask.append(hit)
    return mask


def tokenize_many(segment_lists: Sequence[Sequence[Segment]], tokenizer: Any, cfg: TrainConfig) -> list[TokenizedRow]:
    """Tokenize rendered rows (not truncated), in one batch call for a fast tokenizer.

    The whole text is tokenized at once (a row tokenizes as it will at inference, merges across the
    prompt/answer boundary included) and the character offsets of the tokens say which carry loss.
    """
    texts = ["".join(t for t, _ in segments) for segments in segment_lists]
    rows: list[TokenizedRow] = []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        for segments, text, ids, offsets in zip(segment_lists, texts, enc["input_ids"], enc["offset_mapping"]):
            offsets = [tuple(o) for o in offsets]
            mask = _mask_from_offsets(offsets, _answer_spans(segments, cfg.train_on_prompt))
            rows.append(TokenizedRow(list(ids), mask, len(ids), text, offsets))
        return rows
    for segments, text in zip(segment_lists, texts):  # slow tokenizers have no offsets: segment by segment
        ids, mask, offsets = [], [], []
        pos = 0
        for t, is_answer in segments:
            piece = tokenizer(t, add_special_tokens=False)["input_ids"]
            ids += piece
            mask += [1 if (is_answer or cfg.train_on_prompt) else 0] * len(piece)
            offsets += [(pos, pos + len(t))] * len(piece)
            pos += len(t)
        rows.append(TokenizedRow(ids, mask, len(ids), text, offsets))
    return rows


def _truncate(row: TokenizedRow, cut: int) -> TokenizedRow:
    return TokenizedRow(row.input_ids[:cut], row.completion_mask[:cut], row.full_length, row.text, row.offsets[:cut])


def tokenize_segments(segments: Sequence[Segment], tokenizer: Any, cfg: TrainConfig,
                      truncate: bool = True) -> TokenizedRow:
    [row] = tokenize_many([segments], tokenizer, cfg)
    return _truncate(row, cfg.cutoff_len) if truncate else row


def tokenize_example(example: dict, tokenizer: Any, cfg: TrainConfig, truncate: bool = True) -> TokenizedRow:
    return tokenize_segments(render_segments(example, tokenizer, cfg), tokenizer, cfg, truncate)


def is_text_example(example: dict) -> bool:
    return "text" in example and "messages" not in example


def split_into_chunks(ids: list[int], size: int) -> list[list[int]]:
    """A long plain-text row as consecutive rows of at most `size` tokens; a 1-token tail teaches nothing
    (the first token of a row is never predicted) and is left out."""
    return [ids[i:i + size] for i in range(0, len(ids), size) if len(ids[i:i + size]) >= 2]


class TokenizedRows(list):
    """The list of {"input_ids", "completion_mask"} dicts, plus what happened on the way.

    full_lengths: tokens of each kept row before truncation; truncated_rows / tokens_cut: how much
    cutoff_len cut; dropped: rows with no token carrying loss (skipped only with skip_invalid_rows);
    warnings: sentences for the user.
    """

    def __init__(self) -> None:
        super().__init__()
        self.full_lengths: list[int] = []
        self.truncated_rows: list[str] = []
        self.tokens_cut = 0
        self.dropped: list[RowIssue] = []
        self.warnings: list[str] = []


def tokenize_examples(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig,
                      loaded: Optional[LoadedData] = None) -> TokenizedRows:
    """Render and tokenize examples: [{"input_ids": [...], "completion_mask": [...]}, ...].

    completion_mask is 1 on the assistant's answers (and their end-of-turn marker), 0 on the prompt,
    or 1 everywhere with train_on_prompt or for plain text. Conversations are cut to cutoff_len (a
    warning says how many and how many tokens); plain-text rows (continued pre-training) longer than
    cutoff_len are split into consecutive rows instead, so no text is lost. A row left with no token
    that carries loss is an error, or is dropped with skip_invalid_rows; when `loaded` is given,
    dropped rows are added to its issues and skipped count.
    """
    out = TokenizedRows()
    problems: list[RowIssue] = []
    source = loaded.source if loaded else ""
    split_rows: list[str] = []
    kept = 0
    for example, row in _tokenized_in_batches(examples, tokenizer, cfg):
        source = source or getattr(example, "source", "")
        if is_text_example(example):
            chunks = split_into_chunks(row.input_ids, cfg.cutoff_len)
            if len(chunks) > 1:
                split_rows.append(getattr(example, "where", "a row"))
            for chunk in chunks:
                out.append({"input_ids": chunk, "completion_mask": [1] * len(chunk)})
                out.full_lengths.append(len(chunk))
            kept += 1
            continue
        row = _truncate(row, cfg.cutoff_len)
        if not any(row.completion_mask):
            problems.append(RowIssue(
                getattr(example, "row", 0), "",
                f"no token carries loss: the answer starts after cutoff_len {cfg.cutoff_len} (the row has "
                f"{row.full_length} tokens): raise cutoff_len or shorten the prompt",
                getattr(example, "kind", "row")))
            continue
        out.append({"input_ids": row.input_ids, "completion_mask": row.completion_mask})
        out.full_lengths.append(row.full_length)
        kept += 1
        if row.full_length > cfg.cutoff_len:  # counted among the rows that train; dropped ones are errors
            out.truncated_rows.append(getattr(example, "where", "a row"))
            out.tokens_cut += row.full_length - cfg.cutoff_len
    if problems and not cfg.skip_invalid_rows:
        raise DataError(no_loss_message(source, problems, len(examples)), problems, source)
    if problems and not out:
        raise DataError(_problem_list(f"{source or 'dataset'}: no usable rows: no row has a token that carries "
                                      "loss:", problems), problems, source)
    out.dropped = problems
    if loaded is not None and problems:
        loaded.issues.extend(problems)
        loaded.skipped += len(problems)
    if out.truncated_rows:
        out.warnings.append(truncation_warning(out.truncated_rows, kept, out.tokens_cut, cfg.cutoff_len))
    if split_rows:
        shown = ", ".join(split_rows[:5]) + (", ..." if len(split_rows) > 5 else "")
        out.warnings.append(f"{len(split_rows)} of {kept} text rows are longer than cutoff_len {cfg.cutoff_len} and "
                            f"were split into rows of at most {cfg.cutoff_len} tokens ({shown}): "
                            f"{len(out)} training rows in all")
    return out


TOKENIZE_BATCH = 256


def _tokenized_in_batches(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig):
    """(example, untruncated TokenizedRow) pairs, rendering and tokenizing a batch of rows at a time."""
    for start in range(0, len(examples), TOKENIZE_BATCH):
        batch = examples[start:start + TOKENIZE_BATCH]
        rows = tokenize_many([render_segments(ex, tokenizer, cfg) for ex in batch], tokenizer, cfg)
        yield from zip(batch, rows)


def no_loss_message(source: str, problems: Sequence[RowIssue], total: int) -> str:
    return _problem_list(f"{source or 'dataset'}: {len(problems)} of {total} rows have no token that carries loss "
                         "(fix them, or set skip_invalid_rows to train without them):", problems)


def truncation_warning(where: Sequence[str], total: int, tokens_cut: int, cutoff_len: int) -> str:
    shown = ", ".join(where[:5]) + (", ..." if len(where) > 5 else "")
    return (f"{len(where)} of {total} rows are longer than cutoff_len {cutoff_len}: {tokens_cut} tokens are cut "
            f"({shown})")


# --- preview ---------------------------------------------------------------------------------------

def preview_row(example: dict, tokenizer: Any, cfg: TrainConfig) -> dict[str, Any]:
    """One row as the model sees it: the rendered text split into (text, carries_loss) segments.

    Segments follow the tokens: consecutive tokens with the same mask value form one segment, so the
    highlight is exactly what trains. Text beyond cutoff_len is returned apart as ``cut_text``: cut
    off a conversation (``truncated``), or continued in ``split_rows`` rows for plain text.
    """
    tokenized = tokenize_example(example, tokenizer, cfg)
    text, offsets, mask = tokenized.text, tokenized.offsets, tokenized.completion_mask
    split = is_text_example(example) and tokenized.full_length > cfg.cutoff_len
    segments: list[tuple[str, bool]] = []
    group_start = 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[i - 1]:
            end = offsets[i][0] if i < len(mask) else offsets[i - 1][1]
            start = 0 if not segments else group_start
            segments.append((text[start:end], bool(mask[i - 1])))
            group_start = end
    kept_end = offsets[-1][1] if offsets else 0
    return {
        "row": getattr(example, "row", None),
        "where": getattr(example, "where", ""),
        "segments": segments,
        "cut_text": text[kept_end:] if tokenized.full_length > len(tokenized.input_ids) else "",
        "num_tokens": len(tokenized.input_ids),
        "full_length": tokenized.full_length,
        "loss_tokens": sum(mask),
        "truncated": tokenized.full_length > cfg.cutoff_len and not split,
        # Plain text is not cut but split: cut_text then trains in the following rows.
        "split_rows": math.ceil(tokenized.full_length / cfg.cutoff_len) if split else 1,
    }


def preview_rows(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig, page: int = 1,
                 page_size: int = 10) -> dict[str, Any]:
    """A page of rows as the model sees them (see preview_row). Pages count from 1 and are clamped.

    Returns {"page", "pages", "page_size", "total", "rows": [preview_row(...), ...]}.
    """
    page_size = max(1, int(page_size))
    total = len(examples)
    pages = max(1, math.ceil(total / page_size))
    page = min(max(1, int(page)), pages)
    chunk = examples[(page - 1) * page_size: page * page_size]
    return {"page": page, "pages": pages, "page_size": page_size, "total": total,
            "rows": [preview_row(ex, tokenizer, cfg) for ex in chunk]}


# --- token-length statistics ---------------------------------------------------------------------

PADDING_ADVICE_THRESHOLD = 0.8  # the plan warns below this padding efficiency too


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below it."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def suggested_cutoff_len(lengths: Sequence[int], keep: float = 0.99, multiple: int = 8) -> int:
    """The cutoff_len that keeps `keep` of the rows whole, rounded up to a multiple of 8 (at least 8)."""
    value = percentile(sorted(lengths), keep * 100)
    return max(8, math.ceil(value / multiple) * multiple)


def _nice_width(span: int, bins: int) -> int:
    raw = max(1, math.ceil(span / bins))
    magnitude = 10 ** max(0, len(str(raw)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= raw:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def length_histogram(lengths: Sequence[int], bins: int = 30) -> dict[str, Any]:
    """Bins of equal, round width for a bar chart: edges[i] <= length < edges[i + 1] counts in counts[i]."""
    if not lengths:
        return {"edges": [], "counts": [], "width": 0}
    low, high = min(lengths), max(lengths)
    width = _nice_width(high - low + 1, bins)
    first = (low // width) * width
    count = (high - first) // width + 1
    counts = [0] * count
    for n in lengths:
        counts[(n - first) // width] += 1
    return {"edges": [first + i * width for i in range(count + 1)], "counts": counts, "width": width}


def length_stats(lengths: Sequence[int], cfg: TrainConfig, hw: Optional[Hardware] = None) -> dict[str, Any]:
    """Token-length statistics of rows (lengths before truncation) under cfg's cutoff_len and micro-batch.

    hw decides what `auto` packing / group_by_length resolve to (plan.resolve_packing; a CPU when
    not given): `batching` names the strategy the run would use, `padding_efficiency` its figure.

    padding_efficiency_* = real tokens / processed tokens (padded to the longest row of each
    micro-batch), padding_waste_* = padded tokens / processed tokens, for plain (shuffled) batches,
    group_by_length and packing (padding-free). packing_factor: rows of the longest (cut) length that
    fit one cutoff_len sequence; rows_per_packed_sequence: the average with best-fit packing.
    """
    values = [int(n) for n in lengths if n > 0]
    cutoff = cfg.cutoff_len
    micro = cfg.per_device_train_batch_size
    if not values:
        return {"count": 0, "cutoff_len": cutoff, "micro_batch": micro, "advice": [],
                "histogram": length_histogram([])}
    ordered = sorted(values)
    n = len(values)
    truncated = [v for v in values if v > cutoff]
    clipped_max = min(ordered[-1], cutoff)
    plain = padding_efficiency(values, micro, "plain", cutoff, cfg.seed)
    # transformers sorts mega-batches of min(50, rows // (4 × micro × accumulation)) batches (plan.length_group_rows)
    grouped = padding_efficiency(values, micro, "group_by_length", cutoff, cfg.seed,
                                 length_group_rows(len(values), micro * cfg.gradient_accumulation_steps))
    packed = padding_efficiency(values, micro, "packing", cutoff, cfg.seed)
    packs = pack_best_fit_decreasing(values, cutoff)
    stats: dict[str, Any] = {
        "count": n,
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(sum(values) / n, 2),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "cutoff_len": cutoff,
        "micro_batch": micro,
        "truncated_rows": len(truncated),
        "truncated_share": round(len(truncated) / n, 4),
        "tokens_cut": sum(v - cutoff for v in truncated),
        "tokens_after_cut": sum(min(v, cutoff) for v in values),
        "padding_efficiency_plain": round(plain, 4),
        "padding_efficiency_grouped": round(grouped, 4),
        "padding_efficiency_packed": round(packed, 4),
        "padding_waste_plain": round(1 - plain, 4),
        "padding_waste_grouped": round(1 - grouped, 4),
        "padding_waste_packed": round(1 - packed, 4),
        # Share of processed tokens that grouping saves compared with plain batches.
        "grouping_saves": round(1 - plain / grouped, 4),
        "packed_sequences": len(packs),
        "rows_per_packed_sequence": round(n / len(packs), 2),
        "packing_factor": packing_factor(clipped_max, cutoff),
        "suggested_cutoff_len": suggested_cutoff_len(values),
        "histogram": length_histogram(values),
    }
    packing, group = resolve_packing(cfg, hw or CPU)
    stats["batching"] = "packing" if packing else ("group_by_length" if group else "plain")
    stats["padding_efficiency"] = {"packing": stats["padding_efficiency_packed"],
                                   "group_by_length": stats["padding_efficiency_grouped"],
                                   "plain": stats["padding_efficiency_plain"]}[stats["batching"]]
    stats["advice"] = length_advice(stats)
    return stats


def length_advice(stats: dict[str, Any]) -> list[str]:
    """Sentences for the plan: truncation, and packing or grouping when lengths vary."""
    advice = []
    n, cutoff = stats["count"], stats["cutoff_len"]
    if stats["truncated_rows"]:
        advice.append(
            f"{stats['truncated_rows']} of {n} rows ({stats['truncated_share']:.1%}) are longer than cutoff_len "
            f"{cutoff}: {stats['tokens_cut']} tokens are cut. cutoff_len {stats['suggested_cutoff_len']} keeps "
            "99% of the rows whole.")
    batching = stats["batching"]
    if stats["micro_batch"] > 1 and batching != "packing" and stats["padding_efficiency"] < PADDING_ADVICE_THRESHOLD:
        packing = (f"packing (no padding, about {stats['rows_per_packed_sequence']:g} rows per {cutoff}-token "
                   "sequence)")
        spread = (f"Lengths vary (median {stats['p50']}, p90 {stats['p90']}, longest {stats['max']} tokens): at "
                  f"micro-batch {stats['micro_batch']}")
        if batching == "group_by_length":
            advice.append(f"{spread}, {stats['padding_waste_grouped']:.0%} of the tokens processed are padding even "
                          f"grouped by length. Turn on {packing}.")
        else:
            advice.append(f"{spread}, {stats['padding_waste_plain']:.0%} of the tokens processed with plain batches "
                          f"are padding. Turn on group_by_length ({stats['padding_waste_grouped']:.0%} padding) or "
                          f"{packing}.")
    return advice


# --- everything at once, for `check` and the Data tab ---------------------------------------------

@dataclass
class DatasetReport:
    """What a run would train on, and every problem found, without raising.

    error: why the run would be refused (None when it would start). Even then `loaded` and
    `tokenized` hold the usable rows (as if skip_invalid_rows were on), so a preview and the
    statistics can still be shown next to the problems.
    """

    error: Optional[str] = None
    loaded: Optional[LoadedData] = None
    tokenized: Optional[TokenizedRows] = None
    stats: Optional[dict[str, Any]] = None
    warnings: list[str] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return list(self.tokenized.full_lengths) if self.tokenized is not None else []

    def to_dict(self) -> dict[str, Any]:
        loaded = self.loaded
        return {
            "error": self.error,
            "source": loaded.source if loaded else None,
            "format": loaded.format if loaded else None,
            "train_rows": len(self.tokenized) if self.tokenized is not None else (len(loaded.train) if loaded else None),
            "eval_rows": len(loaded.eval) if loaded else None,
            "skipped": loaded.skipped if loaded else 0,
            "issues": [i.to_dict() for i in loaded.issues] if loaded else [],
            "warnings": list(self.warnings),
            "stats": {k: v for k, v in (self.stats or {}).items() if k != "histogram"} or None,
        }


def inspect_dataset(cfg: TrainConfig, tokenizer: Any = None, base_dir: Optional[str | Path] = None) -> DatasetReport:
    """Load, validate, tokenize (when a tokenizer is given) and measure the dataset; never raises DataError."""
    report = DatasetReport()
    try:
        report.loaded = load_examples(cfg, base_dir)
    except DataError as exc:
        report.error = str(exc)
        if cfg.skip_invalid_rows or not exc.issues:
            return report  # nothing usable to show
        try:
            report.loaded = load_examples(cfg.replace(skip_invalid_rows=True), base_dir)
        except DataError:
            return report
    loaded = report.loaded
    report.warnings += loaded.warnings
    if tokenizer is None:
        return report
    lenient = cfg.replace(skip_invalid_rows=True)
    try:
        report.tokenized = tokenize_examples(loaded.train, tokenizer, lenient, loaded)
    except DataError as exc:
        report.error = report.error or str(exc)
        return report
    if report.tokenized.dropped and not cfg.skip_invalid_rows and report.error is None:
        report.error = no_loss_message(loaded.source, report.tokenized.dropped, len(loaded.train))
    report.stats = stats = length_stats(report.tokenized.full_lengths, cfg)
    advice = list(stats["advice"])
    for warning in report.tokenized.warnings:
        if stats["truncated_rows"] and warning.startswith(f"{stats['truncated_rows']} of "):
            # One sentence for truncation: which rows (from tokenizing) and the cure (from the statistics).
            advice = [a for a in advice if not a.startswith(f"{stats['truncated_rows']} of ")]
            warning += f". cutoff_len {stats['suggested_cutoff_len']} keeps 99% of the rows whole."
        report.warnings.append(warning)
    report.warnings += advice
    return report
