"""The Chat tab: talk to any run's weights (the final adapter or any checkpoint, of a finished, aborted or
interrupted run), streamed, side by side with the base model on the same conversation.

The model lives in the server's one chat worker process (webui/after.py, trainer/jobs/workers.py), never
in the server: one loaded model for every user, who loaded it shown to all. Anyone who may view a run may
load it and anyone may talk to the loaded model; replacing, unloading or stopping what another user loaded
or asked is for that user or an admin (the idle unload frees it for everyone). A load refused because
training needs the GPU, or because another user's model is loaded, says why, and "Wait, then load" loads
it as soon as the GPU or the worker is free.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from trainer.engine.artifacts import list_weights
from trainer.engine.chat import GenerationSettings
from trainer.jobs.workers import GPUBusyError, WorkerError

from .. import views
from ..after import acting_user, picked_or_newest, runs_with_weights
from ..after_views import ago, chat_status_markdown, progress_markdown, translate, weights_choices, weights_label
from ..auth import can_view
from ..components import INFO, UI, WARNING, Reply
from ..context import Context, acting_as, may_change
from ..i18n import t
from ..streaming import stream

ID = "chat"
TITLE = "tab_chat"
STATUS_SECONDS = 5.0
HOLDER_POLL_S = 2.0  # how often a load that waits for another user's model looks again
DEFAULTS = GenerationSettings()
SETTINGS = {"chat.system": "system_prompt", "chat.temperature": "temperature", "chat.top_p": "top_p",
            "chat.max_new_tokens": "max_new_tokens", "chat.repetition_penalty": "repetition_penalty"}
SEND_INPUTS = ["chat.message", "chat.tuned", "chat.base", "chat.compare", *SETTINGS]
SEND_OUTPUTS = ["chat.tuned", "chat.base", "chat.message", "chat.timing"]
LOAD_OUTPUTS = ["chat.status", "chat.wait_btn", "chat.notice"]


# --- handlers -------------------------------------------------------------------------------------

def run_choices(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    choices = runs_with_weights(ctx.jobs, lang)
    return {"chat.run": gr.update(choices=choices, value=picked_or_newest(choices, v.get("chat.run"))),
            "chat.status": chat_status_markdown(ctx.chat.status(), lang)}


def pick_run(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The weights of the picked run: the final adapter first, then its checkpoints, newest first."""
    run_id = v.get("chat.run")
    if not run_id:
        return {"chat.weights": gr.update(choices=[], value=None)}
    try:
        names = list_weights(ctx.jobs.get(run_id).run_dir)
    except Exception as exc:  # noqa: BLE001 - deleted meanwhile: say it
        return {"chat.weights": gr.update(choices=[], value=None), WARNING: views.short(views.error_text(exc))}
    return {"chat.weights": gr.update(choices=weights_choices(names, lang), value=names[0] if names else None)}


