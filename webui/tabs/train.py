"""The Train tab: the form generated from the schema, the live run plan, Preview, presets, Start."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gradio as gr

from trainer.access import Access
from trainer.config import ConfigError, TrainConfig
from trainer.engine.distributed import total_processes
from trainer.interop import presets as presets_mod
from trainer.jobs.manager import QueueFullError
from trainer.plan.hardware import gpu_list
from trainer.plan.resolve import resolve_plan

from .. import views
from ..components import (CONFIG_OUTPUTS, FEEDBACK_OUTPUTS, FIELDS, INFO, TOP_BAR_FIELDS, UI, WARNING, Reply,
                          apply_config, form_feedback, form_values, group_name, preset_reference)
from ..context import Context, access_for, acting_as, hardware_choices, hardware_for, require_change, start_problems
from ..form import METHODS, Control, grouped_controls, method_of, values_to_config
from ..i18n import t
from trainer.run.layout import machine_commands, train_command

ID = "train"
TITLE = "tab_train"
PLAN_INPUTS = ["train.plan_hw", "train.preset_ref", "train.shown", *FIELDS]
PLAN_OUTPUTS = [*FEEDBACK_OUTPUTS, "train.plan", "train.saved_form"]
START_OUTPUTS = [*FEEDBACK_OUTPUTS, "monitor.run_select", "monitor.status", "monitor.progress", "monitor.notes",
                 "monitor.drawn", "page.tabs"]


# --- handlers -------------------------------------------------------------------------------------

def refresh_plan(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """The form changed: mark what to fix (the schema's rules, and the dataset and model checks Start
    runs), show and hide controls, and recompute the run plan.

    A path this user may not read, or trust_remote_code for a non-admin on a shared server, is marked at
    its field like any other problem; nothing of such a path is read for the plan."""
    values = form_values(v)
    access = access_for(ctx, user)
    try:
        cfg = values_to_config(values)
        warnings = access.check_config(cfg)
    except ConfigError as exc:
        return form_feedback(values, exc.by_field(), v.get("train.shown"), lang)
    reply = form_feedback(values, start_problems(ctx, cfg, access), v.get("train.shown"), lang)
    plan = plan_text(ctx, cfg, v.get("train.plan_hw"), v.get("train.preset_ref") or {}, lang, access)
    reply["train.plan"] = "".join(f"⚠️ {w}\n\n" for w in warnings) + plan
    reply["train.saved_form"] = values  # kept in the browser: a reload or a restarted server loses no edit
    return reply


def plan_text(ctx: Context, cfg: TrainConfig, hw_key: str | None, reference: dict[str, Any],
              lang: str | None = None, access: Access | None = None) -> str:
    hw = hardware_for(hw_key, ctx.hardware)
    facts = ctx.datasets.facts(cfg, access)
    note = facts.note
    if facts.format:
        note = t(lang, "plan.format", format=facts.format) + (f", {facts.skipped}" if facts.skipped else "")
    try:
        # The preset's effective batch on this run: its micro-batch × accumulation × the run's processes.
        batch = reference.get("effective_batch")
        processes = total_processes(cfg, hw.num_devices if hw.device == "cuda" else 0)
        plan = resolve_plan(cfg, facts.num_train, hw=hw, token_lengths=facts.token_lengths,
                            reference_effective_batch=batch * processes if batch else None,
                            reference_learning_rate=reference.get("learning_rate"))
        return views.plan_markdown(plan, num_samples=facts.num_train, dataset_note=note,
                                   hardware_label=views.hardware_label(hw), lang=lang, on_gpu=hw.device == "cuda") + gpus_found_text()
    except Exception as exc:  # noqa: BLE001 - a plan problem is shown, never a traceback
        return t(lang, "plan_failed", detail=views.short(views.error_text(exc, lang)))


def gpus_found_text() -> str:
    """The GPUs of this machine, under the plan: the numbers to pick in Devices & machines → GPU ids."""
    found = gpu_list()
    if len(found) < 2:
        return ""
    cards = " · ".join(f"`{gpu}` {name}" + (f" ({total:g} GB)" if total else "") for gpu, name, total in found)
    return f"\n\n**GPUs found** (pick them in *Devices & machines → GPU ids*): {cards}"


def preview(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The exact config.yaml and command line Start would run."""
    try:
        cfg = values_to_config(form_values(v))
    except ConfigError as exc:
        return {WARNING: t(lang, "fix_red", detail=views.short(views.error_text(exc, lang), 200))}
    run_dir = ctx.runs_root / "<run_id>"
    command = train_command(run_dir, cfg=cfg)
    if cfg.num_machines > 1:  # Start runs machine 0 here; the others run their own line on the shared run directory
        command = "\n".join(f"# machine {machine}\n{line}" for machine, line in machine_commands(cfg, run_dir))
    return {"train.preview_cmd": command, "train.preview_yaml": cfg.to_yaml(),
            "train.preview_acc": gr.update(open=True)}


