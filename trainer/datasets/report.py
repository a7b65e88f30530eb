"""What `check` and the Data tab show of a dataset: the one-call report (``inspect_dataset``: load,
validate, tokenize, measure, never raising) and pages of rows as the model sees them, with the tokens
that carry the loss marked (``preview_rows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError
from trainer.datasets.load import LoadedData, load_examples
from trainer.datasets.rows import is_text_example
from trainer.datasets.stats import length_stats
from trainer.datasets.sample import LengthSample, tokenize_sample
from trainer.datasets.tokenize import TokenizedRows, tokenize_example


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


@dataclass
class DatasetReport:
    """What a run would train on, and every problem found, without raising.

    error: why the run would be refused (None when it would start). Even then `loaded` and
    `tokenized` hold the usable rows (as if skip_invalid_rows were on), so a preview and the
    statistics can still be shown next to the problems. `tokenized` holds the rows of `sample` only:
    ``train_rows`` counts the training rows of the whole split.
    """

    error: Optional[str] = None
    loaded: Optional[LoadedData] = None
    tokenized: Optional[TokenizedRows] = None
    stats: Optional[dict[str, Any]] = None
    warnings: list[str] = field(default_factory=list)
    sample: Optional[LengthSample] = None

    @property
    def train_rows(self) -> Optional[int]:
        if self.sample is not None:
            return self.sample.train_rows
        return len(self.loaded.train) if self.loaded is not None else None

    @property
    def lengths(self) -> list[int]:
        return list(self.tokenized.full_lengths) if self.tokenized is not None else []

    def to_dict(self) -> dict[str, Any]:
        loaded = self.loaded
        return {
            "error": self.error,
            "source": loaded.source if loaded else None,
            "format": loaded.format if loaded else None,
            "train_rows": self.train_rows,
            "sampled_rows": self.sample.sampled if self.sample is not None else None,
            "eval_rows": len(loaded.eval) if loaded else None,
            "skipped": loaded.skipped if loaded else 0,
            "issues": [i.to_dict() for i in loaded.issues] if loaded else [],
            "warnings": list(self.warnings),
            "stats": {k: v for k, v in (self.stats or {}).items() if k != "histogram"} or None,
        }


def inspect_dataset(cfg: TrainConfig, tokenizer: Any = None, base_dir: Optional[str | Path] = None) -> DatasetReport:
    """Load, validate, tokenize (when a tokenizer is given) and measure the dataset; never raises DataError.

    Every row is loaded and validated; token lengths come from a sample of at most SAMPLE_ROWS rows
    (trainer/datasets/sample.py), which the statistics and warnings name."""
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
    try:
        report.sample = sample = tokenize_sample(loaded.train, tokenizer, cfg)
    except DataError as exc:
        report.error = report.error or str(exc)
        return report
    report.tokenized = sample.tokenized
    dropped = sample.tokenized.dropped
    if dropped:
        loaded.issues.extend(dropped)
        loaded.skipped += len(dropped)
        if not cfg.skip_invalid_rows and report.error is None:
            report.error = str(sample.no_loss_error(loaded.source))
    report.stats = stats = sample.describe(length_stats(sample.tokenized.full_lengths, cfg))
    advice = list(stats["advice"])
    truncated = f"{stats['truncated_rows']} of "
    for warning in sample.tokenized.warnings:
        if stats["truncated_rows"] and warning.startswith(truncated):
            # One sentence for truncation: which rows (from tokenizing) and the cure (from the statistics).
            advice = [a for a in advice if not a.startswith(sample.note + truncated)]
            warning += f". cutoff_len {stats['suggested_cutoff_len']} keeps 99% of the rows whole."
        report.warnings.append(sample.note + warning)
    report.warnings += advice
    return report
