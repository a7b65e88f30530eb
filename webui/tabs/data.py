"""The Data tab: the form's dataset (or an uploaded file) as the model sees it, with the length histogram."""

from __future__ import annotations

import filecmp
import html
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from trainer.access import user_uploads_dir
from trainer.config import ConfigError
from trainer.datasets.sources import FILE_SUFFIXES
from trainer.jobs.sandbox import SandboxError

from .. import views
from ..components import FIELDS, INFO, UI, WARNING, Reply, form_values
from ..context import Context, access_for
from ..data_view import dataset_view
from ..form import values_to_config
from ..i18n import t
from .train import then_refresh_plan

ID = "data"
TITLE = "tab_data"
ALLOWED_SUFFIXES = FILE_SUFFIXES  # what the dataset loader reads; anything else is refused at upload
MAX_UPLOAD_BYTES = int(float(os.environ.get("TUNEDECK_MAX_UPLOAD_MB", "2048")) * 1024**2)
MAX_NAME_CHARS = 100
PREVIEW_OUTPUTS = ["data.summary", "data.histogram", "data.rows"]


# --- handlers -------------------------------------------------------------------------------------

def preview(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Summary (format, rows, problems), histogram and a page of rendered rows of the form's dataset.

    The rows are read and tokenized by the data worker (a capped child process), never here; a path this
    user may not read is refused before anything of it is looked at. The preview's token lengths then
    feed the run plan (padding waste, packing).
    """
    try:
        cfg = values_to_config(form_values(v))
        warnings = access_for(ctx, user).check_config(cfg)
    except ConfigError as exc:
        detail = html.escape(views.short(views.error_text(exc, lang), 400))
        return {"data.summary": "⚠ " + t(lang, "fix_form_first", detail=detail), "data.rows": ""}
    try:
        page = max(1, int(v.get("data.page") or 1))
    except (TypeError, ValueError, OverflowError):
        page = 1
    try:
        view = dataset_view(cfg, page=page, lang=lang)
    except SandboxError as exc:
        detail = html.escape(views.short(views.error_text(exc, lang), 1200))
        return {"data.summary": "⚠ " + t(lang, "data_unreadable", detail=detail), "data.rows": ""}
    if view.lengths:
        ctx.datasets.set_lengths(cfg, list(view.lengths))
    summary = "".join(f"⚠️ {html.escape(views.say(w, lang))}\n\n" for w in warnings) + view.summary_markdown
    return {"data.summary": summary, "data.histogram": view.histogram, "data.rows": view.rows_html}


def uploaded(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Keep the uploaded file in the user's own upload folder and point the form's dataset at it."""
    path = v.get("data.upload")
    if not path:
        return {}
    try:
        saved = save_upload(user_uploads_dir(ctx.runs_root, user), path)
    except (OSError, ValueError) as exc:
        return {WARNING: t(lang, "upload_refused", detail=views.short(views.error_text(exc, lang)))}
    finally:
        forget_gradio_copy(path)
    return {INFO: t(lang, "upload_saved", name=saved.name), "dataset": str(saved),
            "data.source": source_text(str(saved))}


def dataset_changed(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    return {"data.source": source_text(v.get("dataset") or "", lang)}


def source_text(dataset: str, lang: str | None = None) -> str:
    return t(lang, "dataset_label", dataset=dataset)


def safe_upload_name(name: str) -> str:
    """A file name safe to store: letters, digits, `-`, `_` and `.`, at most MAX_NAME_CHARS, its suffix kept
    (`..jsonl` -> `upload.jsonl`; a 300-character name is cut before its suffix)."""
    base = Path(str(name).replace("\\", "/")).name
    suffix = next((s for s in ALLOWED_SUFFIXES if base.lower().endswith(s)), Path(base).suffix.lower())
    stem = base[:len(base) - len(suffix)] if suffix else base
    stem = re.sub(r"[^\w.\-]+", "_", stem, flags=re.ASCII).strip("._-") or "upload"
    return stem[:MAX_NAME_CHARS - len(suffix)] + suffix


def check_upload(path: Path) -> None:
    """ValueError unless the file is a regular file within the size limit, of an allowed type, and its
    first bytes match that type (Parquet's magic, or text for JSON/CSV)."""
    info = path.stat()
    name = path.name.lower()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if not name.endswith(ALLOWED_SUFFIXES):
        raise ValueError(f"{path.name}: only {', '.join(ALLOWED_SUFFIXES)} files can be uploaded as a dataset")
    if info.st_size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{path.name} is {info.st_size / 1024**2:,.0f} MB, more than the "
                         f"{MAX_UPLOAD_BYTES / 1024**2:,.0f} MB limit")
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if name.endswith(".parquet"):
        if not head.startswith(b"PAR1"):
            raise ValueError(f"{path.name} is not a Parquet file")
    elif b"\x00" in head:
        raise ValueError(f"{path.name} is a binary file, not {Path(name).suffix[1:].upper()} text")


def _same_file_content(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def save_upload(dest_dir: Path, temp_path: str) -> Path:
    """Copy an uploaded file into `dest_dir` (the temp copy Gradio made may vanish), after check_upload."""
    src = Path(temp_path)
    check_upload(src)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = safe_upload_name(src.name)
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


def forget_gradio_copy(path: str) -> None:
    """Gradio keeps every upload in its cache folder: once stored (or refused) the copy goes, with its
    per-upload folder. Only files inside that cache are touched."""
    cache = Path(os.path.realpath(get_upload_folder()))
    src = Path(os.path.realpath(path))
    if cache not in src.parents:
        return
    src.unlink(missing_ok=True)
    if src.parent != cache:
        try:
            src.parent.rmdir()
        except OSError:
            pass  # not empty: another file of the same upload


# --- layout and wiring ----------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("data.upload", gr.File(label=i18n("upload_dataset"), file_types=list(ALLOWED_SUFFIXES),
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
