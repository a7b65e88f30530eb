"""The Monitor tab: one run's status, progress, charts, health alerts, log tail and config; Abort and Resume.

The page keeps nothing that matters: each timer tick re-reads the registry row and only the new bytes of
the selected run's events file, and redraws a chart only when its inputs changed.
"""

from __future__ import annotations

import html
import re
import sys
import time
from typing import Any, Callable

import gradio as gr
from gradio.components.plot import PlotData

from trainer.jobs.registry import JobError
from trainer.run.events import tail_lines
from trainer.run.layout import TRACKERS_FILE, config_path, read_run_config, stdout_path
from trainer.run.series import MAX_SMOOTHING, RunSeries
from trainer.trackers import tracker_links

from .. import alerts, charts, queue_view, views
from ..components import CONFIG_OUTPUTS, INFO, UI, WARNING, Reply, apply_config
from ..auth import LOCAL, can_reorder_queue
from ..context import Context, acting_as, may_change, require_change
from ..i18n import ZH, t
from .train import then_refresh_plan

ID = "monitor"
TITLE = "tab_monitor"
TIMER_SECONDS = 1.5
LOG_TAIL_LINES = 30
TICK_INPUTS = ["monitor.run_select", "monitor.smoothing", "monitor.log_scale", "monitor.drawn"]
TICK_OUTPUTS = ["monitor.status", "monitor.progress", "monitor.notes", "monitor.loss_plot", "monitor.memory_plot",
                "monitor.lr_plot", "monitor.throughput_plot", "monitor.alerts", "monitor.log", "monitor.abort_btn",
                "monitor.resume_btn", "monitor.run_select", "monitor.config", "monitor.queue", "train.live",
                "monitor.trackers", "monitor.cancel_btn", "monitor.up_btn", "monitor.down_btn", "monitor.drawn",
                "monitor.who"]
QUEUE_ETA_STEP_S = 15  # the queue panel's estimates are redrawn when they move by this much


# --- handlers -------------------------------------------------------------------------------------

