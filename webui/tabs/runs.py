"""The Runs tab: every run of the registry, filtered; open one in the Monitor, compare several, delete."""

from __future__ import annotations

from typing import Any

import gradio as gr

from trainer.config import ConfigError
from trainer.jobs.registry import JobError

from .. import charts, views
from ..components import INFO, UI, WARNING, Reply
from ..context import Context

ID = "runs"
TITLE = "tab_runs"
STATUSES = ["queued", "running", "finished", "aborted", "failed", "interrupted"]
LIST_OUTPUTS = ["runs.table", "runs.picked"]


def _picked(v: dict[str, Any]) -> list[str]:
    return list(v.get("runs.picked") or [])


def list_runs(ctx: Context, v: dict[str, Any]) -> Reply:
    """The table, filtered by the text and the statuses; the picker's choices (what was picked stays)."""
    try:
        infos = ctx.jobs.list_runs()
    except JobError as exc:  # a damaged runs.db or a full disk: say so, not an empty table
        return {WARNING: f"The run list cannot be read: {exc}"}
    return {"runs.table": views.runs_table(infos, v.get("runs.filter") or "", v.get("runs.status") or ()),
            "runs.picked": gr.update(choices=[(views.run_choice_label(i), i.id) for i in infos])}


def pick_row(ctx: Context, v: dict[str, Any], row: Any = None) -> Reply:
    """A click on a row adds its run to the picked ones, or takes it out again."""
    if not row:
        return {}
    run_id = row[0]
    picked = _picked(v)
    if run_id in picked:
        picked.remove(run_id)
    else:
        picked.append(run_id)
    return {"runs.picked": picked}


def open_run(ctx: Context, v: dict[str, Any]) -> Reply:
    picked = _picked(v)
    if not picked:
        return {WARNING: "Select a run in the table first."}
    return {"monitor.run_select": gr.update(choices=ctx.run_choices(), value=picked[-1]),
            "page.tabs": gr.Tabs(selected="monitor")}


def compare(ctx: Context, v: dict[str, Any]) -> Reply:
    """Overlaid smoothed loss of the picked runs and the fields on which their configs differ."""
    picked = _picked(v)
    if len(picked) < 2:
        return {WARNING: "Select two or more runs to compare."}
    named_series, configs, problems = [], [], []
    for run_id in picked:
        try:
            info = ctx.jobs.get(run_id)
        except Exception as exc:  # noqa: BLE001 - deleted meanwhile: compare the others
            problems.append(views.short(views.error_text(exc)))
            continue
        label = f"{info.name} ({run_id[-6:]})"
        named_series.append((label, ctx.cache.poll(info.run_dir).series))
        try:
            configs.append((label, ctx.jobs.read_config(run_id)))
        except (ConfigError, OSError):
            configs.append((label, None))
    reply: Reply = {"runs.compare_plot": charts.compare_loss_figure(named_series, float(v.get("monitor.smoothing") or 0),
                                                                    bool(v.get("monitor.log_scale"))),
                    "runs.compare_diff": views.config_diff_markdown(configs)}
    if problems:
        reply[WARNING] = "; ".join(problems)
    return reply


def delete(ctx: Context, v: dict[str, Any], user: str | None = None) -> Reply:
    picked = _picked(v)
    if not picked:
        return {WARNING: "Select the runs to delete in the table first."}
    deleted, problems = [], []
    for run_id in picked:
        try:
            info = ctx.jobs.get(run_id)
            ctx.jobs.delete(run_id, owner=user)
            ctx.cache.forget(info.run_dir)
            deleted.append(run_id)
        except Exception as exc:  # noqa: BLE001 - running, not yours, unknown: say it, delete the others
            problems.append(views.short(views.error_text(exc)))
    reply = list_runs(ctx, v)
    reply["runs.picked"] = gr.update(choices=reply["runs.picked"]["choices"], value=[])
    reply["runs.compare_diff"] = ""
    if deleted:
        reply[INFO] = "Deleted " + ", ".join(f"run {run_id}" for run_id in deleted) + "."
    if problems:
        reply[WARNING] = "; ".join(problems)
    return reply


def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("runs.filter", gr.Textbox(label=i18n("filter"), placeholder="model, dataset, owner, status…",
                                         elem_id="runs-filter", scale=3))
        ui.add("runs.status", gr.CheckboxGroup(choices=STATUSES, label="status", elem_id="runs-status", scale=4))
        ui.add("runs.refresh_btn", gr.Button(i18n("refresh"), elem_id="runs-refresh", scale=1))
    ui.add("runs.table", gr.Dataframe(headers=views.RUNS_TABLE_HEADERS, value=[], interactive=False,
                                      elem_id="runs-table", wrap=True))
    with gr.Row(equal_height=True):
        ui.add("runs.picked", gr.Dropdown(choices=[], multiselect=True, label=i18n("selected_runs"),
                                          elem_id="runs-picked", scale=4))
        ui.add("runs.open_btn", gr.Button(i18n("open_monitor"), elem_id="open-run-btn", scale=1))
        ui.add("runs.compare_btn", gr.Button(i18n("compare"), elem_id="compare-btn", scale=1))
        ui.add("runs.delete_btn", gr.Button(i18n("delete"), variant="stop", elem_id="delete-run-btn", scale=1))
    ui.add("runs.compare_plot", gr.Plot(charts.compare_loss_figure([]), elem_id="compare-chart", show_label=False))
    ui.add("runs.compare_diff", gr.Markdown("", elem_id="compare-diff"))


def wire(ui: UI) -> None:
    filters = ["runs.filter", "runs.status"]
    ui.on([ui["runs.refresh_btn"].click, ui["runs.filter"].submit, ui["runs.status"].change, ui.demo.load,
           ui["tab.runs"].select], list_runs, filters, LIST_OUTPUTS, show_progress="hidden")
    ui.on(ui["runs.table"].select, pick_row, ["runs.picked"], ["runs.picked"])
    ui.on(ui["runs.open_btn"].click, open_run, ["runs.picked"], ["monitor.run_select", "page.tabs"])
    # The comparison uses the Monitor's smoothing and scale, so both tabs read the loss the same way.
    ui.on(ui["runs.compare_btn"].click, compare, ["runs.picked", "monitor.smoothing", "monitor.log_scale"],
          ["runs.compare_plot", "runs.compare_diff"])
    ui.on(ui["runs.delete_btn"].click, delete, ["runs.picked", *filters], [*LIST_OUTPUTS, "runs.compare_diff"])
