"""The fair queue on a real runs.db: a per-user cap, positions, what is ahead, estimated starts, cancel by
the owner, an admin's reordering, and the scheduler starting runs in the line's order (a real trainer)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from trainer.jobs.manager import JobError, JobManager, QueueFullError
from trainer.jobs.queue import queue_view, remaining_seconds
from trainer.jobs.registry import RunInfo
from trainer.run.events import read_events

from test_jobs import small_config, status_is, wait_for


@pytest.fixture
def jobs(tmp_path):
    jm = JobManager(tmp_path / "runs", max_concurrent=1, autostart=False, max_queued_per_owner=2)
    yield jm
    jm.close()
    for info in jm.list_runs(status="running"):
        try:
            os.killpg(info.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, TypeError):
            pass


def waiting(jm: JobManager) -> list[tuple[str, int, tuple[str, ...]]]:
    return [(e.run_id, e.position, e.ahead) for e in jm.queue() if e.position is not None]


def test_each_person_may_queue_only_so_many_and_cancel_their_own(jobs):
    a1, a2 = jobs.submit(small_config(), owner="alice"), jobs.submit(small_config(), owner="alice")
    before = sorted(p.name for p in jobs.runs_root.iterdir())
    with pytest.raises(QueueFullError, match="'alice' already has 2 runs waiting"):
        jobs.submit(small_config(), owner="alice")
    assert sorted(p.name for p in jobs.runs_root.iterdir()) == before  # nothing half-written
    b1 = jobs.submit(small_config(), owner="bob")  # the cap is per person
    assert waiting(jobs) == [(a1, 1, ()), (a2, 2, (a1,)), (b1, 3, (a1, a2))]

    with pytest.raises(PermissionError, match="alice"):
        jobs.cancel(a1, owner="bob")
    cancelled = jobs.cancel(a1, owner="alice")
    assert cancelled.status == "aborted" and cancelled.reason == "cancelled while queued"
    assert read_events(cancelled.run_dir)[-1]["status"] == "aborted"
    with pytest.raises(JobError, match="not waiting in the queue"):
        jobs.cancel(a1)
    assert waiting(jobs) == [(a2, 1, ()), (b1, 2, (a2,))]
    a3 = jobs.submit(small_config(), owner="alice")  # a place freed up
    assert waiting(jobs)[-1] == (a3, 3, (a2, b1))


def test_an_admin_reorders_and_later_runs_still_queue_at_the_back(jobs):
    jobs.max_queued_per_owner = None
    first, second, third = (jobs.submit(small_config(), owner=o) for o in ("alice", "bob", "carol"))
    assert [e[0] for e in waiting(jobs)] == [first, second, third]
    jobs.move(third, 1)
    assert waiting(jobs) == [(third, 1, ()), (first, 2, (third,)), (second, 3, (third, first))]
    jobs.move(third, 99)  # past the end: the back
    assert [e[0] for e in waiting(jobs)] == [first, second, third]
    jobs.move(second, 1)
    fourth = jobs.submit(small_config(), owner="dave")
    assert [e[0] for e in waiting(jobs)] == [second, first, third, fourth]
    for bad in [0, -1, "1", 1.5, True, None]:
        with pytest.raises(JobError, match="position"):
            jobs.move(first, bad)
    jobs.cancel(fourth)
    with pytest.raises(JobError, match="only a queued run"):
        jobs.move(fourth, 1)
    with pytest.raises(JobError):
        jobs.move("../x", 1)


@pytest.mark.slow
def test_the_scheduler_starts_the_head_of_the_reordered_line(jobs):
    jobs.max_queued_per_owner = None
    first, second = jobs.submit(small_config(), owner="alice"), jobs.submit(small_config(), owner="bob")
    jobs.move(second, 1)
    jobs.refresh()
    assert jobs.get(second).status == "running" and jobs.get(first).status == "queued"
    view = jobs.queue()
    assert [(e.run_id, e.status, e.position) for e in view] == [(second, "running", None), (first, "queued", 1)]
    done = wait_for(status_is(jobs, second, "finished", "failed"), "the moved run to end", manager=jobs)
    assert done.status == "finished", done.reason
    wait_for(status_is(jobs, first, "running", "finished"), "the next run to start by itself", manager=jobs)


def _info(run_id: str, status: str, **values) -> RunInfo:
    fields = dict(name=run_id, owner="alice", created_at=0.0, started_at=None, finished_at=None, pid=None,
                  exit_code=None, model="demo", dataset="demo", method="lora", best_loss=None, last_loss=None,
                  step=None, total_steps=None, reason=None, failure_kind=None, attempt=0, events_offset=0,
                  abort_requested_at=None, gpu=None, best_eval_loss=None, earlier_attempts_s=None)
    fields.update(values)
    return RunInfo(id=run_id, status=status, run_dir=None, **fields)  # type: ignore[arg-type]


def test_estimated_starts_come_from_the_running_runs_pace():
    now = 1000.0
    running = _info("r", "running", started_at=900.0, step=10, total_steps=30, gpu="0")  # 10 s a step
    assert remaining_seconds(running, now) == pytest.approx(200.0)
    assert remaining_seconds(_info("s", "running", started_at=990.0, step=None, total_steps=30), now) is None
    queued = [_info("q1", "queued"), _info("q2", "queued")]
    view = queue_view([running], queued, slots=1, now=now)
    assert view[0].estimated_end == pytest.approx(1200.0) and view[0].position is None
    assert (view[1].position, view[1].estimated_start, view[1].ahead) == (1, pytest.approx(1200.0), ())
    assert (view[2].position, view[2].estimated_start, view[2].ahead) == (2, None, ("q1",))  # length unknown
    two_gpus = queue_view([running], queued, slots=2, now=now)
    assert two_gpus[1].estimated_start == now and two_gpus[2].estimated_start == pytest.approx(1200.0)
    unknown = queue_view([_info("s", "running", started_at=990.0)], queued[:1], slots=1, now=now)
    assert unknown[1].estimated_start is None


def test_a_resumed_run_waits_at_the_back_and_counts_against_the_cap(jobs, tmp_path):
    jobs.max_queued_per_owner = 1
    stopped = jobs.cancel(jobs.submit(small_config(), owner="alice"))
    (stopped.run_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (stopped.run_dir / "checkpoints" / "checkpoint-1" / "trainer_state.json").write_text("{}")
    waiting_run = jobs.submit(small_config(), owner="alice")
    with pytest.raises(QueueFullError):
        jobs.resume(stopped.id, owner="alice")
    assert jobs.get(stopped.id).status == "aborted"
    jobs.cancel(waiting_run)
    other = jobs.submit(small_config(), owner="bob")
    time.sleep(0.01)
    assert jobs.resume(stopped.id, owner="alice").status == "queued"
    assert [e[0] for e in waiting(jobs)] == [other, stopped.id]  # submitted first, but resumed last
