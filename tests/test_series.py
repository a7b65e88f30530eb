"""The one event summary (trainer/run/series.py): what "best loss" means, and the Runs table (registry) and the
Monitor (RunSeries) reading the same numbers from the same events."""

from __future__ import annotations

import json
import math

import pytest

from trainer.config import TrainConfig
from trainer.jobs.manager import JobManager
from trainer.run.events import EventWriter, read_events
from trainer.run.layout import new_run_id, write_run_config
from trainer.run.series import RunSeries, RunSummary
from webui import views


def _run_events(evaluates: bool = True) -> list[dict]:
    t = 1000.0
    events = [{"t": t, "type": "status", "status": "queued"}, {"t": t + 1, "type": "status", "status": "running"},
              {"t": t + 2, "type": "plan", "plan": {"total_steps": 8}}]
    for step, loss in enumerate([2.0, 1.2, "nan", 0.9, 1.1, "inf"], start=1):
        events.append({"t": t + 2 + step, "type": "log", "step": step, "loss": loss})
        if evaluates and step in (2, 4):
            events.append({"t": t + 2.5 + step, "type": "eval", "step": step, "eval_loss": 1.5 if step == 2 else 1.3})
    events.append({"t": t + 10, "type": "heartbeat", "step": 6})
    return events


def test_best_loss_is_the_lowest_finite_training_loss_even_when_the_run_evaluates():
    summary = RunSummary()
    assert summary.update(_run_events())
    assert summary.best_loss == 0.9  # train loss: NaN and inf are not "best"
    assert summary.best_eval_loss == 1.3  # kept apart, never mixed into best_loss
    assert summary.last_loss == 1.1  # the newest finite one
    assert (summary.step, summary.total_steps, summary.state) == (6, 8, "running")
    assert summary.final_status_at is None
    assert not summary.update([{"t": 1011.0, "type": "heartbeat", "step": 6}])  # nothing changed
    assert summary.update([{"t": 1012.0, "type": "status", "status": "finished"}])
    assert summary.final_status_at == 1012.0
    without_eval = RunSummary()
    without_eval.update(_run_events(evaluates=False))
    assert without_eval.best_loss == 0.9 and without_eval.best_eval_loss is None


def test_a_resumed_attempt_reports_its_own_step_once_it_starts():
    summary = RunSummary()
    summary.update(_run_events())  # interrupted at step 6; its newest checkpoint is step 4
    summary.update([{"t": 2000.0, "type": "status", "status": "queued"},
                    {"t": 2001.0, "type": "status", "status": "running"}])
    assert summary.step == 6  # until the new attempt says where it is, the last known step stays
    summary.update([{"t": 2002.0, "type": "memory", "step": 4, "device": "cpu", "rss_gb": 1.0}])
    assert summary.step == 4
    summary.update([{"t": 2003.0, "type": "log", "step": 5, "loss": 0.8}])
    assert summary.step == 5 and summary.best_loss == 0.8


def test_bad_values_do_not_become_numbers():
    summary = RunSummary()
    summary.update([{"t": 1.0, "type": "plan", "plan": {"total_steps": True}},
                    {"t": 2.0, "type": "plan", "total_steps": -3},
                    {"t": 3.0, "type": "log", "step": "7", "loss": "bogus"},
                    {"t": 4.0, "type": "eval", "step": True, "eval_loss": None},
                    {"t": 5.0, "type": "log", "step": math.nan, "loss": None}])
    assert summary.numbers() == (None, None, None, None, None)


