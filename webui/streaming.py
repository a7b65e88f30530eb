"""Handlers that reply more than once: a generator `handler(ctx, values, **extra)` yielding replies, each
shown as it comes (streamed chat tokens, a command's progress lines). The same name-keyed contract as
`UI.on` (webui/components.py); tests iterate the generator directly.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Iterator

import gradio as gr

from .components import LANGUAGE, UI, Reply, to_outputs, username
from .i18n import lang_of

StreamHandler = Callable[..., Iterator[Reply]]


def stream(ui: UI, triggers: Any, handler: StreamHandler, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
           **kwargs: Any) -> Any:
    """gr.on(triggers, ...) for a generator handler of names; returns the dependency (for `.then`)."""
    inputs, outputs = list(inputs), list(outputs)
    wants = set(inspect.signature(handler).parameters)
    ctx = ui.ctx
    # The language choice comes last when the handler asks for `lang`, as with UI.on.
    sources = inputs + [LANGUAGE] if "lang" in wants else inputs

    def on_event(request: gr.Request, *raw: Any) -> Iterator[Any]:
        extra: dict[str, Any] = {"user": username(request)} if "user" in wants else {}
        if "lang" in wants:
            extra["lang"], raw = lang_of(raw[-1]), raw[:-1]
        for reply in handler(ctx, dict(zip(inputs, raw)), **extra):
            yield to_outputs(reply, outputs)

    triggers = triggers if isinstance(triggers, (list, tuple)) else [triggers]
    return gr.on(list(triggers), on_event, [ui[n] for n in sources], [ui[n] for n in outputs], **kwargs)
