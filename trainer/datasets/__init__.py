"""Datasets: from a dataset setting to token ids with a loss mask, and the report `check` and the Data
tab show.

    sources   where the rows come from (shipped name, local file or folder, Hub id) and reading them
    rows      formats: detect one from the columns, validate and normalize one row
    load      load_examples: read, rename columns, validate with line numbers, flag duplicates, split
    render    a normalized row as text segments through a chat template, answers marked
    tokenize  token ids and completion_mask in batches; truncation, plain-text chunks
    cache     a run's whole split tokenized with datasets.map into Arrow files, reused by fingerprint
    sample    token lengths from a bounded sample of rows, for check, the Data tab and the plan
    stats     token-length statistics, padding efficiency and advice (pure)
    report    inspect_dataset (everything at once, never raising) and previews of rows
    issues    DataError and RowIssue, shared by all of them

Code outside this package imports from ``trainer.datasets`` (the names below), not from its modules,
so the cut between them can change without touching importers; the modules import from each other
directly, never from this file. The one exception is the exported plain script, which copies the
source of ``render._find_answers`` into its text. No torch import here: the tokenizer is whatever
object the caller passes.
"""

from trainer.datasets.cache import TokenizedDataset, TokenizingStopped, cache_root, tokenize_cached
from trainer.datasets.issues import DataError, RowIssue
from trainer.datasets.load import LoadedData, load_examples, split_examples
from trainer.datasets.render import END_OF_TURN_MARKERS, chat_template_for_saving, render_segments
from trainer.datasets.report import DatasetReport, inspect_dataset, preview_rows
from trainer.datasets.rows import SHAREGPT_ROLES, detect_format
from trainer.datasets.sample import SAMPLE_ROWS, LengthSample, tokenize_sample
from trainer.datasets.sources import ROW_LIST_COLUMNS, SHIPPED_DATASETS, resolve_source, shipped_datasets
from trainer.datasets.stats import length_histogram, length_stats, percentile, suggested_cutoff_len
from trainer.datasets.tokenize import TokenizedRows, tokenize_example, tokenize_examples

__all__ = [
    "DataError", "RowIssue",
    "LoadedData", "load_examples", "split_examples",
    "END_OF_TURN_MARKERS", "chat_template_for_saving", "render_segments",
    "DatasetReport", "inspect_dataset", "preview_rows",
    "SHAREGPT_ROLES", "detect_format",
    "ROW_LIST_COLUMNS", "SHIPPED_DATASETS", "resolve_source", "shipped_datasets",
    "SAMPLE_ROWS", "LengthSample", "tokenize_sample",
    "length_histogram", "length_stats", "percentile", "suggested_cutoff_len",
    "TokenizedRows", "tokenize_example", "tokenize_examples",
    "TokenizedDataset", "TokenizingStopped", "cache_root", "tokenize_cached",
]
