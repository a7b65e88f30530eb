"""Components registered by name, and the two replies every tab shares: a config reaching the form, and
the form's feedback (what to fix, which controls show).

A handler is a plain function `handler(ctx, values, **extra) -> reply`: `values` maps the names of its
inputs to their values, and the reply maps names of outputs to new values (a name left out keeps its
component as it is). `UI.on` turns it into a Gradio listener; tests call it directly. The names of the
form's controls are the schema's field names; every other name is "<area>.<what>" ("train.start_btn").
A handler may ask for `user` (the logged-in user name, None when the page is open), `query` (the page
URL's query parameters), `row` (the values of a clicked table row) or `lang` ("en" or "zh": the language
the page shows, from the top bar; every handler that writes words asks for it).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Sequence

import gradio as gr
from gradio.i18n import I18nData

from trainer.config import TrainConfig

from .form import config_to_values, controls, field_errors_text, hidden_fields, method_of, shown_groups
from .i18n import field_label, field_message, lang_of, t

INFO = "toast.info"  # reply keys shown as a toast, not components
WARNING = "toast.warning"
FIELDS = [c.name for c in controls()]  # the form's controls, in schema order
TOP_BAR_FIELDS = ("model_name_or_path", "quantization_bit", "template")  # rendered in the top bar, not the form
LANGUAGE = "top.language"  # the top bar's language choice: a handler asking for `lang` reads it

Reply = dict[str, Any]
Handler = Callable[..., Reply | None]


def group_name(key: str, advanced: bool) -> str:
    """The registered name of a group's accordion (or of its Advanced part)."""
    return f"group.{key}.advanced" if advanced else f"group.{key}"


GROUPS_SHOWN = [group_name(key, advanced) for key, advanced in shown_groups(set(), TOP_BAR_FIELDS)]


class UI:
    """The page's components by name, and the adapter from name-keyed handlers to Gradio listeners."""

    def __init__(self, ctx: Any, i18n: gr.I18n):
        self.ctx = ctx
        self.i18n = i18n
        self.demo: Any = None  # the gr.Blocks being built: its load event is a trigger like any other
        self.initial: Any = None  # page.InitialForm: what the form holds when the page opens
        self._components: dict[str, Any] = {}

    def add(self, name: str, component: Any) -> Any:
        if name in self._components:
            raise ValueError(f"a component named {name!r} is already registered")
        self._components[name] = component
        return component

    def __getitem__(self, name: str) -> Any:
        return self._components[name]

    def __contains__(self, name: str) -> bool:
        return name in self._components

    def on(self, triggers: Any, handler: Handler, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
           **kwargs: Any) -> Any:
        """gr.on(triggers, ...) for a handler of names; returns the dependency (for `.then`)."""
        inputs, outputs = self._inputs(handler, inputs), list(outputs)
        triggers = triggers if isinstance(triggers, (list, tuple)) else [triggers]
        return gr.on(list(triggers), self.listener(handler, inputs, outputs), [self[n] for n in inputs],
                     [self[n] for n in outputs], **kwargs)

    def then(self, dependency: Any, handler: Handler, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
             **kwargs: Any) -> Any:
        inputs, outputs = self._inputs(handler, inputs), list(outputs)
        return dependency.then(self.listener(handler, inputs, outputs), [self[n] for n in inputs],
                               [self[n] for n in outputs], **kwargs)

    @staticmethod
    def _inputs(handler: Handler, inputs: Iterable[str]) -> list[str]:
        """The handler's inputs, and the language choice last when it asks for `lang`."""
        names = list(inputs)
        if "lang" in inspect.signature(handler).parameters:
            names.append(LANGUAGE)
        return names

    def listener(self, handler: Handler, inputs: Sequence[str], outputs: Sequence[str]) -> Callable[..., Any]:
        wants = set(inspect.signature(handler).parameters)
        ctx = self.ctx
        if "lang" in wants:
            inputs = list(inputs)[:-1]  # the language choice `_inputs` appended: passed as `lang`

        def call(request: gr.Request | None, row: Any, raw: tuple) -> Any:
            extra: dict[str, Any] = {}
            if "user" in wants:
                extra["user"] = username(request)
            if "query" in wants:
                extra["query"] = dict(getattr(request, "query_params", None) or {})
            if "row" in wants:
                extra["row"] = row
            if "lang" in wants:
                extra["lang"], raw = lang_of(raw[-1]), raw[:-1]
            return to_outputs(handler(ctx, dict(zip(inputs, raw)), **extra), outputs)

        if "row" in wants:
            def on_select(request: gr.Request, evt: gr.SelectData, *raw: Any) -> Any:
                return call(request, getattr(evt, "row_value", None), raw)
            return on_select

        def on_event(request: gr.Request, *raw: Any) -> Any:
            return call(request, None, raw)
        return on_event


