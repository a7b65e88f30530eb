"""The Runs tab: every run of the registry, filtered; open one in the Monitor, compare several, delete.

Picking (a click on a row) serves Open and Compare and is highlighted in the table; Delete has its own
selection, highlighted apart, and asks before it deletes: it names each run and says which finished (its
trained adapter goes with it), and can be cancelled.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd

from trainer.config import ConfigError
from trainer.engine.evaluate import read_evaluations
from trainer.jobs.registry import JobError

from .. import charts, tokens_panel, views
from ..after_views import evaluation_markdown
from ..auth import LOCAL
from ..components import INFO, UI, WARNING, Reply
from ..context import Context, may_change, require_change
from ..i18n import t

ID = "runs"
TITLE = "tab_runs"
STATUSES = ["queued", "running", "finished", "aborted", "failed", "interrupted"]
LIST_INPUTS = ["runs.filter", "runs.status", "runs.picked", "runs.delete_picked"]
LIST_OUTPUTS = ["runs.table", "runs.picked", "runs.delete_picked", "runs.status"]
CONFIRM_OUTPUTS = ["runs.confirm_box", "runs.confirm_text"]
PICKED_STYLE = "background-color: #dbeafe"
DELETE_STYLE = "background-color: #fee2e2; text-decoration: line-through"


def _picked(v: dict[str, Any], name: str = "runs.picked") -> list[str]:
    return list(v.get(name) or [])


def table_value(rows: list[list[Any]], picked: list[str], to_delete: list[str], lang: str | None) -> Any:
    """The table with its headers in the page's language; picked rows blue, rows to delete red."""
    frame = pd.DataFrame(rows, columns=views.runs_table_headers(lang))

    def style(row: pd.Series) -> list[str]:
        run_id = row.iloc[0]
        colour = DELETE_STYLE if run_id in to_delete else PICKED_STYLE if run_id in picked else ""
        return [colour] * len(row)
    return frame.style.apply(style, axis=1)


