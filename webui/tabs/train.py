"""The Train tab: the form generated from the schema, the live run plan, Preview, presets, Start."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gradio as gr

from trainer.config import ConfigError, TrainConfig
from trainer.engine.distributed import total_processes
from trainer.interop import presets as presets_mod
from trainer.plan.hardware import gpu_list
from trainer.plan.resolve import resolve_plan

from .. import views
from ..components import (CONFIG_OUTPUTS, FEEDBACK_OUTPUTS, FIELDS, INFO, TOP_BAR_FIELDS, UI, WARNING, Reply,
                          apply_config, form_feedback, form_values, group_name, preset_reference)
from ..context import Context, hardware_choices, hardware_for
from ..form import METHODS, Control, grouped_controls, method_of, values_to_config
from trainer.run.layout import machine_commands, train_command

ID = "train"
TITLE = "tab_train"
PLAN_INPUTS = ["train.plan_hw", "train.preset_ref", "train.shown", *FIELDS]
PLAN_OUTPUTS = [*FEEDBACK_OUTPUTS, "train.plan"]


# --- handlers -------------------------------------------------------------------------------------

def refresh_plan(ctx: Context, v: dict[str, Any]) -> Reply:
    """The form changed: mark what to fix, show and hide controls, and recompute the run plan."""
    values = form_values(v)
    try:
        cfg = values_to_config(values)
    except ConfigError as exc:
        return form_feedback(values, exc.by_field(), v.get("train.shown"))
    reply = form_feedback(values, {}, v.get("train.shown"))
    reply["train.plan"] = plan_text(ctx, cfg, v.get("train.plan_hw"), v.get("train.preset_ref") or {})
    return reply


def plan_text(ctx: Context, cfg: TrainConfig, hw_key: str | None, reference: dict[str, Any]) -> str:
    hw = hardware_for(hw_key, ctx.hardware)
    facts = ctx.datasets.facts(cfg)
    try:
        # The preset's effective batch on this run: its micro-batch × accumulation × the run's processes.
        batch = reference.get("effective_batch")
        processes = total_processes(cfg, hw.num_devices if hw.device == "cuda" else 0)
        plan = resolve_plan(cfg, facts.num_train, hw=hw, token_lengths=facts.token_lengths,
                            reference_effective_batch=batch * processes if batch else None,
                            reference_learning_rate=reference.get("learning_rate"))
        return views.plan_markdown(plan, num_samples=facts.num_train, dataset_note=facts.note,
                                   hardware_label=views.hardware_label(hw)) + gpus_found_text()
    except Exception as exc:  # noqa: BLE001 - a plan problem is shown, never a traceback
        return f"The plan could not be computed: {views.short(views.error_text(exc))}"


def gpus_found_text() -> str:
    """The GPUs of this machine, under the plan: the numbers to pick in Devices & machines → GPU ids."""
    found = gpu_list()
    if len(found) < 2:
        return ""
    cards = " · ".join(f"`{gpu}` {name}" + (f" ({total:g} GB)" if total else "") for gpu, name, total in found)
    return f"\n\n**GPUs found** (pick them in *Devices & machines → GPU ids*): {cards}"


def preview(ctx: Context, v: dict[str, Any]) -> Reply:
    """The exact config.yaml and command line Start would run."""
    try:
        cfg = values_to_config(form_values(v))
    except ConfigError as exc:
        return {WARNING: "Fix the fields marked in red: " + views.short(str(exc), 200)}
    run_dir = ctx.runs_root / "<run_id>"
    command = train_command(run_dir, cfg=cfg)
    if cfg.num_machines > 1:  # Start runs machine 0 here; the others run their own line on the shared run directory
        command = "\n".join(f"# machine {machine}\n{line}" for machine, line in machine_commands(cfg, run_dir))
    return {"train.preview_cmd": command, "train.preview_yaml": cfg.to_yaml(),
            "train.preview_acc": gr.update(open=True)}


def start(ctx: Context, v: dict[str, Any], user: str | None = None) -> Reply:
    """Queue a run of the form's config and follow it in the Monitor."""
    values = form_values(v)
    try:
        cfg = values_to_config(values)
        run_id = ctx.jobs.submit(cfg, owner=user or "local", name=cfg.run_name)
    except ConfigError as exc:
        return {**form_feedback(values, exc.by_field(), v.get("train.shown")),
                WARNING: "Not started: fix the fields marked in red."}
    except Exception as exc:  # noqa: BLE001 - JobError, OSError: say it, keep the page alive
        return {WARNING: "Not started: " + views.short(views.error_text(exc))}
    return {**form_feedback(values, {}, v.get("train.shown")), INFO: f"Run {run_id} queued.",
            "monitor.run_select": gr.update(choices=ctx.run_choices(), value=run_id),
            "page.tabs": gr.Tabs(selected="monitor")}