def start(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Queue a run of the form's config and follow it in the Monitor.

    What `trainer check` refuses (a dataset file that is missing or has a bad line, a model directory that
    is not there) is refused here too, at the field: no run is queued only to fail seconds later."""
    values = form_values(v)
    shown = v.get("train.shown")
    try:
        cfg = values_to_config(values)
        access = access_for(ctx, user)
        warnings = access.check_config(cfg)
        problems = start_problems(ctx, cfg, access)
        if problems:
            return {**form_feedback(values, problems, shown, lang), WARNING: t(lang, "not_started_fix")}
        run_id = ctx.jobs.submit(cfg, owner=user or "local", name=cfg.run_name)
    except ConfigError as exc:
        return {**form_feedback(values, exc.by_field(), shown, lang), WARNING: t(lang, "not_started_fix")}
    except QueueFullError:  # the cap, in the page's language; nothing of the form is lost
        return {WARNING: t(lang, "queue_full", cap=ctx.jobs.max_queued_per_owner)}
    except Exception as exc:  # noqa: BLE001 - JobError, OSError: say it, keep the page alive
        return {WARNING: t(lang, "not_started", detail=views.short(views.error_text(exc, lang)))}
    # The Monitor shows the new run from its first moment: nothing of the run it showed before.
    return {**form_feedback(values, {}, shown, lang), INFO: " ".join([t(lang, "run_queued", run_id=run_id), *warnings]),
            "monitor.run_select": gr.update(choices=ctx.run_choices(), value=run_id),
            "monitor.status": views.status_badge("queued", lang=lang), "monitor.progress": "",
            "monitor.notes": "", "monitor.drawn": {}, "page.tabs": gr.Tabs(selected="monitor")}


def load_preset(ctx: Context, name: str | None, hw_key: str | None, allow_unknown: bool = False,
                lang: str | None = None) -> Reply:
    """A preset by name into the form (to CONFIG_OUTPUTS); unknown keys are named, and ignored only on request."""
    try:
        meta, cfg, ignored = presets_mod.load_named_preset(name or "demo", allow_unknown=allow_unknown,
                                                           runs_root=ctx.runs_root)
    except presets_mod.UnknownKeysError as exc:
        return {"train.preset_note": f"⚠ {views.md_lines(views.error_text(exc, lang))}", "train.load_anyway_btn": gr.update(visible=True)}
    except (ConfigError, OSError) as exc:
        return {WARNING: views.short(views.error_text(exc, lang)), "train.preset_note": f"⚠ {views.md_lines(views.error_text(exc, lang))}",
                "train.load_anyway_btn": gr.update(visible=False)}
    cfg = presets_mod.resolve_auto_micro_batch(meta, cfg, hardware_for(hw_key, ctx.hardware))
    return apply_config(cfg, views.preset_note({"name": name, **meta}, ignored, lang))


def load_selected(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    return load_preset(ctx, v["train.preset_select"], v["train.plan_hw"], lang=lang)


def load_selected_anyway(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    return load_preset(ctx, v["train.preset_select"], v["train.plan_hw"], allow_unknown=True, lang=lang)


def save_preset(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    try:
        cfg = values_to_config(form_values(v))
        name = presets_mod.validate_name(v["train.save_name"])
        owner = acting_as(user).name
        existing = _user_preset(ctx, name)
        if existing is not None:  # saving over a preset: its owner or an admin, and it stays its owner's
            require_change(user, existing.owner, "overwrite", "preset")
            owner = existing.owner
        # Saving under an existing name updates it: the name was typed on purpose.
        saved = presets_mod.save_user_preset(name, cfg, runs_root=ctx.runs_root, overwrite=True, owner=owner)
    except (ConfigError, OSError, PermissionError) as exc:
        return {WARNING: views.short(views.error_text(exc, lang))}
    message = t(lang, "preset_saved", name=saved.name)
    if saved.stripped:
        message += t(lang, "secrets_removed", names=", ".join(saved.stripped))
    choices = preset_choices(ctx.runs_root, lang, user)
    return {INFO: message, "train.preset_select": gr.update(choices=choices, value=saved.name),
            "train.preset_note": t(lang, "preset_is", name=saved.name), "presets.select": gr.update(choices=choices)}


def _user_preset(ctx: Context, name: str) -> Any:
    """The user preset stored under `name` (its file name ignores case), or None."""
    for info in presets_mod.list_presets(ctx.runs_root):
        if not info.builtin and info.name.casefold() == name.casefold():
            return info
    return None


def restore_form(ctx: Context, v: dict[str, Any]) -> Reply:
    """The page opened: the form's unsaved values from the browser, where it kept some (a reload, a
    restarted server); the plan and the form's feedback follow."""
    saved = v.get("train.saved_form")
    if not isinstance(saved, dict):
        return {}
    values = {name: saved[name] for name in FIELDS if name in saved}
    if not values:
        return {}
    return {**values, "top.method": method_of(values)}