def list_runs(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The table, filtered by the text and the statuses; both pickers' choices (what was picked stays)."""
    try:
        infos = ctx.jobs.list_runs()
    except JobError as exc:  # a damaged runs.db or a full disk: say so, not an empty table
        return {WARNING: t(lang, "runs_unreadable", detail=str(exc))}
    rows = views.runs_table(infos, v.get("runs.filter") or "", v.get("runs.status") or (), lang)
    choices = [(views.run_choice_label(i, lang), i.id) for i in infos]
    known = {i.id for i in infos}
    picked = [r for r in _picked(v) if r in known]
    to_delete = [r for r in _picked(v, "runs.delete_picked") if r in known]
    return {"runs.table": table_value(rows, picked, to_delete, lang),
            "runs.picked": gr.update(choices=choices, value=picked),
            "runs.delete_picked": gr.update(choices=choices, value=to_delete),
            "runs.status": gr.update(choices=[(views.status_word(s, lang), s) for s in STATUSES])}


def pick_row(ctx: Context, v: dict[str, Any], row: Any = None, lang: str | None = None) -> Reply:
    """A click on a row adds its run to the picked ones (Open, Compare), or takes it out again."""
    if not row:
        return {}
    run_id = row[0]
    picked = _picked(v)
    if run_id in picked:
        picked.remove(run_id)
    else:
        picked.append(run_id)
    return list_runs(ctx, {**v, "runs.picked": picked}, lang)


def open_run(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    picked = _picked(v)
    if not picked:
        return {WARNING: t(lang, "pick_in_table")}
    return {"monitor.run_select": gr.update(choices=ctx.run_choices(), value=picked[-1]),
            "page.tabs": gr.Tabs(selected="monitor")}


def compare(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """Overlaid smoothed loss of the picked runs and the fields on which their configs differ."""
    picked = _picked(v)
    if len(picked) < 2:
        return {WARNING: t(lang, "pick_two")}
    named_series, configs, problems = [], [], []
    for run_id in picked:
        try:
            info = ctx.jobs.get(run_id)
        except Exception as exc:  # noqa: BLE001 - deleted meanwhile: compare the others
            problems.append(views.short(views.error_text(exc, lang)))
            continue
        label = f"{info.name} ({run_id[-6:]})"
        named_series.append((label, ctx.cache.poll(info.run_dir).series))
        try:
            configs.append((label, ctx.jobs.read_config(run_id)))
        except (ConfigError, OSError):
            configs.append((label, None))
    reply: Reply = {"runs.compare_plot": charts.compare_loss_figure(named_series, float(v.get("monitor.smoothing") or 0),
                                                                    bool(v.get("monitor.log_scale")), lang=lang),
                    "runs.compare_diff": views.config_diff_markdown(configs, lang)}
    if problems:
        reply[WARNING] = "; ".join(problems)
    return reply


def show_evaluations(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The stored evaluations (loss and perplexity beside the base model's) of the picked runs."""
    parts = []
    for run_id in _picked(v):
        try:
            info = ctx.jobs.get(run_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile: nothing to show for it
            continue
        parts.append(evaluation_markdown(read_evaluations(info.run_dir), f"**{info.name}** ({run_id}): ", lang))
    return {"runs.evaluation": "\n\n".join(parts)}


def compare_cleared(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The page opened or its language changed: the comparison's empty chart in the page's language."""
    return {"runs.compare_plot": charts.compare_loss_figure([], lang=lang), "runs.compare_diff": ""}


def ask_delete(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Delete asks first: each run by name and status, a finished one flagged (its adapter goes too). A run
    the user may not delete is refused here, before the question (asking, then refusing, wastes a yes)."""
    to_delete = _picked(v, "runs.delete_picked")
    if not to_delete:
        return {WARNING: t(lang, "pick_delete"), "runs.confirm_box": gr.update(visible=False)}
    infos = []
    for run_id in to_delete:
        try:
            infos.append(ctx.jobs.get(run_id))
        except Exception:  # noqa: BLE001 - deleted meanwhile: nothing of it to lose
            continue
    refused = [t(lang, "delete_local_run" if i.owner == LOCAL else "delete_not_yours",
                 run=html.escape(f"'{i.name}' ({i.id})", quote=False), owner=html.escape(i.owner, quote=False))
               for i in infos if not may_change(user, i.owner)]
    if refused:
        return {WARNING: " ".join(refused), "runs.confirm_box": gr.update(visible=False)}
    lines = []
    for info in infos:
        run_id = info.id
        line = f"- **{html.escape(info.name)}** (`{html.escape(run_id)}`) — {views.status_word(info.status, lang)}"
        if info.status == "finished":
            line += f" · ⚠ **{t(lang, 'finished_warning')}**"
        lines.append(line)
    text = t(lang, "confirm_delete_text", count=len(lines)) + "\n\n" + "\n".join(lines)
    return {"runs.confirm_box": gr.update(visible=True), "runs.confirm_text": text}


def cancel_delete(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    return {"runs.confirm_box": gr.update(visible=False), INFO: t(lang, "delete_cancelled")}


def delete(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """The confirmed deletion of the runs chosen to delete (never the ones picked to compare)."""
    to_delete = _picked(v, "runs.delete_picked")
    if not to_delete:
        return {WARNING: t(lang, "pick_delete"), "runs.confirm_box": gr.update(visible=False)}
    deleted, problems = [], []
    for run_id in to_delete:
        try:
            info = ctx.jobs.get(run_id)
            require_change(user, info.owner, "delete")
            ctx.jobs.delete(run_id)
            ctx.cache.forget(info.run_dir)
            deleted.append(run_id)
        except Exception as exc:  # noqa: BLE001 - running, not yours, unknown: say it, delete the others
            problems.append(views.short(views.error_text(exc, lang)))
    reply = list_runs(ctx, {**v, "runs.delete_picked": []}, lang)
    reply.update({"runs.compare_diff": "", "runs.confirm_box": gr.update(visible=False)})
    if deleted:
        reply[INFO] = t(lang, "deleted", runs=", ".join(deleted))
    if problems:
        reply[WARNING] = "; ".join(problems)
    return reply


def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("runs.filter", gr.Textbox(label=i18n("filter"), placeholder=i18n("filter_placeholder"),
                                         elem_id="runs-filter", scale=3))
        ui.add("runs.status", gr.CheckboxGroup(choices=STATUSES, label=i18n("status_filter"), elem_id="runs-status",
                                               scale=4))
        ui.add("runs.refresh_btn", gr.Button(i18n("refresh"), elem_id="runs-refresh", scale=1))
    ui.add("runs.table", gr.Dataframe(headers=views.RUNS_TABLE_HEADERS, value=[], interactive=False,
                                      elem_id="runs-table", wrap=False, max_height=520))
    with gr.Row(equal_height=True):
        ui.add("runs.picked", gr.Dropdown(choices=[], multiselect=True, label=i18n("selected_runs"),
                                          elem_id="runs-picked", scale=4))
        ui.add("runs.open_btn", gr.Button(i18n("open_monitor"), elem_id="open-run-btn", scale=1))
        ui.add("runs.compare_btn", gr.Button(i18n("compare"), elem_id="compare-btn", scale=1))
    with gr.Row(equal_height=True):
        ui.add("runs.delete_picked", gr.Dropdown(choices=[], multiselect=True, label=i18n("delete_runs"),
                                                 elem_id="runs-delete-picked", scale=4))
        ui.add("runs.delete_btn", gr.Button(i18n("delete"), variant="stop", elem_id="delete-run-btn", scale=1))
    with ui.add("runs.confirm_box", gr.Group(visible=False, elem_id="delete-confirm")):
        ui.add("runs.confirm_text", gr.Markdown("", elem_id="delete-confirm-text"))
        with gr.Row():
            ui.add("runs.confirm_btn", gr.Button(i18n("confirm_delete"), variant="stop", elem_id="delete-confirm-btn"))
            ui.add("runs.cancel_btn", gr.Button(i18n("cancel"), elem_id="delete-cancel-btn"))
    ui.add("runs.evaluation", gr.Markdown("", elem_id="runs-evaluation"))
    ui.add("runs.compare_plot", gr.Plot(charts.compare_loss_figure([]), elem_id="compare-chart", show_label=False))
    ui.add("runs.compare_diff", gr.Markdown("", elem_id="compare-diff"))
    tokens_panel.render(ui)


def wire(ui: UI) -> None:
    quiet = dict(show_progress="hidden")
    ui.on([ui["runs.refresh_btn"].click, ui["runs.filter"].submit, ui["runs.status"].input, ui.demo.load,
           ui["tab.runs"].select, ui["runs.picked"].input, ui["runs.delete_picked"].input,
           ui["top.language"].change], list_runs, LIST_INPUTS, LIST_OUTPUTS, **quiet)
    ui.on(ui["runs.table"].select, pick_row, LIST_INPUTS, LIST_OUTPUTS, **quiet)
    ui.on(ui["runs.picked"].change, show_evaluations, ["runs.picked"], ["runs.evaluation"], **quiet)
    ui.on(ui["runs.open_btn"].click, open_run, ["runs.picked"], ["monitor.run_select", "page.tabs"])
    # The comparison uses the Monitor's smoothing and scale, so both tabs read the loss the same way.
    ui.on(ui["runs.compare_btn"].click, compare, ["runs.picked", "monitor.smoothing", "monitor.log_scale"],
          ["runs.compare_plot", "runs.compare_diff"])
    ui.on([ui.demo.load, ui["top.language"].change], compare_cleared, [], ["runs.compare_plot", "runs.compare_diff"],
          **quiet)
    ui.on(ui["runs.delete_btn"].click, ask_delete, ["runs.delete_picked"], CONFIRM_OUTPUTS)
    ui.on(ui["runs.cancel_btn"].click, cancel_delete, [], ["runs.confirm_box"])
    tokens_panel.wire(ui)
    ui.on(ui["runs.confirm_btn"].click, delete, LIST_INPUTS, [*LIST_OUTPUTS, "runs.compare_diff", "runs.confirm_box"])
