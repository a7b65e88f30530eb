"""The public entry to runs: `JobManager` submits, aborts, resumes and deletes runs of one runs root, and
schedules them (trainer.jobs.scheduler) over its registry (trainer.jobs.registry, ``runs.db``).

A run is submitted as ``queued``; the scheduler starts it as ``python -m trainer train`` (the one
command line of trainer.run.layout.train_argv) in its own session, so it outlives the server, at most
``max_concurrent`` at a time (one per GPU), and records how it ended. A lost runs.db is rebuilt from
the run directories.

Public API (errors: ConfigError for a bad config, PermissionError for another owner's run,
JobError with a message for a request the run's state refuses (QueueFullError: the owner already has
`max_queued_per_owner` runs waiting), UnknownRunError for an unknown id)::

    jm = JobManager(runs_root=None, max_concurrent=None, python=sys.executable, abort_grace_s=30.0,
                    poll_interval_s=1.0, autostart=True, max_queued_per_owner=None)
    run_id = jm.submit(cfg, owner="local", name=None)    # -> "20261123-053012-a1b2c3", queued
    jm.queue() -> list[QueueEntry]   # running runs, then the line: position, what is ahead, estimated start
    jm.cancel(run_id, owner=None);  jm.move(run_id, position)   # a queued run leaves / changes place
    jm.list_runs(status=None, owner=None) -> list[RunInfo]  # newest first
    jm.get(run_id) -> RunInfo;  jm.run_dir(run_id) -> Path;  jm.read_config(run_id) -> TrainConfig
    jm.abort(run_id, owner=None) -> RunInfo;  jm.resume(run_id, owner=None) -> RunInfo
    jm.delete(run_id, owner=None);  jm.refresh();  jm.close()

This module never imports torch: the dashboard process stays light.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from trainer.config import ConfigError, TrainConfig, load_config
from trainer.engine.distributed import machine_problems
from trainer.jobs.processes import pid_is_trainer_of, terminate
from trainer.jobs.queue import QueueEntry, queue_view
from trainer.jobs.registry import QUEUE_ORDER_SQL, JobError, Registry, RunInfo, UnknownRunError, check_run_id
from trainer.jobs.scheduler import Scheduler
from trainer.plan.hardware import visible_gpus
from trainer.run.events import ABORTED, FAILED, FINAL_STATUSES, INTERRUPTED, QUEUED, RUNNING, append_event
from trainer.run.layout import (
    RESUME_LATEST, checkpoint_step, default_runs_root, latest_checkpoint, new_run_id, read_run_config, request_abort,
    write_run_config,
)
from trainer.secret_shapes import secret_refusal

__all__ = ["JobError", "JobManager", "QueueEntry", "QueueFullError", "RunInfo", "UnknownRunError"]


class QueueFullError(JobError):
    """The owner already has as many runs waiting as one person may queue."""


def _with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Local files named relative to the server's directory, made absolute: the run still finds them when it
    is resumed by a server started somewhere else. Shipped names (`demo`) and Hub ids are left alone."""
    changes = {}
    for name in ("model_name_or_path", "dataset", "resume_from_checkpoint"):
        value = getattr(cfg, name)
        if not value or value == "demo" or value.strip().lower() in RESUME_LATEST:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() and path.exists():
            changes[name] = str(path.resolve())
        elif value.startswith("~") and path.exists():
            changes[name] = str(path)
    return cfg.replace(**changes) if changes else cfg


