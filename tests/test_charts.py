"""Smoothing, downsampling and figures of webui/charts.py, on hand-made series."""

from __future__ import annotations

import json

import math
import random

import pytest

from trainer.run.series import Decimator, RunSeries, ema
from webui.charts import (compare_loss_figure, downsample, downsample_indices, loss_figure, memory_figure, progress,
                          throughput_figure, lr_gradnorm_figure)
from webui.state import EventCache
from trainer.run.events import EventWriter


def test_ema_matches_hand_computed_bias_corrected_series():
    # weight 0.5: a_1 = 0.5, a_2 = 1.25, a_3 = 2.125; divided by 1 - 0.5**n = 0.5, 0.75, 0.875
    assert ema([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    # bias correction: a constant series is smoothed to itself from the first point on
    assert ema([4.0] * 5, 0.9) == pytest.approx([4.0] * 5)


def test_ema_weight_zero_is_the_raw_series_and_weight_is_clamped():
    values = [3.0, 1.0, 2.0]
    assert ema(values, 0.0) == values
    assert ema(values, 5.0) == ema(values, 0.999)
    assert ema(values, -1.0) == values


def test_ema_is_causal_appending_never_changes_earlier_points():
    rng = random.Random(0)
    values = [2.0 + rng.gauss(0, 0.5) for _ in range(300)]
    full = ema(values, 0.95)
    for cut in (1, 7, 50, 299):
        assert ema(values[:cut], 0.95) == full[:cut]


def test_ema_skips_non_finite_points_and_keeps_zero():
    out = ema([1.0, math.nan, 0.0, math.inf, 1.0], 0.5)
    assert out[1] is None and out[3] is None
    # NaN/inf are skipped: the series is [1, 0, 1] as far as the average is concerned
    assert out[0] == pytest.approx(1.0)
    assert out[2] == pytest.approx(0.25 / 0.75)  # 0.0 is a real point: the average moved towards it
    assert out[4] == pytest.approx((0.125 + 0.5) / 0.875)
    assert ema([0.0, 0.0], 0.9) == pytest.approx([0.0, 0.0])


def test_downsample_keeps_extremes_and_is_bounded():
    rng = random.Random(1)
    values = [rng.random() for _ in range(100_000)]
    values[31_337] = 50.0  # a spike a stride would miss
    values[77_777] = -50.0
    idx = downsample_indices(values, 500)
    assert len(idx) <= 500
    assert idx == sorted(set(idx))
    assert idx[0] == 0 and idx[-1] == len(values) - 1
    assert 31_337 in idx and 77_777 in idx
    xs, ys = downsample(list(range(len(values))), values, 500)
    assert max(ys) == 50.0 and min(ys) == -50.0 and len(xs) == len(ys) <= 500


def test_incremental_decimator_keeps_extremes_and_is_bounded_at_every_length():
    rng = random.Random(2)
    decimator = Decimator(max_points=300)
    values = []
    for i in range(50_000):
        value = rng.gauss(0, 1) + (40.0 if i == 12_345 else 0.0) - (40.0 if i == 33_333 else 0.0)
        values.append(value)
        decimator.append(i, value)
        if i in (0, 1, 299, 300, 7_777, 49_999):
            xs, ys = decimator.points()
            assert len(xs) <= 300 and xs == sorted(xs) and xs[0] == 0 and xs[-1] == i
            assert max(ys) == max(values) and min(ys) == min(values)
    xs, ys = decimator.points()
    assert 12_345 in xs and 33_333 in xs and all(values[x] == y for x, y in zip(xs, ys))


def test_cached_smoothing_equals_the_reference_ema_as_the_run_grows():
    rng = random.Random(3)
    series = RunSeries()
    losses = [2.0 + rng.random() for _ in range(500)]
    losses[100] = math.nan
    losses[200] = 0.0
    for start in range(0, 500, 97):  # arrives in chunks, like the page's polls
        series.extend({"t": float(i), "type": "log", "step": i + 1, "loss": losses[i] if math.isfinite(losses[i])
                       else "nan"} for i in range(start, min(500, start + 97)))
        for weight in (0.0, 0.6, 0.95):
            cached = series.smoothed(weight).values
            reference = ema(series.loss, weight)
            assert len(cached) == len(reference)
            assert all((a is None and b is None) or a == pytest.approx(b) for a, b in zip(cached, reference))
    assert series.best_loss == 0.0 and series.nonfinite_loss_steps == [101]


def test_downsample_short_series_is_untouched():
    assert downsample_indices([3.0, 1.0, 2.0], 500) == [0, 1, 2]
    assert downsample_indices([], 500) == []


def _events():
    t = 1000.0
    yield {"t": t, "type": "status", "status": "running"}
    yield {"t": t + 0.5, "type": "plan", "plan": {"total_steps": 10}}
    for step in range(1, 6):
        yield {"t": t + step, "type": "log", "step": step, "loss": 2.0 / step if step != 3 else "nan",
               "learning_rate": 1e-3, "grad_norm": 1.0, "tokens_per_second": 100.0, "samples_per_second": 2.0,
               "memory": {"device": "cpu", "rss_gb": 1.0 + step / 10, "system_total_gb": 8.0}}
    yield {"t": t + 5.5, "type": "eval", "step": 5, "eval_loss": 0.7}


def test_series_and_figures_from_events():
    series = RunSeries()
    assert series.extend(_events()) == 8
    assert series.steps == [1, 2, 3, 4, 5] and math.isnan(series.loss[2])
    assert series.total_steps == 10 and series.last_step == 5
    assert series.best_loss == pytest.approx(0.4)
    fig = loss_figure(series, smoothing=0.6)
    names = [trace.name for trace in fig.data]
    assert names[0] == "loss (raw)" and names[1].startswith("loss (smoothed")
    assert "NaN / inf loss" in names and "eval loss" in names
    assert list(fig.data[0].x) == [1, 2, 4, 5]  # the NaN step is not drawn as a loss point
    assert loss_figure(series, log_scale=True).layout.yaxis.type == "log"
    mem = memory_figure(series)
    assert "RSS" in mem.layout.title.text and list(mem.data[0].y) == pytest.approx([1.1, 1.2, 1.3, 1.4, 1.5])
    assert len(throughput_figure(series).data) == 2 and len(lr_gradnorm_figure(series).data) == 2
    assert len(compare_loss_figure([("a", series), ("b", series)]).data) == 4
    p = progress(series, now=1005.0)
    assert p.step == 5 and p.total == 10 and p.elapsed_s == pytest.approx(5.0)
    assert p.remaining_s == pytest.approx(4.0 / 4 * 5)  # 4 steps took 4 s since the first log; 5 to go
    series.extend([{"t": 2000.0, "type": "status", "status": "aborted"}])
    p = progress(series, now=2100.0)
    assert p.elapsed_s == pytest.approx(1000.0) and p.remaining_s == 0.0  # a final run's clock stopped
    series.extend([{"t": 2200.0, "type": "status", "status": "queued"}])  # resumed: waiting again
    assert progress(series, now=2300.0).elapsed_s is None
    series.extend([{"t": 2400.0, "type": "status", "status": "running"},
                   {"t": 2410.0, "type": "log", "step": 6, "loss": 0.5},
                   {"t": 2420.0, "type": "log", "step": 8, "loss": 0.4}])
    p = progress(series, now=2420.0)
    # A resume neither restarts the clock (1000 s before, 20 s now) nor judges the pace by its own few steps:
    # 4 s for 4 steps before, 10 s for 2 steps now, 2 steps to go.
    assert p.elapsed_s == pytest.approx(1020.0) and p.remaining_s == pytest.approx(14.0 / 6 * 2)


def test_gpu_memory_figure_shows_allocated_reserved_peak_and_card():
    series = RunSeries()
    series.extend([{"t": 0.0, "type": "status", "status": "running"},
                   {"t": 1.0, "type": "memory", "device": "cuda:0", "allocated_gb": 3.0, "reserved_gb": 4.0,
                    "peak_gb": 3.5, "device_used_gb": 5.0, "device_total_gb": 80.0}])
    fig = memory_figure(series)
    assert fig.layout.title.text == "GPU memory"
    assert [t.name for t in fig.data] == ["allocated (PyTorch)", "reserved (PyTorch)", "peak allocated",
                                          "device used (whole card)", "device total"]


def test_empty_series_draws_a_waiting_figure():
    fig = loss_figure(RunSeries())
    assert not fig.data and "waiting" in fig.layout.annotations[0].text


def test_event_cache_reads_only_new_events(tmp_path):
    writer = EventWriter(tmp_path)
    writer.emit("log", step=1, loss=1.0)
    cache = EventCache()
    cached = cache.poll(tmp_path)
    assert cached.series.steps == [1] and cached.version == 1
    assert cache.poll(tmp_path).version == 1  # nothing new: nothing to redraw
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('{"t": 2, "type": "log", "step": 2, "lo')  # a half-written line waits
    assert cache.poll(tmp_path).series.steps == [1]
    with open(tmp_path / "events.jsonl", "a") as fh:
        fh.write('ss": 0.0}\n')
    cached = cache.poll(tmp_path)
    assert cached.series.steps == [1, 2] and cached.series.loss == [1.0, 0.0] and cached.version == 2


def test_monitor_redraws_only_what_changed(tmp_path):
    """The page's timer tick on a real registry and run directory: new events redraw, no news skips."""
    import gradio as gr

    from trainer.config import TrainConfig
    from trainer.jobs.manager import JobManager
    from webui.components import to_outputs
    from webui.context import Context
    from webui.tabs.monitor import TICK_OUTPUTS, tick

    def _monitor_tick(ctx, run_id, smooth, log, last, owner):
        """The Monitor's tick handler, its reply as the listener hands it to Gradio (in TICK_OUTPUTS order)."""
        values = {"monitor.run_select": run_id, "monitor.smoothing": smooth, "monitor.log_scale": log,
                  "monitor.drawn": last}
        return to_outputs(tick(ctx, values, user=owner), TICK_OUTPUTS)

    jobs = JobManager(tmp_path, autostart=False)  # no scheduler: the run stays queued, we write its events
    try:
        run_id = jobs.submit(TrainConfig(), owner="local")
        ctx = Context(runs_root=tmp_path, jobs=jobs, cache=EventCache(draw_interval=0))  # every event drawn
        writer = EventWriter(jobs.run_dir(run_id))
        writer.emit("log", step=1, loss=2.0, learning_rate=1e-4, grad_norm=1.0)
        out = _monitor_tick(ctx, run_id, 0.6, False, {}, None)
        (status, progress_html, notes, loss, memory, lr, throughput, alerts, log, abort, resume, select, config, queue,
         live, trackers, cancel, up, _down, last, _who) = out
        assert f"tensorboard --logdir {jobs.run_dir(run_id) / 'tensorboard'}" in trackers
        assert cancel["visible"] is True and up["visible"] is True  # the open page's operator is an admin
        assert "#1" in queue and queue == live  # the queue panel, on the Monitor and the Train tab
        assert "queued" in status and json.loads(loss.plot)["data"][0]["y"] == [2.0] and "no alerts" in alerts
        assert "model_name_or_path: demo" in config  # the run's own config.yaml
        assert abort["interactive"] is True and resume["interactive"] is False  # a queued run can be aborted
        again = _monitor_tick(ctx, run_id, 0.6, False, last, None)
        skipped = [i for i, value in enumerate(again[:-1]) if value == gr.skip()]
        assert set(skipped) >= {0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}  # nothing new: nothing is redrawn
        resmoothed = _monitor_tick(ctx, run_id, 0.9, False, again[TICK_OUTPUTS.index('monitor.drawn')], None)
        assert resmoothed[3] != gr.skip() and resmoothed[4] == gr.skip()  # only the loss chart follows the slider
        writer.emit("log", step=2, loss=float("nan"))
        fresh = _monitor_tick(ctx, run_id, 0.9, False, resmoothed[TICK_OUTPUTS.index('monitor.drawn')], None)
        assert fresh[3] != gr.skip() and "NaN" in fresh[7]
    finally:
        jobs.close()


def test_run_notes_say_where_a_finished_run_went_and_why_a_failed_one_stopped():
    from webui.views import run_summary_markdown

    done = RunSeries()
    done.extend([{"t": 1, "type": "status", "status": "finished", "adapter": "/runs/r1/adapter", "best_eval_loss": 1.234567}])
    assert "/runs/r1/adapter" in run_summary_markdown(None, done) and "1.235" in run_summary_markdown(None, done)
    assert "**Chat**" in run_summary_markdown(None, done) and "**Evaluate & export**" in run_summary_markdown(None, done)
    assert "**对话**" in run_summary_markdown(None, done, "zh")  # where to try it next, in the page's words
    failed = RunSeries()
    failed.extend([{"t": 1, "type": "status", "status": "failed", "reason": "CUDA out of memory at step 3",
                    "advice": ["lower per_device_train_batch_size", "turn on gradient_checkpointing"]}])
    text = run_summary_markdown(None, failed)
    assert "out of memory at step 3" in text and "- lower per_device_train_batch_size" in text


def test_viewers_of_a_busy_run_share_one_drawing_per_interval(tmp_path):
    """A run logging faster than the draw interval: every poll inside the interval gets the same drawing, made
    once; the next interval draws the newest events; a run that then goes quiet is drawn up to its last event."""
    writer = EventWriter(tmp_path)
    writer.emit("log", step=1, loss=1.0)
    cached = EventCache(draw_interval=1.0).poll(tmp_path)
    made = []

    def draw():
        made.append(list(cached.series.steps))
        return len(made)

    assert cached.shown_version(now=100.0) == 1 and cached.drawn(("loss",), draw, 1) == 1
    for step, now in ((2, 100.3), (3, 100.6)):  # two more events inside the interval: still the first drawing
        writer.emit("log", step=step, loss=1.0)
        cached.poll()
        shown = cached.shown_version(now=now)
        assert shown == 1 and cached.drawn(("loss",), draw, shown) == 1
    shown = cached.shown_version(now=101.1)
    assert shown == 3 and cached.drawn(("loss",), draw, shown) == 2 and cached.drawn(("loss",), draw, shown) == 2
    assert made == [[1], [1, 2, 3]]
    assert cached.drawn(("loss",), draw, 1) == 3  # a late tick asking for an older version is drawn, not cached
