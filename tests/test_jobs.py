"""The run registry for real: a SQLite file in tmp_path, the real trainer as a subprocess on the demo model.

Every wait is a poll on a condition with a deadline; nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.run.events import read_events
from trainer.jobs.manager import JobError, JobManager, UnknownRunError
from trainer.jobs.scheduler import pick_gpu
from trainer.plan.hardware import visible_gpus
from trainer.run.layout import DB_FILE, latest_checkpoint, new_run_id

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 240  # generous: two busy cores shared with other test processes


def small_config(**changes) -> TrainConfig:
    """A few steps of LoRA on the demo model and data, small enough to train in seconds on a CPU."""
    data = dict(model_name_or_path="demo", dataset="demo", cutoff_len=64, max_samples=64, val_size=0,
                per_device_train_batch_size=2, gradient_accumulation_steps=1, max_steps=4, learning_rate=3e-3,
                lr_scheduler_type="constant", warmup_ratio=0, save_steps=2, logging_steps=1,
                gradient_checkpointing=False, lora_rank=4, lora_alpha=8)
    data.update(changes)
    return TrainConfig.from_dict(data)


def wait_for(predicate, what: str, timeout: float = WAIT_S, manager: JobManager | None = None):
    """Poll `predicate` until it returns something truthy; fail naming `what` (and the runs) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if manager is not None and manager._thread is None:
            manager.refresh()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            state = ""
            if manager is not None:
                state = "\n".join(f"{r.id} {r.status} step={r.step} reason={r.reason}" for r in manager.list_runs())
                for r in manager.list_runs():
                    log = r.run_dir / "stdout.log"
                    if log.exists():
                        state += f"\n--- {r.id} stdout.log tail:\n" + "\n".join(log.read_text().splitlines()[-15:])
            pytest.fail(f"timed out waiting for {what}\n{state}")
        time.sleep(0.2)


def status_is(manager: JobManager, run_id: str, *statuses: str):
    def check():
        info = manager.get(run_id)
        return info if info.status in statuses else None
    return check


def logged_steps(run_dir: Path, after_offset: int = 0) -> list[int]:
    with open(run_dir / "events.jsonl", "rb") as fh:
        fh.seek(after_offset)
        lines = fh.read().decode().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return [e["step"] for e in events if e.get("type") == "log" and "loss" in e]


@pytest.fixture
def manager(tmp_path):
    jm = JobManager(tmp_path / "runs", max_concurrent=1, poll_interval_s=0.2, abort_grace_s=60)
    yield jm
    jm.close()
    _kill_leftovers(jm)


