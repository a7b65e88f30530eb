"""Charts as pure functions: a run's series -> plotly figures, and the words of the progress line.

No gradio here, no torch: everything is unit-tested on plain lists. The page feeds a `RunSeries`
(trainer.run.series) with only the new events of a run (see webui/state.py) and draws figures from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import plotly.graph_objects as go

from trainer.plan.mfu import MFU_REASONS
from trainer.run.series import DEFAULT_MAX_POINTS, RunSeries

from .i18n import t

# One palette for every chart, so a run keeps its colour from chart to chart.
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


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


# --- figures -------------------------------------------------------------------------------------
# Each figure is built from plain dicts and validated once by `go.Figure(data, layout)`: plotly's
# incremental `update_layout`/`add_trace` and its "plotly_white" template (deep-copied into every figure)
# cost ~12 ms a chart, which a live run's twenty viewers paid on every new event.

_AXIS = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "zerolinewidth": 2,
         "ticks": "", "automargin": True}  # the plotly_white look, without its template
_MUTED = {"size": 11, "color": "#6b7280"}


def _layout(title: str, *, x_title: str, y_title: str, height: int = 300) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.01, "font": {"size": 14}},
        "height": height, "margin": {"l": 55, "r": 15, "t": 40, "b": 40},
        "template": {}, "plot_bgcolor": "white", "paper_bgcolor": "white", "font": {"color": "#2a3f5f"},
        "hovermode": "x unified", "hoverlabel": {"align": "left"},
        "legend": {"orientation": "h", "y": -0.2, "x": 0},
        "xaxis": {**_AXIS, "title": {"text": x_title, "standoff": 15}},
        "yaxis": {**_AXIS, "title": {"text": y_title, "standoff": 15}},
        "uirevision": "keep",  # keep the user's zoom and toggled traces across redraws
    }


def _line(xs: Sequence[Any], ys: Sequence[float], name: str, line: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "scatter", "x": list(xs), "y": list(ys), "mode": "lines", "name": name, "line": line, **more}


def _note(layout: dict[str, Any], text: str) -> None:
    """A small grey note above the chart's top right corner."""
    layout.setdefault("annotations", []).append({"text": text, "showarrow": False, "xref": "paper", "yref": "paper",
                                                 "x": 1, "y": 1.08, "xanchor": "right", "font": _MUTED})


def _empty(layout: dict[str, Any], text: str) -> go.Figure:
    layout["annotations"] = [{"text": text, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                              "font": {"size": 13, "color": "#6b7280"}}]
    layout["xaxis"]["showticklabels"] = layout["yaxis"]["showticklabels"] = False
    return go.Figure(layout=layout)


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


def _smoothed_points(series: RunSeries, smoothing: float, max_points: int | None) -> tuple[list[Any], list[float]]:
    smoothed = series.smoothed(smoothing)
    if max_points is None:
        return smoothed.decimator.points()
    pairs = [(s, v) for s, v in zip(series.steps, smoothed.values) if v is not None]
    return downsample([s for s, _ in pairs], [v for _, v in pairs], max_points)


def loss_figure(series: RunSeries, smoothing: float = 0.6, log_scale: bool = False,
                max_points: int | None = None, title: str | None = None, lang: str | None = None) -> go.Figure:
    """Raw loss faint, smoothed loss bold, eval loss as points, non-finite losses marked."""
    y_title = t(lang, "chart.loss_axis") + (t(lang, "chart.log_axis") if log_scale else "")
    layout = _layout(title or t(lang, "chart.loss"), x_title=t(lang, "chart.step"), y_title=y_title)
    if log_scale:
        layout["yaxis"]["type"] = "log"
    raw_x, raw_y = _points(series, "loss", lambda: [(s, v) for s, v in zip(series.steps, series.loss)
                                                    if math.isfinite(v)], max_points)
    if log_scale:
        raw_x, raw_y = _positive(raw_x, raw_y)
    if not raw_x and not series.eval_loss:
        return _empty(layout, t(lang, "chart.waiting_step"))
    traces = []
    if raw_x:
        traces.append(_line(raw_x, raw_y, t(lang, "chart.loss_raw"), {"color": PALETTE[0], "width": 1}, opacity=0.3))
        xs, ys = _smoothed_points(series, smoothing, max_points)
        if log_scale:
            xs, ys = _positive(xs, ys)
        if xs:
            traces.append(_line(xs, ys, t(lang, "chart.loss_smoothed", value=f"{smoothing:g}"),
                                {"color": PALETTE[0], "width": 2.5}))
    bad = series.nonfinite_loss_steps
    if bad:
        anchor = max(raw_y, default=1.0)
        traces.append({"type": "scatter", "x": list(bad), "y": [anchor] * len(bad), "mode": "markers",
                       "name": t(lang, "chart.nan"), "marker": {"symbol": "x", "size": 10, "color": PALETTE[1]}})
    evals = [(s, v) for s, v in zip(series.eval_steps, series.eval_loss)
             if math.isfinite(v) and (v > 0 or not log_scale)]
    if evals:
        traces.append(_line([s for s, _ in evals], [v for _, v in evals], t(lang, "chart.eval_loss"),
                            {"color": PALETTE[3], "width": 1, "dash": "dot"}, mode="markers+lines",
                            marker={"size": 8, "color": PALETTE[3]}))
    return go.Figure(data=traces, layout=layout)


