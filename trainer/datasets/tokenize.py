"""Tokenizing: rendered rows as token ids with a loss mask (``completion_mask``), in batches.

The whole text of a row is tokenized at once, and the tokens' character offsets say which carry the
loss. Conversations longer than cutoff_len are cut (and counted in a warning); plain-text rows are
split into consecutive rows instead, so no text is lost. A row left with no token that carries loss
is an error, or is dropped with skip_invalid_rows.

No torch import here; the tokenizer is whatever object the caller passes (a transformers tokenizer).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from trainer.config import TrainConfig
from trainer.datasets.issues import DataError, RowIssue, problem_list
from trainer.datasets.load import LoadedData
from trainer.datasets.render import render_segments
from trainer.datasets.rows import is_text_example
from trainer.templates import Segment


@dataclass
class TokenizedRow:
    """One rendered row as tokens, before or after truncation."""

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


@dataclass
class RowOutcome:
    """What one example becomes: its training rows (ids, mask), or none when no token carries loss."""

    rows: list[tuple[list[int], list[int]]]
    full_length: int  # tokens before truncation (a plain-text row: before splitting)
    text: bool  # plain text: split into `rows` rather than cut
    no_loss: bool = False


def row_outcome(row: TokenizedRow, text: bool, cfg: TrainConfig) -> RowOutcome:
    """Cut a conversation to cutoff_len, or split plain text into rows of at most cutoff_len tokens."""
    if text:
        return RowOutcome([(chunk, [1] * len(chunk)) for chunk in split_into_chunks(row.input_ids, cfg.cutoff_len)],
                          row.full_length, True)
    row = _truncate(row, cfg.cutoff_len)
    if not any(row.completion_mask):
        return RowOutcome([], row.full_length, False, no_loss=True)
    return RowOutcome([(row.input_ids, row.completion_mask)], row.full_length, False)


def no_loss_issue(row: int, kind: str, full_length: int, cfg: TrainConfig) -> RowIssue:
    return RowIssue(row, "", f"no token carries loss: the answer starts after cutoff_len {cfg.cutoff_len} (the row "
                    f"has {full_length} tokens): raise cutoff_len or shorten the prompt", kind)


def tokenize_examples(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig,
                      loaded: Optional[LoadedData] = None) -> TokenizedRows:
    """Render and tokenize examples: [{"input_ids": [...], "completion_mask": [...]}, ...].

    completion_mask is 1 on the assistant's answers (and their end-of-turn marker), 0 on the prompt,
    or 1 everywhere with train_on_prompt or for plain text. Conversations are cut to cutoff_len (a
    warning says how many and how many tokens); plain-text rows (continued pre-training) longer than
    cutoff_len are split into consecutive rows instead, so no text is lost. A row left with no token
    that carries loss is an error, or is dropped with skip_invalid_rows; when `loaded` is given,
    dropped rows are added to its issues and skipped count.

    In memory, for the rows `check`, the Data tab and tests look at; a run's whole dataset goes through
    trainer/datasets/cache.py, which gives the same rows from the same RowOutcomes.
    """
    out = TokenizedRows()
    problems: list[RowIssue] = []
    source = loaded.source if loaded else ""
    split_rows: list[str] = []
    kept = 0
    for example, outcome in outcomes_in_batches(examples, tokenizer, cfg):
        source = source or getattr(example, "source", "")
        if outcome.no_loss:
            problems.append(no_loss_issue(getattr(example, "row", 0), getattr(example, "kind", "row"),
                                          outcome.full_length, cfg))
            continue
        kept += 1
        for ids, mask in outcome.rows:
            out.append({"input_ids": ids, "completion_mask": mask})
            out.full_lengths.append(len(ids) if outcome.text else outcome.full_length)
        if outcome.text and len(outcome.rows) > 1:
            split_rows.append(getattr(example, "where", "a row"))
        elif not outcome.text and outcome.full_length > cfg.cutoff_len:  # dropped rows are errors, not counted
            out.truncated_rows.append(getattr(example, "where", "a row"))
            out.tokens_cut += outcome.full_length - cfg.cutoff_len
    raise_for_dropped(problems, len(out), len(examples), source, cfg)
    out.dropped = problems
    if loaded is not None and problems:
        loaded.issues.extend(problems)
        loaded.skipped += len(problems)
    out.warnings = tokenizing_warnings(out.truncated_rows, out.tokens_cut, split_rows, kept, len(out), cfg)
    return out


def raise_for_dropped(problems: Sequence[RowIssue], kept_rows: int, total: int, source: str, cfg: TrainConfig) -> None:
    """Rows with no token carrying loss stop the run unless skip_invalid_rows is on (and some rows remain)."""
    if problems and not cfg.skip_invalid_rows:
        raise DataError(no_loss_message(source, problems, total), list(problems), source)
    if problems and not kept_rows:
        raise DataError(problem_list(f"{source or 'dataset'}: no usable rows: no row has a token that carries "
                                      "loss:", problems), list(problems), source)


def tokenizing_warnings(truncated: Sequence[str], tokens_cut: int, split: Sequence[str], kept: int, rows: int,
                        cfg: TrainConfig) -> list[str]:
    """Sentences on what cutoff_len did: `truncated` conversations and `split` text rows (their places)."""
    warnings = []
    if truncated:
        warnings.append(truncation_warning(truncated, kept, tokens_cut, cfg.cutoff_len))
    if split:
        shown = ", ".join(split[:5]) + (", ..." if len(split) > 5 else "")
        warnings.append(f"{len(split)} of {kept} text rows are longer than cutoff_len {cfg.cutoff_len} and "
                        f"were split into rows of at most {cfg.cutoff_len} tokens ({shown}): {rows} training rows "
                        "in all")
    return warnings


TOKENIZE_BATCH = 256


def outcomes_in_batches(examples: Sequence[dict], tokenizer: Any, cfg: TrainConfig):
    """(example, RowOutcome) pairs, rendering and tokenizing a batch of rows at a time."""
    for start in range(0, len(examples), TOKENIZE_BATCH):
        batch = examples[start:start + TOKENIZE_BATCH]
        rows = tokenize_many([render_segments(ex, tokenizer, cfg) for ex in batch], tokenizer, cfg)
        for example, row in zip(batch, rows):
            yield example, row_outcome(row, is_text_example(example), cfg)


def no_loss_message(source: str, problems: Sequence[RowIssue], total: int) -> str:
    return problem_list(f"{source or 'dataset'}: {len(problems)} of {total} rows have no token that carries loss "
                         "(fix them, or set skip_invalid_rows to train without them):", problems)


def truncation_warning(where: Sequence[str], total: int, tokens_cut: int, cutoff_len: int) -> str:
    shown = ", ".join(where[:5]) + (", ..." if len(where) > 5 else "")
    return (f"{len(where)} of {total} rows are longer than cutoff_len {cutoff_len}: {tokens_cut} tokens are cut "
            f"({shown})")