def load(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Iterator[Reply]:
    yield from _load(ctx, v, user, wait=False, lang=lang)


def load_when_free(ctx: Context, v: dict[str, Any], user: str | None = None,
                   lang: str | None = None) -> Iterator[Reply]:
    yield from _load(ctx, v, user, wait=True, lang=lang)


def holder(ctx: Context, user: str | None) -> str | None:
    """Who loaded the model the shared worker holds, when it is someone whose model `user` may not replace or
    unload (only who loaded it, or an admin, may); None when the worker is free to this user."""
    status = ctx.chat.status()
    by = status.get("loaded_by")
    if status.get("loaded") and by and not may_change(user, by):
        return by
    return None


def _held_by(ctx: Context, who: str, lang: str | None) -> Reply:
    status = ctx.chat.status()
    info = status.get("loaded") or {}
    what = f"{Path(str(info.get('run_dir', ''))).name} ({translate(lang, str(info.get('label', info.get('name'))))})"
    minutes = f"{ctx.chat.worker().idle_timeout_s / 60:g}"
    # Refusals and waits have a line of their own: the status line above is redrawn by the timer.
    return {"chat.status": chat_status_markdown(status, lang),
            "chat.notice": t(lang, "after.held_by", who=html.escape(who), what=html.escape(what),
                             ago=ago(status.get("loaded_at"), lang), minutes=minutes),
            "chat.wait_btn": gr.update(visible=True), WARNING: t(lang, "after.held_toast", who=who)}


def _load(ctx: Context, v: dict[str, Any], user: str | None, wait: bool, lang: str | None = None) -> Iterator[Reply]:
    run_id, weights = v.get("chat.run"), v.get("chat.weights") or None
    if not run_id:
        yield {WARNING: t(lang, "after.pick_run")}
        return
    try:
        info = ctx.jobs.get(run_id)
        if not can_view(acting_as(user), info.owner):  # who may view a run may talk to it
            raise PermissionError(f"run {run_id}: you may not view it")
    except Exception as exc:  # noqa: BLE001 - an unknown or deleted run, or one this user may not see
        yield {WARNING: views.short(views.error_text(exc))}
        return
    worker = ctx.chat.worker()
    held = worker.loaded
    wanted = weights or (list_weights(info.run_dir) or [None])[0]
    if held and Path(held["run_dir"]) == Path(info.run_dir).resolve() and held["name"] == wanted:
        yield {"chat.status": chat_status_markdown(ctx.chat.status(), lang), "chat.wait_btn": gr.update(visible=False),
               INFO: t(lang, "after.already_loaded")}
        return
    what = f"{info.name} ({weights_label(wanted, lang) if wanted else t(lang, 'after.newest_weights')})"
    while wait and (who := holder(ctx, user)):
        # Waits for the user who loaded the model to unload it, or for the idle unload; Unload ends the wait.
        loaded = ctx.chat.status().get("loaded") or {}
        shown = f"{Path(str(loaded.get('run_dir', ''))).name} ({translate(lang, str(loaded.get('label')))})"
        yield {"chat.notice": t(lang, "after.waiting", reason=html.escape(t(lang, "after.wait_holder", who=who,
                                                                                 what=shown))),
               "chat.wait_btn": gr.update(visible=False)}
        time.sleep(HOLDER_POLL_S)
    under_way = ctx.chat.begin_loading(acting_user(user), what)
    if under_way:
        yield {WARNING: t(lang, "after.load_under_way", who=under_way[0], what=under_way[1])}
        return
    lines: list[str] = []
    try:
        who = holder(ctx, user)  # asked again while this load holds the worker: nobody else loads meanwhile
        if who:
            ctx.chat.end_loading()  # before the reply: its status line must not say this load goes on
            yield _held_by(ctx, who, lang)
            return
        for event in worker.load(info.run_dir, weights, wait=wait):
            if event["type"] == "waiting":
                lines.append(t(None, "after.waiting", reason=event["text"]))
            elif event["type"] == "progress":
                lines.append(event["text"])
            else:
                continue
            yield {"chat.status": progress_markdown(lines, lang=lang),
                   "chat.wait_btn": gr.update(visible=False), "chat.notice": ""}
    except GPUBusyError as exc:
        ctx.chat.end_loading()
        yield {"chat.status": chat_status_markdown(ctx.chat.status(), lang),
               "chat.notice": t(lang, "after.gpu_busy", reason=html.escape(translate(lang, str(exc)))),
               "chat.wait_btn": gr.update(visible=True)}
        return
    except WorkerError as exc:
        ctx.chat.end_loading()
        error = translate(lang, str(exc))
        yield {"chat.status": chat_status_markdown(ctx.chat.status(), lang),
               "chat.notice": "⚠ " + t(lang, "after.load_failed", error=html.escape(error)),
               "chat.wait_btn": gr.update(visible=False), WARNING: views.short(t(lang, "after.load_failed", error=error))}
        return
    finally:
        ctx.chat.end_loading()
    ctx.chat.loaded_by, ctx.chat.loaded_at = acting_user(user), time.time()
    yield {"chat.status": chat_status_markdown(ctx.chat.status(), lang), "chat.wait_btn": gr.update(visible=False),
           "chat.notice": ""}


def _turns(value: Any) -> list[dict[str, str]]:
    """A chatbot's messages as {role, content} text turns (Gradio may hand content over as a list of parts)."""
    turns = []
    for message in value or []:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
        turns.append({"role": message["role"], "content": str(content or "")})
    return turns


def settings_of(v: dict[str, Any]) -> dict[str, Any]:
    return {setting: v.get(name) for name, setting in SETTINGS.items() if name in v}


def send(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Iterator[Reply]:
    """Both replies stream into their columns as they are generated; the conversation so far (the tuned
    column's) is the context of both, so each model answers exactly the same prompt."""
    message = v.get("chat.message") or ""
    if not message.strip():
        yield {WARNING: t(lang, "after.type_message")}
        return
    worker = ctx.chat.worker() if ctx.chat.started() else None
    if worker is None or worker.loaded is None:
        reason = worker.unload_reason if worker is not None else None
        yield {WARNING: translate(lang, reason) if reason else t(lang, "after.no_model")}
        return
    history = _turns(v.get("chat.tuned"))
    compare = bool(v.get("chat.compare"))
    columns = {"tuned": history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]}
    if compare:
        columns["base"] = _turns(v.get("chat.base")) + [{"role": "user", "content": message},
                                                        {"role": "assistant", "content": ""}]
    yield {**_shown(columns), "chat.message": ""}
    timing: dict[str, str] = {}
    me = acting_user(user)
    try:
        for event in worker.chat(message, history, settings_of(v), models=tuple(columns)):
            ctx.chat.generating_by = me
            which = event.get("model")
            if which not in columns:
                continue
            if event["type"] == "chunk":
                columns[which][-1]["content"] += event["text"]
            elif event["type"] == "end":
                columns[which][-1]["content"] = event["text"]
                timing[which] = t(lang, "after.timing", model=t(lang, f"after.model_{which}"),
                                  seconds=f"{event.get('seconds', 0):.1f}") + (t(lang, "after.stopped")
                                                                               if event.get("stopped") else "")
            yield {**_shown(columns), "chat.timing": " · ".join(timing[k] for k in columns if k in timing)}
    except WorkerError as exc:
        # The message comes back to the box, nothing typed is lost; the unanswered turn is taken out.
        reply: Reply = {"chat.tuned": history, "chat.message": message, WARNING: views.short(translate(lang, str(exc)))}
        if compare:
            reply["chat.base"] = columns["base"][:-2]
        yield reply
    finally:
        ctx.chat.done_generating(me)


def _shown(columns: dict[str, list[dict[str, str]]]) -> Reply:
    """The columns as they are now (copies: the next chunk must not change what was already handed out)."""
    return {f"chat.{which}": [dict(turn) for turn in turns] for which, turns in columns.items()}


def stop(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """Stops the reply being generated: only its user's, unless an admin asks."""
    who = ctx.chat.generating_by
    if who and not may_change(user, who):
        return {WARNING: t(lang, "after.stop_refused", who=who)}
    if ctx.chat.started():
        ctx.chat.worker().stop()
    return {}


def clear(ctx: Context, v: dict[str, Any]) -> Reply:
    return {"chat.tuned": [], "chat.base": [], "chat.timing": ""}


def unload(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    if not ctx.chat.started() or ctx.chat.worker().loaded is None:
        return {"chat.status": chat_status_markdown(ctx.chat.status(), lang), "chat.wait_btn": gr.update(visible=False)}
    who = holder(ctx, user)
    if who:
        minutes = f"{ctx.chat.worker().idle_timeout_s / 60:g}"
        refusal = t(lang, "after.unload_refused", who=who, minutes=minutes)
        return {"chat.status": chat_status_markdown(ctx.chat.status(), lang), "chat.notice": f"⚠ {html.escape(refusal)}",
                WARNING: refusal}
    ctx.chat.worker().unload(t(None, "after.unloaded_by", who=acting_user(user)))
    return {"chat.status": chat_status_markdown(ctx.chat.status(), lang), "chat.wait_btn": gr.update(visible=False),
            "chat.notice": "", INFO: t(lang, "after.unloaded")}


def show_base(ctx: Context, v: dict[str, Any]) -> Reply:
    return {"chat.base_column": gr.update(visible=bool(v.get("chat.compare")))}


def tick(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """What the shared worker holds now (another user's load, an idle or GPU unload), when it changed."""
    text = chat_status_markdown(ctx.chat.status(), lang)
    if text == v.get("chat.drawn"):
        return {}
    return {"chat.status": text, "chat.drawn": text}


# --- layout and wiring ----------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("chat.run", gr.Dropdown(choices=[], value=None, label=i18n("run"), elem_id="chat-run", scale=4))
        ui.add("chat.weights", gr.Dropdown(choices=[], value=None, label=i18n("chat_weights"), elem_id="chat-weights",
                                           scale=2))
        ui.add("chat.load_btn", gr.Button(i18n("chat_load"), variant="primary", elem_id="chat-load", scale=1))
        ui.add("chat.wait_btn", gr.Button(i18n("chat_wait"), elem_id="chat-wait", scale=1, visible=False))
        ui.add("chat.unload_btn", gr.Button(i18n("chat_unload"), elem_id="chat-unload", scale=1))
    ui.add("chat.status", gr.Markdown("", elem_id="chat-status"))
    ui.add("chat.notice", gr.Markdown("", elem_id="chat-notice"))  # why a load was refused, until the next one
    with gr.Accordion(i18n("chat_settings"), open=False, elem_id="chat-settings"):
        ui.add("chat.system", gr.Textbox(label=i18n("chat_system"), lines=2, elem_id="chat-system"))
        with gr.Row():
            limits = GenerationSettings.LIMITS
            ui.add("chat.temperature", gr.Slider(*limits["temperature"], value=DEFAULTS.temperature, step=0.05,
                                                 label=i18n("ac_temperature"), elem_id="chat-temperature"))
            ui.add("chat.top_p", gr.Slider(*limits["top_p"], value=DEFAULTS.top_p, step=0.01, label=i18n("ac_top_p"),
                                           elem_id="chat-top-p"))
            ui.add("chat.max_new_tokens", gr.Slider(1, 2048, value=DEFAULTS.max_new_tokens, step=1,
                                                    label=i18n("ac_max_new_tokens"), elem_id="chat-max-new-tokens"))
            ui.add("chat.repetition_penalty", gr.Slider(*limits["repetition_penalty"],
                                                        value=DEFAULTS.repetition_penalty, step=0.05,
                                                        label=i18n("ac_repetition_penalty"), elem_id="chat-repetition-penalty"))
    ui.add("chat.compare", gr.Checkbox(value=True, label=i18n("chat_compare"), elem_id="chat-compare"))
    with gr.Row(equal_height=True):
        with gr.Column():
            ui.add("chat.tuned", gr.Chatbot(value=[], label=i18n("chat_tuned"), elem_id="chat-tuned", height=420,
                                                  buttons=["copy", "copy_all"]))
        with ui.add("chat.base_column", gr.Column()):
            ui.add("chat.base", gr.Chatbot(value=[], label=i18n("chat_base"), elem_id="chat-base", height=420,
                                                  buttons=["copy", "copy_all"]))
    with gr.Row(equal_height=True):
        ui.add("chat.message", gr.Textbox(placeholder=i18n("chat_placeholder"), show_label=False, lines=2, scale=6,
                                          elem_id="chat-message"))
        ui.add("chat.send_btn", gr.Button(i18n("chat_send"), variant="primary", elem_id="chat-send", scale=1))
        ui.add("chat.stop_btn", gr.Button(i18n("chat_stop"), elem_id="chat-stop", scale=1))
        ui.add("chat.clear_btn", gr.Button(i18n("chat_clear"), elem_id="chat-clear", scale=1))
    ui.add("chat.timing", gr.Markdown("", elem_id="chat-timing"))
    ui.add("chat.drawn", gr.State(""))  # the status line this page last drew (display only)
    ui.add("chat.timer", gr.Timer(STATUS_SECONDS))


def wire(ui: UI) -> None:
    quiet = dict(show_progress="hidden")
    ui.on([ui["tab.chat"].select, ui["chat.timer"].tick], tick, ["chat.drawn"], ["chat.status", "chat.drawn"],
          queue=False, **quiet)
    ui.on([ui["tab.chat"].select, ui.demo.load], run_choices, ["chat.run"], ["chat.run", "chat.status"], **quiet)
    ui.on(ui["chat.run"].change, pick_run, ["chat.run"], ["chat.weights"], **quiet)
    loads = [stream(ui, ui["chat.load_btn"].click, load, ["chat.run", "chat.weights"], LOAD_OUTPUTS),
             stream(ui, ui["chat.wait_btn"].click, load_when_free, ["chat.run", "chat.weights"], LOAD_OUTPUTS)]
    # Unload also ends a load that waits for the GPU.
    ui.on(ui["chat.unload_btn"].click, unload, [], LOAD_OUTPUTS, cancels=loads)
    sending = stream(ui, [ui["chat.send_btn"].click, ui["chat.message"].submit], send, SEND_INPUTS, SEND_OUTPUTS,
                     **quiet)
    ui.on(ui["chat.stop_btn"].click, stop, [], [], queue=False)
    # A column's own trash icon clears both: the tuned column's history is the context of both replies.
    ui.on([ui["chat.clear_btn"].click, ui["chat.tuned"].clear, ui["chat.base"].clear], clear, [],
          ["chat.tuned", "chat.base", "chat.timing"], cancels=[sending])
    ui.on(ui["chat.compare"].change, show_base, ["chat.compare"], ["chat.base_column"], **quiet)
