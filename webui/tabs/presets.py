"""The Presets tab: list, load, rename, delete, download and upload presets; LLaMA-Factory import and export,
and the plain Python script export."""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from trainer.config import ConfigError, TrainConfig
from trainer.interop import presets as presets_mod

from .. import views
from ..components import CONFIG_OUTPUTS, FIELDS, INFO, UI, WARNING, Reply, apply_config, form_values
from ..context import Context, access_for, acting_as, exported_text, import_llamafactory_for, require_change
from ..form import values_to_config
from ..i18n import t
from .data import forget_gradio_copy
from .train import load_preset, preset_choices, then_refresh_plan

ID = "presets"
TITLE = "tab_presets"
CHOICES_OUTPUTS = ["presets.select", "train.preset_select"]
UPLOAD_OUTPUTS = [*CONFIG_OUTPUTS, "presets.messages", "presets.upload_anyway_btn"]


# --- handlers -------------------------------------------------------------------------------------

def choices(ctx: Context, value: Any = None, *, set_value: bool = False, lang: str | None = None,
            user: str | None = None) -> Reply:
    """New choices for both preset dropdowns; this tab's value only when `set_value`."""
    listed = preset_choices(ctx.runs_root, lang, user)
    mine = gr.update(choices=listed, value=value) if set_value else gr.update(choices=listed)
    return {"presets.select": mine, "train.preset_select": gr.update(choices=listed)}


