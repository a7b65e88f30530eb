"""The line of queued runs, as people see it: each waiting run's position, what is ahead of it, and an
estimated start from the running runs' progress. Pure functions over registry rows: no SQLite, no torch.

One training per GPU: a machine with N GPUs (or one CPU slot) trains `slots` runs at a time, each run on
its own GPU, and the head of the line starts on whichever frees first — several GPUs, several queues fed
from one fair line, so a long run on one GPU never blocks the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from trainer.jobs.registry import RunInfo


@dataclass(frozen=True)
class QueueEntry:
    """One run of the line. `estimated_start` (unix seconds) is None when it cannot be told: a running run
    that has not logged a step yet, or a place further back than the GPUs, behind runs whose length is
    unknown until they start."""

    run_id: str
    name: str
    owner: str
    status: str  # running or queued
    position: int | None  # 1 for the next run to start; None for a running run
    ahead: tuple[str, ...]  # ids of the queued runs that start before this one
    gpu: str | None
    estimated_start: float | None
    estimated_end: float | None  # running runs only: from the steps per second so far

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ahead"] = list(self.ahead)
        return data


def remaining_seconds(info: RunInfo, now: float) -> float | None:
    """Time left of a running run at its pace so far (steps done / time since it started), or None while
    it has not logged a step. A resumed attempt counts its checkpoint's steps as done fast, so its
    estimate errs early; it corrects itself as the attempt goes on."""
    if info.started_at is None or not info.step or not info.total_steps or info.step <= 0:
        return None
    elapsed = max(now - info.started_at, 0.0)
    left = max(info.total_steps - info.step, 0)
    return elapsed / info.step * left


def queue_view(running: Sequence[RunInfo], queued: Sequence[RunInfo], slots: int, now: float) -> list[QueueEntry]:
    """Running runs first (with their estimated end), then the queued ones in the order they will start.

    The p-th queued run takes the p-th GPU to free up: its estimated start is that GPU's estimated free
    time when p <= slots, else unknown (None)."""
    entries: list[QueueEntry] = []
    free_at: list[float | None] = []
    for info in running:
        left = remaining_seconds(info, now)
        end = None if left is None else now + left
        free_at.append(end)
        entries.append(QueueEntry(info.id, info.name, info.owner, info.status, None, (), info.gpu, info.started_at,
                                  end))
    free_at.extend([now] * max(slots - len(running), 0))
    # Unknown free times sort last: a known one is the better promise for the head of the line.
    free_at.sort(key=lambda t: (t is None, t or 0.0))
    for index, info in enumerate(queued):
        start = free_at[index] if index < len(free_at) else None
        entries.append(QueueEntry(info.id, info.name, info.owner, info.status, index + 1,
                                  tuple(q.id for q in queued[:index]), None, start, None))
    return entries
