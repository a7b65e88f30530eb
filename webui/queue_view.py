"""The queue panel as a pure function: which runs are live, and for each queued run its position, what
it waits for and when it may start. Built from the registry's rows (JobManager.list_runs) and the
remaining time of each running run (from its event series); no gradio, no torch.
"""

from __future__ import annotations

import html
import time
from typing import Any, Callable, Sequence

from .charts import format_duration
from .i18n import t
from .views import status_word


def _name(info: Any) -> str:
    return f"{info.name} ({info.id[-6:]})"


def queued_in_order(infos: Sequence[Any]) -> list[Any]:
    """Queued runs in the order the scheduler starts them: oldest first."""
    return sorted((i for i in infos if i.status == "queued"), key=lambda i: (i.created_at, i.id))


def estimated_starts(infos: Sequence[Any], remaining_of: Callable[[Any], float | None],
                     slots: int) -> dict[str, float | None]:
    """run id -> seconds until each queued run may start (None: unknown).

    A queued run starts when one of the `slots` frees up: a free slot now, or a running run's end (its
    remaining time from its pace). Runs ahead in the queue take the earlier slots; as their own length is
    unknown until they have run, a run that must wait for another queued run's end has no estimate."""
    running = [i for i in infos if i.status == "running"]
    free_at: list[float | None] = [remaining_of(i) for i in running]
    free_at += [0.0] * max(0, slots - len(running))
    known = sorted(x for x in free_at if x is not None)
    return {info.id: known[position] if position < len(known) else None
            for position, info in enumerate(queued_in_order(infos))}


def waits_for(info: Any, infos: Sequence[Any], lang: str | None = None) -> str:
    """What a queued run waits for, in words: the running runs and the queued ones ahead of it."""
    queue = [q.id for q in queued_in_order(infos)]
    if info.id not in queue:
        return ""
    ahead_ids = set(queue[:queue.index(info.id)])
    ahead = [i for i in infos if i.status == "running"] + [i for i in queued_in_order(infos) if i.id in ahead_ids]
    return ", ".join(_name(i) for i in ahead) if ahead else t(lang, "queue_free")


def queue_markdown(infos: Sequence[Any], remaining_of: Callable[[Any], float | None], slots: int,
                   lang: str | None = None, now: float | None = None) -> str:
    """The live runs and the queue: position, what is ahead, estimated start."""
    now = time.time() if now is None else now
    live = [i for i in infos if i.status == "running"]
    lines = []
    if live:
        runs = ", ".join(f"**{html.escape(_name(i))}** ({status_word(i.status, lang)}, "
                         f"{i.step or 0}/{i.total_steps or '?'})" for i in live)
        lines.append(t(lang, "queue_live", runs=runs))
    queue = queued_in_order(infos)
    if not queue:
        lines.append(t(lang, "queue_empty"))
        return "\n\n".join(lines)
    starts = estimated_starts(infos, remaining_of, slots)
    rows = []
    for position, info in enumerate(queue, start=1):
        seconds = starts.get(info.id)
        if seconds is None:
            eta = t(lang, "queue_unknown")
        elif seconds <= 0:
            eta = t(lang, "queue_soon")
        else:
            eta = t(lang, "queue_in", value=format_duration(seconds),
                    clock=time.strftime("%H:%M", time.localtime(now + seconds)))
        rows.append("- " + t(lang, "queue_row", position=position, run=f"**{html.escape(_name(info))}**",
                             ahead=html.escape(waits_for(info, infos, lang)), eta=eta))
    lines.append(f"**{t(lang, 'queue')}**\n\n" + "\n".join(rows))
    return "\n\n".join(lines)