def refresh_choices(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    return choices(ctx, lang=lang, user=user)


def details(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    name = v.get("presets.select")
    if not name:
        return {"presets.details": ""}
    try:
        info = presets_mod.find_preset(name, ctx.runs_root)
    except ConfigError as exc:
        return {"presets.details": f"⚠ {html.escape(views.short(views.error_text(exc, lang), 400))}"}
    if info.builtin:
        kind = t(lang, "builtin_preset")
    elif info.owner == acting_as(user).name:
        kind = t(lang, "your_preset", path=info.path)
    else:
        kind = t(lang, "owned_preset", owner=info.owner, path=info.path)
    title, description = views.preset_words(name if info.builtin else None, info.title,
                                            " ".join(info.description.split()), lang)
    text = f"**{html.escape(title)}** — {kind}\n\n{html.escape(description)}"
    if info.error:
        text += f"\n\n⚠ {html.escape(info.error)}"
    return {"presets.details": text}


def load_into_form(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The chosen preset into the form, and the Train tab, where its note (or what stopped it) shows."""
    name = v.get("presets.select")
    if not name:
        return {WARNING: t(lang, "choose_preset")}
    return {**load_preset(ctx, name, v.get("train.plan_hw"), lang=lang), "train.preset_select": gr.update(value=name),
            "page.tabs": gr.Tabs(selected="train")}


def _require_owner(ctx: Context, name: Any, user: str | None, action: str) -> None:
    """Only the preset's owner or an admin changes it (a built-in is refused as read-only further on)."""
    info = presets_mod.find_preset(str(name or ""), ctx.runs_root)
    if not info.builtin:
        require_change(user, info.owner, action, "preset")


def rename(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    old, new = v.get("presets.select"), v.get("presets.new_name") or ""
    try:
        _require_owner(ctx, old, user, "rename")
        presets_mod.rename_user_preset(old, new, ctx.runs_root)
        new_name = presets_mod.validate_name(new)
    except (ConfigError, OSError, PermissionError) as exc:
        return {WARNING: views.short(views.error_text(exc, lang), 400)}
    return {**choices(ctx, new_name, set_value=True, lang=lang, user=user),
            INFO: t(lang, "preset_renamed", old=old, new=new_name)}


def delete(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    name = v.get("presets.select")
    try:
        _require_owner(ctx, name, user, "delete")
        presets_mod.delete_user_preset(name, ctx.runs_root)
    except (ConfigError, OSError, PermissionError) as exc:
        return {WARNING: views.short(views.error_text(exc, lang), 400)}
    return {**choices(ctx, None, set_value=True, lang=lang, user=user), INFO: t(lang, "preset_deleted", name=name)}


def download(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    try:
        info = presets_mod.find_preset(v.get("presets.select") or "", ctx.runs_root)
    except ConfigError as exc:
        return {WARNING: views.short(views.error_text(exc, lang), 400)}
    # A copy in a temp folder: the page serves no file from the runs root itself.
    out = Path(tempfile.mkdtemp(prefix="tunedeck-preset-")) / info.path.name
    shutil.copyfile(info.path, out)
    return {"presets.download_file": str(out)}


def exporter(kind: str, suffix: str) -> Callable[..., Reply]:
    """A handler writing the form's config as `kind` into a temp file offered for download."""
    def handler(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
        try:
            cfg = values_to_config(form_values(v))
            access_for(ctx, user).check_config(cfg)  # the export reads the dataset file (its columns)
        except ConfigError as exc:
            return {WARNING: t(lang, "fix_form_first", detail=views.short(views.error_text(exc, lang), 200))}
        try:
            text = exported_text(cfg, kind)  # in the data worker: the export reads the dataset file
        except Exception as exc:  # noqa: BLE001 - a config the export cannot express: say which
            return {WARNING: views.short(views.error_text(exc, lang), 400)}
        out = Path(tempfile.mkdtemp(prefix="tunedeck-export-")) / f"{cfg.display_name}-{kind}{suffix}"
        out.write_text(text, encoding="utf-8")
        return {"presets.download_file": str(out)}
    return handler


export_llamafactory = exporter("llamafactory", ".yaml")
export_plain_script = exporter("script", ".py")


def _loaded(cfg: TrainConfig, meta: dict[str, Any], ignored: dict[str, str], prefix: str,
            lang: str | None = None) -> Reply:
    note = prefix + views.preset_note(meta, ignored, lang)
    return {**apply_config(cfg, note), "presets.messages": note}


def upload_preset(ctx: Context, v: dict[str, Any], allow_unknown: bool = False, lang: str | None = None) -> Reply:
    """An uploaded preset into the form. Unknown keys are named first and ignored only on request."""
    path = v.get("presets.upload")
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:  # no more than a preset can be: a larger file is refused by its size
            data = fh.read(presets_mod.MAX_PRESET_BYTES + 1)
        meta, cfg, ignored = presets_mod.preset_from_bytes(data, Path(path).name, allow_unknown=allow_unknown)
    except presets_mod.UnknownKeysError as exc:
        return {"presets.messages": "⚠ " + views.md_lines(views.error_text(exc, lang)), "presets.upload_anyway_btn": gr.update(visible=True)}
    except (ConfigError, OSError) as exc:
        forget_gradio_copy(path)
        return {"presets.messages": f"⚠ {html.escape(views.short(views.error_text(exc, lang), 1200))}",
                "presets.upload_anyway_btn": gr.update(visible=False)}
    forget_gradio_copy(path)
    return {**_loaded(cfg, meta, ignored, t(lang, "loaded_upload"), lang),
            "presets.upload_anyway_btn": gr.update(visible=False)}


def upload_preset_anyway(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    return upload_preset(ctx, v, allow_unknown=True, lang=lang)


def import_llamafactory(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    path = v.get("presets.import_lf")
    if not path:
        return {}
    try:
        result = import_llamafactory_for(ctx, user, path)  # dataset_dir under the access policy
    except Exception as exc:  # noqa: BLE001 - ConfigError, DataError, OSError: say it
        return {"presets.messages": f"⚠ {html.escape(views.short(views.error_text(exc, lang), 1200))}"}
    finally:
        forget_gradio_copy(path)
    reply = _loaded(result.config, {"title": t(lang, "imported_from", name=Path(path).name)}, dict(result.unmapped),
                    t(lang, "imported_lf"), lang)
    if result.notes:
        reply["presets.messages"] += "\n\n" + "\n".join(f"- {html.escape(n)}" for n in result.notes)
    return reply


# --- layout and wiring ----------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("presets.select", gr.Dropdown(choices=[], label=i18n("preset"), elem_id="presets-select", scale=3))
        ui.add("presets.new_name", gr.Textbox(label=i18n("new_name"), scale=2, elem_id="presets-new-name"))
        ui.add("presets.rename_btn", gr.Button(i18n("rename"), scale=1, elem_id="presets-rename-btn"))
        ui.add("presets.delete_btn", gr.Button(i18n("delete"), variant="stop", scale=1, elem_id="presets-delete-btn"))
        ui.add("presets.load_btn", gr.Button(i18n("load_preset"), variant="primary", scale=1,
                                             elem_id="presets-load-btn"))
    ui.add("presets.details", gr.Markdown("", elem_id="presets-details"))
    with gr.Row(equal_height=True):
        ui.add("presets.download_btn", gr.Button(i18n("download"), elem_id="presets-download-btn"))
        ui.add("presets.export_lf_btn", gr.Button(i18n("export_lf"), elem_id="presets-export-lf-btn"))
        ui.add("presets.export_script_btn", gr.Button(i18n("export_script"), elem_id="presets-export-script-btn"))
    # No label shown: Gradio renders a read-only File's translated label as "[object Object]".
    ui.add("presets.download_file", gr.File(label=i18n("file"), show_label=False, interactive=False,
                                            elem_id="presets-download-file", height=60))
    with gr.Row():
        ui.add("presets.upload", gr.File(label=i18n("upload_preset"), file_types=[".yaml", ".yml"],
                                         elem_id="presets-upload", height=120))
        ui.add("presets.import_lf", gr.File(label=i18n("import_lf"), file_types=[".yaml", ".yml"],
                                            elem_id="presets-import-lf", height=120))
    ui.add("presets.messages", gr.Markdown("", elem_id="presets-messages"))
    ui.add("presets.upload_anyway_btn", gr.Button(i18n("upload_anyway"), visible=False,
                                                  variant="stop", elem_id="presets-upload-anyway-btn"))


def wire(ui: UI) -> None:
    quiet = dict(show_progress="hidden")
    ui.on(ui["presets.select"].change, details, ["presets.select"], ["presets.details"], **quiet)
    ui.on([ui["train.preset_select"].focus, ui.demo.load, ui["tab.presets"].select, ui["top.language"].change],
          refresh_choices, [], CHOICES_OUTPUTS, **quiet)
    then_refresh_plan(ui, ui.on(ui["presets.load_btn"].click, load_into_form, ["presets.select", "train.plan_hw"],
                                [*CONFIG_OUTPUTS, "train.preset_select", "page.tabs"]))
    ui.on(ui["presets.rename_btn"].click, rename, ["presets.select", "presets.new_name"], CHOICES_OUTPUTS)
    ui.on(ui["presets.delete_btn"].click, delete, ["presets.select"], CHOICES_OUTPUTS)
    ui.on(ui["presets.download_btn"].click, download, ["presets.select"], ["presets.download_file"])
    ui.on(ui["presets.export_lf_btn"].click, export_llamafactory, FIELDS, ["presets.download_file"])
    ui.on(ui["presets.export_script_btn"].click, export_plain_script, FIELDS, ["presets.download_file"])
    then_refresh_plan(ui, ui.on(ui["presets.upload"].upload, upload_preset, ["presets.upload"], UPLOAD_OUTPUTS))
    then_refresh_plan(ui, ui.on(ui["presets.upload_anyway_btn"].click, upload_preset_anyway, ["presets.upload"],
                                UPLOAD_OUTPUTS))
    then_refresh_plan(ui, ui.on(ui["presets.import_lf"].upload, import_llamafactory, ["presets.import_lf"],
                                [*CONFIG_OUTPUTS, "presets.messages"]))