def load_preset(ctx: Context, name: str | None, hw_key: str | None, allow_unknown: bool = False) -> Reply:
    """A preset by name into the form (to CONFIG_OUTPUTS); unknown keys are named, and ignored only on request."""
    try:
        meta, cfg, ignored = presets_mod.load_named_preset(name or "demo", allow_unknown=allow_unknown,
                                                           runs_root=ctx.runs_root)
    except presets_mod.UnknownKeysError as exc:
        return {"train.preset_note": f"⚠ {views.md_lines(str(exc))}", "train.load_anyway_btn": gr.update(visible=True)}
    except (ConfigError, OSError) as exc:
        return {WARNING: views.short(views.error_text(exc)), "train.preset_note": f"⚠ {views.md_lines(str(exc))}",
                "train.load_anyway_btn": gr.update(visible=False)}
    cfg = presets_mod.resolve_auto_micro_batch(meta, cfg, hardware_for(hw_key, ctx.hardware))
    return apply_config(cfg, views.preset_note(meta, ignored))


def load_selected(ctx: Context, v: dict[str, Any]) -> Reply:
    return load_preset(ctx, v["train.preset_select"], v["train.plan_hw"])


def load_selected_anyway(ctx: Context, v: dict[str, Any]) -> Reply:
    return load_preset(ctx, v["train.preset_select"], v["train.plan_hw"], allow_unknown=True)


def save_preset(ctx: Context, v: dict[str, Any]) -> Reply:
    try:
        cfg = values_to_config(form_values(v))
        # Saving under an existing name of yours updates it: the name was typed on purpose.
        saved = presets_mod.save_user_preset(v["train.save_name"], cfg, runs_root=ctx.runs_root, overwrite=True)
    except (ConfigError, OSError) as exc:
        return {WARNING: views.short(views.error_text(exc))}
    message = f"Saved preset '{saved.name}'."
    if saved.stripped:
        message += " Secrets removed: " + ", ".join(saved.stripped)
    choices = preset_choices(ctx.runs_root)
    return {INFO: message, "train.preset_select": gr.update(choices=choices, value=saved.name),
            "train.preset_note": f"Preset: **{saved.name}**", "presets.select": gr.update(choices=choices)}


def method_chosen(ctx: Context, v: dict[str, Any]) -> Reply:
    ftype, qbit = METHODS.get(v["top.method"], METHODS["LoRA"])
    return {"finetuning_type": ftype, "quantization_bit": qbit}


def method_followed(ctx: Context, v: dict[str, Any]) -> Reply:
    return {"top.method": method_of(v)}


def preset_choices(runs_root: Path) -> list[tuple[str, str]]:
    out = []
    for p in presets_mod.list_presets(runs_root):
        label = p.title if p.title and p.title != p.name else p.name
        tag = "" if p.builtin else " (yours)"
        out.append((f"{label}{tag}" + (" — broken file" if p.error else ""), p.name))
    return out


def then_refresh_plan(ui: UI, dependency: Any) -> Any:
    """After a config reached the form: the form's feedback and the plan follow."""
    return ui.then(dependency, refresh_plan, PLAN_INPUTS, PLAN_OUTPUTS, show_progress="hidden")


# --- layout ---------------------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n, initial = ui.i18n, ui.initial
    hidden = set(initial.shown["hidden"])
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                ui.add("train.preset_select", gr.Dropdown(
                    choices=preset_choices(ui.ctx.runs_root), value=initial.meta.get("name", "demo"),
                    label=i18n("preset"), elem_id="preset-select", scale=3))
                ui.add("train.load_preset_btn", gr.Button(i18n("load_preset"), elem_id="load-preset-btn", scale=1))
                ui.add("train.load_anyway_btn", gr.Button("Load, ignoring unknown keys", visible=False,
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
                ui.add("train.preview_cmd", gr.Code(language="shell", label="Command", elem_id="preview-command",
                                                    lines=2))
                ui.add("train.preview_yaml", gr.Code(language="yaml", label="config.yaml", elem_id="preview-yaml",
                                                     lines=12))
    ui.add("train.shown", gr.State(initial.shown))  # errors and hidden controls now shown (display only)
    ui.add("train.preset_ref", gr.State(preset_reference(initial.cfg)))


def render_control(c: Control, value: Any, i18n: gr.I18n, visible: bool = True) -> Any:
    common = dict(label=i18n(f"field.{c.name}"), info=c.info, elem_id=f"field-{c.name}", value=value,
                  min_width=200, visible=visible)
    if c.widget == "checkbox":
        return gr.Checkbox(**common)
    if c.widget == "dropdown":
        return gr.Dropdown(choices=list(c.choices), **common)
    if c.widget == "number":
        step = 1 if c.integer else _float_step(value)
        return gr.Number(precision=0 if c.integer else None, step=step, **common)
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
    ui.on([ui[name].input for name in FIELDS] + [ui["train.plan_hw"].change, ui.demo.load], refresh_plan,
          PLAN_INPUTS, PLAN_OUTPUTS, trigger_mode="always_last", **quiet)
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
    ui.on(ui["train.start_btn"].click, start, ["train.shown", *FIELDS],
          [*FEEDBACK_OUTPUTS, "monitor.run_select", "page.tabs"])
