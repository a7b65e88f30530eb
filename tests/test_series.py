"""The one event summary (trainer/run/series.py): what "best loss" means, and the Runs table (registry) and the
Monitor (RunSeries) reading the same numbers from the same events."""

from __future__ import annotations

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