def tick(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Redraw what changed since `monitor.drawn` (what this page last drew), and nothing else."""
    last = dict(v.get("monitor.drawn") or {})
    try:
        return _tick(ctx, v.get("monitor.run_select"), float(v.get("monitor.smoothing") or 0),
                     bool(v.get("monitor.log_scale")), last, user, lang)
    except Exception as exc:  # noqa: BLE001 - a tick must never pop an error every 1.5 s; log it once
        key = repr(exc)
        if last.get("error") != key:
            print(f"tunedeck monitor: {exc!r}", file=sys.stderr)
        return {"monitor.drawn": {**last, "error": key}}


def _queue(ctx: Context, infos: list, last: dict, lang: str | None) -> tuple[Reply, list]:
    """The queue panel (Train and Monitor) from `JobManager.queue()`, redrawn when a run changes state or
    place, or an estimate moves; and the queue's entries, for what a queued run waits for."""
    if not any(i.status in ("running", "queued") for i in infos):
        entries: list = []
    else:
        entries = ctx.jobs.queue()
    steps = {i.id: (i.step, i.total_steps) for i in infos if i.status == "running"}
    key = [lang, [(e.run_id, e.status, e.position, e.owner, steps.get(e.run_id),
                   None if e.estimated_start is None else round(e.estimated_start / QUEUE_ETA_STEP_S))
                  for e in entries]]
    if key == last.get("queue"):
        return {}, entries
    last["queue"] = key
    text = queue_view.queue_markdown(entries, steps, lang) if entries else ""
    return {"monitor.queue": text, "train.live": text}, entries


def _shown_status(info: Any, series: RunSeries) -> str:
    """The status to show: the registry's, unless the run's own events already say it ended in this
    attempt (the registry learns it when the scheduler next looks, seconds later)."""
    ended_at = series.summary.final_status_at
    if info.status == "running" and ended_at is not None and ended_at >= (info.started_at or 0):
        return str(series.state)
    return info.status


def _tick(ctx: Context, run_id: str | None, smooth: float, log: bool, last: dict, user: str | None,
          lang: str | None = None) -> Reply:
    reply: Reply = {}
    # The run list changes when a run starts or ends anywhere: refresh the dropdown only then.
    try:
        infos = ctx.jobs.list_runs()
    except JobError as exc:  # a damaged runs.db or a full disk: said once, not an empty list every second
        infos = []
        if last.get("registry_error") != str(exc):
            last["registry_error"] = str(exc)
            reply[WARNING] = t(lang, "runs_unreadable", detail=views.error_text(exc, lang))
    except Exception:  # noqa: BLE001 - a locked or missing db must not break the page
        infos = []
    list_key = [lang, [(i.id, i.status) for i in infos]]
    if list_key != last.get("runs"):
        last["runs"] = list_key
        reply["monitor.run_select"] = gr.update(choices=[(views.run_choice_label(i, lang), i.id) for i in infos])
    queued, entries = _queue(ctx, infos, last, lang)
    reply.update(queued)
    if not run_id:
        if last.get("run") == ("", lang) and not reply:
            return {"monitor.drawn": last}
        last["run"] = ("", lang)
        empty = RunSeries()
        return {**reply, "monitor.status": views.status_badge(None, t(lang, "no_run"), lang),
                "monitor.progress": "", "monitor.notes": "", "monitor.trackers": "",
                "monitor.loss_plot": charts.loss_figure(empty, lang=lang),
                "monitor.memory_plot": charts.memory_figure(empty, lang=lang),
                "monitor.lr_plot": charts.lr_gradnorm_figure(empty, lang=lang),
                "monitor.throughput_plot": charts.throughput_figure(empty, lang=lang), "monitor.alerts": "",
                "monitor.log": "", "monitor.abort_btn": gr.update(interactive=False),
                "monitor.resume_btn": gr.update(interactive=False), **_queue_buttons(False, False, False),
                "monitor.who": "", "monitor.config": "", "monitor.drawn": last}
    info = next((i for i in infos if i.id == run_id), None)
    if info is None:
        try:
            info = ctx.jobs.get(run_id)
        except Exception as exc:  # noqa: BLE001 - an unknown or deleted run
            return {**reply, "monitor.status": views.status_badge("unknown", views.short(views.error_text(exc, lang)), lang),
                    "monitor.drawn": last}
    cached = ctx.cache.poll(info.run_dir)
    series, shown = cached.series, cached.shown_version()
    status = _shown_status(info, series)
    detail = info.reason or ""
    if info.abort_requested and status == "running":
        detail = t(lang, "abort_requested")
    elif status == "queued":
        detail = t(lang, "waits_for", ahead=queue_view.waits_for(info.id, entries, lang))
    keys = {
        "status": (run_id, status, detail, lang),
        "progress": (run_id, shown, status, lang),
        "notes": (run_id, shown, status, lang),
        "loss": (run_id, shown, round(smooth, 3), log, lang),
        "data": (run_id, shown, lang),
        "log": (run_id, _size(stdout_path(info.run_dir)), lang),
        "buttons": (run_id, status, user, lang),
        "config": (run_id, status),  # resume rewrites the run's config.yaml, so it follows the status
        "trackers": (run_id, status, _size(info.run_dir / TRACKERS_FILE), lang),
    }
    changed = {name for name, key in keys.items() if key != last.get(name)}
    running = status in ("running", "queued")
    if "status" in changed:
        reply["monitor.status"] = views.status_badge(status, detail, lang)
    if running or "progress" in changed:
        prog = charts.progress(series, now=time.time() if status == "running" else None)
        if prog.total is None and info.total_steps:
            prog.total = info.total_steps
        reply["monitor.progress"] = views.progress_html(prog, status, lang)
    if "notes" in changed:
        reply["monitor.notes"] = views.run_summary_markdown(info, series, lang)
    if "loss" in changed:
        reply["monitor.loss_plot"] = cached.drawn(("loss", round(smooth, 3), log, lang),
                                                  lambda: plot_data(charts.loss_figure(series, smooth, log, lang=lang)),
                                                  shown)
    if "data" in changed:
        for output, what, draw in (("memory_plot", "memory", charts.memory_figure),
                                   ("lr_plot", "lr", charts.lr_gradnorm_figure),
                                   ("throughput_plot", "throughput", charts.throughput_figure)):
            reply[f"monitor.{output}"] = cached.drawn((what, lang), lambda d=draw: plot_data(d(series, lang=lang)),
                                                      shown)
        reply["monitor.alerts"] = cached.drawn(("alerts", lang), lambda: health_markdown(series, lang), shown)
    if "log" in changed:
        reply["monitor.log"] = views.log_tail_html(tail_lines(stdout_path(info.run_dir), LOG_TAIL_LINES), lang)
    if "buttons" in changed:
        mine = may_change(user, info.owner)
        reply["monitor.abort_btn"] = gr.update(interactive=mine and running)
        reply["monitor.resume_btn"] = gr.update(interactive=mine and status in ("aborted", "interrupted", "failed"))
        reply.update(_queue_buttons(status == "queued", mine, can_reorder_queue(acting_as(user))))
        reply["monitor.who"] = who_may_act(info.owner, mine, lang)
    if "config" in changed:
        try:
            reply["monitor.config"] = config_path(info.run_dir).read_text(encoding="utf-8")
        except OSError:
            reply["monitor.config"] = ""
    if "trackers" in changed:
        reply["monitor.trackers"] = trackers_markdown(info.run_dir, lang)
    last.update(run=run_id, **keys)
    reply["monitor.drawn"] = last
    return reply


def plot_data(figure: Any) -> PlotData:
    """A figure as gr.Plot sends it (its JSON), made once and shared: Gradio passes PlotData through as it is,
    where a figure would be serialised again for each viewer."""
    return PlotData(type="plotly", plot=figure.to_json())


def _size(path: Any) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def trackers_markdown(run_dir: Any, lang: str | None = None) -> str:
    """Where this run's metrics also are: the TensorBoard and Trackio commands, the W&B/MLflow run links."""
    try:
        links = tracker_links(read_run_config(run_dir), run_dir)
    except (OSError, ValueError):  # no config.yaml yet, or an unreadable one: the config panel says why
        return ""
    if not links:
        return ""
    rows = [f"- **{html.escape(title)}**: " + _link_text(link, lang) for title, link in links]
    return f"**{t(lang, 'trackers_title')}**\n\n" + "\n".join(rows)


def _link_text(link: str, lang: str | None) -> str:
    """A tracker's URL as a link, its command as code, its project (no link known yet) in words."""
    if link.startswith("http"):
        return f"<{link}>"
    project = re.fullmatch(r"project (.+?)(?P<later> \(the run's link appears once training starts\))?", link)
    if project:
        key = "tracker_project_later" if project.group("later") else "tracker_project"
        return t(lang, key, project=f"`{project.group(1)}`")
    command = re.fullmatch(r"(?P<command>.+?)  \(run (?P<run>\S+)\)", link)  # MLflow without a server: its UI command
    if command:
        return f"`{command.group('command')}` " + t(lang, "tracker_run", run=f"`{command.group('run')}`")
    return f"`{link}`"


def health_markdown(series: RunSeries, lang: str | None = None) -> str:
    """The Health panel. In Chinese each alert is said by its code (alerts.py words it in English, with
    its numbers; the charts beside it show them)."""
    max_grad = (series.plan or {}).get("max_grad_norm")
    found = alerts.health_alerts(series, max_grad)
    if lang != ZH:
        return alerts.alerts_markdown(found)
    if not found:
        return t(lang, "health_ok")
    if [a.code for a in found] == ["no_steps"]:  # nothing logged (a run that failed early): nothing to judge
        return t(lang, "health_none")
    return "\n\n".join(f"**{t(lang, f'level.{a.level}')}：** {_alert_zh(a)}" for a in found)


def _alert_zh(alert: alerts.Alert) -> str:
    """One alert in Chinese with its numbers (alerts.py gives them as params)."""
    key = f"alert.{alert.code}"
    if alert.code == "grad_norm_blowup" and "value" not in alert.params:
        key = "alert.grad_norm_nonfinite"
    try:
        return t(ZH, key, **alert.params)
    except (KeyError, ValueError, TypeError, IndexError):  # alerts.py always gives them; never a crash if not
        return alert.message


def run_action(action: Callable[[Context, str, str | None], Any], done: str) -> Callable[..., Reply]:
    """A Monitor button acting on the selected run; `done` is the message key of what it did."""
    def handler(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
        run_id = v.get("monitor.run_select")
        if not run_id:
            return {WARNING: t(lang, "select_run_first")}
        try:
            action(ctx, run_id, user)
        except Exception as exc:  # noqa: BLE001 - not yours, not abortable, unknown: say it
            return {WARNING: views.short(views.error_text(exc, lang))}
        return {INFO: t(lang, done, run_id=run_id)}
    return handler


def _abort(ctx: Context, run_id: str, user: str | None) -> None:
    require_change(user, ctx.jobs.get(run_id).owner, "abort")
    ctx.jobs.abort(run_id)


def _resume(ctx: Context, run_id: str, user: str | None) -> None:
    require_change(user, ctx.jobs.get(run_id).owner, "resume")
    ctx.jobs.resume(run_id)


def _cancel(ctx: Context, run_id: str, user: str | None) -> None:
    require_change(user, ctx.jobs.get(run_id).owner, "cancel")
    ctx.jobs.cancel(run_id)


def _mover(step: int) -> Callable[[Context, str, str | None], None]:
    """Move the run `step` places towards the head of the line (-1: up); an admin's button."""
    def move(ctx: Context, run_id: str, user: str | None) -> None:
        who = acting_as(user)
        if not can_reorder_queue(who):
            raise PermissionError(f"only an admin may reorder the queue (you are '{who.name}')")
        entry = next((e for e in ctx.jobs.queue() if e.run_id == run_id and e.position is not None), None)
        if entry is None:
            raise JobError(f"run {run_id} is not waiting in the queue: only a queued run can be moved")
        ctx.jobs.move(run_id, max(1, entry.position + step))
    return move


def who_may_act(owner: str, mine: bool, lang: str | None = None) -> str:
    """The line under the buttons when they are off because the run is someone else's (a disabled button
    says nothing by itself); empty for the user's own runs, where the status says why."""
    if mine:
        return ""
    if owner == LOCAL:  # no one signs in as `local`: only the admins are left
        return t(lang, "local_run_note")
    return t(lang, "others_run_note", owner=html.escape(owner, quote=False))


def _queue_buttons(queued: bool, mine: bool, admin: bool) -> Reply:
    """Cancel for a queued run (its owner or an admin may press it); Move up/down for admins only."""
    return {"monitor.cancel_btn": gr.update(visible=queued, interactive=mine),
            "monitor.up_btn": gr.update(visible=queued and admin), "monitor.down_btn": gr.update(visible=queued and admin)}


abort = run_action(_abort, "abort_sent")
resume = run_action(_resume, "resume_sent")
cancel = run_action(_cancel, "cancel_sent")
move_up = run_action(_mover(-1), "moved_up")
move_down = run_action(_mover(+1), "moved_down")


def reuse_config(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The selected run's config into the form, for a new run (a resume pointer is dropped)."""
    run_id = v.get("monitor.run_select")
    if not run_id:
        return {WARNING: t(lang, "select_run_first")}
    try:
        cfg = ctx.jobs.read_config(run_id)
    except Exception as exc:  # noqa: BLE001 - ConfigError, unknown run: say it
        return {WARNING: views.short(views.error_text(exc, lang))}
    if cfg.resume_from_checkpoint:
        cfg = cfg.replace(resume_from_checkpoint=None)
    note = t(lang, "reuse_note", run_id=html.escape(run_id))
    return {**apply_config(cfg, note), "page.tabs": gr.Tabs(selected="train")}


def page_opened(ctx: Context, v: dict[str, Any], query: dict[str, str] | None = None) -> Reply:
    """The run the page opens on: `/?run=<id>` when it exists, else the newest live run, else the newest.

    With a `?run=` or a live run the page opens on the Monitor (a reload or a restarted server lands
    where the user was watching); otherwise on the Train tab."""
    choices = ctx.run_choices()
    ids = [value for _, value in choices]
    wanted = (query or {}).get("run")
    value = wanted if wanted in ids else ctx.default_run()
    reply: Reply = {"monitor.run_select": gr.update(choices=choices, value=value)}
    try:
        live = any(i.status in ("running", "queued") for i in ctx.jobs.list_runs())
    except Exception:  # noqa: BLE001 - a locked or missing db must not break the page
        live = False
    if wanted in ids or live:
        reply["page.tabs"] = gr.Tabs(selected="monitor")
    return reply


# --- layout and wiring ----------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n = ui.i18n
    empty = RunSeries()
    with gr.Row(equal_height=True):
        ui.add("monitor.run_select", gr.Dropdown(choices=[], value=None, label=i18n("run"), elem_id="run-select",
                                                 scale=4))
        ui.add("monitor.abort_btn", gr.Button(i18n("abort"), variant="stop", elem_id="abort-btn", scale=1,
                                              interactive=False))
        ui.add("monitor.resume_btn", gr.Button(i18n("resume"), elem_id="resume-btn", scale=1, interactive=False))
        ui.add("monitor.cancel_btn", gr.Button(i18n("cancel_queued"), elem_id="cancel-queued-btn", scale=1,
                                               visible=False))
        ui.add("monitor.up_btn", gr.Button(i18n("move_up"), elem_id="move-up-btn", scale=1, visible=False))
        ui.add("monitor.down_btn", gr.Button(i18n("move_down"), elem_id="move-down-btn", scale=1, visible=False))
    ui.add("monitor.who", gr.Markdown("", elem_id="run-actions-note"))
    ui.add("monitor.status", gr.HTML(views.status_badge(None), elem_id="run-status"))
    ui.add("monitor.queue", gr.Markdown("", elem_id="monitor-queue"))
    ui.add("monitor.progress", gr.HTML("", elem_id="run-progress"))
    ui.add("monitor.notes", gr.Markdown("", elem_id="run-notes"))
    ui.add("monitor.trackers", gr.Markdown("", elem_id="run-trackers"))
    with gr.Row():
        ui.add("monitor.smoothing", gr.Slider(0, MAX_SMOOTHING, value=0.6, step=0.001, label=i18n("smoothing"),
                                              elem_id="smoothing", scale=3))
        ui.add("monitor.log_scale", gr.Checkbox(value=False, label=i18n("log_scale"), elem_id="log-scale", scale=1))
    with gr.Row():
        ui.add("monitor.loss_plot", gr.Plot(charts.loss_figure(empty), elem_id="loss-chart", show_label=False))
        ui.add("monitor.memory_plot", gr.Plot(charts.memory_figure(empty), elem_id="memory-chart", show_label=False))
    with gr.Row():
        ui.add("monitor.lr_plot", gr.Plot(charts.lr_gradnorm_figure(empty), elem_id="lr-chart", show_label=False))
        ui.add("monitor.throughput_plot", gr.Plot(charts.throughput_figure(empty), elem_id="throughput-chart",
                                                  show_label=False))
    ui.add("monitor.alerts", gr.Markdown("", elem_id="alerts"))
    ui.add("monitor.log", gr.HTML("", label=i18n("log_tail"), show_label=True, container=True,
                                  elem_id="log-tail"))
    with gr.Accordion(i18n("run_config"), open=False, elem_id="run-config-accordion"):
        ui.add("monitor.config", gr.Code(language="yaml", label="config.yaml", elem_id="run-config", lines=10))
        ui.add("monitor.reuse_btn", gr.Button(i18n("reuse_config"), elem_id="reuse-config-btn"))
    ui.add("monitor.drawn", gr.State({}))  # what this page last drew (display only, to skip redrawing)
    ui.add("monitor.timer", gr.Timer(TIMER_SECONDS))


def wire(ui: UI) -> None:
    quiet = dict(show_progress="hidden")
    ui.on(ui["monitor.timer"].tick, tick, TICK_INPUTS, TICK_OUTPUTS, queue=False, **quiet)
    ui.on([ui["monitor.run_select"].change, ui["monitor.smoothing"].release, ui["monitor.log_scale"].change], tick,
          TICK_INPUTS, TICK_OUTPUTS, **quiet)
    ui.on(ui.demo.load, page_opened, [], ["monitor.run_select", "page.tabs"])
    ui.on(ui["monitor.abort_btn"].click, abort, ["monitor.run_select"])
    ui.on(ui["monitor.resume_btn"].click, resume, ["monitor.run_select"])
    for name, handler in (("cancel_btn", cancel), ("up_btn", move_up), ("down_btn", move_down)):
        ui.on(ui[f"monitor.{name}"].click, handler, ["monitor.run_select"])
    then_refresh_plan(ui, ui.on(ui["monitor.reuse_btn"].click, reuse_config, ["monitor.run_select"],
                                [*CONFIG_OUTPUTS, "page.tabs"]))