def memory_figure(series: RunSeries, max_points: int | None = None, lang: str | None = None) -> go.Figure:
    """GPU allocated/reserved/peak and device used vs total; on a CPU the process's RAM, labelled so."""
    points = series.memory
    on_gpu = any(key.startswith("memory:cuda:") for key in series._decimators)
    title = t(lang, "chart.gpu_memory" if on_gpu else ("chart.cpu_memory" if points else "chart.memory"))
    layout = _layout(title, x_title=t(lang, "chart.elapsed"), y_title="GB")
    if not points:
        return _empty(layout, t(lang, "chart.waiting_memory"))
    layout["yaxis"]["rangemode"] = "tozero"
    if len(series.memory_devices) > 1:
        return _per_device_memory(layout, series, on_gpu, max_points, lang)
    group = "cuda" if on_gpu else "cpu"
    keys = ("allocated_gb", "reserved_gb", "peak_gb", "device_used_gb", "device_total_gb") if on_gpu else ("rss_gb",)
    traces = []
    for i, key in enumerate(keys):
        xs, ys = _points(series, f"memory:{group}:{key}",
                         lambda: [(p.elapsed_s, p.values[key]) for p in points  # noqa: B023 - used at once
                                  if key in p.values and p.device.startswith(group)], max_points)
        if not xs:
            continue
        xs, ys = series.break_at_gaps(xs, ys)
        total = key.endswith("total_gb")
        traces.append(_line(xs, ys, t(lang, f"mem.{key}"),
                            {"color": "#111827" if total else PALETTE[(i + 2) % len(PALETTE)], "width": 1.5,
                             "dash": "dash" if total else "solid"}))
    last = points[-1].values
    if not on_gpu and "system_total_gb" in last:
        _note(layout, t(lang, "chart.of_ram", value=f"{last['system_total_gb']:.1f}"))
    return go.Figure(data=traces, layout=layout)


def _per_device_memory(layout: dict[str, Any], series: RunSeries, on_gpu: bool, max_points: int | None,
                       lang: str | None = None) -> go.Figure:
    """A run of several processes: each device's allocated (solid), reserved (dashed) and peak (dotted) on a
    GPU, each process's RAM on a CPU; one colour per device."""
    keys = (("allocated_gb", "solid"), ("reserved_gb", "dash"), ("peak_gb", "dot")) if on_gpu else (("rss_gb", "solid"),)
    traces = []
    for i, label in enumerate(series.memory_devices):
        for key, dash in keys:
            trace = f"memory:device:{label}:{key}"
            xs, ys = _points(series, trace, lambda: list(zip(*series.decimated(trace))), max_points)  # noqa: B023
            if xs:
                traces.append(_line(xs, ys, f"{label} {t(lang, f'mem.{key}')}",
                                    {"color": PALETTE[i % len(PALETTE)], "width": 1.5, "dash": dash}))
    layout["title"]["text"] = t(lang, "chart.devices_memory", kind="GPU" if on_gpu else "CPU",
                                count=len(series.memory_devices))
    return go.Figure(data=traces, layout=layout)


def _finite_pairs(pairs: list[tuple[int, float]]) -> Callable[[], list[tuple[int, float]]]:
    return lambda: [(s, v) for s, v in pairs if math.isfinite(v)]