def to_outputs(reply: Reply | None, outputs: Sequence[str]) -> Any:
    """A reply as Gradio wants it: toasts shown, then one value per output (skip for those left out)."""
    reply = dict(reply or {})
    info, warning = reply.pop(INFO, None), reply.pop(WARNING, None)
    if info:
        gr.Info(info)
    if warning:
        gr.Warning(warning)
    unknown = set(reply) - set(outputs)
    if unknown:
        raise ValueError(f"the handler replied to {sorted(unknown)}, which are not among its outputs")
    values = [reply.get(name, gr.skip()) for name in outputs]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def username(request: gr.Request | None) -> str | None:
    """The logged-in user; None when the page has no logins."""
    name = getattr(request, "username", None) if request is not None else None
    return str(name) if name else None


def form_values(values: dict[str, Any]) -> dict[str, Any]:
    """The form's controls among a handler's values."""
    return {name: values[name] for name in FIELDS if name in values}


# --- a config reaching the form ------------------------------------------------------------------

CONFIG_OUTPUTS = [*FIELDS, "top.method", "train.preset_ref", "train.preset_note", "train.load_anyway_btn"]


def preset_reference(cfg: TrainConfig) -> dict[str, Any]:
    """What the plan compares later edits with: the loaded config's effective batch and learning rate."""
    return {"effective_batch": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate}


def apply_config(cfg: TrainConfig, note: str) -> Reply:
    """Every way a config reaches the form (a preset, an upload, an import, a run's config) replies this,
    to CONFIG_OUTPUTS; the plan and the form's feedback follow (`then_refresh_plan`)."""
    values = config_to_values(cfg)
    return {**values, "top.method": method_of(values), "train.preset_ref": preset_reference(cfg),
            "train.preset_note": note, "train.load_anyway_btn": gr.update(visible=False)}


# --- the form's feedback: what to fix, which controls show ----------------------------------------

FEEDBACK_OUTPUTS = ["train.errors", "train.shown", *FIELDS, *GROUPS_SHOWN]
# What a control shows under its label when it has no error (the top bar's are short).
TOP_BAR_INFO: dict[str, Any] = {"model_name_or_path": I18nData("model_info"), "quantization_bit": None,
                                "template": None}


def initial_shown(values: dict[str, Any]) -> dict[str, Any]:
    """What the page shows when it opens: no errors, the controls the schema hides for these values."""
    return {"errors": {}, "hidden": sorted(hidden_fields(values))}


def _plain_info(name: str) -> Any:
    if name in TOP_BAR_INFO:
        return TOP_BAR_INFO[name]
    return I18nData(f"help.{name}")


def form_feedback(values: dict[str, Any], errors: dict[str, str], shown: dict[str, Any] | None,
                  lang: str | None = None) -> Reply:
    """The one "fix these before starting" path: the error box, each field marked (or cleared), and which
    controls and groups show; only what changed since `shown` (the "train.shown" state) is sent."""
    shown = shown or {}
    errors = {name: field_message(lang, message) for name, message in errors.items()}
    before_errors: dict[str, str] = shown.get("errors") or {}
    before_hidden = set(shown.get("hidden") or ())
    hidden = hidden_fields(values, errors)
    reply: Reply = {}
    if errors:
        text = field_errors_text(errors, lambda name, label: field_label(lang, name, label))
        reply["train.errors"] = gr.update(value=f"**{t(lang, 'fix_these')}**\n\n{text}", visible=True)
    else:
        reply["train.errors"] = gr.update(value="", visible=False)
    for name in FIELDS:
        change: dict[str, Any] = {}
        if errors.get(name) != before_errors.get(name):
            if errors.get(name):
                change.update(info=f"⚠ {errors[name]}", elem_classes=["td-field-error"])
            else:
                change.update(info=_plain_info(name), elem_classes=[])
        if (name in hidden) != (name in before_hidden):
            change["visible"] = name not in hidden
        if change:
            reply[name] = gr.update(**change)
    groups_before = shown_groups(before_hidden, TOP_BAR_FIELDS)
    for (key, advanced), now in shown_groups(hidden, TOP_BAR_FIELDS).items():
        if now != groups_before.get((key, advanced)):
            reply[group_name(key, advanced)] = gr.update(visible=now)
    reply["train.shown"] = {"errors": dict(errors), "hidden": sorted(hidden)}
    return reply
