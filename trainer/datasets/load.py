"""Loading a dataset: read the configured source, rename columns, detect the format, validate and
normalize every row, flag duplicates, and split into train and eval.

Problems are never silent: a bad row stops loading with a ``DataError`` naming the file and line,
unless ``skip_invalid_rows`` is on, in which case the row is dropped and counted in ``.skipped`` and
listed in ``.issues``. Warnings (duplicates) are listed but do not stop anything.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError, RowIssue, problem_list
from trainer.datasets.kinds import sft_records
from trainer.datasets.rows import COLUMN_SYNONYMS, Example, RowProblem, detect_format, make_example, normalize_row
from trainer.datasets.sources import Record, read_records, resolve_source


@dataclass
class LoadedData:
    """A dataset read, validated and split: the usable rows (normalized Examples) and every problem found."""

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


def load_examples(cfg: TrainConfig, base_dir: Optional[str | Path] = None) -> LoadedData:
    """Read, validate and normalize the configured dataset, then split it into train and eval."""
    kind, source = resolve_source(cfg.dataset, base_dir, cfg.dataset_split)
    records, issues = read_records(kind, source, cfg)
    if cfg.max_samples is not None:
        records = records[:cfg.max_samples]
        kept_rows = {(r.kind, r.row) for r in records}
        issues = [i for i in issues if (i.kind, i.row) in kept_rows]
    if not records:
        raise DataError(f"{source}: the dataset is empty: no rows", source=source)

    records = _apply_column_mapping(records, cfg.column_mapping, source)
    records = sft_records(records, cfg, source)
    fmt = cfg.dataset_format
    if fmt == "auto":
        fmt = detect_format(r.value for r in records if isinstance(r.value, dict))
        if fmt is None:
            columns = _columns(records)
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
        except RowProblem as problem:
            issues.append(RowIssue(record.row, problem.field, problem.message, record.kind))
            continue
        examples.append(make_example(normalized, record.row, record.kind, source))
        record.value = None  # the raw row is not needed again: a big file is not held twice

    errors = sorted(issues, key=lambda i: i.row)
    if not examples:
        raise DataError(problem_list(f"{source}: no usable rows: all {len(records)} rows are invalid:", errors)
                        + _mapping_hint(errors, records, fmt), errors, source)
    if errors and not cfg.skip_invalid_rows:
        raise DataError(problem_list(
            f"{source}: {len(errors)} of {len(records)} rows are invalid (fix them, or set skip_invalid_rows "
            "to train without them):", errors), errors, source)

    warnings = _duplicates(examples)
    train, evaluation = split_examples(examples, cfg.val_size, cfg.seed, source)
    return LoadedData(train=train, eval=evaluation, format=fmt, source=source,
                      issues=sorted(errors + warnings, key=lambda i: (i.row, i.severity)),
                      skipped=len(errors), num_rows=len(records))


def _columns(records: Sequence[Record]) -> list[str]:
    """The column names of the first 50 rows (before any is normalized), for messages about the dataset's shape."""
    return sorted({k for r in records[:50] if isinstance(r.value, dict) for k in r.value})


def _mapping_hint(errors: Sequence[RowIssue], records: Sequence[Record], fmt: str) -> str:
    """When every row lacks the same field, the columns probably have other names: say which to map."""
    fields = {i.field for i in errors}
    if len(fields) != 1 or not all(i.message == f"missing field '{i.field}'" for i in errors):
        return ""
    wanted = fields.pop()
    columns = _columns(records)
    if not columns:
        return ""
    guess = next((c for c in COLUMN_SYNONYMS.get(wanted, ()) if c in columns), columns[0])
    return (f"\nThe rows have the columns {', '.join(columns)}, but the {fmt} format needs '{wanted}': rename one "
            f"with column_mapping, e.g. {{{guess}: {wanted}}}, or set dataset_format")


def _apply_column_mapping(records: list[Record], mapping: dict[str, str], source: str) -> list[Record]:
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
            r = Record(r.row, r.kind, value)
        out.append(r)
    return out


def _duplicate_key(example: Example) -> Any:
    """What makes two normalized rows the same, built from the strings they already hold (no copy)."""
    if len(example) == 1 and "messages" in example:
        return tuple((m["role"], m["content"]) for m in example["messages"])
    if len(example) == 1 and "text" in example:
        return ("text", example["text"])
    return ("json", json.dumps(example, sort_keys=True, ensure_ascii=False))


def _duplicates(examples: Sequence[Example]) -> list[RowIssue]:
    first_seen: dict[Any, Example] = {}
    warnings = []
    for ex in examples:
        key = _duplicate_key(ex)
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