def _twin_axis_figure(series: RunSeries, title: str, left: tuple[str, str, str], right: tuple[str, str, str],
                      max_points: int | None, lang: str | None = None, *, note: str = "",
                      **left_axis: Any) -> go.Figure:
    """Two series of a run on one step axis: ``left`` and ``right`` are (RunSeries attribute, name, colour);
    `left_axis` styles the left axis (the right one starts at zero)."""
    layout = _layout(title, x_title=t(lang, "chart.step"), y_title=left[1])
    if not getattr(series, left[0]) and not getattr(series, right[0]):
        return _empty(layout, t(lang, "chart.waiting_step"))
    layout["yaxis"].update(left_axis)
    traces = []
    for (key, name, color), axis in ((left, "y"), (right, "y2")):
        xs, ys = _points(series, key, _finite_pairs(getattr(series, key)), max_points)
        if not xs:
            continue
        traces.append(_line(xs, ys, name, {"color": color}, yaxis=axis))
        if axis == "y2":
            layout["yaxis2"] = {"title": {"text": name}, "overlaying": "y", "side": "right", "showgrid": False,
                                "rangemode": "tozero"}
            layout["margin"]["r"] = 55
    if note:
        _note(layout, note)
    return go.Figure(data=traces, layout=layout)


def lr_gradnorm_figure(series: RunSeries, max_points: int | None = None, lang: str | None = None) -> go.Figure:
    return _twin_axis_figure(series, t(lang, "chart.lr"), ("learning_rate", t(lang, "chart.lr_axis"), PALETTE[4]),
                             ("grad_norm", t(lang, "chart.grad_norm"), PALETTE[5]), max_points, lang,
                             exponentformat="e")


def throughput_figure(series: RunSeries, max_points: int | None = None, lang: str | None = None) -> go.Figure:
    note = mfu_note(series, lang) if (series.tokens_per_second or series.samples_per_second) else ""
    return _twin_axis_figure(series, t(lang, "chart.throughput"),
                             ("tokens_per_second", t(lang, "chart.tokens_s"), PALETTE[2]),
                             ("samples_per_second", t(lang, "chart.samples_s"), PALETTE[3]), max_points, lang,
                             note=note, rangemode="tozero")


def mfu_note(series: RunSeries, lang: str | None = None) -> str:
    """The measured MFU (median of the last 5 logs, one slow step does not swing it) against the plan's
    expectation and the card's peak; why there is none on a CPU; "" before the plan is known."""
    plan = series.plan or {}
    if series.mfu:
        recent = sorted(v for _, v in series.mfu[-5:])
        text = t(lang, "chart.mfu", value=f"{recent[len(recent) // 2]:.1%}", gpu=plan.get("gpu_model", "GPU"),
                 peak=f"{plan.get('gpu_peak_tflops', 0):g}")
        if plan.get("expected_mfu"):
            text += t(lang, "chart.mfu_expected", value=f"{plan['expected_mfu']:.1%}")
        return text
    reason = plan.get("mfu_reason")
    return t(lang, f"mfu.{reason}") if reason in MFU_REASONS else ""


def compare_loss_figure(runs: Sequence[tuple[str, RunSeries]], smoothing: float = 0.6, log_scale: bool = False,
                        max_points: int | None = None, lang: str | None = None) -> go.Figure:
    """Smoothed loss of several runs overlaid (eval loss as diamonds in the same colour)."""
    layout = _layout(t(lang, "chart.compare"), x_title=t(lang, "chart.step"), y_title=t(lang, "chart.loss_axis"),
                     height=380)
    if log_scale:
        layout["yaxis"]["type"] = "log"
    if not runs:
        return _empty(layout, t(lang, "chart.compare_empty"))
    traces = []
    for i, (name, series) in enumerate(runs):
        colour = PALETTE[i % len(PALETTE)]
        xs, ys = _smoothed_points(series, smoothing, max_points)
        if log_scale:
            xs, ys = _positive(xs, ys)
        if xs:
            traces.append(_line(xs, ys, name, {"color": colour, "width": 2}))
        evals = [(s, v) for s, v in zip(series.eval_steps, series.eval_loss) if math.isfinite(v)]
        if evals:
            traces.append({"type": "scatter", "x": [s for s, _ in evals], "y": [v for _, v in evals],
                           "mode": "markers", "name": t(lang, "chart.eval_suffix", name=name),
                           "marker": {"color": colour, "size": 7, "symbol": "diamond"}})
    return go.Figure(data=traces, layout=layout)


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
    """Step/total, elapsed and remaining time, over every attempt of a resumed run (the series' numbers)."""
    step, total = series.last_step, series.total_steps
    if series.state == "queued":  # waiting (again, after a resume): no clock runs yet
        return Progress(step, total, None, None)
    final = series.state in ("finished", "aborted", "failed", "interrupted")
    end = None if final else now
    return Progress(step, total, series.elapsed_seconds(end), series.remaining_seconds(end))
