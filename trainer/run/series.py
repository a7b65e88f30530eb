"""The one event summary of a run: what the page charts and the registry stores, from the same code.

`RunSummary` keeps the handful of numbers a run is listed by (best loss, step, status, ...);
`RunSeries` keeps everything the charts and alerts need, fed incrementally with new events, and
carries a RunSummary. Pure Python: no gradio, no torch, no plotly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from trainer.plan.mfu import live_mfu
from trainer.run.events import FINAL_STATUSES, RUNNING, number

MAX_SMOOTHING = 0.999
DEFAULT_MAX_POINTS = 1500  # points drawn per trace; long histories are downsampled to this


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _lowest(best: float | None, value: float) -> float:
    return value if best is None else min(best, value)


# --- smoothing ---------------------------------------------------------------------------------

def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """Exponential moving average with bias correction, causal.

    smoothed[i] depends only on values[:i + 1], so points appended later never change earlier ones
    (LlamaBoard's curve changes shape as the run grows; this one does not). Bias correction divides
    by 1 - weight**n, so the curve starts at the first value instead of creeping up from 0.
    Non-finite or missing values are skipped (their smoothed value is None) and do not poison the
    average; 0.0 is a value like any other. weight is clamped to [0, 0.999].
    """
    weight = min(max(float(weight), 0.0), MAX_SMOOTHING)
    out: list[float | None] = []
    accumulated = 0.0
    count = 0
    for value in values:
        if not _finite(value):
            out.append(None)
            continue
        count += 1
        accumulated = accumulated * weight + (1.0 - weight) * float(value)  # type: ignore[arg-type]
        out.append(accumulated / (1.0 - weight ** count) if weight > 0 else float(value))  # type: ignore[arg-type]
    return out


# --- incremental downsampling -----------------------------------------------------------------

class Decimator:
    """Append-only min/max downsampling: the same promise as `downsample_indices` (first, last, every
    extreme kept, at most max_points points) at O(1) amortised cost per appended point.

    Points fall into buckets of `width` consecutive points, each keeping its lowest and highest point;
    when there are too many buckets, neighbours merge pairwise and the width doubles. A tick of the
    page then costs the same at step 100,000 as at step 1,000.
    """

    def __init__(self, max_points: int = DEFAULT_MAX_POINTS):
        self.max_buckets = max(2, (max(int(max_points), 4) - 2) // 2)
        self.width = 1
        self.count = 0
        # each bucket: [points in it, (index, x, y) lowest, (index, x, y) highest]
        self.buckets: list[list[Any]] = []
        self.first: tuple[int, Any, float] | None = None
        self.last: tuple[int, Any, float] | None = None

    def append(self, x: Any, y: float) -> None:
        point = (self.count, x, y)
        self.count += 1
        if self.first is None:
            self.first = point
        self.last = point
        if self.buckets and self.buckets[-1][0] < self.width:
            bucket = self.buckets[-1]
            bucket[0] += 1
            if y < bucket[1][2]:
                bucket[1] = point
            if y > bucket[2][2]:
                bucket[2] = point
        else:
            self.buckets.append([1, point, point])
            if len(self.buckets) > self.max_buckets:
                self._merge()

    def _merge(self) -> None:
        merged = []
        for i in range(0, len(self.buckets), 2):
            pair = self.buckets[i:i + 2]
            lo = min((b[1] for b in pair), key=lambda p: p[2])
            hi = max((b[2] for b in pair), key=lambda p: p[2])
            merged.append([sum(b[0] for b in pair), lo, hi])
        self.buckets = merged
        self.width *= 2

    def points(self) -> tuple[list[Any], list[float]]:
        kept = {p[0]: p for b in self.buckets for p in (b[1], b[2])}
        for p in (self.first, self.last):
            if p is not None:
                kept[p[0]] = p
        ordered = [kept[i] for i in sorted(kept)]
        return [p[1] for p in ordered], [p[2] for p in ordered]


@dataclass
class _SmoothedLoss:
    """The EMA of one smoothing weight, extended as the loss grows (same numbers as `ema`)."""

    weight: float
    values: list[float | None] = field(default_factory=list)
    decimator: Decimator = field(default_factory=Decimator)
    accumulated: float = 0.0
    count: int = 0

    def extend(self, steps: Sequence[int], loss: Sequence[float]) -> None:
        w = self.weight
        for i in range(len(self.values), len(loss)):
            value = loss[i]
            if not math.isfinite(value):
                self.values.append(None)
                continue
            self.count += 1
            self.accumulated = self.accumulated * w + (1.0 - w) * value
            smoothed = self.accumulated / (1.0 - w ** self.count) if w > 0 else value
            self.values.append(smoothed)
            self.decimator.append(steps[i], smoothed)


# --- the summary of one run: what the registry stores and every view shows ----------------------------

@dataclass
class RunSummary:
    """The few numbers that describe a run, grown event by event; the registry's columns and the page's
    series both come from here, so the Runs table and the Monitor tab never disagree.

    - ``best_loss``: the lowest finite *training* loss logged (each `log` event's loss is the mean over
      its logging_steps window). Training loss because every run logs it, so runs compare in one table.
    - ``best_eval_loss``: the lowest finite eval loss, None when the run does not evaluate.
    - ``last_loss``: the newest finite training loss.
    - ``step``: the furthest step of the current attempt (any event's `step`; a resumed attempt starts
      again from its checkpoint's step).
    - ``total_steps``: from the newest plan event. ``status``: the newest status event.
    - ``attempts``: [start, end] of each attempt (a `running` status to the final status, or to the last
      event before the next attempt when it ended without one): a resumed run's time is all of them.
    """

    best_loss: float | None = None
    best_eval_loss: float | None = None
    last_loss: float | None = None
    step: int | None = None
    total_steps: int | None = None
    status: dict[str, Any] | None = None
    attempts: list[list[float]] = field(default_factory=list)
    _new_attempt: bool = field(default=False, repr=False)
    _open: bool = field(default=False, repr=False)

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        self._clock(kind, event)
        step = event.get("step")
        if isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step):
            if self.step is None or self._new_attempt:
                self.step = int(step)
            else:
                self.step = max(self.step, int(step))
            self._new_attempt = False
        if kind == "log":
            loss = number(event.get("loss"))
            if _finite(loss):
                self.last_loss = loss
                self.best_loss = _lowest(self.best_loss, loss)
        elif kind == "eval":
            loss = number(event.get("eval_loss"))
            if _finite(loss):
                self.best_eval_loss = _lowest(self.best_eval_loss, loss)
        elif kind == "plan":
            plan = event.get("plan") if isinstance(event.get("plan"), dict) else event
            total = plan.get("total_steps")
            if isinstance(total, int) and not isinstance(total, bool) and total > 0:
                self.total_steps = total
        elif kind == "status":
            self.status = event
            if event.get("status") == RUNNING:
                self._new_attempt = True

    def _clock(self, kind: Any, event: dict[str, Any]) -> None:
        t = number(event.get("t"))
        if not _finite(t):
            return
        if kind == "status" and event.get("status") == RUNNING:
            self.attempts.append([t, t])  # an open attempt left before it is closed at its last event
            self._open = True
        elif self._open:
            self.attempts[-1][1] = max(self.attempts[-1][1], t)
            if kind == "status" and event.get("status") in FINAL_STATUSES:
                self._open = False

    def active_seconds(self, now: float | None = None) -> float | None:
        """Seconds the run has spent running, over all its attempts (None before it first ran). A live
        attempt counts up to `now`; without `now`, up to its newest event."""
        if not self.attempts:
            return None
        if self._open and now is not None:
            return self.earlier_attempts_seconds + max(0.0, now - self.attempts[-1][0])
        return sum(end - start for start, end in self.attempts)

    @property
    def earlier_attempts_seconds(self) -> float:
        """Seconds spent in the attempts before the newest one (0 for a run that never resumed)."""
        return sum(end - start for start, end in self.attempts[:-1])

    def update(self, events: Iterable[dict[str, Any]]) -> bool:
        """Add events; True when a number or the status changed."""
        before = self.numbers(), self.status, len(self.attempts)
        for event in events:
            self.add(event)
        return (self.numbers(), self.status, len(self.attempts)) != before

    def numbers(self) -> tuple[float | None, float | None, float | None, int | None, int | None]:
        return self.best_loss, self.best_eval_loss, self.last_loss, self.step, self.total_steps

    @property
    def state(self) -> str | None:
        return self.status.get("status") if self.status else None

    @property
    def final_status_at(self) -> float | None:
        """`t` of the newest status event when it is a final one (finished, aborted, failed, interrupted)."""
        if self.status is None or self.status.get("status") not in FINAL_STATUSES:
            return None
        return number(self.status.get("t"))


# --- the series of one run, fed incrementally ------------------------------------------------------

@dataclass
class MemoryPoint:
    elapsed_s: float
    device: str  # "cpu" or "cuda:0"
    values: dict[str, float]  # allocated_gb, reserved_gb, peak_gb, device_used_gb, device_total_gb, rss_gb, ...


@dataclass
class RunSeries:
    """Everything the charts need of one run, grown by `extend(new_events)`; never re-parsed."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # may hold NaN / inf: charts skip them, alerts report them
    epochs: list[float | None] = field(default_factory=list)
    learning_rate: list[tuple[int, float]] = field(default_factory=list)
    grad_norm: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_second: list[tuple[int, float]] = field(default_factory=list)
    samples_per_second: list[tuple[int, float]] = field(default_factory=list)
    mfu: list[tuple[int, float]] = field(default_factory=list)  # from tokens/s and the plan (trainer/plan/mfu.py)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    memory: list[MemoryPoint] = field(default_factory=list)
    memory_devices: list[str] = field(default_factory=list)  # "rank 0 (cuda:0)", ...: a run of several processes
    checkpoints: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    summary: RunSummary = field(default_factory=RunSummary)  # best loss, step, status: what the registry stores
    first_t: float | None = None
    last_t: float | None = None
    first_log_t: float | None = None  # the current attempt's pace starts here, after model loading
    first_log_step: int | None = None
    last_log_t: float | None = None
    last_log_step: int | None = None
    # The pace of the earlier attempts (seconds and steps between their first and last log), so a resume
    # neither restarts the remaining time nor judges it from its first few steps alone.
    earlier_pace_seconds: float = 0.0
    earlier_pace_steps: int = 0
    memory_breaks: list[float] = field(default_factory=list)  # elapsed_s where a later attempt's memory begins
    events_seen: int = 0
    # Incremental views for the charts and alerts, so a tick's cost does not grow with the history.
    nonfinite_loss_steps: list[int] = field(default_factory=list)
    nonfinite_kinds: set[str] = field(default_factory=set)
    finite_loss_steps: list[int] = field(default_factory=list)
    finite_loss_prefix: list[float] = field(default_factory=lambda: [0.0])  # running sums of the finite losses
    _decimators: dict[str, Decimator] = field(default_factory=dict, repr=False)
    _smoothed: dict[float, _SmoothedLoss] = field(default_factory=dict, repr=False)
    _message_keys: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _attempt_has_memory: bool = field(default=False, repr=False)

    def extend(self, events: Iterable[dict[str, Any]]) -> int:
        """Add new events; returns how many were added."""
        added = 0
        for event in events:
            added += 1
            self._add(event)
        self.events_seen += added
        return added

    def _add(self, event: dict[str, Any]) -> None:
        self.summary.add(event)
        kind = event.get("type")
        t = number(event.get("t"))
        if _finite(t):
            if self.first_t is None:
                self.first_t = t
            self.last_t = t
        step = event.get("step")
        if kind == "log":
            self._add_log(event)
        elif kind == "eval":
            value = number(event.get("eval_loss"))
            if value is not None and isinstance(step, (int, float)):
                self.eval_steps.append(int(step))
                self.eval_loss.append(value)
        elif kind == "memory":
            self._add_memory(t, event)
        elif kind == "plan":
            plan = event.get("plan")
            self.plan = plan if isinstance(plan, dict) else {k: v for k, v in event.items() if k not in ("t", "type")}
        elif kind == "status":
            if event.get("status") == RUNNING and _finite(t):
                self._new_attempt()
        elif kind == "checkpoint" and isinstance(step, (int, float)):
            self.checkpoints.append(int(step))
        elif kind == "message":
            self._add_message(event)

    def _new_attempt(self) -> None:
        if self.first_log_t is not None and self.last_log_t is not None:
            self.earlier_pace_seconds += self.last_log_t - self.first_log_t
            self.earlier_pace_steps += (self.last_log_step or 0) - (self.first_log_step or 0)
        self.first_log_t = self.first_log_step = self.last_log_t = self.last_log_step = None
        if self.memory:
            self._attempt_has_memory = False  # the next memory point starts a new line, after a gap

    def _add_message(self, event: dict[str, Any]) -> None:
        """A resumed attempt repeats its start-up notes (trainable parameters, dataset warnings): once is enough."""
        key = (str(event.get("level")), str(event.get("text")))
        if key not in self._message_keys:
            self._message_keys.add(key)
            self.messages.append(event)

    def _add_log(self, event: dict[str, Any]) -> None:
        step = event.get("step")
        if not isinstance(step, (int, float)):
            return
        step = int(step)
        t = number(event.get("t"))
        if _finite(t):
            if self.first_log_t is None:
                self.first_log_t, self.first_log_step = t, step
            self.last_log_t, self.last_log_step = t, step
        loss = number(event.get("loss"))
        if loss is not None:
            self.steps.append(step)
            self.loss.append(loss)
            self.epochs.append(number(event.get("epoch")))
            if math.isfinite(loss):
                self.finite_loss_steps.append(step)
                self.finite_loss_prefix.append(self.finite_loss_prefix[-1] + loss)
                self._decimate("loss", step, loss)
            else:
                self.nonfinite_loss_steps.append(step)
                self.nonfinite_kinds.add("NaN" if math.isnan(loss) else "infinite")
        for key, target in (("learning_rate", self.learning_rate), ("grad_norm", self.grad_norm),
                            ("tokens_per_second", self.tokens_per_second),
                            ("samples_per_second", self.samples_per_second)):
            value = number(event.get(key))
            if value is not None:
                target.append((step, value))
                if math.isfinite(value):
                    self._decimate(key, step, value)
        utilisation = live_mfu(self.plan, number(event.get("tokens_per_second")))
        if utilisation is not None:
            self.mfu.append((step, utilisation))
            self._decimate("mfu", step, utilisation)
        memory = event.get("memory")
        if isinstance(memory, dict):
            self._add_memory(number(event.get("t")), memory)

    def _add_memory(self, t: float | None, data: dict[str, Any]) -> None:
        values = {k: v for k, v in ((k, number(v)) for k, v in data.items() if k.endswith("_gb"))
                  if _finite(v)}
        if not values or not _finite(t) or self.first_t is None:
            return
        point = MemoryPoint(round(t - self.first_t, 3), str(data.get("device") or "cpu"), values)  # type: ignore[operator,arg-type]
        if self.memory and not self._attempt_has_memory:
            self.memory_breaks.append(point.elapsed_s)
        self._attempt_has_memory = True
        self.memory.append(point)
        group = "cuda" if point.device.startswith("cuda") else "cpu"
        for key, value in values.items():
            self._decimate(f"memory:{group}:{key}", point.elapsed_s, value)
        devices = data.get("devices")
        if isinstance(devices, list) and len(devices) > 1:  # every rank's own device, gathered by rank 0
            for reading in devices:
                if isinstance(reading, dict):
                    self._add_device_memory(point.elapsed_s, reading)

    def _add_device_memory(self, elapsed_s: float, reading: dict[str, Any]) -> None:
        device = str(reading.get("device") or "cpu")
        label = f"rank {reading['rank']} ({device})" if isinstance(reading.get("rank"), int) else device
        if label not in self.memory_devices:
            self.memory_devices.append(label)
        for key, value in reading.items():
            value = number(value)
            if key.endswith("_gb") and _finite(value):
                self._decimate(f"memory:device:{label}:{key}", elapsed_s, value)  # type: ignore[arg-type]

    def _decimate(self, key: str, x: Any, y: float) -> None:
        decimator = self._decimators.get(key)
        if decimator is None:
            decimator = self._decimators[key] = Decimator()
        decimator.append(x, y)

    def decimated(self, key: str) -> tuple[list[Any], list[float]]:
        """A trace's points, downsampled incrementally (keys: loss, learning_rate, grad_norm, ...)."""
        decimator = self._decimators.get(key)
        return decimator.points() if decimator else ([], [])

    def smoothed(self, weight: float) -> _SmoothedLoss:
        """The causal EMA of the loss at this weight, cached and extended with new points only."""
        weight = min(max(float(weight), 0.0), MAX_SMOOTHING)
        cached = self._smoothed.get(weight)
        if cached is None:
            if len(self._smoothed) >= 4:  # a slider being dragged: keep only a few recent weights
                self._smoothed.pop(next(iter(self._smoothed)))
            cached = self._smoothed[weight] = _SmoothedLoss(weight)
        cached.extend(self.steps, self.loss)
        return cached

    def break_at_gaps(self, xs: Sequence[Any], ys: Sequence[float]) -> tuple[list[Any], list[float | None]]:
        """A memory trace (x = elapsed seconds) with a None between attempts, so a chart leaves the downtime
        of a resumed run blank instead of drawing a line across it."""
        if not self.memory_breaks:
            return list(xs), list(ys)
        out_x: list[Any] = []
        out_y: list[float | None] = []
        breaks, i, previous = self.memory_breaks, 0, None
        for x, y in zip(xs, ys):
            while i < len(breaks) and breaks[i] <= x:
                if previous is not None and breaks[i] > previous:  # an attempt began between these two points
                    out_x.append(breaks[i])
                    out_y.append(None)
                i += 1
            out_x.append(x)
            out_y.append(y)
            previous = x
        return out_x, out_y

    # --- time -----------------------------------------------------------------------------------
    def elapsed_seconds(self, now: float | None = None) -> float | None:
        """Time spent running, all attempts together (a resume does not restart the clock)."""
        return self.summary.active_seconds(now)

    def remaining_seconds(self, now: float | None = None) -> float | None:
        """Time to the last step at the pace of every attempt so far (seconds per step between logs, model
        loading left out). None until two steps of pace exist; 0 once the run has ended."""
        if self.state in FINAL_STATUSES:
            return 0.0 if self.total_steps else None
        total, step = self.total_steps, self.last_step
        if not total:
            return None
        if step >= total:
            return 0.0
        seconds, steps = self.earlier_pace_seconds, self.earlier_pace_steps
        if self.first_log_t is not None and self.first_log_step is not None:
            end = now if now is not None else self.last_log_t
            seconds += max(0.0, (end or self.first_log_t) - self.first_log_t)
            steps += (self.last_log_step or self.first_log_step) - self.first_log_step
        if steps <= 0:
            return None
        return seconds / steps * (total - step)

    # --- derived numbers for the page ---------------------------------------------------------
    @property
    def best_loss(self) -> float | None:
        return self.summary.best_loss

    @property
    def best_eval_loss(self) -> float | None:
        return self.summary.best_eval_loss

    @property
    def last_step(self) -> int:
        return self.summary.step or 0

    @property
    def total_steps(self) -> int | None:
        return self.summary.total_steps

    @property
    def status(self) -> dict[str, Any] | None:
        """The last status event."""
        return self.summary.status

    @property
    def state(self) -> str | None:
        return self.summary.state


