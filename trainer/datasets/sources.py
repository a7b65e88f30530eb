"""Where a dataset's rows come from: a shipped name, a local file (JSON lines, JSON, CSV, Parquet, or a
directory holding one), or a Hugging Face Hub id; and reading them as raw records.

``resolve_source`` says where a dataset name points; ``read_records`` reads the rows as they are in the
file (1-based line numbers for JSON lines, row numbers otherwise). A line that is not JSON is returned
as a RowIssue beside a record without a value, so the rows around it still load; a file that cannot
be read at all is a DataError.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError, RowIssue, type_name
from trainer.local_names import FILE_SUFFIXES, hub_id_only, shadowed_locally
from trainer.hub import HUGGINGFACE, MODELSCOPE, chosen_hub, hub_offline, modelscope_missing, reachable, unreachable_message
from trainer.textio import load_json

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SHIPPED_DATASETS: dict[str, Path] = {"demo": DATA_DIR / "demo.jsonl", "demo-chat": DATA_DIR / "demo_chat.jsonl"}
SHIPPED_DESCRIPTIONS = {
    "demo": "360 single-turn instructions (alpaca): reverse, count, uppercase, add, capitals, numbered lists",
    "demo-chat": "120 multi-turn conversations (messages) on the same tasks, a third with a system prompt",
}
# Columns whose value is a list inside one row: {"messages": [...]} is a row, {"data": [...]} wraps rows.
ROW_LIST_COLUMNS = {"messages", "conversations", "prompt", "completion", "history"}
# A CSV row with more cells than the header has columns keeps their count under this key, so that
# validation reports it with the row's number (rows.normalize_row).
CSV_EXTRA_CELLS = "__csv_extra__"


def shipped_datasets() -> list[tuple[str, str]]:
    """(name, description) of the datasets that ship with tunedeck, for pickers and docs."""
    return [(name, SHIPPED_DESCRIPTIONS[name]) for name in SHIPPED_DATASETS]


@dataclass
class Record:
    """One row as read from the source, before any validation."""

    row: int
    kind: str  # what `row` counts: a file "line" or a "row" index
    value: Any  # the parsed row (a dict when it is usable)


def read_records(kind: str, where: str, cfg: TrainConfig) -> tuple[list[Record], list[RowIssue]]:
    """The rows of a resolved source (see resolve_source) and the lines that could not be parsed."""
    if kind == "hub":
        return _read_hub(where, cfg), []
    return _read_file(Path(where))


def resolve_source(dataset: str, base_dir: Optional[str | Path] = None, split: str = "train") -> tuple[str, str]:
    """("file", path) for a shipped name or a local file, ("hub", id) for a Hub dataset id.

    A name that looks like a path (a file suffix, a leading / . ~, a backslash) but does not exist is a
    DataError naming the path; anything else that does not exist locally is taken as a Hub id (on a shared
    server a Hub-id-shaped name is always one: trainer/local_names.py). A
    directory (a downloaded dataset repository) stands for its one data file, or the one whose name
    holds the split (train.jsonl, data/train-00000.parquet).
    """
    name = dataset.strip()
    if name in SHIPPED_DATASETS:
        return "file", str(SHIPPED_DATASETS[name])
    if hub_id_only(name):
        return "hub", name
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.exists():
        if path.is_dir():
            return "file", str(_data_file_in(path, split))
        if not path.is_file():  # opening a FIFO for reading waits for a writer forever; a device never ends
            raise DataError(f"dataset '{name}': {path} is not a regular file (a device, FIFO or socket)")
        return "file", str(path)
    if "," in name:  # in no Hub id: LLaMA-Factory's list of datasets
        raise DataError(f"dataset '{name}' names several datasets (a comma list, as LLaMA-Factory's `dataset: a,b`); "
                        "tunedeck trains on one dataset: merge the files into one, or pick one")
    looks_local = (name.lower().endswith(FILE_SUFFIXES) or name.startswith(("/", ".", "~")) or "\\" in name
                   or name.count("/") > 1)
    if looks_local:
        raise DataError(f"dataset file not found: {path}")
    return "hub", name


MAX_FOLDER_ENTRIES = 20_000  # a downloaded dataset repository holds a few files; `/` holds millions


def _data_files_under(directory: Path) -> list[Path]:
    """The data files in a folder and its sub-folders (hidden ones left out), in a bounded walk: a folder of
    more than MAX_FOLDER_ENTRIES entries is a DataError, and entries that vanish meanwhile are passed over."""
    found: list[Path] = []
    seen = 0
    for root, dirs, names in os.walk(directory, onerror=lambda exc: None):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        seen += len(dirs) + len(names)
        if seen > MAX_FOLDER_ENTRIES:
            raise DataError(f"{directory}: is a folder of more than {MAX_FOLDER_ENTRIES:,} files and folders, "
                            "too many files to search for the data: name the data file itself")
        found += [Path(root) / n for n in names if not n.startswith(".") and n.lower().endswith(FILE_SUFFIXES)]
    return sorted(p for p in found if p.is_file())


def _data_file_in(directory: Path, split: str) -> Path:
    files = _data_files_under(directory)
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


_ARCHIVES = ((b"\x1f\x8b", "gzip-compressed"), (b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
             (b"BZh", "bzip2-compressed"), (b"\xfd7zXZ\x00", "xz-compressed"), (b"7z\xbc\xaf\x27\x1c", "7-Zip"))


def _read_file(path: Path) -> tuple[list[Record], list[RowIssue]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path), []
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})", source=str(path)) from None
    packed = next((kind for magic, kind in _ARCHIVES if raw.startswith(magic)), None)
    if packed:  # read as text it would be "not UTF-8 at byte 0x8b", which says nothing useful
        raise DataError(f"{path}: is a {packed} file: decompress it first and give the .jsonl, .json, .csv or "
                        ".parquet file inside", source=str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{path}: not UTF-8 text (line {line}, column {column}: byte 0x{raw[exc.start]:02x}): "
                        "save the file as UTF-8", source=str(path)) from None
    del raw  # a big file is held once, as text, from here on
    if suffix == ".csv":
        return _read_csv(text, path), []
    if suffix == ".json":
        stripped = text.lstrip()
        if stripped.startswith("["):
            return _read_json_document(text, path), []
        if stripped.startswith("{"):
            try:
                document = load_json(text)
            except json.JSONDecodeError:
                return _read_json_lines(text)  # one object per line in a .json file
            return _records_from_document(document, path), []
    if suffix == ".jsonl" and text.lstrip().startswith("["):
        try:  # a JSON array saved as .jsonl: read it as what it is
            return _records_from_document(load_json(text), path), []
        except json.JSONDecodeError:
            pass
    if suffix in (".jsonl", ".json"):
        return _read_json_lines(text)
    raise DataError(f"{path}: unsupported file type '{path.suffix}': use .jsonl, .json, .csv or .parquet",
                    source=str(path))


def _read_json_lines(text: str) -> tuple[list[Record], list[RowIssue]]:
    records: list[Record] = []
    issues: list[RowIssue] = []
    # Lines end at "\n" only, as editors number them: str.splitlines would also cut at U+2028 and other
    # separators that JSON allows unescaped inside a string. A "\r" before it is JSON whitespace.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = load_json(line)
        except json.JSONDecodeError as exc:
            issues.append(RowIssue(number, "", f"invalid JSON: {exc.msg} (column {exc.colno})", "line"))
            records.append(Record(number, "line", None))
            continue
        records.append(Record(number, "line", value))
    return records, issues


def _read_json_document(text: str, path: Path) -> list[Record]:
    try:
        document = load_json(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                        source=str(path)) from None
    return _records_from_document(document, path)


def _records_from_document(document: Any, path: Path) -> list[Record]:
    if isinstance(document, dict):
        (key, value), = list(document.items())[:1] or [(None, None)]
        # {"data": [...]} wraps the rows; {"messages": [...]} is itself one row.
        if len(document) == 1 and isinstance(value, list) and key not in ROW_LIST_COLUMNS:
            document = value
        else:
            document = [document]
    if not isinstance(document, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {type_name(document)}", source=str(path))
    return [Record(i, "row", value) for i, value in enumerate(document, 1)]


def _read_csv(text: str, path: Path) -> list[Record]:
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
    # DictReader keeps the last of two same-named columns and drops the other without a word.
    seen: set[str] = set()
    for name in reader.fieldnames:
        if name in seen:
            raise DataError(f"{path}: line 1: the header names column '{name}' twice: rename one of them",
                            source=str(path))
        seen.add(name)
    records = []
    for i, row in enumerate(rows, 1):
        extra = row.pop(None, None)  # cells beyond the header
        if extra:
            row[CSV_EXTRA_CELLS] = len(extra)
        records.append(Record(i, "row", row))
    return records


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read Parquet: {exc}", source=str(path)) from None
    return [Record(i, "row", value) for i, value in enumerate(table.to_pylist(), 1)]


_NOT_ON_HUB = ("dataset '{name}' was not found on the Hugging Face Hub, nor as a local file (check the name; for a "
               "gated or private dataset set HF_TOKEN in the environment)")


def _read_hub(name: str, cfg: TrainConfig) -> list[Record]:
    hub = chosen_hub(cfg.model_hub)
    offline = hub_offline()
    if not offline and not reachable(hub):  # fail now, not after the libraries' retries (about 25 s)
        raise DataError(unreachable_message("dataset", name, hub), source=name)
    if hub == MODELSCOPE:
        return _read_modelscope(name, cfg)
    if shadowed_locally(name):  # `datasets` would read the local folder: answer as for a Hub id that is not there
        if offline:
            raise _hub_unreachable(name)
        raise DataError(_NOT_ON_HUB.format(name=name), source=name)
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        dataset = datasets.load_dataset(name, cfg.dataset_subset, split=cfg.dataset_split)
    except DatasetNotFoundError as exc:
        if offline or "offline" in str(exc).lower():
            raise _hub_unreachable(name) from None
        raise DataError(_NOT_ON_HUB.format(name=name), source=name) from None
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
    return [Record(i, "row", dict(value)) for i, value in enumerate(dataset, 1)]


def _read_modelscope(name: str, cfg: TrainConfig) -> list[Record]:
    missing = modelscope_missing("dataset", name)
    if missing:
        raise DataError(missing, source=name)
    from modelscope.msdatasets import MsDataset

    try:
        dataset = MsDataset.load(name, subset_name=cfg.dataset_subset, split=cfg.dataset_split)
    except Exception as exc:  # modelscope raises its own types for a missing dataset, split or network
        raise DataError(f"cannot load dataset '{name}' from ModelScope (split '{cfg.dataset_split}', subset "
                        f"'{cfg.dataset_subset}'): {exc}", source=name) from None
    return [Record(i, "row", dict(value)) for i, value in enumerate(dataset, 1)]


def _is_network_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connection", "offline", "timed out", "timeout", "resolve", "network",
                                   "unreachable", "max retries"))


def _hub_unreachable(name: str) -> DataError:
    return DataError(unreachable_message("dataset", name, HUGGINGFACE), source=name)
