"""Handlers that reply more than once: a generator `handler(ctx, values, **extra)` yielding replies, each
shown as it comes (streamed chat tokens, a command's progress lines). The same name-keyed contract as
`UI.on` (webui/components.py); tests iterate the generator directly.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Iterator

import gradio as gr

from .components import UI, Reply, to_outputs, username

StreamHandler = Callable[..., Iterator[Reply]]


def stream(ui: UI, triggers: Any, handler: StreamHandler, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
           **kwargs: Any) -> Any:
    """gr.on(triggers, ...) for a generator handler of names; returns the dependency (for `.then`)."""
    inputs, outputs = list(inputs), list(outputs)
    wants = set(inspect.signature(handler).parameters)
    ctx = ui.ctx

    def on_event(request: gr.Request, *raw: Any) -> Iterator[Any]:
        extra = {"user": username(request)} if "user" in wants else {}
        for reply in handler(ctx, dict(zip(inputs, raw)), **extra):
            yield to_outputs(reply, outputs)

    triggers = triggers if isinstance(triggers, (list, tuple)) else [triggers]
    return gr.on(list(triggers), on_event, [ui[n] for n in inputs], [ui[n] for n in outputs], **kwargs)
