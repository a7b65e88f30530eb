"""The events file of a run: one JSON object a line, shared by the trainer (writer) and the page (reader).

Every event has ``t`` (unix seconds, float) and ``type``. Types and their main keys:

- ``plan``: the resolved plan (see trainer.plan.Plan.to_dict) under ``plan``.
- ``log``: step, epoch, loss, learning_rate, grad_norm, tokens_per_second, samples_per_second,
  memory (a dict, see ``memory``).
- ``eval``: step, epoch, eval_loss.
- ``checkpoint``: step, path.
- ``memory``: device ("cuda:0" or "cpu"), and on a GPU allocated_gb, reserved_gb, peak_gb
  (torch, this process) and device_used_gb, device_total_gb (NVML, the whole card); on a CPU
  rss_gb (this process's resident memory) and system_total_gb.
- ``heartbeat``: step.
- ``status``: status (one of STATUSES), reason and advice on failure, and log_tail.
- ``message``: level, text (things the user should know that are not numbers).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from trainer.run.layout import EVENTS_FILE


QUEUED, RUNNING, FINISHED, ABORTED, FAILED, INTERRUPTED = (
    "queued", "running", "finished", "aborted", "failed", "interrupted")
STATUSES = (QUEUED, RUNNING, FINISHED, ABORTED, FAILED, INTERRUPTED)
FINAL_STATUSES = (FINISHED, ABORTED, FAILED, INTERRUPTED)

EVENT_TYPES = ("plan", "log", "eval", "checkpoint", "memory", "heartbeat", "status", "message")

# Failure kinds the trainer puts in a failed run's final status event (`kind`); the registry stores them.
FAILURE_KINDS = ("oom", "disk_full", "not_found", "template", "nan", "config", "data", "other")


def _clean(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as strings so a NaN loss survives the trip."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def number(value: Any) -> float | None:
    """An event's numeric value back as a float (NaN and infinities included), None if absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return _SPECIAL.get(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class EventWriter:
    """Appends events to a run's events.jsonl, one flushed line each (thread-safe)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def emit(self, type: str, **data: Any) -> dict[str, Any]:
        event = {"t": round(time.time(), 3), "type": type, **_clean(data)}
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            # Opened per event in append mode: a reader never sees a half line unless we crash mid-write,
            # and another writer (the job manager recording `interrupted`) can append safely.
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
        return event


def append_event(run_dir: str | Path, type: str, **data: Any) -> dict[str, Any]:
    return EventWriter(run_dir).emit(type, **data)


MAX_EVENT_LINE_BYTES = 1_000_000  # a plan or failure event is a few KB; a longer line is not ours to parse
MAX_READ_BYTES = 8_000_000  # per poll: a huge file is caught up over several polls, memory stays bounded


@dataclass
class EventReader:
    """Reads only the new complete lines of an events file, by byte offset, at most MAX_READ_BYTES a call.

    A line longer than MAX_EVENT_LINE_BYTES is skipped without being held in memory, and said: a
    `message` event (level warning) takes its place."""

    path: Path
    offset: int = 0
    bad_lines: int = 0
    skipped_lines: int = 0
    _partial: bytes = field(default=b"", repr=False)
    _skipping: int = field(default=0, repr=False)  # bytes of an over-long line dropped so far, 0 when none

    @classmethod
    def for_run(cls, run_dir: str | Path) -> "EventReader":
        return cls(Path(run_dir) / EVENTS_FILE)

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(MAX_READ_BYTES)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        events: list[dict[str, Any]] = []
        if self._skipping:
            end = chunk.find(b"\n")
            if end < 0:
                self._skipping += len(chunk)
                return []
            events.append(self._skipped(self._skipping + end))
            chunk, self._skipping = chunk[end + 1:], 0
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for the next read
        if len(self._partial) > MAX_EVENT_LINE_BYTES:
            self._skipping, self._partial = len(self._partial), b""
        for raw in lines:
            if len(raw) > MAX_EVENT_LINE_BYTES:
                events.append(self._skipped(len(raw)))
                continue
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(event, dict) and "type" in event:
                events.append(event)
        return events

    def _skipped(self, size: int) -> dict[str, Any]:
        self.skipped_lines += 1
        return {"t": round(time.time(), 3), "type": "message", "level": "warning",
                "text": f"{self.path.name}: a line of {size:,} bytes was skipped (events are at most "
                        f"{MAX_EVENT_LINE_BYTES:,} bytes)"}


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """All events of a run (read in bounded chunks)."""
    reader = EventReader.for_run(run_dir)
    events: list[dict[str, Any]] = []
    while True:
        before = reader.offset
        events += reader.read_new()
        if reader.offset == before:
            return events


def last_status(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    status = None
    for event in events:
        if event.get("type") == "status":
            status = event
    return status


def tail_lines(path: str | Path, n: int = 40, max_bytes: int = 64_000) -> list[str]:
    """The last n lines of a text file (e.g. stdout.log), without reading all of it."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-n:]
