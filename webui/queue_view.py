"""The queue panel as a pure function of `JobManager.queue()` (the one computation of positions, what is ahead
and estimated starts, shared with the API's GET /api/queue): the live runs, then each queued run's position,
what it waits for and when it may start. No gradio, no torch.
"""

from __future__ import annotations

import html
import time
from typing import Any, Mapping, Sequence

from .charts import format_duration
from .i18n import t
from .views import status_word


def _name(entry: Any) -> str:
    return f"{entry.name} ({entry.run_id[-6:]})"


def waits_for(run_id: str, entries: Sequence[Any], lang: str | None = None) -> str:
    """What a queued run waits for, in words: the running runs and the queued ones ahead of it."""
    entry = next((e for e in entries if e.run_id == run_id and e.position is not None), None)
    if entry is None:
        return ""
    ahead = [e for e in entries if e.position is None] + [e for e in entries if e.run_id in entry.ahead]
    return ", ".join(_name(e) for e in ahead) if ahead else t(lang, "queue_free")


def _eta(entry: Any, now: float, lang: str | None) -> str:
    if entry.estimated_start is None:
        return t(lang, "queue_unknown")
    seconds = entry.estimated_start - now
    if seconds <= 0:
        return t(lang, "queue_soon")
    return t(lang, "queue_in", value=format_duration(seconds),
             clock=time.strftime("%H:%M", time.localtime(entry.estimated_start)))


def queue_markdown(entries: Sequence[Any], steps: Mapping[str, tuple[Any, Any]] | None = None,
                   lang: str | None = None, now: float | None = None) -> str:
    """The live runs (with `steps`: run id -> (step, total steps)) and the queue: position, owner, what is
    ahead, estimated start."""
    now = time.time() if now is None else now
    steps = steps or {}
    live = [e for e in entries if e.position is None]
    lines = []
    if live:
        runs = ", ".join(f"**{html.escape(_name(e))}** ({status_word(e.status, lang)}, "
                         f"{steps.get(e.run_id, (0, None))[0] or 0}/{steps.get(e.run_id, (0, None))[1] or '?'})"
                         for e in live)
        lines.append(t(lang, "queue_live", runs=runs))
    queue = [e for e in entries if e.position is not None]
    if not queue:
        lines.append(t(lang, "queue_empty"))
        return "\n\n".join(lines)
    rows = [("- " + t(lang, "queue_row", position=e.position,
                      run=f"**{html.escape(_name(e))}** · {html.escape(e.owner)}",
                      ahead=html.escape(waits_for(e.run_id, entries, lang)), eta=_eta(e, now, lang)))
            for e in queue]
    lines.append(f"**{t(lang, 'queue')}**\n\n" + "\n".join(rows))
    return "\n\n".join(lines)