def method_chosen(ctx: Context, v: dict[str, Any]) -> Reply:
    ftype, qbit = METHODS.get(v["top.method"], METHODS["LoRA"])
    return {"finetuning_type": ftype, "quantization_bit": qbit}


def method_followed(ctx: Context, v: dict[str, Any]) -> Reply:
    return {"top.method": method_of(v)}


def preset_choices(runs_root: Path, lang: str | None = None, user: str | None = None) -> list[tuple[str, str]]:
    """Every preset for a dropdown; a user preset says whose it is: "(yours)" or "(by alice)"."""
    me, out = acting_as(user).name, []
    for p in presets_mod.list_presets(runs_root):
        label = p.title if p.title and p.title != p.name else p.name
        label = views.preset_title(p.name, label, lang) if p.builtin else label
        tag = "" if p.builtin else t(lang, "yours") if p.owner == me else t(lang, "by_owner", owner=p.owner)
        out.append((f"{label}{tag}" + (t(lang, "broken_file") if p.error else ""), p.name))
    return out


def language_changed(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Words the server wrote in the old language: the preset note, the preset and hardware choices."""
    reply: Reply = {"train.preset_select": gr.update(choices=preset_choices(ctx.runs_root, lang, user)),
                    "train.plan_hw": gr.update(choices=hardware_choices(ctx.hardware, lang))}
    name = v.get("train.preset_select") or "demo"
    try:
        meta, _, _ = presets_mod.load_named_preset(name, allow_unknown=True, runs_root=ctx.runs_root)
    except (ConfigError, OSError):
        return reply
    meta = {**meta, "name": name}
    # Only a note that is this preset's own is rewritten: a run's config or an upload keeps its note.
    if v.get("train.preset_note") in (views.preset_note(meta, lang=other) for other in ("en", "zh")):
        reply["train.preset_note"] = views.preset_note(meta, lang=lang)
    return reply


def then_refresh_plan(ui: UI, dependency: Any) -> Any:
    """After a config reached the form: the form's feedback and the plan follow."""
    return ui.then(dependency, refresh_plan, PLAN_INPUTS, PLAN_OUTPUTS, show_progress="hidden")


# --- layout ---------------------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n, initial = ui.i18n, ui.initial
    hidden = set(initial.shown["hidden"])
    ui.add("train.live", gr.Markdown("", elem_id="train-live"))
    with gr.Row(elem_id="td-train-row"):
        with gr.Column(scale=3, elem_id="td-form-column"):
            with gr.Row(equal_height=True):
                ui.add("train.preset_select", gr.Dropdown(
                    choices=preset_choices(ui.ctx.runs_root), value=initial.meta.get("name", "demo"),
                    label=i18n("preset"), elem_id="preset-select", scale=3))
                ui.add("train.load_preset_btn", gr.Button(i18n("load_preset"), elem_id="load-preset-btn", scale=1))
                ui.add("train.load_anyway_btn", gr.Button(i18n("load_anyway"), visible=False,
                                                          elem_id="load-anyway-btn", scale=1, variant="stop"))
            ui.add("train.preset_note", gr.Markdown(views.preset_note(initial.meta), elem_id="preset-note"))
            for key, _, is_open, common, advanced in grouped_controls():
                common = [c for c in common if c.name not in TOP_BAR_FIELDS]
                advanced = [c for c in advanced if c.name not in TOP_BAR_FIELDS]
                if not common and not advanced:
                    continue
                with ui.add(group_name(key, False), gr.Accordion(
                        i18n(f"group.{key}"), open=is_open, elem_id=f"group-{key}",
                        visible=any(c.name not in hidden for c in common + advanced))):
                    with gr.Row():
                        for c in common:
                            ui.add(c.name, render_control(c, initial.values[c.name], i18n, c.name not in hidden))
                    if advanced:
                        with ui.add(group_name(key, True), gr.Accordion(
                                i18n("advanced"), open=False, elem_id=f"group-{key}-advanced",
                                visible=any(c.name not in hidden for c in advanced))):
                            with gr.Row():
                                for c in advanced:
                                    ui.add(c.name, render_control(c, initial.values[c.name], i18n,
                                                                  c.name not in hidden))
        with gr.Column(scale=2, elem_id="td-plan-column"):
            ui.add("train.errors", gr.Markdown("", elem_id="td-errors", visible=False))
            with gr.Row(equal_height=True):
                ui.add("train.preview_btn", gr.Button(i18n("preview"), elem_id="preview-btn"))
                ui.add("train.start_btn", gr.Button(i18n("start"), variant="primary", elem_id="start-btn"))
            with gr.Row(equal_height=True):
                ui.add("train.save_name", gr.Textbox(label=i18n("preset_name"), placeholder="my-recipe", scale=3,
                                                     elem_id="save-preset-name"))
                ui.add("train.save_preset_btn", gr.Button(i18n("save_preset"), scale=1, elem_id="save-preset-btn"))
            ui.add("train.plan_hw", gr.Dropdown(choices=hardware_choices(ui.ctx.hardware), value="local",
                                                label=i18n("plan_gpu"), elem_id="plan-gpu"))
            ui.add("train.plan", gr.Markdown("", elem_id="run-plan"))
            with ui.add("train.preview_acc", gr.Accordion(i18n("preview"), open=False, elem_id="preview-accordion")):
                ui.add("train.preview_cmd", gr.Code(language="shell", label=i18n("command"), elem_id="preview-command",
                                                    lines=2))
                ui.add("train.preview_yaml", gr.Code(language="yaml", label="config.yaml", elem_id="preview-yaml",
                                                     lines=12))
    ui.add("train.shown", gr.State(initial.shown))  # errors and hidden controls now shown (display only)
    # The form's values in the browser's localStorage under a fixed key, so they outlive a reload and a
    # restarted server; nothing secret is in the form (tokens come from the environment only).
    ui.add("train.saved_form", gr.BrowserState(None, storage_key="tunedeck-form", secret="tunedeck-form"))
    ui.add("train.preset_ref", gr.State(preset_reference(initial.cfg)))


def render_control(c: Control, value: Any, i18n: gr.I18n, visible: bool = True) -> Any:
    common = dict(label=i18n(f"field.{c.name}"), info=i18n(f"help.{c.name}"), elem_id=f"field-{c.name}", value=value,
                  min_width=200, visible=visible)
    if c.widget == "checkbox":
        return gr.Checkbox(**common)
    if c.widget == "dropdown":
        return gr.Dropdown(choices=list(c.choices), **common)
    if c.widget == "number":
        step = 1 if c.integer else _float_step(value)
        # No rounding here (precision=0 would turn lora_rank 1.5 into 2): the schema refuses a fraction by name.
        return gr.Number(precision=None, step=step, **common)
    return gr.Textbox(placeholder=c.placeholder, max_lines=1, **common)


def _float_step(value: Any) -> float:
    """The arrows of a float field move its leading digit: 2e-4 steps by 1e-4."""
    try:
        magnitude = abs(float(value))
    except (TypeError, ValueError):
        return 0.01
    if magnitude == 0 or not math.isfinite(magnitude):
        return 0.01
    return 10 ** math.floor(math.log10(magnitude))


# --- wiring ---------------------------------------------------------------------------------------

def wire(ui: UI) -> None:
    quiet = dict(show_progress="hidden")
    ui.on([ui[name].input for name in FIELDS] + [ui["train.plan_hw"].change, ui["top.language"].change],
          refresh_plan, PLAN_INPUTS, PLAN_OUTPUTS, trigger_mode="always_last", **quiet)
    then_refresh_plan(ui, ui.on(ui.demo.load, restore_form, ["train.saved_form"], [*FIELDS, "top.method"], **quiet))
    ui.on(ui["top.language"].change, language_changed, ["train.preset_select", "train.preset_note"],
          ["train.preset_select", "train.plan_hw", "train.preset_note"], **quiet)
    then_refresh_plan(ui, ui.on(ui["top.method"].input, method_chosen, ["top.method"],
                                ["finetuning_type", "quantization_bit"]))
    ui.on([ui["finetuning_type"].input, ui["quantization_bit"].input], method_followed,
          ["finetuning_type", "quantization_bit"], ["top.method"], **quiet)
    ui.on(ui["train.preview_btn"].click, preview, FIELDS,
          ["train.preview_cmd", "train.preview_yaml", "train.preview_acc"])
    for button, handler in (("train.load_preset_btn", load_selected), ("train.load_anyway_btn", load_selected_anyway)):
        then_refresh_plan(ui, ui.on(ui[button].click, handler, ["train.preset_select", "train.plan_hw"],
                                    CONFIG_OUTPUTS))
    ui.on(ui["train.save_preset_btn"].click, save_preset, ["train.save_name", *FIELDS],
          ["train.preset_select", "train.preset_note", "presets.select"])
    ui.on(ui["train.start_btn"].click, start, ["train.shown", *FIELDS], START_OUTPUTS)
