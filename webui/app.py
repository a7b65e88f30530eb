"""The page: `build(runs_root) -> gr.Blocks`. Thin edges over the pure cores (form, charts, alerts, views).

The page keeps nothing that matters. The run registry (runs.db) and the run directories are the
truth; every timer tick re-reads the registry row and only the new bytes of the selected run's
events file, and the page redraws a chart only when its inputs changed.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from trainer.config import ConfigError, TrainConfig
from trainer.run.events import tail_lines
from trainer.plan.resolve import CPU, Hardware, resolve_plan

from . import alerts as alerts_mod
from . import charts, views
from .form import Control, config_to_values, controls, grouped_controls, values_to_config
from .i18n import LANGUAGES, translations
from .state import EventCache

TIMER_SECONDS = 1.5
TOP_BAR_FIELDS = ("model_name_or_path", "quantization_bit", "template")  # rendered in the top bar, not the form
METHODS = {  # top-bar method -> (finetuning_type, quantization_bit as the control holds it)
    "LoRA": ("lora", "empty"),
    "QLoRA (4-bit)": ("lora", "4"),
    "QLoRA (8-bit)": ("lora", "8"),
    "Full": ("full", "empty"),
}
QUANT_LABELS = {"empty": "none (16-bit)", "4": "4-bit (QLoRA)", "8": "8-bit"}
UPLOADS_SUBDIR = "uploads"
MAX_UPLOAD_BYTES = 2 * 1024**3
LOG_TAIL_LINES = 30

CSS = """
.td-status {color: white; padding: 2px 10px; border-radius: 10px; font-weight: 600; font-size: 0.9em}
.td-detail {color: var(--body-text-color-subdued); margin-left: 8px}
.td-progress {margin: 4px 0 2px 0}
.td-bar {height: 14px; background: var(--neutral-200); border-radius: 7px; overflow: hidden}
.td-fill {height: 100%; transition: width 0.8s}
.td-progress-text {font-size: 0.92em; margin-top: 4px}
.td-field-error {border: 2px solid #dc2626 !important; border-radius: 8px}
.td-field-error .info, .td-field-error span[data-testid='block-info'] + div {color: #dc2626}
#td-errors {border-left: 4px solid #dc2626; padding-left: 10px}
#td-header h1 {margin-bottom: 0}
#log-tail textarea {font-family: ui-monospace, monospace; font-size: 12px}
"""

# Switches Gradio's own i18n locale from the top bar: the frontend's core module (already loaded, so
# importing it again returns the same instance) exports changeLocale. The footer's Settings panel
# offers the same choice should a future Gradio rename the module.
LANGUAGE_JS = """
async (language) => {
  const codes = %s;
  const code = codes[language] || "en";
  const urls = performance.getEntriesByType("resource").map((e) => e.name)
    .filter((n) => /\\/assets\\/core-[^/]+\\.js$/.test(n));
  for (const url of urls) {
    try { const m = await import(url); if (m.changeLocale) { m.changeLocale(code); break; } } catch (e) {}
  }
  return language;
}
""" % (str(LANGUAGES).replace("'", '"'))


def i18n_for_launch() -> gr.I18n:
    return gr.I18n(**translations())


# --- hardware, without torch ---------------------------------------------------------------------

def detect_hardware_light() -> Hardware:
    """This machine's GPUs via NVML (no torch import in the page's process); the CPU when there is none."""
    try:
        from trainer.jobs.manager import gpu_count
        if gpu_count() == 0:
            return CPU
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            total = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3
            major, _ = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        finally:
            pynvml.nvmlShutdown()
        return Hardware(device="cuda", num_devices=max(1, count), gpu_name=name, gpu_total_gb=round(total, 2),
                        bf16_supported=major >= 8, flash_attention=False, liger=False)
    except Exception:  # noqa: BLE001 - no driver, no NVML: plan for the CPU
        return CPU


def hardware_choices(local: Hardware) -> list[tuple[str, str]]:
    here = (f"this machine: {local.gpu_name} ({local.gpu_total_gb:g} GB)" if local.device == "cuda"
            else "this machine: CPU")
    out = [(here, "local")]
    try:
        from trainer.plan.catalog import GPU_CHOICES
        out += [(c.label, c.key) for c in GPU_CHOICES]
    except ImportError:
        pass
    return out


def hardware_for(key: str, local: Hardware) -> Hardware:
    if not key or key == "local":
        return local
    try:
        from trainer.plan.catalog import gpu_choice
        choice = gpu_choice(key)
    except ImportError:
        choice = None
    if choice is None:
        return local
    return Hardware(device="cuda", num_devices=1, gpu_name=choice.label, gpu_total_gb=float(choice.memory_gib),
                    bf16_supported=choice.bf16)


# --- dataset facts for the plan, cached per dataset ----------------------------------------------

@dataclass
class DatasetFacts:
    num_train: int | None
    note: str
    token_lengths: list[int] | None = None


class DatasetFactsCache:
    """Row counts of local datasets (cheap), token lengths once the Data tab has computed them."""

    def __init__(self) -> None:
        self._facts: dict[tuple, DatasetFacts] = {}
        self._lengths: dict[tuple, list[int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _source_stamp(dataset: str) -> Any:
        """("file", path, mtime, size) for a local file, ("hub", id) for a Hub id, ("error", message)."""
        try:
            from trainer.datasets.data import resolve_source
            kind, where = resolve_source(dataset)
        except ImportError:
            return ("error", "the data module is not installed")
        except Exception as exc:  # noqa: BLE001 - DataError: a path that does not exist, ...
            return ("error", _short(_error_text(exc)))
        if kind != "file":
            return ("hub", where)
        try:
            stat = os.stat(where)
            return ("file", where, stat.st_mtime_ns, stat.st_size)
        except OSError:
            return ("file", where, None, None)

    @staticmethod
    def key(cfg: TrainConfig, stamp: Any) -> tuple:
        return (stamp, cfg.dataset_format, tuple(sorted(cfg.column_mapping.items())), cfg.max_samples,
                cfg.val_size, cfg.seed, cfg.skip_invalid_rows)

    def facts(self, cfg: TrainConfig) -> DatasetFacts:
        stamp = self._source_stamp(cfg.dataset)
        if stamp[0] == "error":
            return DatasetFacts(None, stamp[1])
        if stamp[0] == "hub":
            return DatasetFacts(None, "a Hub dataset: the row count is known once it is loaded")
        key = self.key(cfg, stamp)
        with self._lock:
            cached = self._facts.get(key)
        if cached is None:
            try:
                from trainer.datasets.data import load_examples
                loaded = load_examples(cfg)
                note = f"{loaded.format} format" + (f", {loaded.skipped} invalid rows skipped" if loaded.skipped else "")
                cached = DatasetFacts(len(loaded.train), note)
            except ImportError:
                cached = DatasetFacts(None, "the data module is not installed")
            except Exception as exc:  # noqa: BLE001 - shown in the plan, never a traceback
                cached = DatasetFacts(None, _short(str(exc)))
            with self._lock:
                self._facts[key] = cached
        lengths = self._lengths.get((key, cfg.cutoff_len, cfg.template, cfg.model_name_or_path))
        return DatasetFacts(cached.num_train, cached.note, lengths)

    def set_lengths(self, cfg: TrainConfig, lengths: list[int]) -> None:
        stamp = self._source_stamp(cfg.dataset)
        if stamp[0] == "file":
            self._lengths[(self.key(cfg, stamp), cfg.cutoff_len, cfg.template, cfg.model_name_or_path)] = list(lengths)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# --- the app object: shared by every session ---------------------------------------------------

@dataclass
class Context:
    runs_root: Path
    jobs: Any
    cache: EventCache = field(default_factory=EventCache)
    datasets: DatasetFactsCache = field(default_factory=DatasetFactsCache)
    hardware: Hardware = CPU


def _owner(request: gr.Request | None) -> str:
    username = getattr(request, "username", None) if request is not None else None
    return str(username) if username else "local"


def _owner_filter(request: gr.Request | None) -> str | None:
    """The owner to check against for abort/resume/delete: the logged-in user; None (anyone) when local."""
    username = getattr(request, "username", None) if request is not None else None
    return str(username) if username else None


def _error_text(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


def build(runs_root: str | Path | None = None, *, jobs: Any = None) -> gr.Blocks:
    """The whole page, bound to one runs root (its runs.db, run directories and user presets)."""
    from trainer.jobs.manager import JobManager, default_runs_root

    root = Path(runs_root if runs_root is not None else default_runs_root()).expanduser().resolve()
    ctx = Context(runs_root=root, jobs=jobs or JobManager(root))
    ctx.hardware = detect_hardware_light()
    i18n = gr.I18n(**translations())
    all_controls = controls()
    by_name: dict[str, Control] = {c.name: c for c in all_controls}
    initial_meta, initial_cfg = _initial_preset(root)
    initial_values = config_to_values(initial_cfg)

    with gr.Blocks(title="tunedeck", analytics_enabled=False) as demo:
        demo.tunedeck_context = ctx  # type: ignore[attr-defined]  # tests and app.py reach the job manager
        components: dict[str, gr.components.Component] = {}

        # ---------------- top bar ----------------
        with gr.Row(equal_height=True, elem_id="td-topbar"):
            gr.Markdown("# tunedeck", elem_id="td-header")
            components["model_name_or_path"] = gr.Dropdown(
                choices=_model_choices(), value=initial_values["model_name_or_path"], allow_custom_value=True,
                label=i18n("model"), info=i18n("model_info"), elem_id="model-input", scale=3)
            method = gr.Dropdown(choices=list(METHODS), value=_method_of(initial_values), label=i18n("method"),
                                 elem_id="method-input", scale=1)
            quant = by_name["quantization_bit"]
            components["quantization_bit"] = gr.Dropdown(
                choices=[(QUANT_LABELS.get(c, f"{c}-bit"), c) for c in quant.choices],
                value=initial_values["quantization_bit"], label=i18n("quantization"),
                elem_id="field-quantization_bit", scale=1)
            components["template"] = gr.Dropdown(
                choices=_template_choices(), value=initial_values["template"], allow_custom_value=True,
                label=i18n("template"), elem_id="field-template", scale=1)
            language = gr.Dropdown(choices=list(LANGUAGES), value="English", label=i18n("language"),
                                   elem_id="language", scale=1)

        with gr.Tabs(elem_id="td-tabs") as tabs:
            # ---------------- train ----------------
            with gr.Tab(i18n("tab_train"), id="train", elem_id="tab-train"):
                with gr.Row():
                    with gr.Column(scale=3):
                        with gr.Row(equal_height=True):
                            preset_select = gr.Dropdown(choices=_preset_choices(root), value=initial_meta.get("name", "demo"),
                                                        label=i18n("preset"), elem_id="preset-select", scale=3)
                            load_preset_btn = gr.Button(i18n("load_preset"), elem_id="load-preset-btn", scale=1)
                            load_anyway_btn = gr.Button("Load, ignoring unknown keys", visible=False,
                                                        elem_id="load-anyway-btn", scale=1, variant="stop")
                        preset_note = gr.Markdown(_preset_note(initial_meta), elem_id="preset-note")
                        for key, title, is_open, common, advanced in grouped_controls():
                            common = [c for c in common if c.name not in TOP_BAR_FIELDS]
                            advanced = [c for c in advanced if c.name not in TOP_BAR_FIELDS]
                            if not common and not advanced:
                                continue
                            with gr.Accordion(i18n(f"group.{key}"), open=is_open, elem_id=f"group-{key}"):
                                with gr.Row():
                                    for c in common:
                                        components[c.name] = _render_control(c, initial_values[c.name], i18n)
                                if advanced:
                                    with gr.Accordion(i18n("advanced"), open=False, elem_id=f"group-{key}-advanced"):
                                        with gr.Row():
                                            for c in advanced:
                                                components[c.name] = _render_control(c, initial_values[c.name], i18n)
                    with gr.Column(scale=2, elem_id="td-plan-column"):
                        errors_box = gr.Markdown("", elem_id="td-errors", visible=False)
                        with gr.Row(equal_height=True):
                            preview_btn = gr.Button(i18n("preview"), elem_id="preview-btn")
                            start_btn = gr.Button(i18n("start"), variant="primary", elem_id="start-btn")
                        with gr.Row(equal_height=True):
                            save_name = gr.Textbox(label=i18n("preset_name"), placeholder="my-recipe", scale=3,
                                                   elem_id="save-preset-name")
                            save_preset_btn = gr.Button(i18n("save_preset"), scale=1, elem_id="save-preset-btn")
                        plan_hw = gr.Dropdown(choices=hardware_choices(ctx.hardware), value="local",
                                              label=i18n("plan_gpu"), elem_id="plan-gpu")
                        plan_box = gr.Markdown("", elem_id="run-plan")
                        with gr.Accordion(i18n("preview"), open=False, elem_id="preview-accordion") as preview_acc:
                            preview_cmd = gr.Code(language="shell", label="Command", elem_id="preview-command",
                                                  lines=2)
                            preview_yaml = gr.Code(language="yaml", label="config.yaml", elem_id="preview-yaml",
                                                   lines=12)

            # ---------------- monitor ----------------
            with gr.Tab(i18n("tab_monitor"), id="monitor", elem_id="tab-monitor"):
                with gr.Row(equal_height=True):
                    run_select = gr.Dropdown(choices=[], value=None, label=i18n("run"), elem_id="run-select",
                                             scale=4)
                    abort_btn = gr.Button(i18n("abort"), variant="stop", elem_id="abort-btn", scale=1,
                                          interactive=False)
                    resume_btn = gr.Button(i18n("resume"), elem_id="resume-btn", scale=1, interactive=False)
                status_html = gr.HTML(views.status_badge(None), elem_id="run-status")
                progress_box = gr.HTML("", elem_id="run-progress")
                run_notes = gr.Markdown("", elem_id="run-notes")
                with gr.Row():
                    smoothing = gr.Slider(0, charts.MAX_SMOOTHING, value=0.6, step=0.001, label=i18n("smoothing"),
                                          elem_id="smoothing", scale=3)
                    log_scale = gr.Checkbox(value=False, label=i18n("log_scale"), elem_id="log-scale", scale=1)
                with gr.Row():
                    loss_plot = gr.Plot(charts.loss_figure(charts.RunSeries()), elem_id="loss-chart", show_label=False)
                    memory_plot = gr.Plot(charts.memory_figure(charts.RunSeries()), elem_id="memory-chart",
                                          show_label=False)
                with gr.Row():
                    lr_plot = gr.Plot(charts.lr_gradnorm_figure(charts.RunSeries()), elem_id="lr-chart",
                                      show_label=False)
                    throughput_plot = gr.Plot(charts.throughput_figure(charts.RunSeries()), elem_id="throughput-chart",
                                              show_label=False)
                alerts_box = gr.Markdown("", elem_id="alerts")
                log_box = gr.Textbox(label=i18n("log_tail"), lines=14, max_lines=14, interactive=False,
                                     elem_id="log-tail", autoscroll=True)
                with gr.Accordion("config.yaml of this run", open=False, elem_id="run-config-accordion"):
                    run_config = gr.Code(language="yaml", label="config.yaml", elem_id="run-config", lines=10)
                    reuse_btn = gr.Button("Use this config in the form (to start a new run from it)",
                                          elem_id="reuse-config-btn")

            # ---------------- runs ----------------
            with gr.Tab(i18n("tab_runs"), id="runs", elem_id="tab-runs") as runs_tab_item:
                with gr.Row(equal_height=True):
                    runs_filter = gr.Textbox(label=i18n("filter"), placeholder="model, dataset, owner, status…",
                                             elem_id="runs-filter", scale=3)
                    runs_status = gr.CheckboxGroup(choices=["queued", "running", "finished", "aborted", "failed",
                                                            "interrupted"], label="status", elem_id="runs-status",
                                                   scale=4)
                    runs_refresh = gr.Button(i18n("refresh"), elem_id="runs-refresh", scale=1)
                runs_table = gr.Dataframe(headers=views.RUNS_TABLE_HEADERS, value=[], interactive=False,
                                          elem_id="runs-table", wrap=True)
                with gr.Row(equal_height=True):
                    runs_picked = gr.Dropdown(choices=[], multiselect=True, label=i18n("selected_runs"),
                                              elem_id="runs-picked", scale=4)
                    open_btn = gr.Button(i18n("open_monitor"), elem_id="open-run-btn", scale=1)
                    compare_btn = gr.Button(i18n("compare"), elem_id="compare-btn", scale=1)
                    delete_btn = gr.Button(i18n("delete"), variant="stop", elem_id="delete-run-btn", scale=1)
                compare_plot = gr.Plot(charts.compare_loss_figure([]), elem_id="compare-chart", show_label=False)
                compare_diff = gr.Markdown("", elem_id="compare-diff")

            # ---------------- data ----------------
            with gr.Tab(i18n("tab_data"), id="data", elem_id="tab-data"):
                data_tab = _DataTab(ctx, i18n)
                data_tab.render()

            # ---------------- presets ----------------
            with gr.Tab(i18n("tab_presets"), id="presets", elem_id="tab-presets") as presets_tab_item:
                presets_tab = _PresetsTab(ctx, i18n)
                presets_tab.render()

        ordered = [components[c.name] for c in all_controls]
        # What each control shows under its label when it has no error (the top bar's are short).
        plain_info: dict[str, Any] = {c.name: c.info for c in all_controls}
        plain_info.update(model_name_or_path=i18n("model_info"), quantization_bit=None, template=None)
        shown_errors = gr.State({})  # field -> message currently shown at the field (display only)
        preset_ref = gr.State(_preset_reference(initial_cfg))
        drawn = gr.State({})  # what the monitor last drew (display only, to skip redrawing)
        timer = gr.Timer(TIMER_SECONDS)

        # ---------------- handlers: form, plan, preview ----------------
        def values_of(raw: tuple) -> dict[str, Any]:
            return {c.name: v for c, v in zip(all_controls, raw)}

        def field_updates(errors: dict[str, str], shown: dict[str, str]) -> list[Any]:
            out = []
            for c in all_controls:
                now, before = errors.get(c.name), shown.get(c.name)
                if now == before:
                    out.append(gr.skip())
                elif now:
                    out.append(gr.update(info=f"⚠ {now}", elem_classes=["td-field-error"]))
                else:
                    out.append(gr.update(info=plain_info[c.name], elem_classes=[]))
            return out

        def refresh_plan(hw_key: str, ref: dict, shown: dict, *raw: Any) -> list[Any]:
            try:
                cfg = values_to_config(values_of(raw))
            except ConfigError as exc:
                errors = exc.by_field()
                box = "**Fix these before starting:**\n\n" + _errors_markdown(errors)
                return [gr.update(value=box, visible=True), gr.skip(), errors, *field_updates(errors, shown)]
            hw = hardware_for(hw_key, ctx.hardware)
            facts = ctx.datasets.facts(cfg)
            try:
                # The preset's effective batch on this hardware: its micro-batch × accumulation × these devices.
                reference = ref.get("effective_batch")
                plan = resolve_plan(cfg, facts.num_train, hw=hw, token_lengths=facts.token_lengths,
                                    reference_effective_batch=reference * max(1, hw.num_devices) if reference else None,
                                    reference_learning_rate=ref.get("learning_rate"))
                text = views.plan_markdown(plan, num_samples=facts.num_train, dataset_note=facts.note,
                                           hardware_label=_hw_label(hw))
            except Exception as exc:  # noqa: BLE001 - a plan problem is shown, never a traceback
                text = f"The plan could not be computed: {_short(_error_text(exc))}"
            return [gr.update(value="", visible=False), text, {}, *field_updates({}, shown)]

        plan_outputs = [errors_box, plan_box, shown_errors, *ordered]
        plan_inputs = [plan_hw, preset_ref, shown_errors, *ordered]
        gr.on([c.input for c in ordered] + [plan_hw.change], refresh_plan, plan_inputs, plan_outputs,
              trigger_mode="always_last", show_progress="hidden")
        demo.load(refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")

        def method_changed(choice: str) -> tuple[Any, Any]:
            ftype, qbit = METHODS.get(choice, METHODS["LoRA"])
            return ftype, qbit

        method.input(method_changed, [method], [components["finetuning_type"], components["quantization_bit"]]
                     ).then(refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")
        gr.on([components["finetuning_type"].input, components["quantization_bit"].input],
              lambda ftype, qbit: _method_of({"finetuning_type": ftype, "quantization_bit": qbit}),
              [components["finetuning_type"], components["quantization_bit"]], [method], show_progress="hidden")
        language.input(None, [language], [language], js=LANGUAGE_JS)
        # The page opens in the browser's language (Gradio's i18n picks it); show that in the top bar too.
        demo.load(None, None, [language],
                  js="() => ((navigator.language || '').toLowerCase().startsWith('zh') ? '中文' : 'English')")

        def preview(*raw: Any) -> list[Any]:
            try:
                cfg = values_to_config(values_of(raw))
            except ConfigError as exc:
                gr.Warning("Fix the fields marked in red: " + _short(str(exc), 200))
                return [gr.skip(), gr.skip(), gr.skip()]
            return [views.train_command(ctx.runs_root), cfg.to_yaml(), gr.update(open=True)]

        preview_btn.click(preview, ordered, [preview_cmd, preview_yaml, preview_acc])

        # ---------------- presets ----------------
        def load_preset(name: str, allow_unknown: bool, hw_key: str) -> list[Any]:
            from trainer.interop import presets as presets_mod
            try:
                meta, cfg, ignored = presets_mod.load_named_preset(name or "demo", allow_unknown=allow_unknown,
                                                                   runs_root=ctx.runs_root)
            except presets_mod.UnknownKeysError as exc:
                return [gr.skip()] * (len(ordered) + 2) + [
                    f"⚠ {_md_lines(str(exc))}", gr.update(visible=True)]
            except (ConfigError, OSError) as exc:
                gr.Warning(_short(_error_text(exc)))
                return [gr.skip()] * (len(ordered) + 2) + [f"⚠ {_md_lines(str(exc))}", gr.update(visible=False)]
            cfg = presets_mod.resolve_auto_micro_batch(meta, cfg, hardware_for(hw_key, ctx.hardware))
            values = config_to_values(cfg)
            note = _preset_note(meta)
            if ignored:
                note += "\n\nNot loaded: " + ", ".join(f"`{k}` ({v})" for k, v in ignored.items())
            return [values[c.name] for c in all_controls] + [
                _method_of(values), _preset_reference(cfg), note, gr.update(visible=False)]

        preset_load_outputs = [*ordered, method, preset_ref, preset_note, load_anyway_btn]
        load_preset_btn.click(lambda n, h: load_preset(n, False, h), [preset_select, plan_hw], preset_load_outputs
                              ).then(refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")
        load_anyway_btn.click(lambda n, h: load_preset(n, True, h), [preset_select, plan_hw], preset_load_outputs
                              ).then(refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")

        def save_preset(name: str, *raw: Any) -> list[Any]:
            from trainer.interop import presets as presets_mod
            try:
                cfg = values_to_config(values_of(raw))
                # Saving under an existing name of yours updates it: the name was typed on purpose.
                saved = presets_mod.save_user_preset(name, cfg, runs_root=ctx.runs_root, overwrite=True)
            except (ConfigError, OSError) as exc:
                gr.Warning(_short(_error_text(exc)))
                return [gr.skip(), gr.skip(), gr.skip()]
            msg = f"Saved preset '{saved.name}'."
            if saved.stripped:
                msg += " Secrets removed: " + ", ".join(saved.stripped)
            gr.Info(msg)
            choices = _preset_choices(ctx.runs_root)
            return [gr.update(choices=choices, value=saved.name), f"Preset: **{saved.name}**",
                    gr.update(choices=choices)]

        def reuse_config(run_id: str | None) -> list[Any]:
            """Load a run's config into the form, for a new run (a resume pointer is dropped)."""
            if not run_id:
                gr.Warning("Select a run first.")
                return [gr.skip()] * (len(preset_load_outputs) + 1)
            try:
                cfg = TrainConfig.from_yaml(ctx.jobs.run_dir(run_id) / "config.yaml")
                if cfg.resume_from_checkpoint:
                    cfg = cfg.replace(resume_from_checkpoint=None)
            except Exception as exc:  # noqa: BLE001 - ConfigError, unknown run: say it
                gr.Warning(_short(_error_text(exc)))
                return [gr.skip()] * (len(preset_load_outputs) + 1)
            values = config_to_values(cfg)
            note = f"Config of run **{html.escape(run_id)}** — change what you like and press Start for a new run."
            return [values[c.name] for c in all_controls] + [
                _method_of(values), _preset_reference(cfg), note, gr.update(visible=False), gr.Tabs(selected="train")]

        reuse_btn.click(reuse_config, [run_select], [*preset_load_outputs, tabs]).then(
            refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")

        save_preset_btn.click(save_preset, [save_name, *ordered], [preset_select, preset_note, presets_tab.select])

        # ---------------- start / abort / resume ----------------
        def start(request: gr.Request, hw_key: str, shown: dict, *raw: Any) -> list[Any]:
            skip_all = [gr.skip()] * (4 + len(ordered))
            try:
                cfg = values_to_config(values_of(raw))
            except ConfigError as exc:
                errors = exc.by_field()
                gr.Warning("Not started: fix the fields marked in red.")
                box = "**Fix these before starting:**\n\n" + _errors_markdown(errors)
                return [gr.skip(), gr.skip(), gr.update(value=box, visible=True), errors,
                        *field_updates(errors, shown)]
            try:
                run_id = ctx.jobs.submit(cfg, owner=_owner(request), name=cfg.run_name)
            except ConfigError as exc:
                errors = exc.by_field()
                gr.Warning("Not started: " + _short(str(exc), 200))
                box = "**Fix these before starting:**\n\n" + _errors_markdown(errors)
                return [gr.skip(), gr.skip(), gr.update(value=box, visible=True), errors,
                        *field_updates(errors, shown)]
            except Exception as exc:  # noqa: BLE001 - JobError, OSError: say it, keep the page alive
                gr.Warning("Not started: " + _short(_error_text(exc)))
                return skip_all
            gr.Info(f"Run {run_id} queued.")
            return [gr.update(choices=_run_choices(ctx), value=run_id), gr.Tabs(selected="monitor"),
                    gr.update(value="", visible=False), {}, *field_updates({}, shown)]

        start_btn.click(start, [plan_hw, shown_errors, *ordered],
                        [run_select, tabs, errors_box, shown_errors, *ordered])

        def run_action(action: Callable[..., Any], done: str) -> Callable[[str | None, gr.Request], None]:
            """A Monitor button acting on the selected run; `done` may name it with {run_id}."""
            def handler(run_id: str | None, request: gr.Request) -> None:
                if not run_id:
                    gr.Warning("Select a run first.")
                    return
                try:
                    action(run_id, owner=_owner_filter(request))
                    gr.Info(done.format(run_id=run_id))
                except Exception as exc:  # noqa: BLE001
                    gr.Warning(_short(_error_text(exc)))
            return handler

        abort = run_action(ctx.jobs.abort, "Abort requested for {run_id}: it stops at the next step and saves a "
                                           "checkpoint.")
        resume = run_action(ctx.jobs.resume, "Run {run_id} queued again: it resumes from its newest checkpoint.")

        abort_btn.click(abort, [run_select], None)
        resume_btn.click(resume, [run_select], None)

        # ---------------- monitor ----------------
        monitor_outputs = [status_html, progress_box, run_notes, loss_plot, memory_plot, lr_plot, throughput_plot,
                           alerts_box, log_box, abort_btn, resume_btn, run_select, run_config, drawn]

        def monitor(run_id: str | None, smooth: float, log: bool, last: dict, request: gr.Request) -> list[Any]:
            try:
                return _monitor_tick(ctx, run_id, smooth, log, last, _owner_filter(request))
            except Exception as exc:  # noqa: BLE001 - a tick must never pop an error every 1.5 s; log it once
                key = repr(exc)
                if (last or {}).get("error") != key:
                    print(f"tunedeck monitor: {exc!r}", file=sys.stderr)
                return [gr.skip()] * (len(monitor_outputs) - 1) + [{**(last or {}), "error": key}]

        timer.tick(monitor, [run_select, smoothing, log_scale, drawn], monitor_outputs, show_progress="hidden",
                   queue=False)
        gr.on([run_select.change, smoothing.release, log_scale.change], monitor,
              [run_select, smoothing, log_scale, drawn], monitor_outputs, show_progress="hidden")

        def page_load(request: gr.Request) -> Any:
            wanted = None
            try:
                wanted = request.query_params.get("run")
            except Exception:  # noqa: BLE001
                pass
            choices = _run_choices(ctx)
            ids = [value for _, value in choices]
            value = wanted if wanted in ids else _default_run(ctx)
            return gr.update(choices=choices, value=value)

        demo.load(page_load, None, [run_select])

        # ---------------- runs tab ----------------
        def list_runs(text: str, statuses: list[str]) -> list[Any]:
            infos = ctx.jobs.list_runs()
            rows = views.runs_table(infos, text, statuses or ())
            return [rows, gr.update(choices=[(views.run_choice_label(i), i.id) for i in infos]), gr.skip()]

        runs_outputs = [runs_table, runs_picked, compare_diff]
        gr.on([runs_refresh.click, runs_filter.submit, runs_status.change, demo.load, runs_tab_item.select], list_runs,
              [runs_filter, runs_status], runs_outputs, show_progress="hidden")
        start_btn.click(list_runs, [runs_filter, runs_status], runs_outputs, show_progress="hidden")

        def pick_row(picked: list[str], evt: gr.SelectData) -> Any:
            try:
                run_id = evt.row_value[0]
            except Exception:  # noqa: BLE001
                return gr.skip()
            picked = list(picked or [])
            if run_id in picked:
                picked.remove(run_id)
            else:
                picked.append(run_id)
            return picked

        runs_table.select(pick_row, [runs_picked], [runs_picked])

        def open_run(picked: list[str]) -> list[Any]:
            if not picked:
                gr.Warning("Select a run in the table first.")
                return [gr.skip(), gr.skip()]
            return [gr.update(choices=_run_choices(ctx), value=picked[-1]), gr.Tabs(selected="monitor")]

        open_btn.click(open_run, [runs_picked], [run_select, tabs])

        def compare(picked: list[str], smooth: float, log: bool) -> list[Any]:
            picked = list(picked or [])
            if len(picked) < 2:
                gr.Warning("Select two or more runs to compare.")
                return [gr.skip(), gr.skip()]
            named_series, configs = [], []
            for run_id in picked:
                try:
                    info = ctx.jobs.get(run_id)
                except Exception as exc:  # noqa: BLE001
                    gr.Warning(_short(_error_text(exc)))
                    continue
                label = f"{info.name} ({run_id[-6:]})"
                named_series.append((label, ctx.cache.poll(info.run_dir).series))
                try:
                    configs.append((label, TrainConfig.from_yaml(info.run_dir / "config.yaml")))
                except ConfigError:
                    configs.append((label, None))
            return [charts.compare_loss_figure(named_series, smooth, log), views.config_diff_markdown(configs)]

        compare_btn.click(compare, [runs_picked, smoothing, log_scale], [compare_plot, compare_diff])

        def delete(picked: list[str], text: str, statuses: list[str], request: gr.Request) -> list[Any]:
            if not picked:
                gr.Warning("Select the runs to delete in the table first.")
                return [gr.skip(), gr.skip(), gr.skip()]
            for run_id in list(picked or []):
                try:
                    info = ctx.jobs.get(run_id)
                    ctx.jobs.delete(run_id, owner=_owner_filter(request))
                    ctx.cache.forget(info.run_dir)
                    gr.Info(f"Deleted run {run_id}.")
                except Exception as exc:  # noqa: BLE001
                    gr.Warning(_short(_error_text(exc)))
            infos = ctx.jobs.list_runs()
            return [views.runs_table(infos, text, statuses or ()),
                    gr.update(choices=[(views.run_choice_label(i), i.id) for i in infos], value=[]), ""]

        delete_btn.click(delete, [runs_picked, runs_filter, runs_status], runs_outputs)

        # ---------------- data & presets tabs need the form ----------------
        data_tab.wire(components, ordered, all_controls, refresh_plan_chain=(refresh_plan, plan_inputs, plan_outputs))
        presets_tab.wire(components, ordered, all_controls, preset_select, preset_load_outputs, method,
                         refresh_plan_chain=(refresh_plan, plan_inputs, plan_outputs), demo=demo,
                         load_preset=load_preset, plan_hw=plan_hw, tabs=tabs, tab_item=presets_tab_item)
    demo.tunedeck_css = CSS  # type: ignore[attr-defined]
    return demo


# --- monitor tick -------------------------------------------------------------------------------

def _monitor_tick(ctx: Context, run_id: str | None, smooth: float, log: bool, last: dict,
                  owner: str | None) -> list[Any]:
    skip = gr.skip()
    last = dict(last or {})
    # The run list changes when a run starts or ends anywhere: refresh the dropdown only then.
    try:
        infos = ctx.jobs.list_runs()
    except Exception:  # noqa: BLE001 - a locked or missing db must not break the page
        infos = []
    list_key = [(i.id, i.status) for i in infos]
    select_update: Any = skip
    if list_key != last.get("runs"):
        last["runs"] = list_key
        select_update = gr.update(choices=[(views.run_choice_label(i), i.id) for i in infos])
    if not run_id:
        if last.get("run") is None and select_update is skip:
            return [skip] * 13 + [last]
        last["run"] = None
        empty = charts.RunSeries()
        return [views.status_badge(None, "no run selected: press Start, or pick one"), "", "",
                charts.loss_figure(empty), charts.memory_figure(empty), charts.lr_gradnorm_figure(empty),
                charts.throughput_figure(empty), "", "", gr.update(interactive=False), gr.update(interactive=False),
                select_update, "", last]
    info = next((i for i in infos if i.id == run_id), None)
    if info is None:
        try:
            info = ctx.jobs.get(run_id)
        except Exception as exc:  # noqa: BLE001
            return [views.status_badge("unknown", _short(_error_text(exc))), *([skip] * 12), last]
    cached = ctx.cache.poll(info.run_dir)
    series = cached.series
    data_key = (run_id, cached.version)
    loss_key = (run_id, cached.version, round(float(smooth), 3), bool(log))
    out: list[Any] = []
    status = info.status
    detail = info.reason or ""
    if info.abort_requested and status == "running":
        detail = "abort requested: stopping at the next step"
    status_key = (run_id, status, detail)
    out.append(views.status_badge(status, detail) if status_key != last.get("status") else skip)
    running = status in ("running", "queued")
    prog = charts.progress(series, now=time.time() if status == "running" else None)
    if prog.total is None and info.total_steps:
        prog.total = info.total_steps
    progress_key = (run_id, cached.version, status)
    out.append(views.progress_html(prog, status) if running or progress_key != last.get("progress") else skip)
    notes_key = (run_id, cached.version, status)
    out.append(views.run_summary_markdown(info, series) if notes_key != last.get("notes") else skip)
    out.append(charts.loss_figure(series, smooth, log) if loss_key != last.get("loss") else skip)
    data_changed = data_key != last.get("data")
    out.append(charts.memory_figure(series) if data_changed else skip)
    out.append(charts.lr_gradnorm_figure(series) if data_changed else skip)
    out.append(charts.throughput_figure(series) if data_changed else skip)
    if data_changed:
        max_grad = (series.plan or {}).get("max_grad_norm")
        out.append(alerts_mod.alerts_markdown(alerts_mod.health_alerts(series, max_grad)))
    else:
        out.append(skip)
    log_path = info.run_dir / "stdout.log"
    try:
        log_size = log_path.stat().st_size
    except OSError:
        log_size = -1
    log_key = (run_id, log_size)
    out.append(views.log_tail_text(tail_lines(log_path, LOG_TAIL_LINES)) if log_key != last.get("log") else skip)
    buttons_key = (run_id, status, owner)
    if buttons_key != last.get("buttons"):
        mine = owner is None or owner == info.owner
        out.append(gr.update(interactive=mine and status in ("running", "queued")))
        out.append(gr.update(interactive=mine and status in ("aborted", "interrupted", "failed")))
    else:
        out += [skip, skip]
    out.append(select_update)
    # The run's own config.yaml (resume rewrites it, so it follows the status too).
    config_key = (run_id, status)
    if config_key != last.get("config"):
        try:
            out.append((info.run_dir / "config.yaml").read_text(encoding="utf-8"))
        except OSError:
            out.append("")
    else:
        out.append(skip)
    last.update(run=run_id, data=data_key, loss=loss_key, status=status_key, progress=progress_key,
                notes=notes_key, log=log_key, buttons=buttons_key, config=config_key)
    out.append(last)
    return out


# --- small helpers --------------------------------------------------------------------------------

def _render_control(c: Control, value: Any, i18n: gr.I18n) -> gr.components.Component:
    common = dict(label=i18n(f"field.{c.name}"), info=c.info, elem_id=f"field-{c.name}", value=value,
                  min_width=200)
    if c.widget == "checkbox":
        return gr.Checkbox(**common)
    if c.widget == "dropdown":
        return gr.Dropdown(choices=list(c.choices), **common)
    if c.widget == "number":
        step = 1 if c.integer else _float_step(value)
        return gr.Number(precision=0 if c.integer else None, step=step, **common)
    return gr.Textbox(placeholder=c.placeholder, max_lines=1, **common)


def _float_step(value: Any) -> float:
    try:
        magnitude = abs(float(value))
    except (TypeError, ValueError):
        return 0.01
    if magnitude == 0:
        return 0.01
    import math
    return 10 ** math.floor(math.log10(magnitude))


def _method_of(values: dict[str, Any]) -> str:
    ftype = values.get("finetuning_type")
    qbit = str(values.get("quantization_bit") or "empty")
    if ftype == "full":
        return "Full"
    return {"4": "QLoRA (4-bit)", "8": "QLoRA (8-bit)"}.get(qbit, "LoRA")


def _model_choices() -> list[str]:
    names = ["demo"]
    try:
        from trainer.plan.catalog import list_models
        names += [m.name for m in list_models()]
    except ImportError:
        pass
    return names


def _template_choices() -> list[str]:
    try:
        from trainer.templates import template_names
        return template_names()
    except ImportError:
        return ["auto"]


def _preset_choices(runs_root: Path) -> list[tuple[str, str]]:
    try:
        from trainer.interop.presets import list_presets
        presets = list_presets(runs_root)
    except Exception:  # noqa: BLE001
        return [("demo", "demo")]
    out = []
    for p in presets:
        label = p.title if p.title and p.title != p.name else p.name
        tag = "" if p.builtin else " (yours)"
        out.append((f"{label}{tag}" + (" — broken file" if p.error else ""), p.name))
    return out


def _initial_preset(runs_root: Path) -> tuple[dict[str, Any], TrainConfig]:
    """The page opens on the demo preset, so Start works offline on a CPU."""
    try:
        from trainer.interop.presets import load_named_preset
        meta, cfg, _ = load_named_preset("demo", runs_root=runs_root)
        return {**meta, "name": "demo"}, cfg
    except Exception:  # noqa: BLE001 - fall back to the file itself
        from trainer.textio import parse_yaml
        path = Path(__file__).resolve().parents[1] / "presets" / "demo.yaml"
        data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        meta = data.get("preset") or {}
        return {**meta, "name": "demo"}, TrainConfig.from_dict(data, str(path))


def _preset_note(meta: dict[str, Any]) -> str:
    title = meta.get("title") or meta.get("name") or ""
    description = " ".join(str(meta.get("description") or "").split())
    return f"**{html.escape(str(title))}** — {html.escape(description)}" if title else ""


def _preset_reference(cfg: TrainConfig) -> dict[str, Any]:
    return {"effective_batch": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate}


def _errors_markdown(errors: dict[str, str]) -> str:
    from .form import field_errors_text
    return field_errors_text(errors)


def _md_lines(text: str) -> str:
    return "<br>".join(html.escape(line) for line in text.splitlines())


def _hw_label(hw: Hardware) -> str:
    if hw.device != "cuda":
        return "CPU"
    return f"{hw.gpu_name or 'GPU'} ({hw.gpu_total_gb:g} GB)" if hw.gpu_total_gb else (hw.gpu_name or "GPU")


def _run_choices(ctx: Context) -> list[tuple[str, str]]:
    try:
        return [(views.run_choice_label(i), i.id) for i in ctx.jobs.list_runs()]
    except Exception:  # noqa: BLE001
        return []


def _default_run(ctx: Context) -> str | None:
    """On a fresh page: the newest live run, else the newest run."""
    try:
        infos = ctx.jobs.list_runs()
    except Exception:  # noqa: BLE001
        return None
    live = [i for i in infos if i.status in ("running", "queued")]
    return (live or infos or [None])[0].id if (live or infos) else None


def _safe_upload_name(name: str) -> str:
    stem = re.sub(r"[^\w.\-]+", "_", Path(name).name).strip("._") or "upload"
    return stem[:100]


def _same_file_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    import filecmp
    return filecmp.cmp(a, b, shallow=False)


def save_upload(runs_root: Path, temp_path: str) -> Path:
    """Copy an uploaded file into ``<runs root>/uploads/`` (the temp copy Gradio made may vanish)."""
    src = Path(temp_path)
    if src.stat().st_size > MAX_UPLOAD_BYTES:
        raise ValueError(f"{src.name} is larger than {MAX_UPLOAD_BYTES // 1024**3} GB")
    dest_dir = runs_root / UPLOADS_SUBDIR
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


# Imported late: the tab classes use the helpers above.
from .tabs import _DataTab, _PresetsTab  # noqa: E402
