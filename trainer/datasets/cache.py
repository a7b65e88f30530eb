"""A run's whole dataset tokenized with ``datasets.map`` into Arrow files, kept on disk by fingerprint.

``tokenize_cached`` renders and tokenizes the rows in chunks (worker processes where the rows are
many enough to pay for them), writes the result under ``<runs root>/.cache/tokenized/<fingerprint>``
and memory-maps it, so the rows live in Arrow, not in Python lists, and a second run or a resume on
the same data starts without tokenizing again. The fingerprint covers what changes the result: the
dataset file (path, size, mtime; the rows' content for a Hub dataset), the options that decide which
rows are loaded, the split, the tokenizer (its whole definition, chat template and special tokens),
template, cutoff_len, train_on_prompt (KEY_FIELDS), and the source of the code that renders and tokenizes. Packing
is not in it: TRL packs the same tokenized rows.

The rows are exactly those of ``tokenize_examples`` (both go through ``tokenize.row_outcome``), and
so are the warnings and the rows dropped for carrying no loss. The run's events say whether the cache
was used and, for long preprocessing, how far tokenizing has got.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from trainer.config import TrainConfig
from trainer.datasets.issues import RowIssue
from trainer.datasets.load import LoadedData
from trainer.datasets.render import render_segments
from trainer.datasets.rows import Example, is_text_example, make_example
from trainer.datasets.tokenize import (no_loss_issue, raise_for_dropped, row_outcome, tokenize_many,
                                       tokenizing_warnings)

CACHE_DIR = Path(".cache") / "tokenized"  # under the runs root
META_FILE = "tokenized.json"
KEEP_ENTRIES = 8  # least recently used entries beyond this are removed
CHUNK_ROWS = 50_000  # rows per datasets.map call: one progress event each
WAIT_POLL_S = 0.5  # how often a rank that waits for another's tokenized rows looks for them
PROCESS_MIN_ROWS = 20_000  # rows per worker process below which starting it costs more than it saves
MAX_PROCESSES = 8
MAP_BATCH = 256
# The code whose change changes the tokenized rows: its source is part of the fingerprint.
_CODE_FILES = ("load.py", "sources.py", "kinds.py", "rows.py", "render.py", "tokenize.py", "cache.py",
               "../templates.py")
# The config's fields that change which rows are loaded or how they are tokenized; the seed too while val_size
# holds rows out. The dataset file, the hub and the model reach the key through the source and tokenizer stamps.
# tests/test_data_cache_key.py classifies every field of the schema, so a new one must be placed here or there.
KEY_FIELDS = ("stage", "dataset_format", "column_mapping", "max_samples", "val_size", "skip_invalid_rows",
              "kto_desirable_only", "dataset_split", "dataset_subset", "template", "cutoff_len", "train_on_prompt")


@dataclass
class TokenizedDataset:
    """A tokenized split on disk: ``dataset`` (a datasets.Dataset of input_ids and completion_mask,
    memory-mapped) and what happened on the way, as tokenize_examples reports it."""

    dataset: Any
    path: Path
    cache_hit: bool
    warnings: list[str] = field(default_factory=list)
    dropped: list[RowIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def lengths(self) -> list[int]:
        """Tokens of each row (after cutoff_len), read from the Arrow column without decoding the rows."""
        import pyarrow.compute as pc

        return pc.list_value_length(self.dataset.data.column("input_ids")).to_pylist()


def cache_root(runs_root: Optional[str | Path] = None) -> Path:
    """Where tokenized datasets are kept: the runs root's .cache, or $TUNEDECK_CACHE without a runs root."""
    if runs_root is not None:
        return Path(runs_root) / CACHE_DIR
    base = os.environ.get("TUNEDECK_CACHE") or Path.home() / ".cache" / "tunedeck"
    return Path(base).expanduser() / "tokenized"


class TokenizingStopped(Exception):
    """The run was asked to stop between two chunks of tokenizing: nothing of this data is cached."""


