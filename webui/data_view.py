"""The Data tab's content as pure functions: preview HTML with loss masks, the token-length histogram,
the summary of problems and statistics.

No gradio and no torch here: `preview_html`, `histogram_figure` and `summary_markdown` work on plain
dicts. `dataset_view` ties them together for the page: the dataset is read and tokenized by the data
worker (trainer/jobs/sandbox.py: a child process with a memory and time cap, so neither a model's own
code nor a hostile file runs in the web server), and its answer is kept per file version and config so
turning pages and refreshing the plan do not start a worker again.
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import plotly.graph_objects as go

from trainer.access import looks_local
from trainer.local_names import hub_id_only
from trainer.config import TrainConfig
from trainer.datasets import SHIPPED_DATASETS
from trainer.jobs.sandbox import SandboxError, run_job

from .i18n import ZH, t
from .i18n_plan import message_zh, where_zh

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


def preview_html(preview: dict[str, Any], lang: str | None = None) -> str:
    """A page of trainer.data.preview_rows as HTML: loss tokens highlighted, masked ones dimmed."""
    rows = preview.get("rows") or []
    parts = [PREVIEW_CSS,
             f"<div class='td-legend'><span class='td-loss'>{t(lang, 'dv.legend_trained')}</span>"
             f"<span class='td-masked'>{t(lang, 'dv.legend_masked')}</span>"
             f"<span class='td-cut'>{t(lang, 'dv.legend_cut')}</span></div>"]
    if not rows:
        parts.append(f"<p>{t(lang, 'dv.no_rows')}</p>")
    for row in rows:
        where = str(row.get("where") or "")
        head = t(lang, "dv.row_head", where=html.escape(where_zh(where) if lang == ZH else where), tokens=row["num_tokens"],
                 loss=row["loss_tokens"])
        split = row.get("split_rows", 1) > 1
        if row.get("truncated"):
            head += t(lang, "dv.cut_from", tokens=row["full_length"])
        elif split:
            head += t(lang, "dv.split_into", tokens=row["full_length"], rows=row["split_rows"])
        body = "".join(
            f"<span class='{'td-loss' if loss else 'td-masked'}'>{html.escape(text)}</span>"
            for text, loss in row["segments"])
        rest = row.get("cut_text") or ""
        if len(rest) > MAX_REST_CHARS:
            rest = rest[:MAX_REST_CHARS] + t(lang, "dv.more_chars", count=len(row["cut_text"]) - MAX_REST_CHARS)
        if rest and split:
            body += f"<span class='td-split'>{html.escape(rest)}</span>"
        elif rest:
            body += f"<span class='td-cut'>{html.escape(rest)}</span>"
        parts.append(f"<div class='td-row'><div class='td-row-head'>{head}</div><pre>{body}</pre></div>")
    parts.append(f"<p class='td-row-head'>" + t(lang, "dv.page_of", page=preview.get("page", 1),
                                                pages=preview.get("pages", 1), total=preview.get("total", len(rows)))
                 + "</p>")
    return "".join(parts)


def histogram_figure(stats: Optional[dict[str, Any]], lang: str | None = None) -> go.Figure:
    """Bar chart of tokenized row lengths with the cutoff_len line (and the suggested cutoff)."""
    fig = go.Figure()
    hist = (stats or {}).get("histogram") or {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    rows_word, tokens_word = t(lang, "dv.rows"), t(lang, "dv.tokens")
    if counts:
        width = hist["width"]
        fig.add_bar(x=[e + width / 2 for e in edges[:-1]], y=counts, width=[width] * len(counts),
                    marker_color="#2563eb", name=rows_word,
                    customdata=[[e, e + width - 1] for e in edges[:-1]],
                    hovertemplate="%{customdata[0]}–%{customdata[1]} " + tokens_word + ": %{y} " + rows_word
                                  + "<extra></extra>")
        cutoff = stats["cutoff_len"]
        fig.add_vline(x=cutoff, line_color=CUTOFF_COLOR, line_width=2,
                      annotation_text=f"cutoff_len {cutoff}", annotation_position="top")
        suggested = stats.get("suggested_cutoff_len")
        if suggested and suggested != cutoff:
            fig.add_vline(x=suggested, line_color="#6b7280", line_dash="dash",
                          annotation_text=t(lang, "dv.keep99", value=suggested), annotation_position="bottom right")
    title = t(lang, "dv.hist_title")
    if stats and stats.get("count"):
        title += t(lang, "dv.hist_stats", count=stats["count"], p50=stats["p50"], p99=stats["p99"],
                   longest=stats["max"])
    fig.update_layout(title=title, xaxis_title=t(lang, "dv.tokens_per_row"), yaxis_title=rows_word, bargap=0.05,
                      height=320, margin=dict(l=50, r=20, t=50, b=40), showlegend=False)
    return fig


def _pct(value: float) -> str:
    return f"{value:.1%}"


def stats_markdown(stats: Optional[dict[str, Any]], lang: str | None = None) -> str:
    if not stats or not stats.get("count"):
        return ""
    s = stats
    sample = (t(lang, "dv.t_sample", count=f"{s['rows_in_split']:,}")
              if s.get("sampled_rows", 0) < s.get("rows_in_split", 0) else "")
    rows = [
        (t(lang, "dv.t_rows"), f"{s['count']}{sample}"),
        (t(lang, "dv.t_per_row"), t(lang, "dv.t_per_row_value", min=s["min"], p50=s["p50"], p90=s["p90"],
                                    p99=s["p99"], max=s["max"])),
        (t(lang, "dv.t_longer", cutoff=s["cutoff_len"]),
         t(lang, "dv.t_longer_value", rows=s["truncated_rows"], share=_pct(s["truncated_share"]), cut=s["tokens_cut"])),
        (t(lang, "dv.t_padding", micro=s["micro_batch"]),
         t(lang, "dv.t_padding_value", plain=_pct(s["padding_waste_plain"]), grouped=_pct(s["padding_waste_grouped"]),
           packed=_pct(s["padding_waste_packed"]))),
        (t(lang, "dv.t_packing", cutoff=s["cutoff_len"]),
         t(lang, "dv.t_packing_value", rows=f"{s['rows_per_packed_sequence']:g}", sequences=s["packed_sequences"],
           factor=s["packing_factor"])),
        (t(lang, "dv.t_keep99"), str(s["suggested_cutoff_len"])),
    ]
    return "\n".join([f"| {t(lang, 'dv.t_lengths')} | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _listed(items: list[str], lang: str | None) -> str:
    listed = [f"- {html.escape(message_zh(i) if lang == ZH else i)}" for i in items[:MAX_LISTED_ISSUES]]
    if len(items) > MAX_LISTED_ISSUES:
        listed.append("- " + t(lang, "dv.more", count=len(items) - MAX_LISTED_ISSUES))
    return "\n".join(listed)


def summary_markdown(answer: dict[str, Any], lang: str | None = None) -> str:
    """Source, format, counts; why a run would be refused; row problems; warnings and advice; the table.

    `answer` is the data worker's preview answer (trainer/engine/data_worker.py)."""
    out: list[str] = []
    loaded, error = answer.get("loaded"), answer.get("error")
    if loaded is not None:
        # While the run would be refused nothing is skipped yet: the rows shown are the usable ones.
        dropped = (t(lang, "dv.invalid" if error else "dv.skipped", count=loaded["skipped"])
                   if loaded["skipped"] else "")
        train, validation = loaded["train_rows"], loaded["eval_rows"]
        counts = [t(lang, "dv.format", format=loaded["format"]),
                  t(lang, "dv.train_row" if train == 1 else "dv.train_rows", count=train),
                  t(lang, "dv.val_row" if validation == 1 else "dv.val_rows", count=validation)]
        out.append(f"**{html.escape(loaded['source'])}** — " + ", ".join(counts) + dropped)
    if error:
        out.append(f"⚠️ **{t(lang, 'dv.refused')}**\n\n```\n" + (message_zh(error) if lang == ZH else error) + "\n```")
    if answer.get("note"):
        out.append(f"ℹ️ {html.escape(answer['note'])}")
    errors = (loaded or {}).get("errors") or []
    if errors and not error:
        out.append(t(lang, "dv.skipped_head") + "\n\n" + _listed(errors, lang))
    warnings = answer.get("warnings") or []
    if warnings:
        out.append(t(lang, "dv.warnings_head") + "\n\n" + _listed(warnings, lang))
    table = stats_markdown(answer.get("stats"), lang)
    if table:
        out.append(table)
    return "\n\n".join(out)


