"""The scheduler: starts queued runs (one per GPU), watches running ones, records how each ended, and
restarts a run that ran out of memory with a smaller micro-batch when it asked for that.

A tick (`refresh`) reaps this process's children, checks every `running` row against its process (by
pid and command line, so a reused pid is never taken for the trainer), kills a trainer that outlived
its abort grace, updates the loss columns from the run's events (trainer.run.series), and claims
queued rows with ``UPDATE ... WHERE status='queued'`` under the write lock, so two managers sharing
one runs.db never start the same run. When a trainer vanished without its final ``status`` event, the
scheduler decides (aborted / interrupted / failed) and appends that event itself, so the run
directory stays the truth. Standard library only: no torch.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any, Iterable

from trainer.config import ConfigError
from trainer.engine import distributed
from trainer.jobs.processes import kill_group, pid_is_trainer_of, signal_name, spawn_trainer
from trainer.jobs.registry import (
    QUEUE_ORDER_SQL, JobError, Registry, RegistryError, RunInfo, UnknownRunError, summary_columns,
)
from trainer.plan.batching import smaller_micro_batch
from trainer.run.events import (
    ABORTED, FAILED, FAILURE_KINDS, FINAL_STATUSES, INTERRUPTED, QUEUED, RUNNING, EventReader, append_event, tail_lines,
)
from trainer.run.layout import (
    EVENTS_FILE, STDOUT_FILE, clear_abort_request, config_path, latest_checkpoint, read_run_config, train_argv,
    write_run_config,
)
from trainer.run.series import RunSummary

_LOG_TAIL_LINES = 40
_EXIT_GRACE_S = 60.0  # how long a trainer may linger after writing its final status event


def pick_gpu(gpus: list[str], in_use: Iterable[str | None]) -> str | None:
    """The least busy GPU (the first of equals) for the next run; None on a machine without GPUs."""
    if not gpus:
        return None
    used = gpus_in_use(in_use)
    return min(gpus, key=lambda gpu: (used.count(gpu), gpus.index(gpu)))


def gpus_in_use(in_use: Iterable[str | None]) -> list[str]:
    """The GPUs of running runs, from their gpu columns ("1" or a set "0,1")."""
    return [gpu for entry in in_use if entry for gpu in entry.split(",")]


def pick_gpus(gpus: list[str], in_use: Iterable[str | None], count: int, wanted: str | None = None,
              share: bool = False) -> str | None | bool:
    """The GPU set ("0,1") of a run that needs `count` GPUs, or False while they are not free.

    One GPU with no choice made: a free one, else (`share`: max_concurrent above the GPU count allows it)
    the least busy one. Several, or named ones (gpu_ids): each must be free, since the run's processes
    cannot share their devices. None on a machine without GPUs."""
    if not gpus or count == 0:
        return None
    used = set(gpus_in_use(in_use))
    if count == 1 and not wanted:
        free = [g for g in gpus if g not in used]
        return free[0] if free else (pick_gpu(gpus, in_use) if share else False)
    candidates = wanted.split(",") if wanted else [g for g in gpus if g not in used][:count]
    if len(candidates) < count or used & set(candidates):
        return False
    return ",".join(candidates)


class Scheduler:
    """Starts and watches the runs of one registry; a background thread ticks every poll_interval_s."""

    def __init__(self, registry: Registry, *, gpus: list[str], max_concurrent: int, python: str,
                 abort_grace_s: float, poll_interval_s: float):
        self.registry = registry
        self.gpus = gpus
        self.max_concurrent = max_concurrent
        self.python = python
        self.abort_grace_s = abort_grace_s
        self.poll_interval_s = poll_interval_s
        self._children: dict[str, subprocess.Popen] = {}  # runs this process spawned (reaped by poll)
        self._summaries: dict[str, tuple[EventReader, RunSummary]] = {}
        self.parent_grace_s = 5.0  # how long an ended trainer is left to the manager that started it
        self._parent_seen_recording: dict[int, float] = {}  # pid -> when first seen ended
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.last_error: str | None = None  # a registry problem the last tick met (damaged runs.db, full disk)
        self._wake_event = threading.Event()  # set to make the scheduler tick now rather than at the next poll
        self._thread: threading.Thread | None = None

    # --- the thread -----------------------------------------------------------------------------
    def start(self) -> None:
        """Run the scheduler in a background thread (refresh every poll_interval_s)."""
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tunedeck-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the scheduler thread. Running trainers keep running (they are in their own sessions).

        Our own children are still waited for in the background, so one that ends while this process
        lives is reaped (no zombie) and recorded, and nothing new is started.
        """
        self._stop.set()
        self._wake_event.set()
        if self._thread:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            children, self._children = self._children, {}
        for run_id, proc in children.items():
            threading.Thread(target=self._reap_after_close, args=(run_id, proc), daemon=True,
                             name=f"tunedeck-reap-{run_id}").start()

    def _reap_after_close(self, run_id: str, proc: subprocess.Popen) -> None:
        code = proc.wait()
        try:
            with self._lock:
                self._finalize(run_id, proc.pid, code)
        except Exception as exc:  # the database may be gone (a test's tmp dir): nothing left to record
            print(f"tunedeck jobs: could not record the end of {run_id}: {exc!r}", file=sys.stderr)

    def _wake(self) -> None:
        self._wake_event.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.registry.runs_root.is_dir():  # the runs root was removed (a test's tmp dir)
                print(f"tunedeck jobs: {self.registry.runs_root} is gone; the scheduler stops", file=sys.stderr)
                return
            try:
                self.refresh()
                self.last_error = None
            except RegistryError as exc:  # said once, not every tick; the page shows it where runs are listed
                if str(exc) != self.last_error:
                    print(f"tunedeck jobs: {exc}", file=sys.stderr)
                self.last_error = str(exc)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    print(f"tunedeck jobs: refresh failed: {exc!r}", file=sys.stderr)
                else:  # runs.db was removed under us: a fresh one, rebuilt from the run directories
                    try:
                        self.registry.init()
                        self.registry.adopt_run_dirs()
                    except Exception as again:
                        print(f"tunedeck jobs: could not rebuild {self.registry.db_path}: {again!r}",
                              file=sys.stderr)
            except Exception as exc:  # keep scheduling: one bad row must not stop every run
                print(f"tunedeck jobs: refresh failed: {exc!r}", file=sys.stderr)
            self._wake_event.wait(self.poll_interval_s)
            self._wake_event.clear()

    # --- one tick -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """One scheduler tick: record ended runs, enforce abort grace, update losses, start queued runs."""
        with self._lock:
            self._reap_children()
            self._check_running()
            self._start_queued()

    def _reap_children(self) -> None:
        for run_id, proc in list(self._children.items()):
            code = proc.poll()
            if code is not None:
                del self._children[run_id]
                self._finalize(run_id, proc.pid, code)

    def _check_running(self) -> None:
        running = self.registry.with_status(RUNNING)
        # A trainer its parent recorded during the grace is no longer running: forget when it was seen ended.
        for pid in set(self._parent_seen_recording) - {info.pid for info in running}:
            del self._parent_seen_recording[pid]
        for info in running:
            if info.id in self._children:
                alive = True
            else:
                alive = pid_is_trainer_of(info.pid, info.run_dir)
                # Ended, as an unreaped zombie or reaped a moment ago: the manager that started it records the
                # end with the exit code. Recorded here at once, the run would read "finished" with no code.
                if not alive and info.pid and self._parent_may_record(info.pid):
                    continue
            if not alive:
                self._parent_seen_recording.pop(info.pid or 0, None)
                self._finalize(info.id, info.pid, None)
                continue
            if info.abort_requested_at is not None and time.time() - info.abort_requested_at > self.abort_grace_s:
                kill_group(info.pid)  # the trainer had its chance to stop cleanly
            summary, changed = self._read_summary(info)
            ended_at = summary.final_status_at
            if (ended_at is not None and info.started_at is not None and ended_at >= info.started_at
                    and time.time() - ended_at > _EXIT_GRACE_S):
                # The trainer reported its end but its process lingers (a stuck thread): end it, so the run
                # does not show `running` forever. Its own status event still decides how it ended.
                kill_group(info.pid)
            if changed:
                with self.registry.transaction(write=True) as conn:
                    self.registry.update(conn, info.id, "AND status = ?", (RUNNING,), **summary_columns(summary))

    def _parent_may_record(self, pid: int) -> bool:
        """Leave an ended trainer to its parent manager for a while; after that (the parent is gone or stuck,
        or is an init that never reaps orphans) record it here."""
        first_seen = self._parent_seen_recording.setdefault(pid, time.monotonic())
        return time.monotonic() - first_seen < max(self.parent_grace_s, 3 * self.poll_interval_s)

    def _read_summary(self, info: RunInfo) -> tuple[RunSummary, bool]:
        """The run's summary with the events appended since the last read, and whether it changed."""
        if info.id not in self._summaries:
            self._summaries[info.id] = (EventReader.for_run(info.run_dir), RunSummary())
        reader, summary = self._summaries[info.id]
        return summary, summary.update(reader.read_new())

    def _start_queued(self) -> None:
        with self.registry.transaction() as conn:  # a cheap read first: the write lock only when there is work
            if not conn.execute("SELECT 1 FROM runs WHERE status = ? LIMIT 1", (QUEUED,)).fetchone():
                return
        with self.registry.transaction(write=True) as conn:
            running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (RUNNING,)).fetchone()[0]
            free = self.max_concurrent - running
            if free <= 0:
                return
            queued = conn.execute(f"SELECT * FROM runs WHERE status = ? ORDER BY {QUEUE_ORDER_SQL} LIMIT ?",
                                  (QUEUED, free)).fetchall()
            for row in queued:
                info = self.registry.row_to_info(row)
                # A run gets its own GPUs: the trainer sees only those (CUDA_VISIBLE_DEVICES), and a
                # multi-GPU run waits until as many are free.
                in_use = [r[0] for r in conn.execute("SELECT gpu FROM runs WHERE status = ?", (RUNNING,))]
                gpu = self._gpus_for(info, in_use)
                if gpu is False:
                    continue
                # The claim: only one manager can move this row out of `queued` (we hold the write lock).
                if not self.registry.update(conn, info.id, "AND status = ?", (QUEUED,), status=RUNNING,
                                            started_at=time.time(), attempt=info.attempt + 1, gpu=gpu):
                    continue
                try:
                    proc, offset = self._spawn(info, gpu)
                except Exception as exc:
                    reason = f"could not start the trainer: {exc}"
                    self.registry.update(conn, info.id, status=FAILED, finished_at=time.time(), reason=reason,
                                         failure_kind="other")
                    append_event(info.run_dir, "status", status=FAILED, reason=reason, kind="other")
                    continue
                self._children[info.id] = proc
                self.registry.update(conn, info.id, pid=proc.pid, events_offset=offset)

    def _gpus_for(self, info: RunInfo, in_use: list[str | None]) -> str | None | bool:
        """The run's GPU set, None without GPUs, False while it must wait (a bad config fails at its spawn)."""
        try:
            cfg = read_run_config(info.run_dir)
        except (ConfigError, OSError):
            return pick_gpu(self.gpus, in_use)
        return pick_gpus(self.gpus, in_use, distributed.gpus_needed(cfg, len(self.gpus)), cfg.gpu_ids,
                         share=self.max_concurrent > len(self.gpus))

    def _spawn(self, info: RunInfo, gpu: str | None) -> tuple[subprocess.Popen, int]:
        run_dir = info.run_dir
        if not config_path(run_dir).is_file():
            raise JobError(f"{config_path(run_dir)} is missing")
        clear_abort_request(run_dir)  # left by an earlier attempt, it would stop this one at once
        try:
            offset = (run_dir / EVENTS_FILE).stat().st_size
        except FileNotFoundError:
            offset = 0
        count = len(gpu.split(",")) if gpu else 0
        try:
            cfg = read_run_config(run_dir)
        except ConfigError:
            cfg = None  # started anyway: the trainer refuses it with a status event naming the field
        if cfg is not None and distributed.uses_launcher(cfg, count):
            distributed.write_launch_files(cfg, run_dir, count)
        proc = spawn_trainer(train_argv(run_dir, self.python, cfg, count), run_dir, attempt=info.attempt + 1, gpu=gpu)
        return proc, offset

    # --- how a run ended ------------------------------------------------------------------------
    def _finalize(self, run_id: str, pid: int | None, exit_code: int | None) -> None:
        """Record the end of a running run: from its final status event, else from how it vanished."""
        try:
            info = self.registry.get(run_id)
        except UnknownRunError:
            return
        if info.status != RUNNING or info.pid != pid:
            if info.pid == pid and exit_code is not None and info.exit_code is None:
                with self.registry.transaction(write=True) as conn:  # recorded by another manager: add the code
                    self.registry.update(conn, run_id, "AND pid = ? AND exit_code IS NULL", (pid,),
                                         exit_code=exit_code)
            return
        summary, _ = self._read_summary(info)
        reader = EventReader.for_run(info.run_dir)
        reader.offset = info.events_offset
        final = None
        for event in reader.read_new():
            if event.get("type") == "status" and event.get("status") in FINAL_STATUSES:
                # Several ranks may fail, one after the other: the first one says why (the rest lost it).
                if not (final is not None and final.get("status") == FAILED and event.get("status") == FAILED):
                    final = event
        kind = None
        if final is not None:
            status = final["status"]
            reason = final.get("reason")
            kind = final.get("kind")
            if status == FAILED and kind is None and "out of memory" in str(reason or "").lower():
                kind = "oom"
            elif kind is not None and kind not in FAILURE_KINDS:  # written by another tunedeck version
                kind = "other"
        else:
            status, reason = self._classify_vanished(info, exit_code)
            event: dict[str, Any] = {"status": status, "reason": reason, "exit_code": exit_code}
            if status == FAILED:
                kind = "other"
                event["kind"] = kind
                event["log_tail"] = tail_lines(info.run_dir / STDOUT_FILE, _LOG_TAIL_LINES)
            append_event(info.run_dir, "status", **event)
        if status == FAILED and kind == "oom":
            reason = self._oom_final_reason(info, reason)  # in the same update: nobody sees the run half-told
        with self.registry.transaction(write=True) as conn:
            changed = self.registry.update(conn, run_id, "AND status = ? AND pid IS ?", (RUNNING, pid),
                                           status=status, finished_at=time.time(), exit_code=exit_code,
                                           reason=reason, failure_kind=kind, **summary_columns(summary))
        if not changed:
            return
        clear_abort_request(info.run_dir)
        if status == FAILED and kind == "oom":
            self._recover_from_oom(run_id)

    def _classify_vanished(self, info: RunInfo, exit_code: int | None) -> tuple[str, str]:
        """A trainer that ended without its final status event: aborted, interrupted or failed?"""
        if info.abort_requested_at is not None:
            if exit_code == -signal.SIGKILL:
                return ABORTED, (f"aborted on request; the trainer had not stopped after the {self.abort_grace_s:g} s "
                                 "grace and was killed (no checkpoint was saved at the abort)")
            if exit_code is not None and exit_code < 0:
                return ABORTED, f"aborted on request; the trainer ended by {signal_name(-exit_code)} before reporting"
            return ABORTED, "aborted on request"
        resumable = ("resume it to continue from its last checkpoint" if latest_checkpoint(info.run_dir)
                     else "it saved no checkpoint, so start it again")
        if exit_code is None:
            return INTERRUPTED, (f"the trainer process (pid {info.pid}) is gone without reporting an end — the "
                                 f"server or machine restarted, or it was killed; {resumable}")
        if exit_code < 0:
            return INTERRUPTED, f"the trainer was killed by {signal_name(-exit_code)}; {resumable}"
        last = [line for line in tail_lines(info.run_dir / STDOUT_FILE, 5) if line.strip()]
        output = ("; last output: " + " | ".join(last[-3:])) if last else ""
        return FAILED, f"the trainer exited with code {exit_code} without reporting why{output}"

    @staticmethod
    def _oom_final_reason(info: RunInfo, reason: str | None) -> str | None:
        """An out-of-memory failure's reason, saying so when OOM recovery cannot shrink the micro-batch further."""
        try:
            cfg = read_run_config(info.run_dir)
        except ConfigError:
            return reason
        if not cfg.oom_recovery or smaller_micro_batch(cfg.per_device_train_batch_size,
                                                       cfg.gradient_accumulation_steps) is not None:
            return reason
        return (f"{reason or 'out of memory'} — OOM recovery gave up: the micro-batch is already 1 "
                "(try a shorter cutoff_len, gradient checkpointing or 4-bit)")

    def _recover_from_oom(self, run_id: str) -> None:
        """oom_recovery: restart from the last checkpoint with a smaller micro-batch and the same effective
        batch (trainer.plan.batching.smaller_micro_batch, the rule the failure's advice states too)."""
        info = self.registry.get(run_id)
        try:
            cfg = read_run_config(info.run_dir)
        except ConfigError:
            return
        if not cfg.oom_recovery:
            return
        micro, accumulation = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
        smaller = smaller_micro_batch(micro, accumulation)
        if smaller is None:  # the reason already says so (_oom_final_reason)
            append_event(info.run_dir, "message", level="error",
                         text="Out of memory at a micro-batch of 1: automatic recovery gave up.")
            return
        new_micro, new_accumulation = smaller
        checkpoint = latest_checkpoint(info.run_dir)
        try:
            new_cfg = cfg.replace(per_device_train_batch_size=new_micro, gradient_accumulation_steps=new_accumulation,
                                  resume_from_checkpoint="last" if checkpoint else None)
        except ConfigError:
            return
        with self.registry.transaction(write=True) as conn:
            if not self.registry.update(conn, run_id, "AND status = ?", (FAILED,), status=QUEUED):
                return  # someone else (another manager, a user's resume) already acted on it
            write_run_config(new_cfg, info.run_dir)
            where = f"from {checkpoint.name}" if checkpoint else "from the start (no checkpoint was saved yet)"
            text = (f"Out of memory at a micro-batch of {micro}: restarting {where} with micro-batch {new_micro} "
                    f"and gradient accumulation {new_accumulation} (was {accumulation}); the effective batch stays "
                    f"{new_micro * new_accumulation}.")
            self.registry.requeue(conn, info, reason=text, to_back=False)  # it had its turn already
            append_event(info.run_dir, "message", level="warning", text=text, oom_recovery=True,
                         per_device_train_batch_size=new_micro, gradient_accumulation_steps=new_accumulation)
            append_event(info.run_dir, "status", status=QUEUED, reason=text)
        self._wake()
