"""The page: `build(runs_root) -> gr.Blocks` (the context, the top bar, the tabs) and its launch options.

The page keeps nothing that matters: the run registry (runs.db) and the run directories are the truth.
Each tab (webui/tabs/) renders its components into the `UI` registry, then wires its handlers; tabs are
all rendered before any is wired, so a handler may read or update another tab's components by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from trainer.config import TrainConfig
from trainer.interop.presets import load_named_preset
from trainer.jobs.manager import JobManager
from trainer.plan.hardware import detect_light
from trainer.run.layout import default_runs_root
from trainer.plan.catalog import list_models
from trainer.templates import template_names

from .components import UI, Reply, initial_shown
from .auth import open_notice
from .context import Context, acting_as
from .form import EMPTY, METHODS, config_to_values, controls, method_of
from .i18n import LANGUAGES, t, translations
from .space import storage_warning
from .tabs import TABS
from .tabs.data import MAX_UPLOAD_BYTES

STATIC = Path(__file__).resolve().parent / "static"
QUANT_KEYS = {EMPTY: "quant.none", "4": "quant.4", "8": "quant.8"}
METHOD_KEYS = {"LoRA": "methods.lora", "QLoRA (4-bit)": "methods.qlora4", "QLoRA (8-bit)": "methods.qlora8",
               "Full": "methods.full"}


@dataclass
class InitialForm:
    """What the form holds when the page opens: the demo preset, so Start works offline on a CPU."""

    meta: dict[str, Any]
    cfg: TrainConfig
    values: dict[str, Any]
    shown: dict[str, Any]

    @classmethod
    def demo(cls, runs_root: Path) -> "InitialForm":
        meta, cfg, _ = load_named_preset("demo", runs_root=runs_root)
        values = config_to_values(cfg)
        return cls({**meta, "name": "demo"}, cfg, values, initial_shown(values))


def css() -> str:
    return (STATIC / "style.css").read_text(encoding="utf-8") + toast_titles_css()


def toast_titles_css() -> str:
    """Gradio titles its toasts with their English type ("Warning", "Info") whatever the locale: in Chinese
    (language.js marks the page) the title's text is hidden and the message table's word shown instead."""
    title = '[data-td-lang="zh"] .toast-body.{kind} .toast-title-row > span:first-child'
    rules = []
    for kind, key in (("warning", "level.warning"), ("info", "level.info"), ("error", "level.error"),
                      ("success", "toast_success")):
        selector = "html" + title.format(kind=kind)
        rules.append(f"{selector} {{ font-size: 0; }}\n{selector} > * {{ font-size: var(--text-md); }}\n"
                     f"{selector}::before {{ content: {json.dumps(t('zh', key), ensure_ascii=False)}; font-size: var(--text-md); }}")
    return "\n" + "\n".join(rules) + "\n"


def language_js() -> str:
    return (STATIC / "language.js").read_text(encoding="utf-8").replace("LANGUAGE_CODES", json.dumps(LANGUAGES))


def i18n_for_launch() -> gr.I18n:
    return gr.I18n(**translations())


def launch_options() -> dict[str, Any]:
    """What `demo.launch(...)` needs besides the address: the page's words and its style."""
    return dict(i18n=i18n_for_launch(), css=css(), show_error=False, footer_links=["settings"], max_file_size=MAX_UPLOAD_BYTES)


