"""The Data tab's content as pure functions: preview HTML with loss masks, the token-length histogram,
the summary of problems and statistics.

No gradio here and no torch at import time: `preview_html`, `histogram_figure` and `summary_markdown`
work on the plain dicts of trainer.data. `dataset_view` ties them together for the page; it loads the
model's tokenizer lazily (transformers is imported only then) and caches it.
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import plotly.graph_objects as go

from trainer.config import TrainConfig
from trainer.datasets import DataError, DatasetReport, inspect_dataset, preview_rows, resolve_source

PAGE_SIZE = 5
MAX_LISTED_ISSUES = 20
MAX_REST_CHARS = 3000  # text beyond cutoff_len shown per row; a long document would swamp the page
LOSS_COLOR = "#16a34a"
CUTOFF_COLOR = "#dc2626"

# Loss tokens stand out (green, underlined: readable without colour too); masked ones are dimmed;
# text cut by cutoff_len is struck through.
PREVIEW_CSS = """
<style>
.td-row {border: 1px solid #e5e7eb; border-radius: 6px; margin: 0 0 10px 0; padding: 6px 10px;}
.td-row-head {font-size: 12px; color: #4b5563; margin-bottom: 4px;}
.td-row pre {white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 13px; line-height: 1.45;}
.td-loss {background: #dcfce7; color: #14532d; text-decoration: underline; text-decoration-color: #16a34a;}
.td-masked {opacity: 0.55;}
.td-cut {color: #9ca3af; text-decoration: line-through;}
.td-split {background: #dcfce7; color: #14532d; border-left: 3px solid #16a34a; padding-left: 2px;}
.td-legend span {margin-right: 12px; font-size: 12px;}
</style>
"""


def preview_html(preview: dict[str, Any]) -> str:
    """A page of trainer.data.preview_rows as HTML: loss tokens highlighted, masked ones dimmed."""
    rows = preview.get("rows") or []
    parts = [PREVIEW_CSS,
             "<div class='td-legend'><span class='td-loss'>trained (carries loss)</span>"
             "<span class='td-masked'>masked (no loss)</span><span class='td-cut'>cut by cutoff_len</span></div>"]
    if not rows:
        parts.append("<p>No rows to show.</p>")
    for row in rows:
        head = (f"{html.escape(str(row.get('where') or ''))} · {row['num_tokens']} tokens, "
                f"{row['loss_tokens']} carry loss")
        split = row.get("split_rows", 1) > 1
        if row.get("truncated"):
            head += f" · cut from {row['full_length']} tokens"
        elif split:
            head += f" · {row['full_length']} tokens of text, split into {row['split_rows']} training rows"
        body = "".join(
            f"<span class='{'td-loss' if loss else 'td-masked'}'>{html.escape(text)}</span>"
            for text, loss in row["segments"])
        rest = row.get("cut_text") or ""
        if len(rest) > MAX_REST_CHARS:
            rest = rest[:MAX_REST_CHARS] + f" … ({len(row['cut_text']) - MAX_REST_CHARS} more characters)"
        if rest and split:
            body += f"<span class='td-split'>{html.escape(rest)}</span>"
        elif rest:
            body += f"<span class='td-cut'>{html.escape(rest)}</span>"
        parts.append(f"<div class='td-row'><div class='td-row-head'>{head}</div><pre>{body}</pre></div>")
    parts.append(f"<p class='td-row-head'>Page {preview.get('page', 1)} of {preview.get('pages', 1)} "
                 f"({preview.get('total', len(rows))} training rows)</p>")
    return "".join(parts)


def histogram_figure(stats: Optional[dict[str, Any]]) -> go.Figure:
    """Bar chart of tokenized row lengths with the cutoff_len line (and the suggested cutoff)."""
    fig = go.Figure()
    hist = (stats or {}).get("histogram") or {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if counts:
        width = hist["width"]
        fig.add_bar(x=[e + width / 2 for e in edges[:-1]], y=counts, width=[width] * len(counts),
                    marker_color="#2563eb", name="rows",
                    customdata=[[e, e + width - 1] for e in edges[:-1]],
                    hovertemplate="%{customdata[0]}–%{customdata[1]} tokens: %{y} rows<extra></extra>")
        cutoff = stats["cutoff_len"]
        fig.add_vline(x=cutoff, line_color=CUTOFF_COLOR, line_width=2,
                      annotation_text=f"cutoff_len {cutoff}", annotation_position="top")
        suggested = stats.get("suggested_cutoff_len")
        if suggested and suggested != cutoff:
            fig.add_vline(x=suggested, line_color="#6b7280", line_dash="dash",
                          annotation_text=f"99% of rows: {suggested}", annotation_position="bottom right")
    title = "Tokenized row lengths"
    if stats and stats.get("count"):
        title += f" — {stats['count']} rows, median {stats['p50']}, p99 {stats['p99']}, longest {stats['max']}"
    fig.update_layout(title=title, xaxis_title="tokens per row", yaxis_title="rows", bargap=0.05,
                      height=320, margin=dict(l=50, r=20, t=50, b=40), showlegend=False)
    return fig


def _pct(value: float) -> str:
    return f"{value:.1%}"


def stats_markdown(stats: Optional[dict[str, Any]]) -> str:
    if not stats or not stats.get("count"):
        return ""
    s = stats
    lines = [
        "| Token lengths | |", "|---|---|",
        f"| Rows | {s['count']}" + (f" (a sample of the {s['rows_in_split']:,} rows)"
                                    if s.get("sampled_rows", 0) < s.get("rows_in_split", 0) else "") + " |",
        f"| Tokens per row | min {s['min']}, median {s['p50']}, p90 {s['p90']}, p99 {s['p99']}, max {s['max']} |",
        f"| Longer than cutoff_len {s['cutoff_len']} | {s['truncated_rows']} rows ({_pct(s['truncated_share'])}), "
        f"{s['tokens_cut']} tokens cut |",
        f"| Padding waste at micro-batch {s['micro_batch']} | plain {_pct(s['padding_waste_plain'])}, "
        f"group_by_length {_pct(s['padding_waste_grouped'])}, packing {_pct(s['padding_waste_packed'])} |",
        f"| Packing into {s['cutoff_len']}-token sequences | {s['rows_per_packed_sequence']:g} rows per sequence on "
        f"average ({s['packed_sequences']} sequences); at least {s['packing_factor']} |",
        f"| cutoff_len keeping 99% of rows whole | {s['suggested_cutoff_len']} |",
    ]
    return "\n".join(lines)


def summary_markdown(report: DatasetReport, note: str = "") -> str:
    """Source, format, counts; why a run would be refused; row problems; warnings and advice; the table."""
    out: list[str] = []
    loaded = report.loaded
    if loaded is not None:
        train = report.train_rows
        # While the run would be refused nothing is skipped yet: the rows shown are the usable ones.
        dropped = f", {loaded.skipped} {'invalid' if report.error else 'skipped'}" if loaded.skipped else ""
        validation = len(loaded.eval)
        out.append(f"**{html.escape(loaded.source)}** — {loaded.format} format, {train} training "
                   f"row{'' if train == 1 else 's'}, {validation} validation row{'' if validation == 1 else 's'}"
                   f"{dropped}")
    if report.error:
        out.append("⚠️ **A run would be refused:**\n\n```\n" + report.error + "\n```")
    if note:
        out.append(f"ℹ️ {html.escape(note)}")
    if loaded is not None and loaded.errors and not report.error:
        listed = [f"- {html.escape(str(i))}" for i in loaded.errors[:MAX_LISTED_ISSUES]]
        if len(loaded.errors) > MAX_LISTED_ISSUES:
            listed.append(f"- … and {len(loaded.errors) - MAX_LISTED_ISSUES} more")
        out.append("**Skipped rows** (skip_invalid_rows is on):\n\n" + "\n".join(listed))
    if report.warnings:
        listed = [f"- {html.escape(w)}" for w in report.warnings[:MAX_LISTED_ISSUES]]
        if len(report.warnings) > MAX_LISTED_ISSUES:
            listed.append(f"- … and {len(report.warnings) - MAX_LISTED_ISSUES} more")
        out.append("**Warnings and advice:**\n\n" + "\n".join(listed))
    table = stats_markdown(report.stats)
    if table:
        out.append(table)
    return "\n\n".join(out)


# --- the page's entry point -----------------------------------------------------------------------

_tokenizers: dict[tuple, Any] = {}
_tokenizers_lock = threading.Lock()


def load_tokenizer_cached(cfg: TrainConfig) -> Any:
    """The model's tokenizer (transformers imported here, lazily), cached per model."""
    key = (cfg.model_name_or_path, cfg.trust_remote_code)
    with _tokenizers_lock:
        if key in _tokenizers:
            return _tokenizers[key]
    from trainer.engine.model import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    with _tokenizers_lock:
        _tokenizers[key] = tokenizer
    return tokenizer


_reports: "OrderedDict[tuple, DatasetReport]" = OrderedDict()
MAX_CACHED_REPORTS = 4


def _file_stamp(cfg: TrainConfig, base_dir: Any) -> Any:
    """What identifies the dataset's content: path, size and mtime of a local file; the id of a Hub one."""
    try:
        kind, where = resolve_source(cfg.dataset, base_dir, cfg.dataset_split)
    except DataError as exc:
        return ("error", str(exc))
    if kind == "hub":
        return ("hub", where)
    try:
        stat = os.stat(where)
    except OSError:
        return ("file", where, None)
    return ("file", where, stat.st_size, stat.st_mtime_ns)


def _cached_report(cfg: TrainConfig, tokenizer: Any, base_dir: Any) -> DatasetReport:
    """Turning pages re-renders one page only: the report (load, tokenize, statistics) is kept per dataset
    file version and config."""
    key = (_file_stamp(cfg, base_dir), cfg.model_dump_json(), id(tokenizer), str(base_dir))
    with _tokenizers_lock:
        if key in _reports:
            _reports.move_to_end(key)
            return _reports[key]
    report = inspect_dataset(cfg, tokenizer, base_dir)
    with _tokenizers_lock:
        _reports[key] = report
        while len(_reports) > MAX_CACHED_REPORTS:
            _reports.popitem(last=False)
    return report


@dataclass
class DatasetView:
    summary_markdown: str
    histogram: go.Figure
    rows_html: str
    lengths: list[int] = field(default_factory=list)
    report: Optional[DatasetReport] = None


def dataset_view(cfg: TrainConfig, page: int = 1, runs_root: Any = None, page_size: int = PAGE_SIZE,
                 base_dir: Any = None) -> DatasetView:
    """Everything the Data tab shows for a config's dataset. Never raises for bad data or a missing model."""
    note = ""
    try:
        tokenizer = load_tokenizer_cached(cfg)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be loaded: show the rows untokenized
        tokenizer = None
        note = (f"The tokenizer of '{cfg.model_name_or_path}' could not be loaded ({' '.join(str(exc).split())[:300]}): "
                "rows are shown without the template, masks and lengths.")
    report = _cached_report(cfg, tokenizer, base_dir)
    rows_html = ""
    if report.loaded is not None and tokenizer is not None and report.tokenized is not None:
        try:
            rows_html = preview_html(preview_rows(report.loaded.train, tokenizer, cfg, page, page_size))
        except Exception as exc:  # noqa: BLE001 - a template failing on one row
            rows_html = f"<p>⚠️ {html.escape(str(exc))}</p>"
    elif report.loaded is not None:
        start = (max(1, page) - 1) * page_size
        rows_html = "".join(f"<pre style='white-space:pre-wrap'>{html.escape(str(dict(ex)))[:2000]}</pre>"
                            for ex in report.loaded.train[start:start + page_size])
    return DatasetView(summary_markdown(report, note), histogram_figure(report.stats), rows_html,
                       report.lengths, report)
