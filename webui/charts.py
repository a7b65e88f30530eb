"""Charts as pure functions: events -> series -> plotly figures.

No gradio here, no torch: everything is unit-tested on plain lists. The page feeds a `RunSeries`
with only the new events of a run (see webui/state.py) and draws figures from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import plotly.graph_objects as go

from trainer.run.events import number

MAX_SMOOTHING = 0.999
DEFAULT_MAX_POINTS = 1500  # points drawn per trace; long histories are downsampled to this

# One palette for every chart, so a run keeps its colour from chart to chart.
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


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


# --- downsampling ------------------------------------------------------------------------------

def downsample_indices(values: Sequence[float], max_points: int = DEFAULT_MAX_POINTS) -> list[int]:
    """Indices of at most max_points values that keep the shape: first, last, and min and max per bucket.

    A plain stride would drop the loss spikes a user most needs to see; min/max per bucket keeps
    every extreme of its bucket, so the global minimum and maximum always survive.
    """
    n = len(values)
    max_points = max(int(max_points), 4)
    if n <= max_points:
        return list(range(n))
    buckets = (max_points - 2) // 2  # two points per bucket, plus first and last
    inner = n - 2
    keep = {0, n - 1}
    for b in range(buckets):
        start = 1 + (b * inner) // buckets
        stop = 1 + ((b + 1) * inner) // buckets
        if start >= stop:
            continue
        lo = hi = start
        for i in range(start + 1, stop):
            if values[i] < values[lo]:
                lo = i
            if values[i] > values[hi]:
                hi = i
        keep.add(lo)
        keep.add(hi)
    return sorted(keep)


def downsample(xs: Sequence[Any], ys: Sequence[float], max_points: int = DEFAULT_MAX_POINTS
               ) -> tuple[list[Any], list[float]]:
    idx = downsample_indices(ys, max_points)
    return [xs[i] for i in idx], [ys[i] for i in idx]


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
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    memory: list[MemoryPoint] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    status: dict[str, Any] | None = None  # the last status event
    first_t: float | None = None
    running_since: float | None = None  # t of the last `running` status: the clock of the current attempt
    last_t: float | None = None
    first_log_t: float | None = None  # pace for the remaining time starts here, after model loading
    first_log_step: int | None = None
    last_step: int = 0
    events_seen: int = 0
    # Incremental views for the charts and alerts, so a tick's cost does not grow with the history.
    nonfinite_loss_steps: list[int] = field(default_factory=list)
    nonfinite_kinds: set[str] = field(default_factory=set)
    finite_loss_steps: list[int] = field(default_factory=list)
    finite_loss_prefix: list[float] = field(default_factory=lambda: [0.0])  # running sums of the finite losses
    lowest_loss: float | None = None
    _decimators: dict[str, Decimator] = field(default_factory=dict, repr=False)
    _smoothed: dict[float, _SmoothedLoss] = field(default_factory=dict, repr=False)

    def extend(self, events: Iterable[dict[str, Any]]) -> int:
        """Add new events; returns how many were added."""
        added = 0
        for event in events:
            added += 1
            self._add(event)
        self.events_seen += added
        return added

    def _add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        t = number(event.get("t"))
        if _finite(t):
            if self.first_t is None:
                self.first_t = t
            self.last_t = t
        step = event.get("step")
        if isinstance(step, (int, float)) and math.isfinite(step):
            self.last_step = max(self.last_step, int(step))
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
            self.status = event
            if event.get("status") == "running" and _finite(t):
                self.running_since = t
                self.first_log_t = self.first_log_step = None  # a resumed run sets a new pace
        elif kind == "checkpoint" and isinstance(step, (int, float)):
            self.checkpoints.append(int(step))
        elif kind == "message":
            self.messages.append(event)

    def _add_log(self, event: dict[str, Any]) -> None:
        step = event.get("step")
        if not isinstance(step, (int, float)):
            return
        step = int(step)
        t = number(event.get("t"))
        if self.first_log_t is None and _finite(t):
            self.first_log_t, self.first_log_step = t, step
        loss = number(event.get("loss"))
        if loss is not None:
            self.steps.append(step)
            self.loss.append(loss)
            self.epochs.append(number(event.get("epoch")))
            if math.isfinite(loss):
                self.finite_loss_steps.append(step)
                self.finite_loss_prefix.append(self.finite_loss_prefix[-1] + loss)
                self.lowest_loss = loss if self.lowest_loss is None else min(self.lowest_loss, loss)
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
        memory = event.get("memory")
        if isinstance(memory, dict):
            self._add_memory(number(event.get("t")), memory)

    def _add_memory(self, t: float | None, data: dict[str, Any]) -> None:
        values = {k: v for k, v in ((k, number(v)) for k, v in data.items() if k.endswith("_gb"))
                  if _finite(v)}
        if not values or not _finite(t) or self.first_t is None:
            return
        point = MemoryPoint(round(t - self.first_t, 3), str(data.get("device") or "cpu"), values)  # type: ignore[operator,arg-type]
        self.memory.append(point)
        group = "cuda" if point.device.startswith("cuda") else "cpu"
        for key, value in values.items():
            self._decimate(f"memory:{group}:{key}", point.elapsed_s, value)

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

    # --- derived numbers for the page ---------------------------------------------------------
    @property
    def best_loss(self) -> float | None:
        return self.lowest_loss

    @property
    def total_steps(self) -> int | None:
        if self.plan and isinstance(self.plan.get("total_steps"), int):
            return self.plan["total_steps"]
        return None

    @property
    def state(self) -> str | None:
        return self.status.get("status") if self.status else None


# --- figures -------------------------------------------------------------------------------------

def _layout(fig: go.Figure, title: str, *, x_title: str, y_title: str, height: int = 300) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=height, margin={"l": 55, "r": 15, "t": 40, "b": 40},
        template="plotly_white", hovermode="x unified",
        legend={"orientation": "h", "y": -0.2, "x": 0},
        xaxis_title=x_title, yaxis_title=y_title,
        uirevision="keep",  # keep the user's zoom and toggled traces across redraws
    )
    return fig


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 13, "color": "#6b7280"})
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def _points(series: RunSeries, key: str, pairs: Callable[[], list[tuple[Any, float]]],
            max_points: int | None) -> tuple[list[Any], list[float]]:
    """A trace's points: the series' incremental downsampling by default; a full pass for another max_points."""
    if max_points is None:
        return series.decimated(key)
    full = pairs()
    return downsample([x for x, _ in full], [y for _, y in full], max_points)


def _positive(xs: list[Any], ys: list[float]) -> tuple[list[Any], list[float]]:
    kept = [(x, y) for x, y in zip(xs, ys) if y > 0]
    return [x for x, _ in kept], [y for _, y in kept]


def loss_figure(series: RunSeries, smoothing: float = 0.6, log_scale: bool = False,
                max_points: int | None = None, title: str = "Loss") -> go.Figure:
    """Raw loss faint, smoothed loss bold, eval loss as points, non-finite losses marked."""
    fig = _layout(go.Figure(), title, x_title="step", y_title="loss" + (" (log scale)" if log_scale else ""))
    raw_x, raw_y = _points(series, "loss", lambda: [(s, v) for s, v in zip(series.steps, series.loss)
                                                    if math.isfinite(v)], max_points)
    if log_scale:
        raw_x, raw_y = _positive(raw_x, raw_y)
    if not raw_x and not series.eval_loss:
        return _empty(fig, "waiting for the first logged step…")
    if raw_x:
        fig.add_trace(go.Scatter(x=raw_x, y=raw_y, mode="lines", name="loss (raw)",
                                 line={"color": PALETTE[0], "width": 1}, opacity=0.3))
        smoothed = series.smoothed(smoothing)
        if max_points is None:
            xs, ys = smoothed.decimator.points()
        else:
            pairs = [(s, v) for s, v in zip(series.steps, smoothed.values) if v is not None]
            xs, ys = downsample([s for s, _ in pairs], [v for _, v in pairs], max_points)
        if log_scale:
            xs, ys = _positive(xs, ys)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"loss (smoothed {smoothing:g})",
                                     line={"color": PALETTE[0], "width": 2.5}))
    bad = series.nonfinite_loss_steps
    if bad:
        anchor = max(raw_y, default=1.0)
        fig.add_trace(go.Scatter(x=list(bad), y=[anchor] * len(bad), mode="markers", name="NaN / inf loss",
                                 marker={"symbol": "x", "size": 10, "color": PALETTE[1]}))
    evals = [(s, v) for s, v in zip(series.eval_steps, series.eval_loss)
             if math.isfinite(v) and (v > 0 or not log_scale)]
    if evals:
        fig.add_trace(go.Scatter(x=[s for s, _ in evals], y=[v for _, v in evals], mode="markers+lines",
                                 name="eval loss", line={"color": PALETTE[3], "width": 1, "dash": "dot"},
                                 marker={"size": 8, "color": PALETTE[3]}))
    if log_scale:
        fig.update_yaxes(type="log")
    return fig


MEMORY_LABELS = {
    "allocated_gb": "allocated (PyTorch)",
    "reserved_gb": "reserved (PyTorch)",
    "peak_gb": "peak allocated",
    "device_used_gb": "device used (whole card)",
    "device_total_gb": "device total",
    "rss_gb": "process RAM (RSS)",
    "system_total_gb": "system RAM total",
}


def memory_figure(series: RunSeries, max_points: int | None = None) -> go.Figure:
    """GPU allocated/reserved/peak and device used vs total; on a CPU the process's RAM, labelled so."""
    points = series.memory
    on_gpu = any(key.startswith("memory:cuda:") for key in series._decimators)
    title = "GPU memory" if on_gpu else ("CPU: process memory (RSS)" if points else "Memory")
    fig = _layout(go.Figure(), title, x_title="elapsed (s)", y_title="GB")
    if not points:
        return _empty(fig, "waiting for the first memory reading…")
    group = "cuda" if on_gpu else "cpu"
    keys = ("allocated_gb", "reserved_gb", "peak_gb", "device_used_gb", "device_total_gb") if on_gpu else ("rss_gb",)
    for i, key in enumerate(keys):
        xs, ys = _points(series, f"memory:{group}:{key}",
                         lambda: [(p.elapsed_s, p.values[key]) for p in points  # noqa: B023 - used at once
                                  if key in p.values and p.device.startswith(group)], max_points)
        if not xs:
            continue
        total = key.endswith("total_gb")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=MEMORY_LABELS[key],
                                 line={"color": "#111827" if total else PALETTE[(i + 2) % len(PALETTE)],
                                       "width": 1.5, "dash": "dash" if total else "solid"}))
    last = points[-1].values
    if not on_gpu and "system_total_gb" in last:
        fig.add_annotation(text=f"of {last['system_total_gb']:.1f} GB system RAM", showarrow=False,
                           xref="paper", yref="paper", x=1, y=1.08, xanchor="right",
                           font={"size": 11, "color": "#6b7280"})
    fig.update_yaxes(rangemode="tozero")
    return fig


