"""Token lengths from a bounded sample of rows, for `check`, the Data tab and the page's plan.

Tokenizing a million rows to draw a histogram costs minutes; the length statistics of a few thousand
rows drawn at random (a fixed seed, kept in file order) are as good, and the rows themselves are
counted exactly by loading. A split of at most SAMPLE_ROWS rows is tokenized whole, so small
datasets get exact figures. Whatever comes from a sample says so, with its size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError, problem_list
from trainer.datasets.tokenize import TokenizedRows, no_loss_message, tokenize_examples

SAMPLE_ROWS = 5_000


@dataclass
class LengthSample:
    """The sampled rows tokenized (rows without a loss token dropped and listed), and what they say of all.

    total: examples in the split; sampled: how many were tokenized (all when total <= SAMPLE_ROWS);
    train_rows: the training rows the whole split gives: exact when every row was tokenized, else
    scaled from the sample when rows were split (plain text) or dropped there (``estimated``).
    """

    tokenized: TokenizedRows
    total: int
    sampled: int
    train_rows: int
    estimated: bool

    @property
    def is_sample(self) -> bool:
        return self.sampled < self.total

    @property
    def lengths(self) -> list[int]:
        """Tokens of each sampled training row after cutoff_len (the plan's padding figures)."""
        return [len(r["input_ids"]) for r in self.tokenized]

    @property
    def note(self) -> str:
        return f"In a sample of {self.sampled:,} of {self.total:,} rows: " if self.is_sample else ""

    @property
    def warnings(self) -> list[str]:
        """The tokenizing warnings, marked as a sample's when they are."""
        return [self.note + w for w in self.tokenized.warnings]

    def describe(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Length statistics of the sampled rows, with the sample's size beside them (and its advice marked)."""
        stats = dict(stats, sampled_rows=self.sampled, rows_in_split=self.total)
        stats["advice"] = [self.note + a for a in stats.get("advice", [])]
        return stats

    def no_loss_error(self, source: str) -> DataError:
        """Rows without a token carrying loss, as the error a run would stop with."""
        problems = self.tokenized.dropped
        if not self.is_sample:
            return DataError(no_loss_message(source, problems, self.total), list(problems), source)
        return DataError(problem_list(
            f"{source or 'dataset'}: {len(problems)} of {self.sampled:,} rows sampled (of {self.total:,}) have no "
            "token that carries loss (fix them, or set skip_invalid_rows to train without them):", problems),
            list(problems), source)


def sample_rows(examples: Sequence[dict], limit: int, seed: int) -> list:
    """At most `limit` examples drawn at random with `seed`, in their order in the file."""
    if len(examples) <= limit:
        return list(examples)
    return [examples[i] for i in sorted(random.Random(seed).sample(range(len(examples)), limit))]


def tokenize_sample(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig,
                    limit: Optional[int] = None) -> LengthSample:
    """Tokenize at most `limit` (default SAMPLE_ROWS) examples (see sample_rows); never raises for rows
    without loss (see LengthSample.no_loss_error). A broken chat template still raises DataError."""
    picked = sample_rows(examples, SAMPLE_ROWS if limit is None else limit, cfg.seed)
    tokenized = tokenize_examples(picked, tokenizer, cfg.replace(skip_invalid_rows=True)) if picked else TokenizedRows()
    total, sampled = len(examples), len(picked)
    if sampled == total:
        return LengthSample(tokenized, total, sampled, len(tokenized), False)
    estimated = len(tokenized) != sampled  # rows split or dropped in the sample: the rest will be too
    train_rows = round(total * len(tokenized) / sampled) if estimated else total
    return LengthSample(tokenized, total, sampled, train_rows, estimated)