# --- the page's entry point: the data worker's answers, kept per file version -----------------------

PAGES_PER_ANSWER = 10  # one worker answer carries this many pages: turning pages needs no new worker
MAX_CACHED_ANSWERS = 8
_answers: "OrderedDict[tuple, dict[str, Any]]" = OrderedDict()
_answers_lock = threading.Lock()


def file_stamp(dataset: str, base_dir: Any = None, split: str = "train") -> Any:
    """What identifies the dataset's content: path, size and mtime of a local file or folder; the id of a
    Hub one. One stat, never a directory walk: `/` as the dataset must not make the server read the disk
    (the worker finds the data file in a folder, under its time limit)."""
    name = dataset.strip()
    if name not in SHIPPED_DATASETS and hub_id_only(name):  # a shared server never asks its disk about it
        return ("hub", name)
    path = SHIPPED_DATASETS.get(name) or Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        stat = os.stat(path)
    except OSError:
        return ("error", f"dataset file not found: {path}") if looks_local(name) else ("hub", name)
    return ("file", str(path), stat.st_size, stat.st_mtime_ns, split)


def _cached_answer(cfg: TrainConfig, page: int, page_size: int, base_dir: Any) -> dict[str, Any]:
    """The worker's answer for the config's dataset with `page` among its pages; asks the worker only for a
    new file version, config, or a page outside the pages already fetched."""
    key = (file_stamp(cfg.dataset, base_dir, cfg.dataset_split), cfg.model_dump_json(), page_size, str(base_dir))
    with _answers_lock:
        cached = _answers.get(key)
        if cached is not None:
            _answers.move_to_end(key)
            if "refused" in cached:  # over a limit once: the same file is not tried again until it changes
                raise SandboxError(cached["refused"], "limit")
            page = min(page, cached["last_page"])
            if page in cached["pages"] or not cached["pages"]:
                return cached
    request = {"config": cfg.to_dict(), "page": page, "page_size": page_size, "pages": PAGES_PER_ANSWER,
               "base_dir": None if base_dir is None else str(base_dir)}
    try:
        answer = run_job("preview", request)
    except SandboxError as exc:
        if exc.kind in ("memory", "timeout"):
            with _answers_lock:
                _answers[key] = {"refused": str(exc)}
        raise
    answer["pages"] = {p["page"]: p for p in answer["pages"]}
    with _answers_lock:
        if cached is not None:
            cached["pages"].update(answer["pages"])
            return cached
        _answers[key] = answer
        while len(_answers) > MAX_CACHED_ANSWERS:
            _answers.popitem(last=False)
    return answer


@dataclass
class DatasetView:
    summary_markdown: str
    histogram: go.Figure
    rows_html: str
    lengths: list[int] = field(default_factory=list)
    report: Optional[dict[str, Any]] = None  # the data worker's answer it was made from


def dataset_view(cfg: TrainConfig, page: int = 1, page_size: int = PAGE_SIZE, base_dir: Any = None,
                 lang: str | None = None) -> DatasetView:
    """Everything the Data tab shows for a config's dataset. Raises SandboxError when the worker could not
    answer (over its memory or time limit); bad data and a missing model are shown, not raised."""
    page = max(1, int(page))
    answer = _cached_answer(cfg, page, page_size, base_dir)
    rows_html = ""
    shown = answer["pages"].get(min(page, answer["last_page"]))
    if answer.get("rows_error"):
        rows_html = f"<p>⚠️ {html.escape(answer['rows_error'])}</p>"
    elif shown is not None and "raw" in shown:
        rows_html = "".join(f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>" for text in shown["raw"])
    elif shown is not None:
        rows_html = preview_html(shown, lang)
    return DatasetView(summary_markdown(answer, lang), histogram_figure(answer.get("stats"), lang), rows_html,
                       list(answer.get("lengths") or []), answer)