def test_the_series_and_the_registry_agree_on_every_number(tmp_path):
    series = RunSeries()
    series.extend(_run_events())
    assert series.best_loss == series.summary.best_loss == 0.9 and series.best_eval_loss == 1.3
    assert series.last_step == 6 and series.total_steps == 8 and series.state == "running"

    # A run directory the registry has never seen (runs.db lost): its row is rebuilt from the same events.
    root = tmp_path / "runs"
    run_dir = root / new_run_id()
    run_dir.mkdir(parents=True)
    write_run_config(TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo"}), run_dir)
    writer = EventWriter(run_dir)
    for event in _run_events() + [{"t": 1012.0, "type": "status", "status": "finished"}]:
        writer.emit(event.pop("type"), **{k: v for k, v in event.items() if k != "t"})
    with JobManager(root, autostart=False) as jm:
        info = jm.get(run_dir.name)
    rebuilt = RunSeries()
    rebuilt.extend(read_events(run_dir))
    assert info.status == "finished"
    assert (info.best_loss, info.best_eval_loss, info.last_loss, info.step, info.total_steps) == \
        rebuilt.summary.numbers() == (0.9, 1.3, 1.1, 6, 8)
    row = views.runs_table([info])[0]
    assert row[views.RUNS_TABLE_HEADERS.index("best train loss")] == pytest.approx(0.9)


def _resumed_run_events() -> list[dict]:
    """A run aborted at step 3 (t 100-130), resumed 1,000 s later from its checkpoint (t 1130-1150)."""
    note = {"type": "message", "level": "info", "text": "69,632 trainable parameters of 659,456 (10.56%)",
            "trainable_parameters": 69632, "total_parameters": 659456}
    events = [{"t": 100.0, "type": "status", "status": "running"}, {"t": 101.0, **note},
              {"t": 102.0, "type": "plan", "plan": {"total_steps": 10}},
              {"t": 103.0, "type": "memory", "step": 0, "device": "cpu", "rss_gb": 1.0}]
    events += [{"t": 110.0 + 5 * s, "type": "log", "step": s, "loss": 3.0 - s / 10,
                "memory": {"device": "cpu", "rss_gb": 1.1}} for s in range(1, 4)]
    events += [{"t": 130.0, "type": "status", "status": "aborted"},
               {"t": 1100.0, "type": "status", "status": "queued"},
               {"t": 1130.0, "type": "status", "status": "running"}, {"t": 1131.0, **note},
               {"t": 1132.0, "type": "memory", "step": 3, "device": "cpu", "rss_gb": 0.9}]
    events += [{"t": 1130.0 + 5 * (s - 3), "type": "log", "step": s, "loss": 3.0 - s / 10} for s in (4, 5)]
    return events


def test_a_resumed_run_counts_every_attempt_and_states_its_notes_once():
    series = RunSeries()
    series.extend(_resumed_run_events())
    # The clock: 30 s before the abort, 10 s since the resume, the 1,000 s of downtime left out.
    assert series.elapsed_seconds() == pytest.approx(40.0)
    assert series.elapsed_seconds(now=1145.0) == pytest.approx(45.0)
    assert series.summary.earlier_attempts_seconds == pytest.approx(30.0)
    # The pace: 10 s for steps 1-3, then 5 s for steps 4-5 (model loading excluded): 15 s / 3 steps, 5 to go.
    assert series.remaining_seconds() == pytest.approx(15.0 / 3 * 5)
    # The trainable-parameters note is said once.
    assert [m["text"] for m in series.messages].count("69,632 trainable parameters of 659,456 (10.56%)") == 1
    # The memory trace breaks at the resume instead of drawing a line across the downtime.
    xs = [p.elapsed_s for p in series.memory]
    ys = [p.values["rss_gb"] for p in series.memory]
    gap_x, gap_y = series.break_at_gaps(xs, ys)
    assert gap_y.count(None) == 1 and gap_x[gap_y.index(None)] == pytest.approx(1032.0)
    assert gap_x[gap_y.index(None) - 1] < 1032.0 <= gap_x[gap_y.index(None) + 1]


def test_the_runs_table_duration_of_a_resumed_run_counts_every_attempt(tmp_path):
    root = tmp_path / "runs"
    run_dir = root / new_run_id()
    run_dir.mkdir(parents=True)
    write_run_config(TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo"}), run_dir)
    writer = EventWriter(run_dir)
    for event in _resumed_run_events() + [{"t": 1150.0, "type": "status", "status": "finished"}]:
        writer.emit(event.pop("type"), **{k: v for k, v in event.items() if k != "t"})
    # The writer stamps its own times: rewrite them to the scripted ones.
    lines = [line for line in (run_dir / "events.jsonl").read_text().splitlines() if line]
    stamped = []
    for line, event in zip(lines, _resumed_run_events() + [{"t": 1150.0}]):
        data = json.loads(line)
        data["t"] = event["t"]
        stamped.append(json.dumps(data))
    (run_dir / "events.jsonl").write_text("\n".join(stamped) + "\n")
    with JobManager(root, autostart=False) as jm:  # the row is rebuilt from the events
        info = jm.get(run_dir.name)
    assert info.earlier_attempts_s == pytest.approx(30.0)
    assert views.run_duration(info) == pytest.approx(50.0)  # 30 s + 20 s, not the last attempt alone