def _finite_pairs(pairs: list[tuple[int, float]]) -> Callable[[], list[tuple[int, float]]]:
    return lambda: [(s, v) for s, v in pairs if math.isfinite(v)]


def _twin_axis_figure(series: RunSeries, title: str, left: tuple[str, str, str], right: tuple[str, str, str],
                      max_points: int | None) -> go.Figure:
    """Two series of a run on one step axis: ``left`` and ``right`` are (RunSeries attribute, name, colour)."""
    fig = _layout(go.Figure(), title, x_title="step", y_title=left[1])
    if not getattr(series, left[0]) and not getattr(series, right[0]):
        return _empty(fig, "waiting for the first logged step…")
    for (key, name, color), axis in ((left, "y"), (right, "y2")):
        xs, ys = _points(series, key, _finite_pairs(getattr(series, key)), max_points)
        if not xs:
            continue
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, yaxis=axis, line={"color": color}))
        if axis == "y2":
            fig.update_layout(yaxis2={"title": name, "overlaying": "y", "side": "right", "showgrid": False,
                                      "rangemode": "tozero"}, margin={"r": 55})
    return fig


def lr_gradnorm_figure(series: RunSeries, max_points: int | None = None) -> go.Figure:
    fig = _twin_axis_figure(series, "Learning rate and gradient norm", ("learning_rate", "learning rate", PALETTE[4]),
                            ("grad_norm", "gradient norm", PALETTE[5]), max_points)
    fig.update_yaxes(exponentformat="e", selector={"anchor": "x"})
    return fig