def tokenize_cached(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig, loaded: Optional[LoadedData] = None,
                    *, split: str = "train", runs_root: Optional[str | Path] = None, events: Any = None,
                    chunk_rows: int = CHUNK_ROWS, should_stop: Optional[Callable[[], bool]] = None,
                    made_by_another: bool = False) -> TokenizedDataset:
    """The examples tokenized (see tokenize_examples), from the cache when this data was tokenized before.

    events: anything with ``emit(type, **data)`` (the run's EventWriter): a "tokenized dataset cache:
    hit/miss" message, and "tokenizing N / M rows" progress when the rows take more than one chunk.
    Rows without a token carrying loss are added to `loaded` (issues, skipped) as tokenize_examples does.
    should_stop: asked after each chunk; True raises TokenizingStopped (an abort need not wait for a million rows).
    made_by_another: another process of the run (its machine's first rank) tokenizes these same rows into the
    same entry: wait for it rather than tokenize them again (eight ranks would do the work eight times over).
    """
    root = cache_root(runs_root)
    key = fingerprint(examples, tokenizer, cfg, loaded, split)
    entry = root / key
    source = loaded.source if loaded else ""
    cached = _read_entry(entry)
    if cached is None and made_by_another:
        cached = _wait_for_entry(entry, should_stop)
    if cached is not None:
        data, meta, dropped = cached
        raise_for_dropped(dropped, meta["rows"], len(examples), source, cfg)
        result = TokenizedDataset(data, entry, True, list(meta["warnings"]), dropped)
        os.utime(entry)  # most recently used: evicted last
        _emit(events, f"tokenized dataset cache: hit ({split}, {len(result):,} rows, {entry})",
              cache="hit", split=split, rows=len(result), path=str(entry))
    else:
        processes = worker_processes(len(examples))
        _emit(events, f"tokenized dataset cache: miss ({split}): tokenizing {len(examples):,} rows with "
              f"{processes} process{'es' if processes > 1 else ''}", cache="miss", split=split, path=str(entry))
        result = _build(examples, tokenizer, cfg, source, entry, processes, events, chunk_rows, should_stop)
    if loaded is not None and result.dropped:
        loaded.issues.extend(result.dropped)
        loaded.skipped += len(result.dropped)
    _evict(root, keep=entry)
    return result


def _wait_for_entry(entry: Path, should_stop: Optional[Callable[[], bool]]) -> tuple[Any, dict, list[RowIssue]]:
    """The entry another process is making, once it is complete (it appears whole: a rename). Should that
    process fail, the launcher stops this one, which should_stop then sees."""
    while True:
        if should_stop is not None and should_stop():
            raise TokenizingStopped("waiting for the first rank's rows")
        time.sleep(WAIT_POLL_S)
        cached = _read_entry(entry)
        if cached is not None:
            return cached


