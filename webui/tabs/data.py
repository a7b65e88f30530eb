"""The Data tab: the form's dataset (or an uploaded file) as the model sees it, with the length histogram."""

from __future__ import annotations

import filecmp
import html
import os
import re
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from trainer.config import ConfigError

from .. import views
from ..components import FIELDS, INFO, UI, WARNING, Reply, form_values
from ..context import Context
from ..data_view import dataset_view
from ..form import values_to_config
from ..i18n import t
from .train import then_refresh_plan

ID = "data"
TITLE = "tab_data"
UPLOADS_SUBDIR = "uploads"
MAX_UPLOAD_BYTES = 2 * 1024**3
PREVIEW_OUTPUTS = ["data.summary", "data.histogram", "data.rows"]


# --- handlers -------------------------------------------------------------------------------------

def preview(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """Summary (format, rows, problems), histogram and a page of rendered rows of the form's dataset.

    The preview tokenizes the rows: their lengths then feed the run plan (padding waste, packing).
    """
    try:
        cfg = values_to_config(form_values(v))
    except ConfigError as exc:
        return {"data.summary": "⚠ " + t(lang, "fix_form_first", detail=html.escape(views.short(str(exc), 400))),
                "data.rows": ""}
    try:
        page = max(1, int(v.get("data.page") or 1))
    except (TypeError, ValueError, OverflowError):
        page = 1
    try:
        view = dataset_view(cfg, page=page, runs_root=ctx.runs_root)
    except Exception as exc:  # noqa: BLE001 - DataError and friends: the message, not a traceback
        return {"data.summary": f"⚠ {html.escape(views.short(str(exc), 1200))}", "data.rows": ""}
    if view.lengths:
        ctx.datasets.set_lengths(cfg, list(view.lengths))
    return {"data.summary": view.summary_markdown, "data.histogram": view.histogram, "data.rows": view.rows_html}


def uploaded(ctx: Context, v: dict[str, Any]) -> Reply:
    """Keep the uploaded file under the runs root and point the form's dataset at it."""
    path = v.get("data.upload")
    if not path:
        return {}
    try:
        saved = save_upload(ctx.runs_root, path)
    except (OSError, ValueError) as exc:
        return {WARNING: f"Upload failed: {views.short(str(exc))}"}
    return {INFO: f"Saved as {saved}; the form's dataset now points at it.", "dataset": str(saved),
            "data.source": source_text(str(saved))}


def dataset_changed(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    return {"data.source": source_text(v.get("dataset") or "", lang)}


def source_text(dataset: str, lang: str | None = None) -> str:
    return t(lang, "dataset_label", dataset=dataset)


def _safe_upload_name(name: str) -> str:
    stem = re.sub(r"[^\w.\-]+", "_", Path(name).name).strip("._") or "upload"
    return stem[:100]


def _same_file_content(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def save_upload(runs_root: Path, temp_path: str) -> Path:
    """Copy an uploaded file into ``<runs root>/uploads/`` (the temp copy Gradio made may vanish)."""
    src = Path(temp_path)
    if src.stat().st_size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{src.name} is larger than {MAX_UPLOAD_BYTES // 1024**3} GB")
    dest_dir = Path(runs_root) / UPLOADS_SUBDIR
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = _safe_upload_name(src.name)
    dest = dest_dir / name
    # A different file under a name already used gets a new name: a queued run may still need the old one.
    counter = 2
    while dest.exists() and not _same_file_content(dest, src):
        dest = dest_dir / f"{Path(name).stem}-{counter}{Path(name).suffix}"
        counter += 1
    if dest.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest


# --- layout and wiring ----------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("data.upload", gr.File(label=i18n("upload_dataset"), file_types=[".jsonl", ".json", ".csv", ".parquet"],
                                      elem_id="dataset-upload", scale=2, height=120))
        with gr.Column(scale=3):
            ui.add("data.source", gr.Markdown(source_text(ui.initial.values["dataset"]), elem_id="dataset-source"))
            with gr.Row(equal_height=True):
                ui.add("data.page", gr.Number(value=1, precision=0, minimum=1, label=i18n("page"), scale=1,
                                              elem_id="dataset-page"))
                ui.add("data.preview_btn", gr.Button(i18n("dataset_preview"), variant="primary", scale=2,
                                                     elem_id="dataset-preview-btn"))
    ui.add("data.summary", gr.Markdown("", elem_id="dataset-summary"))
    with gr.Row():
        ui.add("data.histogram", gr.Plot(elem_id="length-histogram", show_label=False))
    ui.add("data.rows", gr.HTML("", elem_id="dataset-rows"))


def wire(ui: UI) -> None:
    inputs = ["data.page", *FIELDS]
    then_refresh_plan(ui, ui.on(ui["data.preview_btn"].click, preview, inputs, PREVIEW_OUTPUTS))
    upload = then_refresh_plan(ui, ui.on(ui["data.upload"].upload, uploaded, ["data.upload"],
                                         ["dataset", "data.source"]))
    then_refresh_plan(ui, ui.then(upload, preview, inputs, PREVIEW_OUTPUTS))
    ui.on([ui["dataset"].change, ui["top.language"].change], dataset_changed, ["dataset"], ["data.source"],
          show_progress="hidden")
