"""The run directory's one home (trainer/run/layout.py): names, ids, runs root, checkpoints, resume, and the
train command line that the page's Preview shows and the scheduler really starts."""

from __future__ import annotations

import shlex
import stat
import sys
import time
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.jobs.manager import JobManager
from trainer.run import layout
from trainer.run.layout import (
    default_runs_root, is_run_id, latest_checkpoint, new_run_id, read_run_config, resolve_resume, train_argv,
    train_command, write_run_config,
)


def _checkpoint(run_dir: Path, step: int, complete: bool = True) -> Path:
    path = run_dir / layout.CHECKPOINTS_DIR / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / layout.CHECKPOINT_STATE_FILE).write_text("{}")
    return path


def test_latest_checkpoint_is_the_highest_complete_step_not_the_last_in_name_order(tmp_path):
    assert latest_checkpoint(tmp_path) is None  # no checkpoints/ at all
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)  # a save cut short by a kill
    (tmp_path / layout.CHECKPOINTS_DIR / "checkpoint-latest").mkdir()
    (tmp_path / layout.CHECKPOINTS_DIR / "runs").mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint-10"  # 10 > 9 although "10" < "9" as text


def test_resolve_resume_last_a_checkpoint_a_run_dir_or_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert resolve_resume(None, run) is None and resolve_resume("  ", run) is None
    assert resolve_resume("last", run) is None  # no checkpoint yet: start from the beginning
    three = _checkpoint(run, 3)
    assert resolve_resume("LATEST", run) == three and resolve_resume("true", run) == three
    assert resolve_resume(str(three), tmp_path / "elsewhere") == three
    assert resolve_resume(str(run), tmp_path / "elsewhere") == three  # another run's directory
    assert resolve_resume(str(run / layout.CHECKPOINTS_DIR), tmp_path) == three
    with pytest.raises(ConfigError) as missing:
        resolve_resume(str(tmp_path / "nope"), run)
    assert missing.value.errors[0][0] == "resume_from_checkpoint"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        resolve_resume(str(empty), run)


def test_run_ids_and_the_runs_root(monkeypatch):
    run_id = new_run_id(1795400000.0)
    assert is_run_id(run_id) and run_id.startswith("20261123-")
    for bad in ("../20261123-000000-aaaaaa", "20261123-000000-AAAAAA", "x", "", None, 5):
        assert not is_run_id(bad)
    monkeypatch.delenv(layout.RUNS_DIR_ENV, raising=False)
    assert default_runs_root() == Path("runs")
    monkeypatch.setenv(layout.RUNS_DIR_ENV, "/data/tunedeck")
    assert default_runs_root() == Path("/data/tunedeck")


def test_the_config_writer_and_reader_round_trip(tmp_path):
    cfg = TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo", "learning_rate": 1e-4})
    path = write_run_config(cfg, tmp_path)
    assert path == tmp_path / layout.CONFIG_FILE
    assert read_run_config(tmp_path) == cfg
    assert not [p for p in tmp_path.iterdir() if p != path]  # the atomic write left no temporary file


def test_train_argv_names_the_run_config_and_directory(tmp_path, monkeypatch):
    argv = train_argv(tmp_path / "r", "/usr/bin/python3")
    assert argv == ["/usr/bin/python3", "-m", "trainer", "train", str(tmp_path / "r" / "config.yaml"), "--run-dir",
                    str(tmp_path / "r")]
    monkeypatch.setattr(sys, "executable", "/opt/py")  # read when called, not when imported
    assert train_argv(tmp_path)[0] == "/opt/py"


def test_the_preview_shows_exactly_the_command_the_scheduler_starts(tmp_path, monkeypatch):
    # A stand-in interpreter that records its own argv: the scheduler really spawns it, as it would python.
    recorded = tmp_path / "argv.txt"
    fake_python = tmp_path / "bin" / "python with space"
    fake_python.parent.mkdir()
    fake_python.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@" > "$ARGV_OUT"\n')
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("ARGV_OUT", str(recorded))
    monkeypatch.setattr(sys, "executable", str(fake_python))
    root = tmp_path / "runs root"
    jm = JobManager(root, max_concurrent=1, python=str(fake_python), autostart=False)
    try:
        run_id = jm.submit(TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo"}))
        jm.refresh()  # starts the queued run
        deadline = time.monotonic() + 60
        while not recorded.is_file() or not recorded.read_text().endswith("\n"):
            assert time.monotonic() < deadline, "the scheduler did not start the run"
            time.sleep(0.05)
        started = recorded.read_text().splitlines()
    finally:
        jm.close()
    preview = shlex.split(train_command(jm.runs_root / run_id))
    assert started == preview == train_argv(jm.run_dir(run_id), str(fake_python))
    assert Path(started[4]).is_file() and Path(started[4]).parent == jm.run_dir(run_id)


def test_a_foreground_run_lives_apart_from_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv(layout.RUNS_DIR_ENV, str(tmp_path))
    run_dir = layout.foreground_run_dir()
    assert run_dir.parent == tmp_path / layout.FOREGROUND_SUBDIR and is_run_id(run_dir.name)
    run_dir.mkdir(parents=True)
    write_run_config(TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo"}), run_dir)
    beside = tmp_path / new_run_id()  # the same directory in the root itself is adopted
    beside.mkdir()
    write_run_config(TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo"}), beside)
    with JobManager(tmp_path, autostart=False) as jm:
        assert [r.id for r in jm.list_runs()] == [beside.name]
