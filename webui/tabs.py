"""The Data and Presets tabs: thin gradio wiring over trainer.data / webui.data_view and trainer.presets."""

from __future__ import annotations

import html
import importlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from trainer.config import ConfigError, TrainConfig

from .form import Control, config_to_values, values_to_config


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _optional(module: str) -> Any:
    """Another engineer's module, or None while it has not landed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


class _DataTab:
    """Preview with label masks and the token-length histogram, for the form's dataset or an uploaded file."""

    def __init__(self, ctx: Any, i18n: gr.I18n):
        self.ctx = ctx
        self.i18n = i18n

    def render(self) -> None:
        with gr.Row(equal_height=True):
            self.upload = gr.File(label=self.i18n("upload_dataset"), file_types=[".jsonl", ".json", ".csv", ".parquet"],
                                  elem_id="dataset-upload", scale=2, height=120)
            with gr.Column(scale=3):
                self.source = gr.Markdown("", elem_id="dataset-source")
                with gr.Row(equal_height=True):
                    self.page = gr.Number(value=1, precision=0, minimum=1, label=self.i18n("page"), scale=1,
                                          elem_id="dataset-page")
                    self.preview_btn = gr.Button(self.i18n("dataset_preview"), variant="primary", scale=2,
                                                 elem_id="dataset-preview-btn")
        self.summary = gr.Markdown("", elem_id="dataset-summary")
        with gr.Row():
            self.histogram = gr.Plot(elem_id="length-histogram", show_label=False)
        self.rows = gr.HTML("", elem_id="dataset-rows")

    def wire(self, components: dict[str, Any], ordered: list[Any], all_controls: list[Control],
             refresh_plan_chain: tuple) -> None:
        ctx = self.ctx
        refresh_plan, plan_inputs, plan_outputs = refresh_plan_chain

        def preview(page: float | None, *raw: Any) -> list[Any]:
            values = {c.name: v for c, v in zip(all_controls, raw)}
            try:
                cfg = values_to_config(values)
            except ConfigError as exc:
                return [f"⚠ Fix the form first: {html.escape(_short(str(exc)))}", gr.skip(), ""]
            return self._preview(cfg, int(page or 1))

        # The preview tokenizes the rows: their lengths then feed the run plan (padding waste, packing).
        self.preview_btn.click(preview, [self.page, *ordered], [self.summary, self.histogram, self.rows]).then(
            refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")

        def uploaded(path: str | None) -> list[Any]:
            if not path:
                return [gr.skip(), gr.skip()]
            from .app import save_upload
            try:
                saved = save_upload(ctx.runs_root, path)
            except (OSError, ValueError) as exc:
                gr.Warning(f"Upload failed: {_short(str(exc))}")
                return [gr.skip(), gr.skip()]
            gr.Info(f"Saved as {saved}; the form's dataset now points at it.")
            return [str(saved), f"Dataset: `{saved}`"]

        self.upload.upload(uploaded, [self.upload], [components["dataset"], self.source]).then(
            refresh_plan, plan_inputs, plan_outputs, show_progress="hidden").then(
            preview, [self.page, *ordered], [self.summary, self.histogram, self.rows])
        components["dataset"].change(lambda d: f"Dataset: `{d}`", [components["dataset"]], [self.source],
                                     show_progress="hidden")

    def _preview(self, cfg: TrainConfig, page: int) -> list[Any]:
        """Summary (format, rows, problems), histogram and rendered rows, from the data engineer's helpers."""
        data_view = _optional("webui.data_view")
        if data_view is not None and hasattr(data_view, "dataset_view"):
            try:
                view = data_view.dataset_view(cfg, page=page, runs_root=self.ctx.runs_root)
            except Exception as exc:  # noqa: BLE001 - DataError and friends: the message, not a traceback
                return [f"⚠ {html.escape(_short(str(exc), 1200))}", gr.skip(), ""]
            lengths = getattr(view, "lengths", None)
            if lengths:
                self.ctx.datasets.set_lengths(cfg, list(lengths))
            return [getattr(view, "summary_markdown", ""), getattr(view, "histogram", None),
                    getattr(view, "rows_html", "")]
        try:
            from trainer.datasets import load_examples
            loaded = load_examples(cfg)
        except Exception as exc:  # noqa: BLE001
            return [f"⚠ {html.escape(_short(str(exc), 1200))}", gr.skip(), ""]
        issues = getattr(loaded, "issues", []) or []
        summary = (f"**{html.escape(str(loaded.source))}** — {loaded.format} format, {len(loaded.train)} training rows, "
                   f"{len(loaded.eval)} validation rows, {len(issues)} problem row(s).")
        rows = "".join(f"<pre style='white-space:pre-wrap'>{html.escape(str(ex))[:2000]}</pre>"
                       for ex in loaded.train[(page - 1) * 5:page * 5])
        return [summary, gr.skip(), rows]


class _PresetsTab:
    """List, load, save, rename, delete, download and upload presets; LLaMA-Factory import and export."""

    def __init__(self, ctx: Any, i18n: gr.I18n):
        self.ctx = ctx
        self.i18n = i18n

    def render(self) -> None:
        with gr.Row(equal_height=True):
            self.select = gr.Dropdown(choices=[], label=self.i18n("preset"), elem_id="presets-select", scale=3)
            self.new_name = gr.Textbox(label=self.i18n("new_name"), scale=2, elem_id="presets-new-name")
            self.rename_btn = gr.Button(self.i18n("rename"), scale=1, elem_id="presets-rename-btn")
            self.delete_btn = gr.Button(self.i18n("delete"), variant="stop", scale=1, elem_id="presets-delete-btn")
            self.load_btn = gr.Button(self.i18n("load_preset"), variant="primary", scale=1, elem_id="presets-load-btn")
        self.details = gr.Markdown("", elem_id="presets-details")
        with gr.Row(equal_height=True):
            self.download_btn = gr.Button(self.i18n("download"), elem_id="presets-download-btn")
            self.export_lf_btn = gr.Button(self.i18n("export_lf"), elem_id="presets-export-lf-btn")
            self.export_script_btn = gr.Button(self.i18n("export_script"), elem_id="presets-export-script-btn")
        self.download_file = gr.File(label="File", interactive=False, elem_id="presets-download-file", height=60)
        with gr.Row():
            self.upload = gr.File(label=self.i18n("upload_preset"), file_types=[".yaml", ".yml"],
                                  elem_id="presets-upload", height=120)
            self.import_lf = gr.File(label=self.i18n("import_lf"), file_types=[".yaml", ".yml"],
                                     elem_id="presets-import-lf", height=120)
        self.messages = gr.Markdown("", elem_id="presets-messages")
        self.upload_anyway_btn = gr.Button("Load the rest, ignoring the unknown keys", visible=False, variant="stop",
                                           elem_id="presets-upload-anyway-btn")

    def wire(self, components: dict[str, Any], ordered: list[Any], all_controls: list[Control],
             train_preset_select: Any, preset_load_outputs: list[Any], method: Any,
             refresh_plan_chain: tuple, *, demo: Any, load_preset: Callable[..., list[Any]], plan_hw: Any,
             tabs: Any, tab_item: Any) -> None:
        ctx = self.ctx
        refresh_plan, plan_inputs, plan_outputs = refresh_plan_chain
        from .app import _method_of, _preset_choices, _preset_note, _preset_reference

        keep = object()

        def choices_update(value: Any = keep) -> list[Any]:
            """New choices for both preset dropdowns; the presets tab's value only when given."""
            choices = _preset_choices(ctx.runs_root)
            mine = gr.update(choices=choices) if value is keep else gr.update(choices=choices, value=value)
            return [mine, gr.update(choices=choices)]

        def details(name: str | None) -> str:
            if not name:
                return ""
            from trainer.interop import presets as presets_mod
            try:
                info = presets_mod.find_preset(name, ctx.runs_root)
            except ConfigError as exc:
                return f"⚠ {html.escape(_short(str(exc)))}"
            kind = "built-in (read-only)" if info.builtin else f"yours, in `{info.path}`"
            text = f"**{html.escape(info.title)}** — {kind}\n\n{html.escape(' '.join(info.description.split()))}"
            if info.error:
                text += f"\n\n⚠ {html.escape(info.error)}"
            return text

        self.select.change(details, [self.select], [self.details], show_progress="hidden")

        def refresh_choices() -> list[Any]:
            return choices_update()

        gr.on([train_preset_select.focus, demo.load, tab_item.select], refresh_choices, None, [self.select, train_preset_select],
              show_progress="hidden")

        def load_into_form(name: str | None, hw_key: str) -> list[Any]:
            if not name:
                gr.Warning("Choose a preset first.")
                return [gr.skip()] * len(preset_load_outputs)
            return load_preset(name, False, hw_key)

        self.load_btn.click(load_into_form, [self.select, plan_hw], preset_load_outputs).then(
            lambda name: [gr.update(value=name), gr.Tabs(selected="train")], [self.select],
            [train_preset_select, tabs]).then(refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")

        def rename(old: str, new: str) -> list[Any]:
            from trainer.interop import presets as presets_mod
            try:
                presets_mod.rename_user_preset(old, new, ctx.runs_root)
            except (ConfigError, OSError) as exc:
                gr.Warning(_short(str(exc)))
                return [gr.skip(), gr.skip()]
            gr.Info(f"Renamed '{old}' to '{new.strip()}'.")
            return choices_update(presets_mod.validate_name(new))

        self.rename_btn.click(rename, [self.select, self.new_name], [self.select, train_preset_select])

        def delete(name: str) -> list[Any]:
            from trainer.interop import presets as presets_mod
            try:
                presets_mod.delete_user_preset(name, ctx.runs_root)
            except (ConfigError, OSError) as exc:
                gr.Warning(_short(str(exc)))
                return [gr.skip(), gr.skip()]
            gr.Info(f"Deleted preset '{name}'.")
            return choices_update(None)

        self.delete_btn.click(delete, [self.select], [self.select, train_preset_select])

        def download(name: str) -> Any:
            from trainer.interop import presets as presets_mod
            try:
                info = presets_mod.find_preset(name, ctx.runs_root)
            except ConfigError as exc:
                gr.Warning(_short(str(exc)))
                return gr.skip()
            # A copy in a temp folder: the page serves no file from the runs root itself.
            out = Path(tempfile.mkdtemp(prefix="tunedeck-preset-")) / info.path.name
            shutil.copyfile(info.path, out)
            return str(out)

        self.download_btn.click(download, [self.select], [self.download_file])

        def export_with(kind: str) -> Callable[..., Any]:
            def run(*raw: Any) -> Any:
                values = {c.name: v for c, v in zip(all_controls, raw)}
                try:
                    cfg = values_to_config(values)
                except ConfigError as exc:
                    gr.Warning("Fix the form first: " + _short(str(exc), 200))
                    return gr.skip()
                exporter = _exporter(kind)
                if exporter is None:
                    gr.Warning("This export is not available in this version.")
                    return gr.skip()
                try:
                    text = exporter(cfg)
                except Exception as exc:  # noqa: BLE001
                    gr.Warning(_short(str(exc)))
                    return gr.skip()
                suffix = ".py" if kind == "script" else ".yaml"
                out = Path(tempfile.mkdtemp(prefix="tunedeck-export-")) / f"{cfg.display_name}-{kind}{suffix}"
                out.write_text(text if isinstance(text, str) else str(text), encoding="utf-8")
                return str(out)
            return run

        self.export_lf_btn.click(export_with("llamafactory"), ordered, [self.download_file])
        self.export_script_btn.click(export_with("script"), ordered, [self.download_file])

        n_controls = len(ordered)

        def apply(cfg: TrainConfig, meta: dict[str, Any], ignored: dict[str, str], note_prefix: str) -> list[Any]:
            values = config_to_values(cfg)
            note = note_prefix + _preset_note(meta)
            if ignored:
                note += "\n\nNot loaded: " + ", ".join(f"`{html.escape(k)}` ({html.escape(v)})" for k, v in ignored.items())
            return [values[c.name] for c in all_controls] + [_method_of(values), _preset_reference(cfg), note,
                                                            gr.update(visible=False), note]

        def uploaded_preset(path: str | None, allow_unknown: bool = False) -> list[Any]:
            """Load an uploaded preset into the form. Unknown keys are named first and ignored only on request."""
            if not path:
                return [gr.skip()] * (n_controls + 6)
            from trainer.interop import presets as presets_mod
            try:
                data = Path(path).read_bytes()
                meta, cfg, ignored = presets_mod.preset_from_bytes(data, Path(path).name, allow_unknown=allow_unknown)
            except presets_mod.UnknownKeysError as exc:
                msg = "⚠ " + "<br>".join(html.escape(line) for line in str(exc).splitlines())
                return [gr.skip()] * (n_controls + 4) + [msg, gr.update(visible=True)]
            except (ConfigError, OSError) as exc:
                msg = f"⚠ {html.escape(_short(str(exc), 1200))}"
                return [gr.skip()] * (n_controls + 4) + [msg, gr.update(visible=False)]
            return apply(cfg, meta, ignored, "Loaded from the uploaded file (save it to keep it). ") + [
                gr.update(visible=False)]

        def imported_lf(path: str | None) -> list[Any]:
            if not path:
                return [gr.skip()] * (n_controls + 5)
            importer = _importer()
            if importer is None:
                return [gr.skip()] * (n_controls + 4) + ["⚠ LLaMA-Factory import is not available in this version."]
            try:
                result = importer(path)
            except Exception as exc:  # noqa: BLE001 - ConfigError, DataError, OSError: say it
                return [gr.skip()] * (n_controls + 4) + [f"⚠ {html.escape(_short(str(exc), 1200))}"]
            cfg, unmapped, notes = _unpack_import(result)
            out = apply(cfg, {"title": f"Imported from {Path(path).name}"}, unmapped,
                        "Imported from a LLaMA-Factory YAML (save it as a preset to keep it). ")
            if notes:
                out[-1] += "\n\n" + "\n".join(f"- {html.escape(n)}" for n in notes)
            return out

        load_outputs = [*preset_load_outputs, self.messages]
        upload_outputs = [*load_outputs, self.upload_anyway_btn]
        self.upload.upload(uploaded_preset, [self.upload], upload_outputs).then(
            refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")
        self.upload_anyway_btn.click(lambda path: uploaded_preset(path, True), [self.upload], upload_outputs).then(
            refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")
        self.import_lf.upload(imported_lf, [self.import_lf], load_outputs).then(
            refresh_plan, plan_inputs, plan_outputs, show_progress="hidden")


def _exporter(kind: str) -> Callable[[TrainConfig], str] | None:
    """The presets engineer's exports: LLaMA-Factory YAML, or the plain transformers + peft + trl script."""
    try:
        if kind == "llamafactory":
            from trainer.interop.llamafactory import to_llamafactory_yaml
            return to_llamafactory_yaml
        from trainer.interop.export_script import export_script
        return export_script
    except ImportError:
        return None


def _importer() -> Callable[[str], Any] | None:
    try:
        from trainer.interop.llamafactory import import_llamafactory_file
        return import_llamafactory_file
    except ImportError:
        return None


def _unpack_import(result: Any) -> tuple[TrainConfig, dict[str, str], list[str]]:
    """ImportResult -> (config, unmapped keys with why, notes)."""
    return result.config, dict(result.unmapped or {}), list(getattr(result, "notes", []) or [])