def build(runs_root: str | Path | None = None, *, jobs: Any = None, tokens: Any = None) -> gr.Blocks:
    """The whole page, bound to one runs root (its runs.db, run directories and user presets); `tokens`: the
    API's TokenStore, so a token revoked on the page is refused by the API at once."""
    root = Path(runs_root if runs_root is not None else default_runs_root()).expanduser().resolve()
    ctx = Context(runs_root=root, jobs=jobs or JobManager(root), hardware=detect_light(), tokens=tokens)
    ui = UI(ctx, gr.I18n(**translations()))
    ui.initial = InitialForm.demo(root)
    with gr.Blocks(title="tunedeck", analytics_enabled=False) as demo:
        demo.tunedeck_context = ctx  # type: ignore[attr-defined]  # for whoever built it: its job manager
        ui.demo = demo
        _render_top_bar(ui)
        ui.add("page.notice", gr.Markdown("", visible=False, elem_id="td-notice", elem_classes=["td-notice"]))
        with ui.add("page.tabs", gr.Tabs(elem_id="td-tabs")):
            for tab in TABS:
                with ui.add(f"tab.{tab.ID}", gr.Tab(ui.i18n(tab.TITLE), id=tab.ID, elem_id=f"tab-{tab.ID}")):
                    tab.render(ui)
        for tab in TABS:
            tab.wire(ui)
        ui["top.language"].input(None, [ui["top.language"]], [ui["top.language"]], js=language_js())
        # The page opens in the language chosen last in this browser, else the browser's own; the top bar
        # shows it, and its change re-renders what the server wrote in words.
        opened = demo.load(None, None, [ui["top.language"]], js=language_js())
        # The notice follows the language once it is known (on the page's own load it was still English).
        ui.then(opened, notices, [], ["page.notice"], show_progress="hidden")
        ui.on(ui["top.language"].change, notices, [], ["page.notice"], show_progress="hidden")
        ui.on(ui["top.language"].change, top_bar_words, ["top.method", "quantization_bit"],
              ["top.method", "quantization_bit"], show_progress="hidden")
    return demo


def quantization_choices(lang: str | None = None) -> list[tuple[str, str]]:
    quant = next(c for c in controls() if c.name == "quantization_bit")
    return [(t(lang, QUANT_KEYS[c]) if c in QUANT_KEYS else f"{c}-bit", c) for c in quant.choices]


def method_choices(lang: str | None = None) -> list[tuple[str, str]]:
    return [(t(lang, METHOD_KEYS[m]), m) for m in METHODS]


def top_bar_words(ctx: Context, v: dict, lang: str | None = None) -> Reply:
    """The top bar's choices in the page's language (the value is sent again so its shown label follows)."""
    return {"top.method": gr.update(choices=method_choices(lang), value=v.get("top.method")),
            "quantization_bit": gr.update(choices=quantization_choices(lang), value=v.get("quantization_bit"))}


def notices(ctx: Context, v: dict, user: str | None = None, lang: str | None = None) -> Reply:
    """At the top of the page: that it is open to anyone who reaches it (no sign-in), and, on a Space, that
    its runs vanish on a restart (no persistent storage)."""
    lines = []
    if open_notice(acting_as(user)):
        lines.append(t(lang, "open_notice"))
    if storage_warning(ctx.runs_root):
        lines.append(t(lang, "storage_warning"))
    return {"page.notice": gr.update(value="\n\n".join(f"⚠ {line}" for line in lines), visible=bool(lines))}


def _render_top_bar(ui: UI) -> None:
    i18n, values = ui.i18n, ui.initial.values
    with gr.Row(equal_height=True, elem_id="td-topbar"):
        gr.Markdown("# tunedeck", elem_id="td-header")
        ui.add("model_name_or_path", gr.Dropdown(
            choices=["demo"] + [m.name for m in list_models()], value=values["model_name_or_path"],
            allow_custom_value=True, label=i18n("model"), info=i18n("model_info"), elem_id="model-input", scale=3))
        ui.add("top.method", gr.Dropdown(choices=method_choices(), value=method_of(values), label=i18n("method"),
                                         elem_id="method-input", scale=1))
        ui.add("quantization_bit", gr.Dropdown(
            choices=quantization_choices(), value=values["quantization_bit"],
            label=i18n("quantization"), elem_id="field-quantization_bit", scale=1))
        ui.add("template", gr.Dropdown(choices=template_names(), value=values["template"], allow_custom_value=True,
                                       label=i18n("template"), elem_id="field-template", scale=1))
        ui.add("top.language", gr.Dropdown(choices=list(LANGUAGES), value="English", label=i18n("language"),
                                           elem_id="language", scale=1))