def worker_processes(rows: int) -> int:
    """Processes for datasets.map: one per PROCESS_MIN_ROWS rows, at most the usable cores (and 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES, rows // PROCESS_MIN_ROWS))


def fingerprint(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig, loaded: Optional[LoadedData],
                split: str) -> str:
    """The cache key: a hash of everything that changes the tokenized rows (see the module's docstring)."""
    options = {name: getattr(cfg, name) for name in KEY_FIELDS}
    options["column_mapping"] = sorted(cfg.column_mapping.items())
    if cfg.val_size:  # the seed draws the held-out rows; without them it changes nothing tokenized
        options["seed"] = cfg.seed
    parts = {
        "source": _source_stamp(examples, loaded),
        "split": split,
        "rows": len(examples),
        "options": options,
        "tokenizer": _tokenizer_stamp(tokenizer),
        "code": [hashlib.sha256((Path(__file__).parent / name).read_bytes()).hexdigest() for name in _CODE_FILES],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _source_stamp(examples: Sequence[dict], loaded: Optional[LoadedData]) -> list:
    path = Path(loaded.source) if loaded is not None else None
    if path is not None and path.is_file():
        stat = path.stat()
        # ctime and inode too: a rewrite that keeps the size and sets the old mtime back still changes them.
        return ["file", str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    # A Hub dataset or rows given directly: their content (the Hub may serve a new version under the same id).
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return ["rows", digest.hexdigest()]


def _tokenizer_stamp(tokenizer: Any) -> list:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = hashlib.sha256(backend.to_str().encode()).hexdigest()
    else:  # a slow tokenizer: datasets' own hash of the object
        from datasets.fingerprint import Hasher

        definition = Hasher.hash(tokenizer)
    return [type(tokenizer).__name__, definition, getattr(tokenizer, "chat_template", None),
            getattr(tokenizer, "bos_token", None), getattr(tokenizer, "eos_token", None),
            bool(getattr(tokenizer, "is_fast", False))]


def _tokenize_batch(batch: dict[str, list], tokenizer: Any, cfg: TrainConfig, source: str) -> dict[str, list]:
    """datasets.map function: serialized examples -> training rows, with where each came from."""
    examples = [make_example(json.loads(text), row, kind, source)
                for text, row, kind in zip(batch["example"], batch["row"], batch["kind"])]
    tokenized = tokenize_many([render_segments(ex, tokenizer, cfg) for ex in examples], tokenizer, cfg)
    out: dict[str, list] = {name: [] for name in ("input_ids", "completion_mask", "row", "kind", "full_length",
                                                  "text", "piece", "no_loss")}
    for example, row in zip(examples, tokenized):
        outcome = row_outcome(row, is_text_example(example), cfg)
        # A dropped row stays as an empty placeholder, so that the parent process can name it.
        pieces = outcome.rows or ([([], [])] if outcome.no_loss else [])
        for piece, (ids, mask) in enumerate(pieces):
            out["input_ids"].append(ids)
            out["completion_mask"].append(mask)
            out["row"].append(example.row)
            out["kind"].append(example.kind)
            out["full_length"].append(outcome.full_length)
            out["text"].append(outcome.text)
            out["piece"].append(piece)
            out["no_loss"].append(outcome.no_loss)
    return out


def _features():
    from datasets import Features, Sequence as Sequence_, Value

    return Features({"input_ids": Sequence_(Value("int32")), "completion_mask": Sequence_(Value("int8")),
                     "row": Value("int64"), "kind": Value("string"), "full_length": Value("int64"),
                     "text": Value("bool"), "piece": Value("int32"), "no_loss": Value("bool")})


def _build(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig, source: str, entry: Path, processes: int,
           events: Any, chunk_rows: int, should_stop: Optional[Callable[[], bool]] = None) -> TokenizedDataset:
    import datasets

    staging = entry.parent / f".{entry.name}.{os.getpid()}.{time.time_ns()}"
    work = staging / "work"
    work.mkdir(parents=True)
    try:
        if processes > 1:  # worker processes tokenize on their own; the library's threads would fight them
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        parts = []
        total = len(examples)
        for number, start in enumerate(range(0, total, chunk_rows)):
            chunk = examples[start:start + chunk_rows]
            table = datasets.Dataset.from_dict({
                "example": [json.dumps(ex, ensure_ascii=False) for ex in chunk],
                # A plain dict (not from load_examples) has no place: named "a row", as tokenize_examples does.
                "row": [ex.row if isinstance(ex, Example) else 0 for ex in chunk],
                "kind": [ex.kind if isinstance(ex, Example) else "" for ex in chunk]})
            chunk_processes = min(processes, len(chunk) // PROCESS_MIN_ROWS)  # a short last chunk needs fewer
            parts.append(table.map(
                _tokenize_batch, batched=True, batch_size=MAP_BATCH, remove_columns=table.column_names,
                fn_kwargs={"tokenizer": tokenizer, "cfg": cfg, "source": source}, features=_features(),
                num_proc=chunk_processes if chunk_processes > 1 else None,
                cache_file_name=str(work / f"chunk-{number:05d}.arrow"),
                new_fingerprint=f"{entry.name}-{number}", desc=None))
            done = min(start + chunk_rows, total)
            if total > chunk_rows:
                _emit(events, f"tokenizing {done:,} / {total:,} rows", progress={"stage": "tokenizing",
                                                                               "done": done, "total": total})
            if should_stop is not None and should_stop():
                raise TokenizingStopped(f"{done:,} of {total:,} rows tokenized")
        rows = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
        dropped, warnings, keep = _summary(rows, total, cfg)
        raise_for_dropped(dropped, len(keep) if keep is not None else len(rows), total, source, cfg)
        if keep is not None:
            rows = rows.select(keep)
        rows.select_columns(["input_ids", "completion_mask"]).save_to_disk(str(staging / "data"))
        del rows, parts  # the work files are memory-mapped until here
        shutil.rmtree(work)
        meta = {"rows": len(_load(staging)), "warnings": warnings, "dropped": [i.to_dict() for i in dropped],
                "created": time.time()}
        (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        try:
            staging.rename(entry)
        except OSError:  # another run stored the same data meanwhile: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TokenizedDataset(_load(entry), entry, False, warnings, dropped)


def _summary(rows: Any, total: int, cfg: TrainConfig) -> tuple[list[RowIssue], list[str], Any]:
    """Dropped rows, the warnings tokenize_examples gives, and the indices of the rows to keep (None: all).

    Reads only the small columns, as Arrow arrays."""
    import numpy as np

    table = rows.data
    no_loss = table.column("no_loss").to_numpy()
    text = table.column("text").to_numpy()
    full = table.column("full_length").to_numpy()
    piece = table.column("piece").to_numpy()
    numbers = table.column("row").to_numpy()

    def where(indices: np.ndarray, limit: int = 6) -> list[str]:
        """The places of the first rows, then blanks: warnings name five and count them all."""
        kinds = table.column("kind").take(indices[:limit]).to_pylist()
        named = [f"{k} {n}" if k else "a row" for k, n in zip(kinds, numbers[indices[:limit]])]
        return named + [""] * max(0, len(indices) - limit)

    dropped_at = np.flatnonzero(no_loss)
    kinds = table.column("kind").take(dropped_at).to_pylist()
    dropped = [no_loss_issue(int(numbers[i]), k or "row", int(full[i]), cfg) for i, k in zip(dropped_at, kinds)]
    truncated_at = np.flatnonzero(~text & ~no_loss & (full > cfg.cutoff_len))
    split_at = np.flatnonzero(text & (piece == 1))  # a second piece: the row was split
    kept_examples = total - len(dropped)
    kept_rows = len(no_loss) - len(dropped)
    truncated, split = where(truncated_at), where(split_at)
    tokens_cut = int((full[truncated_at] - cfg.cutoff_len).sum())
    warnings = tokenizing_warnings(truncated, tokens_cut, split, kept_examples, kept_rows, cfg)
    keep = np.flatnonzero(~no_loss) if len(dropped) else None
    return dropped, warnings, keep


def _load(path: Path) -> Any:
    import datasets

    return datasets.load_from_disk(str(path / "data"))


def _read_entry(entry: Path) -> Optional[tuple[Any, dict, list[RowIssue]]]:
    """(dataset, meta, dropped rows) of a complete entry; None when there is none. An entry that cannot be read
    whole (a file deleted or cut short on disk, a full disk, a hand edit) is removed, to be tokenized again."""
    if not entry.exists():
        return None
    try:
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        dropped = [RowIssue(**issue) for issue in meta["dropped"]]
        if not isinstance(meta["rows"], int) or not isinstance(meta["warnings"], list):
            raise ValueError("meta")
        data = _load(entry)
        if len(data) != meta["rows"] or set(data.column_names) != {"input_ids", "completion_mask"}:
            raise ValueError("rows")
        # Reading the first and last rows touches every Arrow file's ends: a truncated one fails here.
        if len(data):
            data[0], data[len(data) - 1]
    except Exception:  # whatever is wrong with it, the rows can be made again
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        return None
    return data, meta, dropped


def _evict(root: Path, keep: Path) -> None:
    """Remove the least recently used entries beyond KEEP_ENTRIES (and staging left by a crash, after a day)."""
    try:
        entries = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return
    now = time.time()
    for leftover in (p for p in entries if p.name.startswith(".")):
        if now - leftover.stat().st_mtime > 86400:
            shutil.rmtree(leftover, ignore_errors=True)
    done = sorted((p for p in entries if not p.name.startswith(".") and p != keep),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in done[KEEP_ENTRIES - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def _emit(events: Any, text: str, **data: Any) -> None:
    if events is not None:
        events.emit("message", level="info", text=text, **data)