def throughput_figure(series: RunSeries, max_points: int | None = None) -> go.Figure:
    fig = _twin_axis_figure(series, "Throughput", ("tokens_per_second", "tokens / s", PALETTE[2]),
                            ("samples_per_second", "samples / s", PALETTE[3]), max_points)
    fig.update_yaxes(rangemode="tozero")
    return fig


def compare_loss_figure(runs: Sequence[tuple[str, RunSeries]], smoothing: float = 0.6, log_scale: bool = False,
                        max_points: int | None = None) -> go.Figure:
    """Smoothed loss of several runs overlaid (eval loss as diamonds in the same colour)."""
    fig = _layout(go.Figure(), "Smoothed loss, compared", x_title="step", y_title="loss", height=380)
    if not runs:
        return _empty(fig, "select two or more runs to compare")
    for i, (name, series) in enumerate(runs):
        colour = PALETTE[i % len(PALETTE)]
        smoothed = series.smoothed(smoothing)
        if max_points is None:
            xs, ys = smoothed.decimator.points()
        else:
            pairs = [(s, v) for s, v in zip(series.steps, smoothed.values) if v is not None]
            xs, ys = downsample([s for s, _ in pairs], [v for _, v in pairs], max_points)
        if log_scale:
            xs, ys = _positive(xs, ys)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line={"color": colour, "width": 2}))
        evals = [(s, v) for s, v in zip(series.eval_steps, series.eval_loss) if math.isfinite(v)]
        if evals:
            fig.add_trace(go.Scatter(x=[s for s, _ in evals], y=[v for _, v in evals], mode="markers",
                                     name=f"{name} (eval)", marker={"color": colour, "size": 7, "symbol": "diamond"}))
    if log_scale:
        fig.update_yaxes(type="log")
    return fig


# --- words for the progress line ---------------------------------------------------------------

def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@dataclass
class Progress:
    step: int
    total: int | None
    elapsed_s: float | None
    remaining_s: float | None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.step / self.total)


def progress(series: RunSeries, now: float | None = None) -> Progress:
    """Step/total, elapsed and remaining time (remaining from the pace of the current attempt)."""
    step, total = series.last_step, series.total_steps
    if series.state == "queued":  # waiting (again, after a resume): no clock runs yet
        return Progress(step, total, None, None)
    start = series.running_since if series.running_since is not None else series.first_t
    final = series.state in ("finished", "aborted", "failed", "interrupted")
    end = series.last_t if final or now is None else now
    elapsed = (end - start) if start is not None and end is not None else None
    remaining = None
    if final:
        remaining = 0.0 if total else None
    elif total and step >= total:
        remaining = 0.0
    elif total and series.first_log_t is not None and series.first_log_step is not None and end is not None:
        done = step - series.first_log_step
        if done > 0:
            remaining = (end - series.first_log_t) / done * (total - step)
    return Progress(step, total, elapsed, remaining)