class JobManager(Scheduler):
    """The registry of runs in one runs root, and the scheduler that starts and watches them."""

    def __init__(self, runs_root: str | Path | None = None, *, max_concurrent: int | None = None,
                 python: str = sys.executable, abort_grace_s: float = 30.0, poll_interval_s: float = 1.0,
                 autostart: bool = True, max_queued_per_owner: int | None = None):
        self.runs_root = Path(runs_root if runs_root is not None else default_runs_root()).expanduser().resolve()
        self.runs_root.mkdir(parents=True, exist_ok=True)
        registry = Registry(self.runs_root)
        self.db_path = registry.db_path
        # None: no cap. A shared server sets one, so nobody fills the line ahead of the rest of the team.
        self.max_queued_per_owner = max_queued_per_owner
        gpus = visible_gpus()
        super().__init__(registry, gpus=gpus, max_concurrent=max(1, max_concurrent if max_concurrent is not None
                                                                 else len(gpus)),
                         python=python, abort_grace_s=abort_grace_s, poll_interval_s=poll_interval_s)
        registry.init()
        self._remove_leftovers()
        registry.adopt_run_dirs()
        with self._lock:  # reconcile: rows marked running whose process is gone -> interrupted; live ones reattach
            self._check_running()
        if autostart:
            self.start()

    def __enter__(self) -> "JobManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _remove_leftovers(self) -> None:
        """Staging / deleting directories a crashed server left behind (an hour old: no one is using them)."""
        for entry in self.runs_root.glob(".[sd][te]*-*"):
            if entry.name.startswith((".staging-", ".deleting-")):
                try:
                    if time.time() - entry.stat().st_mtime > 3600:
                        shutil.rmtree(entry, ignore_errors=True)
                except OSError:
                    pass

    # --- queries --------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        check_run_id(run_id)
        return self.runs_root / run_id

    def get(self, run_id: str) -> RunInfo:
        """The run's row; UnknownRunError (a KeyError and a JobError) when there is none."""
        return self.registry.get(run_id)

    def read_config(self, run_id: str) -> TrainConfig:
        """The run's config.yaml (as the trainer sees it: after a resume or an OOM restart, the changed one)."""
        return read_run_config(self.run_dir(run_id))

    def list_runs(self, status: str | Iterable[str] | None = None, owner: str | None = None) -> list[RunInfo]:
        """Runs, newest first; optionally only some statuses and/or one owner."""
        return self.registry.list_runs(status, owner)

    # --- submit ---------------------------------------------------------------------------------
    def submit(self, cfg: TrainConfig | dict[str, Any] | str | Path, owner: str = "local",
               name: str | None = None) -> str:
        """Validate the config, write ``<run_id>/config.yaml`` and a ``queued`` row; return the run id.

        Raises ConfigError for a bad config. Nothing is left behind when anything fails.
        """
        cfg = load_config(cfg)
        cfg = TrainConfig.from_dict(cfg.to_dict())  # re-validate: a copy built without validation is caught here
        if cfg.resume_from_checkpoint and cfg.resume_from_checkpoint.strip().lower() in RESUME_LATEST:
            # A config copied from a resumed run: its new directory has no checkpoint, `last` means nothing.
            cfg = cfg.replace(resume_from_checkpoint=None)
        cfg = _with_absolute_paths(cfg)
        problems = machine_problems(cfg, self.gpus)  # GPUs that are not here, DeepSpeed not installed
        if problems:
            raise ConfigError(problems)
        owner = str(owner or "local")
        name = (name or "").strip() or cfg.display_name
        if secret_refusal(name):
            raise ConfigError([("run_name", secret_refusal(name))])
        for _ in range(20):
            run_id = new_run_id()
            staging = self.runs_root / f".staging-{run_id}"
            final = self.runs_root / run_id
            if final.exists():
                continue
            try:
                staging.mkdir()
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - 20 collisions of 24 random bits in one second
            raise JobError("could not allocate a unique run id; try again")
        try:
            write_run_config(cfg, staging)
            # Owner and name ride in the first event too: a lost runs.db can be rebuilt from the directories.
            append_event(staging, "status", status=QUEUED, reason=None, owner=owner, name=name)
            os.rename(staging, final)  # the run directory appears whole, or not at all
            with self.registry.transaction(write=True) as conn:
                self._check_queue_cap(conn, owner)  # under the write lock: two submits cannot both pass
                self.registry.insert_queued(conn, run_id, name, owner, cfg)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            raise
        self._wake()
        return run_id

    # --- abort / resume / delete ----------------------------------------------------------------
    def abort(self, run_id: str, owner: str | None = None) -> RunInfo:
        """Stop a run. Queued: marked aborted. Running: ABORT file + SIGTERM now, SIGKILL after the grace.

        `owner` None means the local operator (allowed); otherwise only the run's owner may abort it.
        """
        with self.registry.transaction(write=True) as conn:
            info = self.registry.fetch(conn, run_id)
            self._check_owner(info, owner, "abort")
            if info.status == QUEUED:
                self.registry.update(conn, run_id, "AND status = ?", (QUEUED,), status=ABORTED,
                                     finished_at=time.time(), reason="aborted before it started",
                                     abort_requested_at=time.time())
                append_event(info.run_dir, "status", status=ABORTED, reason="aborted before it started")
            elif info.status == RUNNING:
                if info.abort_requested_at is None:
                    self.registry.update(conn, run_id, abort_requested_at=time.time())
            else:
                raise JobError(f"run {run_id} is already {info.status}; there is nothing to abort")
        if info.status == RUNNING:
            # The trainer checks this file at every step; SIGTERM makes it look now.
            request_abort(info.run_dir)
            if pid_is_trainer_of(info.pid, info.run_dir):
                terminate(info.pid)
        self._wake()
        return self.get(run_id)

    def resume(self, run_id: str, owner: str | None = None) -> RunInfo:
        """Queue an aborted / interrupted / failed run again, from its newest checkpoint, in the same directory."""
        with self.registry.transaction(write=True) as conn:
            info = self.registry.fetch(conn, run_id)
            self._check_owner(info, owner, "resume")
            if info.status not in (ABORTED, INTERRUPTED, FAILED):
                raise JobError(f"run {run_id} is {info.status}: only an aborted, interrupted or failed run can "
                               "be resumed")
            checkpoint = latest_checkpoint(info.run_dir)
            if checkpoint is None:
                raise JobError(f"run {run_id} saved no checkpoint before it stopped, so there is nothing to resume "
                               "from; start it again as a new run (lower save_steps to checkpoint more often)")
            self._check_queue_cap(conn, info.owner)
            write_run_config(self.read_config(info.id).replace(resume_from_checkpoint="last"), info.run_dir)
            self.registry.requeue(conn, info)
            append_event(info.run_dir, "message", level="info",
                         text=f"Resumed from {checkpoint.name}: the run continues from step "
                              f"{checkpoint_step(checkpoint)}.")
            append_event(info.run_dir, "status", status=QUEUED, reason=None)
        self._wake()
        return self.get(run_id)

    def delete(self, run_id: str, owner: str | None = None) -> None:
        """Remove a finished / aborted / failed / interrupted run: its directory and its row."""
        with self.registry.transaction(write=True) as conn:
            info = self.registry.fetch(conn, run_id)
            self._check_owner(info, owner, "delete")
            if info.status not in FINAL_STATUSES:
                raise JobError(f"run {run_id} is {info.status}: abort it first, then delete it")
            # Renamed away first, so the run vanishes at once even if removing a large directory is slow.
            doomed = self.runs_root / f".deleting-{run_id}-{secrets.token_hex(2)}"
            if info.run_dir.exists():
                os.rename(info.run_dir, doomed)
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._summaries.pop(run_id, None)
        shutil.rmtree(doomed, ignore_errors=True)

    # --- the line of queued runs ------------------------------------------------------------------
    def queue(self, now: float | None = None) -> list[QueueEntry]:
        """Running runs (with an estimated end), then the queued ones in the order they start."""
        with self.registry.transaction() as conn:
            running = [self.registry.row_to_info(r) for r in conn.execute(
                "SELECT * FROM runs WHERE status = ? ORDER BY started_at, id", (RUNNING,))]
            queued = [self.registry.row_to_info(r) for r in conn.execute(
                f"SELECT * FROM runs WHERE status = ? ORDER BY {QUEUE_ORDER_SQL}", (QUEUED,))]
        return queue_view(running, queued, self.max_concurrent, time.time() if now is None else now)

    def cancel(self, run_id: str, owner: str | None = None) -> RunInfo:
        """Take a queued run out of the line: it becomes `aborted` without ever starting. Only a queued run
        (a running one is stopped with abort), checked under the write lock so a run that starts meanwhile
        is never stopped by a cancel."""
        with self.registry.transaction(write=True) as conn:
            info = self.registry.fetch(conn, run_id)
            self._check_owner(info, owner, "cancel")
            if info.status != QUEUED:
                raise JobError(f"run {run_id} is {info.status}, not waiting in the queue: "
                               + ("abort it to stop it" if info.status == RUNNING else "there is nothing to cancel"))
            reason = "cancelled while queued"
            self.registry.update(conn, run_id, "AND status = ?", (QUEUED,), status=ABORTED, finished_at=time.time(),
                                 reason=reason, abort_requested_at=time.time())
            append_event(info.run_dir, "status", status=ABORTED, reason=reason)
        self._wake()
        return self.get(run_id)

    def move(self, run_id: str, position: int) -> list[QueueEntry]:
        """Put a queued run at `position` (1: next to start) of the line; the others keep their order.
        Who may do it (an admin) is for the caller to decide."""
        if isinstance(position, bool) or not isinstance(position, int) or position < 1:
            raise JobError(f"position must be a whole number from 1 (the next to start), got {position!r}")
        with self.registry.transaction(write=True) as conn:
            info = self.registry.fetch(conn, run_id)
            if info.status != QUEUED:
                raise JobError(f"run {run_id} is {info.status}: only a queued run can be moved in the queue")
            rows = conn.execute(f"SELECT id, COALESCE(queue_order, created_at) FROM runs WHERE status = ? "
                                f"ORDER BY {QUEUE_ORDER_SQL}", (QUEUED,)).fetchall()
            order = [row[0] for row in rows if row[0] != run_id]
            order.insert(min(position, len(order) + 1) - 1, run_id)
            # The same set of keys, handed out in the new order: runs submitted later still come after.
            keys = sorted(row[1] for row in rows)
            for key, queued_id in zip(keys, order):
                self.registry.update(conn, queued_id, queue_order=key)
        self._wake()
        return self.queue()

    def _check_queue_cap(self, conn: Any, owner: str) -> None:
        cap = self.max_queued_per_owner
        if cap is not None and self.registry.queued_count(conn, owner) >= cap:
            raise QueueFullError(f"'{owner}' already has {cap} run{'s' if cap != 1 else ''} waiting in the queue, "
                                 "the most one person may queue; cancel one or wait until one starts")

    @staticmethod
    def _check_owner(info: RunInfo, owner: str | None, action: str) -> None:
        if owner is not None and owner != info.owner:
            raise PermissionError(f"run {info.id} belongs to '{info.owner}': only its owner may {action} it "
                                  f"(you are '{owner}')")