def _kill_leftovers(jm: JobManager) -> None:
    """A failing test must not leave trainers burning the CPU for the next one."""
    for info in jm.list_runs(status="running"):
        if info.pid:
            try:
                os.killpg(info.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# --- no subprocess needed -------------------------------------------------------------------------

def test_run_ids_are_unique_and_sort_by_time(tmp_path, monkeypatch):
    assert new_run_id(1795400000.0).startswith("20261123-")
    assert new_run_id(1795400000.0) < new_run_id(1795400001.0)
    # Two submits that draw the same id in the same second still get two runs: the directory is the lock.
    import trainer.jobs.manager as jobs
    drawn = iter(["20261123-000000-aaaaaa", "20261123-000000-aaaaaa", "20261123-000000-bbbbbb"])
    monkeypatch.setattr(jobs, "new_run_id", lambda: next(drawn))
    jm = JobManager(tmp_path / "runs", autostart=False)
    try:
        assert [jm.submit(small_config()), jm.submit(small_config())] == [
            "20261123-000000-aaaaaa", "20261123-000000-bbbbbb"]
    finally:
        jm.close()


def test_submit_writes_config_and_row_and_rejects_bad_config(tmp_path):
    jm = JobManager(tmp_path / "runs", autostart=False)
    try:
        ids = [jm.submit(small_config(), owner="alice", name=f"run {n}") for n in range(5)]
        assert len(set(ids)) == 5
        info = jm.get(ids[0])
        assert (info.status, info.owner, info.name, info.model, info.dataset, info.method) == (
            "queued", "alice", "run 0", "demo", "demo", "lora")
        assert TrainConfig.from_yaml(info.run_dir / "config.yaml") == small_config()
        assert [r.id for r in jm.list_runs(owner="alice")] == ids[::-1]  # newest first
        assert jm.list_runs(owner="bob") == [] and jm.list_runs(status="running") == []

        before = sorted(p.name for p in (tmp_path / "runs").iterdir())
        with pytest.raises(ConfigError) as err:
            jm.submit({"model_name_or_path": "demo", "lerning_rate": 0.1})
        assert "learning_rate" in str(err.value)  # the closest known name is suggested
        # A local file named relative to the server's directory is stored absolute: a later resume from a
        # server started elsewhere still finds it. The shipped `demo` names stay as they are.
        (tmp_path / "mine.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n')
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(tmp_path)
            local = jm.submit(small_config(dataset="mine.jsonl"))
        assert jm.read_config(local).dataset == str(tmp_path / "mine.jsonl")
        assert jm.read_config(local).model_name_or_path == "demo"
        jm.delete(jm.abort(local).id)

        copied = jm.submit(small_config(resume_from_checkpoint="last"))  # a config copied from a resumed run
        assert jm.read_config(copied).resume_from_checkpoint is None  # a new directory has nothing to resume
        jm.delete(jm.abort(copied).id)
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == before  # no half-written run
        assert len(jm.list_runs()) == 5
        with pytest.raises(UnknownRunError):
            jm.get("20991231-000000-abcdef")
        with pytest.raises(UnknownRunError):
            jm.run_dir("../etc")
    finally:
        jm.close()


def test_owner_check_queued_abort_resume_without_checkpoint_and_delete(tmp_path):
    jm = JobManager(tmp_path / "runs", autostart=False)
    try:
        run_id = jm.submit(small_config(), owner="alice")
        with pytest.raises(PermissionError, match="alice"):
            jm.abort(run_id, owner="bob")
        assert jm.get(run_id).status == "queued"
        with pytest.raises(JobError, match="abort it first"):
            jm.delete(run_id)
        assert jm.abort(run_id, owner="alice").status == "aborted"
        assert read_events(jm.run_dir(run_id))[-1]["status"] == "aborted"
        with pytest.raises(JobError, match="already aborted"):
            jm.abort(run_id)
        with pytest.raises(JobError, match="no checkpoint"):
            jm.resume(run_id)
        with pytest.raises(PermissionError):
            jm.delete(run_id, owner="bob")
        jm.delete(run_id, owner="alice")
        assert not jm.run_dir(run_id).exists()
        with pytest.raises(UnknownRunError):
            jm.get(run_id)
        assert [p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(DB_FILE)] == []
        # The database is a plain WAL-mode SQLite file anyone can read.
        with sqlite3.connect(tmp_path / "runs" / DB_FILE) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        jm.close()


def test_a_trainer_started_by_hand_with_a_relative_run_dir_is_recognised(tmp_path):
    from trainer.jobs.processes import pid_is_trainer_of

    (tmp_path / "runs" / "r1").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--run-dir", "runs/r1"],
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not pid_is_trainer_of(proc.pid, tmp_path / "runs" / "r1"):
            assert time.monotonic() < deadline, "the process was never recognised as the trainer of runs/r1"
            time.sleep(0.05)
        assert not pid_is_trainer_of(proc.pid, tmp_path / "runs" / "r2")
        assert not pid_is_trainer_of(proc.pid, tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert not pid_is_trainer_of(proc.pid, tmp_path / "runs" / "r1")


def test_one_run_per_gpu_is_the_least_busy_one(monkeypatch):
    assert pick_gpu([], ["0"]) is None  # a CPU machine: the trainer's environment is left alone
    assert pick_gpu(["0", "1"], []) == "0"
    assert pick_gpu(["0", "1"], ["0", None]) == "1"
    assert pick_gpu(["0", "1"], ["0", "1", "1"]) == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,-1,5")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_registry_file_problems_are_explained_or_upgraded(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / DB_FILE).write_text("this is not a database, just text " * 100)
    with pytest.raises(JobError, match="is damaged.*move the file away"):
        JobManager(broken, autostart=False)

    older = tmp_path / "older"  # a runs.db from before some columns existed still opens and works
    older.mkdir()
    with sqlite3.connect(older / DB_FILE) as conn:
        conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, "
                     "status TEXT NOT NULL, created_at REAL NOT NULL)")
        conn.execute("INSERT INTO runs VALUES ('20260101-000000-abcdef', 'old run', 'local', 'finished', 1.0)")
    jm = JobManager(older, autostart=False)
    try:
        old_run = jm.get("20260101-000000-abcdef")
        assert (old_run.name, old_run.status, old_run.attempt, old_run.best_loss) == ("old run", "finished", 0, None)
        assert jm.get(jm.submit(small_config())).status == "queued"
    finally:
        jm.close()


def test_a_lost_registry_is_rebuilt_from_the_run_directories(tmp_path):
    from trainer.run.events import append_event

    root = tmp_path / "runs"
    jm = JobManager(root, autostart=False)
    aborted = jm.abort(jm.submit(small_config(), owner="alice", name="kept name")).id
    queued = jm.submit(small_config(max_steps=3), owner="bob")
    was_running = jm.submit(small_config())
    # A trainer that announced itself, with a pid that is alive but is not that trainer (pid reuse).
    append_event(jm.run_dir(was_running), "status", status="running", pid=os.getpid())
    jm.close()
    for leftover in root.glob(DB_FILE + "*"):
        leftover.unlink()

    rebuilt = JobManager(root, autostart=False)
    try:
        rows = {r.id: r for r in rebuilt.list_runs()}
        assert set(rows) == {aborted, queued, was_running}
        assert (rows[aborted].status, rows[aborted].owner, rows[aborted].name) == ("aborted", "alice", "kept name")
        assert (rows[queued].status, rows[queued].owner, rows[queued].model) == ("queued", "bob", "demo")
        assert rows[was_running].status == "interrupted"
        assert read_events(rebuilt.run_dir(was_running))[-1]["status"] == "interrupted"
        assert rows[aborted].created_at <= rows[queued].created_at <= rows[was_running].created_at
    finally:
        rebuilt.close()


def test_a_run_another_manager_started_is_left_to_it_for_a_moment_when_its_trainer_ends(tmp_path):
    """Two servers on one registry: the one that did not start a trainer learns its end without the exit
    code. It waits for the parent to record the code; after that (the parent is gone) it records the end."""
    from trainer.run.events import append_event

    jm = JobManager(tmp_path / "runs", poll_interval_s=0.05, autostart=False)
    jm.parent_grace_s = 1.0
    try:
        run_id = jm.submit(small_config())
        ended = subprocess.Popen([sys.executable, "-c", "pass"])
        ended.wait()  # reaped by us, as the other server reaps its own child
        with jm.registry.transaction(write=True) as conn:
            jm.registry.update(conn, run_id, status="running", pid=ended.pid, started_at=time.time())
        append_event(jm.run_dir(run_id), "status", status="finished", reason="done")
        jm.refresh()
        assert jm.get(run_id).status == "running"  # the parent's moment to record it with its exit code
        time.sleep(1.1)
        jm.refresh()
        assert jm.get(run_id).status == "finished"

        # The parent records it within the moment: nothing of that trainer stays in this manager's memory.
        second = jm.submit(small_config())
        with jm.registry.transaction(write=True) as conn:
            jm.registry.update(conn, second, status="running", pid=ended.pid + 1_000_000, started_at=time.time())
        jm.refresh()
        assert jm.get(second).status == "running" and jm._parent_seen_recording
        with jm.registry.transaction(write=True) as conn:
            jm.registry.update(conn, second, status="finished", exit_code=0, finished_at=time.time())
        jm.refresh()
        assert jm._parent_seen_recording == {}
    finally:
        jm.close()


def test_failures_are_recorded_with_reason_and_kind(tmp_path):
    jm = JobManager(tmp_path / "runs", max_concurrent=2, poll_interval_s=0.2, autostart=False)
    try:
        # The config was damaged on disk after submit: the real trainer refuses it with its own status event.
        damaged = jm.submit(small_config())
        (jm.run_dir(damaged) / "config.yaml").write_text("learning_rate: fast\n")
        jm.refresh()
        failed = wait_for(status_is(jm, damaged, "failed", "finished", "interrupted"), "the refusal", manager=jm)
        assert failed.status == "failed" and failed.failure_kind == "config" and failed.exit_code == 2
        assert "learning_rate" in failed.reason

        # No trainer at all (a broken interpreter path): failed at once, the reason says why.
        broken = JobManager(tmp_path / "runs", python=str(tmp_path / "no-such-python"), autostart=False)
        unstartable = broken.submit(small_config())
        broken.refresh()
        info = jm.get(unstartable)
        assert info.status == "failed" and "could not start the trainer" in info.reason
        assert read_events(info.run_dir)[-1]["status"] == "failed"
        broken.close()
    finally:
        jm.close()
        _kill_leftovers(jm)


# --- the real trainer -------------------------------------------------------------------------------

@pytest.mark.slow
def test_second_run_waits_queued_then_both_finish_with_losses(manager):
    # A second server process on the same registry: the limit is global and no run starts twice.
    other_server = JobManager(manager.runs_root, max_concurrent=1, poll_interval_s=0.2)
    try:
        _queue_then_finish(manager, other_server)
    finally:
        other_server.close()
        _kill_leftovers(other_server)


def _queue_then_finish(manager: JobManager, other_server: JobManager) -> None:
    first = manager.submit(small_config(max_steps=4), name="first")
    second = other_server.submit(small_config(max_steps=2), name="second")
    wait_for(status_is(manager, first, "running"), "the first run to start", manager=manager)
    assert manager.get(second).status == "queued"  # one GPU (max_concurrent=1): it waits its turn

    done = wait_for(status_is(manager, first, "finished", "failed"), "the first run to end", manager=manager)
    assert done.status == "finished", done.reason
    assert done.exit_code == 0 and done.step == 4 and done.finished_at >= done.started_at
    assert done.last_loss is not None and done.best_loss is not None and done.best_loss <= done.last_loss
    assert latest_checkpoint(done.run_dir) is not None

    later = wait_for(status_is(manager, second, "finished", "failed"), "the queued run to start and end",
                     manager=manager)
    assert later.status == "finished", later.reason
    assert later.started_at >= done.finished_at - 1.0  # it started only when the first had ended
    assert manager.get(first).attempt == 1 and later.attempt == 1  # each started exactly once
    assert later.last_loss is not None and later.step == 2


@pytest.mark.slow
def test_abort_then_resume_continues_steps_then_sigkill_is_interrupted(manager):
    run_id = manager.submit(small_config(max_steps=400, save_steps=1), owner="alice")
    run_dir = manager.run_dir(run_id)
    wait_for(lambda: latest_checkpoint(run_dir), "a first checkpoint", manager=manager)
    assert manager.get(run_id).status == "running"
    with pytest.raises(PermissionError):
        manager.abort(run_id, owner="mallory")
    manager.abort(run_id, owner="alice")
    aborted = wait_for(status_is(manager, run_id, "aborted", "finished", "failed"), "the abort", manager=manager)
    assert aborted.status == "aborted", aborted.reason
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    stopped_at = int(checkpoint.name.split("-")[1])
    assert stopped_at < 400 and max(logged_steps(run_dir)) <= stopped_at

    resumed = manager.resume(run_id, owner="alice")
    assert resumed.status in ("queued", "running")
    assert TrainConfig.from_yaml(run_dir / "config.yaml").resume_from_checkpoint == "last"
    running = wait_for(status_is(manager, run_id, "running"), "the resumed run to start", manager=manager)
    wait_for(lambda: logged_steps(run_dir, running.events_offset), "a step logged after resuming",
             manager=manager)
    assert logged_steps(run_dir, running.events_offset)[0] == stopped_at + 1  # the step count continues

    # A SIGKILL leaves no final status: the live manager records it as interrupted (resumable).
    os.killpg(manager.get(run_id).pid, signal.SIGKILL)
    killed = wait_for(status_is(manager, run_id, "interrupted", "failed", "finished"), "the kill to be noticed",
                      manager=manager)
    assert killed.status == "interrupted" and "SIGKILL" in killed.reason
    assert read_events(run_dir)[-1]["status"] == "interrupted"  # the run directory says so too
    assert killed.attempt == 2


@pytest.mark.slow
def test_abort_kills_a_trainer_that_does_not_stop_within_the_grace(tmp_path):
    jm = JobManager(tmp_path / "runs", max_concurrent=1, poll_interval_s=0.2, abort_grace_s=0.5)
    try:
        run_id = jm.submit(small_config())
        pid = wait_for(lambda: jm.get(run_id).pid, "the trainer to be started", manager=jm)
        os.killpg(pid, signal.SIGSTOP)  # a frozen trainer cannot honour SIGTERM or the ABORT file
        assert jm.abort(run_id).abort_requested
        aborted = wait_for(status_is(jm, run_id, "aborted", "failed", "interrupted", "finished"),
                           "the grace kill", manager=jm)
        assert aborted.status == "aborted" and aborted.exit_code == -signal.SIGKILL
        assert "had not stopped after the 0.5 s grace and was killed" in aborted.reason
        assert read_events(aborted.run_dir)[-1]["status"] == "aborted"
        assert not (aborted.run_dir / "ABORT").exists()
    finally:
        jm.close()
        _kill_leftovers(jm)


SERVER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from trainer.config import TrainConfig
    from trainer.run.events import read_events
    from trainer.jobs.manager import JobManager
    root, configs = sys.argv[1], json.loads(sys.argv[2])
    jm = JobManager(root, max_concurrent=len(configs), poll_interval_s=0.2)
    ids = [jm.submit(TrainConfig.from_dict(c)) for c in configs]
    deadline = time.time() + 240
    while time.time() < deadline:
        if all(any(e.get("type") == "checkpoint" for e in read_events(jm.run_dir(i))) for i in ids):
            print(json.dumps(ids), flush=True)
            break
        time.sleep(0.2)
    import os
    os._exit(0)  # the server dies; its trainers live on in their own sessions
""")


@pytest.mark.slow
def test_restart_reconciles_killed_run_and_reattaches_live_one(tmp_path):
    """A server starts two runs and dies; one trainer is then killed; a new server sorts out both."""
    root = tmp_path / "runs"
    configs = [small_config(max_steps=14, save_steps=2).to_dict(), small_config(max_steps=400, save_steps=1).to_dict()]
    server = subprocess.run([sys.executable, "-c", SERVER_SCRIPT, str(root), json.dumps(configs)], cwd=ROOT,
                            capture_output=True, text=True, timeout=WAIT_S + 60)
    assert server.returncode == 0 and server.stdout.strip(), server.stderr[-3000:]
    survivor, victim = json.loads(server.stdout)

    with sqlite3.connect(root / DB_FILE) as conn:
        pids = dict(conn.execute("SELECT id, pid FROM runs").fetchall())
    # Frozen for a moment, so it is surely still training when the new server looks (however slow the CPU).
    os.killpg(pids[survivor], signal.SIGSTOP)
    os.killpg(pids[victim], signal.SIGKILL)  # while no server is watching

    jm = JobManager(root, poll_interval_s=0.2)
    try:
        reattached = jm.get(survivor)
        assert reattached.status == "running" and reattached.pid == pids[survivor]  # alive: reattached
        os.killpg(pids[survivor], signal.SIGCONT)
        lost = wait_for(status_is(jm, victim, "interrupted", "failed"), "the dead run to be reconciled",
                        manager=jm)
        assert lost.status == "interrupted"
        assert "gone" in lost.reason and "resume" in lost.reason
        assert read_events(lost.run_dir)[-1]["status"] == "interrupted"

        ended = wait_for(status_is(jm, survivor, "finished", "failed", "interrupted"),
                         "the reattached run to end", manager=jm)
        assert ended.status == "finished", ended.reason
        assert ended.step == 14 and ended.last_loss is not None
    finally:
        jm.close()
        _kill_leftovers(jm)


@pytest.mark.slow
def test_oom_recovery_halves_the_micro_batch_and_keeps_the_effective_batch(tmp_path, monkeypatch):
    # The injected OOM fires at step 2 of every attempt (the env is inherited), so the manager halves
    # 2 -> 1, tries again, and gives up at micro-batch 1.
    monkeypatch.setenv("TUNEDECK_FAULT", "oom@2")
    jm = JobManager(tmp_path / "runs", max_concurrent=1, poll_interval_s=0.2)
    try:
        run_id = jm.submit(small_config(max_steps=6, save_steps=1, per_device_train_batch_size=2,
                                        gradient_accumulation_steps=2, oom_recovery=True))
        run_dir = jm.run_dir(run_id)
        final = wait_for(lambda: (lambda r: r if r.status in ("failed", "finished") and r.attempt >= 2 else None)(
            jm.get(run_id)), "the recovered attempt to end", manager=jm)
        cfg = TrainConfig.from_yaml(run_dir / "config.yaml")
        assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (1, 4)
        assert cfg.resume_from_checkpoint == "last"  # checkpoint-1 was saved before the OOM at step 2
        messages = [e["text"] for e in read_events(run_dir) if e["type"] == "message"]
        assert any("micro-batch 1" in m and "effective batch stays 4" in m for m in messages), messages
        assert final.status == "failed" and final.failure_kind == "oom"
        assert "gave up" in final.reason and final.attempt == 2
    finally:
        jm.close()
        _kill_leftovers(jm)
