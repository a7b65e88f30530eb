"""The run registry: a SQLite file of runs, the scheduler that starts them, and their bookkeeping.

`JobManager` owns ``<runs root>/runs.db`` (one row per run) and the run directories next to it.
A run is submitted as ``queued``; the scheduler starts it as ``python -m trainer train CONFIG
--run-dir DIR`` in its own session (so it outlives the server), at most ``max_concurrent`` at a
time (one per GPU), and records how it ended from the trainer's final ``status`` event. When the
trainer vanished without one, the manager decides (aborted / interrupted / failed) and appends the
``status`` event itself, so the run directory stays the truth.

Several managers (two server processes) may share one runs.db: rows are changed in short
transactions, queued runs are claimed with ``UPDATE ... WHERE status='queued'`` under an immediate
(write-locked) transaction, and a running row is checked against its process, by pid and command
line, so a reused pid is never taken for the trainer. A lost runs.db is rebuilt from the directories.

Public API (errors: ConfigError for a bad config, PermissionError for another owner's run,
JobError with a message for a request the run's state refuses, UnknownRunError for an unknown id)::

    jm = JobManager(runs_root=None, max_concurrent=None, python=sys.executable, abort_grace_s=30.0,
                    poll_interval_s=1.0, autostart=True)
    run_id = jm.submit(cfg, owner="local", name=None)    # -> "20261123-053012-a1b2c3", queued
    jm.list_runs(status=None, owner=None) -> list[RunInfo]  # newest first
    jm.get(run_id) -> RunInfo;  jm.run_dir(run_id) -> Path;  jm.read_config(run_id) -> TrainConfig
    jm.abort(run_id, owner=None) -> RunInfo;  jm.resume(run_id, owner=None) -> RunInfo
    jm.delete(run_id, owner=None);  jm.refresh();  jm.close()

This module never imports torch: the dashboard process stays light.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from trainer.config import ConfigError, TrainConfig, load_config
from trainer.run.events import (
    ABORTED, EVENTS_FILE, FAILED, FINAL_STATUSES, FINISHED, INTERRUPTED, QUEUED, RUNNING, STATUSES,
    EventReader, append_event, number, tail_lines,
)

DB_FILE = "runs.db"
CONFIG_FILE = "config.yaml"
STDOUT_FILE = "stdout.log"
ABORT_FILE = "ABORT"
CHECKPOINTS_DIR = "checkpoints"
RUNS_DIR_ENV = "TUNEDECK_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"

# Failure kinds the trainer puts in its final status event (`kind`), shared with trainer.telemetry.
FAILURE_KINDS = ("oom", "not_found", "template", "nan", "config", "data", "other")

_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LOG_TAIL_LINES = 40
_EXIT_GRACE_S = 60.0  # how long a trainer may linger after writing its final status event

# (column, declaration). New columns go at the end: an older runs.db gets them added on open.
_COLUMNS: list[tuple[str, str]] = [
    ("id", "TEXT PRIMARY KEY"),
    ("name", "TEXT NOT NULL"),
    ("owner", "TEXT NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("created_at", "REAL NOT NULL"),
    ("started_at", "REAL"),
    ("finished_at", "REAL"),
    ("pid", "INTEGER"),
    ("exit_code", "INTEGER"),
    ("model", "TEXT"),
    ("dataset", "TEXT"),
    ("method", "TEXT"),
    ("best_loss", "REAL"),
    ("last_loss", "REAL"),
    ("step", "INTEGER"),
    ("total_steps", "INTEGER"),
    ("reason", "TEXT"),
    ("failure_kind", "TEXT"),
    ("attempt", "INTEGER NOT NULL DEFAULT 0"),
    ("events_offset", "INTEGER NOT NULL DEFAULT 0"),
    ("abort_requested_at", "REAL"),
    ("gpu", "TEXT"),
]
_SCHEMA = (f"CREATE TABLE IF NOT EXISTS runs ({', '.join(f'{n} {d}' for n, d in _COLUMNS)});\n"
           "CREATE INDEX IF NOT EXISTS runs_status ON runs(status, created_at);\n")


class JobError(ValueError):
    """A request the registry refuses (wrong state, no checkpoint, ...); the message says why."""


class UnknownRunError(JobError, KeyError):
    """No run with that id."""

    __str__ = JobError.__str__  # KeyError would quote the message


@dataclass(frozen=True)
class RunInfo:
    """One row of the registry."""

    id: str
    name: str
    owner: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    pid: int | None
    exit_code: int | None
    model: str | None
    dataset: str | None
    method: str | None
    best_loss: float | None
    last_loss: float | None
    step: int | None
    total_steps: int | None
    reason: str | None
    failure_kind: str | None
    attempt: int
    events_offset: int
    abort_requested_at: float | None
    gpu: str | None
    run_dir: Path

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def abort_requested(self) -> bool:
        return self.abort_requested_at is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


_INFO_FIELDS = [name for name, _ in _COLUMNS]


def default_runs_root() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def visible_gpus() -> list[str]:
    """The GPUs a trainer may use, as CUDA_VISIBLE_DEVICES entries, without importing torch (the dashboard
    stays light): the server's own CUDA_VISIBLE_DEVICES if set, else every NVIDIA GPU the driver lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [d.strip() for d in visible.split(",") if d.strip()]
        if "-1" in entries:  # CUDA ignores this entry and every one after it
            entries = entries[:entries.index("-1")]
        return entries
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def gpu_count() -> int:
    return len(visible_gpus())


def pick_gpu(gpus: list[str], in_use: Iterable[str | None]) -> str | None:
    """The least busy GPU (the first of equals) for the next run; None on a machine without GPUs."""
    if not gpus:
        return None
    used = list(in_use)
    return min(gpus, key=lambda gpu: (used.count(gpu), gpus.index(gpu)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoints/checkpoint-N`` of a run (by N; complete = has trainer_state.json,
    the file the trainer resumes from, so a save cut short by a kill does not count), or None."""
    best: tuple[int, Path] | None = None
    try:
        entries = list((Path(run_dir) / CHECKPOINTS_DIR).iterdir())
    except OSError:
        return None
    for entry in entries:
        match = re.fullmatch(r"checkpoint-(\d+)", entry.name)
        if (match and (entry / "trainer_state.json").is_file()
                and (best is None or int(match.group(1)) > best[0])):
            best = (int(match.group(1)), entry)
    return best[1] if best else None


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC): sorts by creation second, random suffix for uniqueness."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def _pid_is_trainer_of(pid: int | None, run_dir: Path) -> bool:
    """Is `pid` alive and really the trainer of this run (not a reused pid, not an unreaped zombie)?"""
    if not pid or pid <= 0:
        return False
    proc = Path("/proc") / str(pid)
    if Path("/proc/self").exists():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # gone, or a zombie already reaped
        return str(run_dir).encode() in cmdline
    try:  # no /proc (macOS): the best we can do is "some process has this pid"
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_zombie(pid: int) -> bool:
    """A finished child its parent has not reaped yet: that parent (another manager) will record it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0:1] == ["Z"]


def _offset_of_last_start(run_dir: Path) -> int:
    """Byte offset of the line where the trainer's newest attempt announced itself (status running)."""
    try:
        data = (run_dir / EVENTS_FILE).read_bytes()
    except OSError:
        return 0
    at = data.rfind(b'"status":"running"')
    return 0 if at < 0 else data.rfind(b"\n", 0, at) + 1


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _LossTracker:
    """Best/last loss, step and total steps of one run, read incrementally from its events file."""

    def __init__(self, run_dir: Path):
        self.reader = EventReader.for_run(run_dir)
        self.best_eval: float | None = None
        self.best_train: float | None = None
        self.last_loss: float | None = None
        self.step: int | None = None
        self.total_steps: int | None = None
        self.final_status_at: float | None = None  # `t` of the newest finished/aborted/failed status event

    def update(self) -> bool:
        changed = False
        for event in self.reader.read_new():
            kind = event.get("type")
            if kind == "log":
                loss = number(event.get("loss"))
                if loss is not None and math.isfinite(loss):
                    self.last_loss = loss
                    self.best_train = loss if self.best_train is None else min(self.best_train, loss)
                    changed = True
                if isinstance(event.get("step"), int):
                    self.step = event["step"]
                    changed = True
            elif kind == "eval":
                loss = number(event.get("eval_loss"))
                if loss is not None and math.isfinite(loss):
                    self.best_eval = loss if self.best_eval is None else min(self.best_eval, loss)
                    changed = True
            elif kind == "status" and event.get("status") in FINAL_STATUSES:
                self.final_status_at = number(event.get("t"))
            elif kind == "plan":
                plan = event.get("plan") if isinstance(event.get("plan"), dict) else event
                total = plan.get("total_steps")
                if isinstance(total, int) and total > 0:
                    self.total_steps = total
                    changed = True
        return changed

    @property
    def best_loss(self) -> float | None:
        return self.best_eval if self.best_eval is not None else self.best_train

    def columns(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "last_loss": self.last_loss, "step": self.step,
                "total_steps": self.total_steps}


def _with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Local files named relative to the server's directory, made absolute: the run still finds them when it
    is resumed by a server started somewhere else. Shipped names (`demo`) and Hub ids are left alone."""
    changes = {}
    for name in ("model_name_or_path", "dataset", "resume_from_checkpoint"):
        value = getattr(cfg, name)
        if not value or value in ("demo", "last"):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() and path.exists():
            changes[name] = str(path.resolve())
        elif value.startswith("~") and path.exists():
            changes[name] = str(path)
    return cfg.replace(**changes) if changes else cfg


class JobManager:
    """The registry of runs in one runs root, and the scheduler that starts and watches them."""

    def __init__(self, runs_root: str | Path | None = None, *, max_concurrent: int | None = None,
                 python: str = sys.executable, abort_grace_s: float = 30.0, poll_interval_s: float = 1.0,
                 autostart: bool = True):
        self.runs_root = Path(runs_root if runs_root is not None else default_runs_root()).expanduser().resolve()
        self.runs_root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.runs_root / DB_FILE
        self.gpus = visible_gpus()
        self.max_concurrent = max(1, max_concurrent if max_concurrent is not None else len(self.gpus))
        self.python = python
        self.abort_grace_s = abort_grace_s
        self.poll_interval_s = poll_interval_s
        self._children: dict[str, subprocess.Popen] = {}  # runs this manager spawned (reaped by poll)
        self._trackers: dict[str, _LossTracker] = {}
        self._zombies_seen: dict[int, float] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake_event = threading.Event()  # set to make the scheduler tick now rather than at the next poll
        self._thread: threading.Thread | None = None
        self._init_db()
        self._remove_leftovers()
        self._adopt_run_dirs()
        with self._lock:  # reconcile: rows marked running whose process is gone -> interrupted; live ones reattach
            self._check_running()
        if autostart:
            self.start()

    # --- database -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)  # autocommit; explicit BEGIN
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            if write:
                conn.execute("BEGIN IMMEDIATE")  # take the write lock now: check-then-update is atomic
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            else:
                yield conn
        finally:
            conn.close()

    def _init_db(self) -> None:
        try:
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                present = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
                for name, declaration in _COLUMNS:
                    if name not in present:  # a runs.db written by an older tunedeck
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {declaration.replace('NOT NULL ', '')}")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise JobError(f"{self.db_path} is not a usable run registry ({exc}); move it away and a fresh one is "
                           "rebuilt from the run directories next to it") from None

    def _adopt_run_dirs(self) -> None:
        """Give a row to every run directory that has none (runs.db was lost or replaced): the directory is
        the truth. Status from its last status event; a run whose trainer is still alive is reattached,
        one that was running and is gone becomes interrupted."""
        with self._db() as conn:
            known = {row[0] for row in conn.execute("SELECT id FROM runs")}
        for entry in sorted(self.runs_root.iterdir()):
            if not _RUN_ID.match(entry.name) or entry.name in known or not (entry / CONFIG_FILE).is_file():
                continue
            try:
                cfg = TrainConfig.from_yaml(entry / CONFIG_FILE)
            except ConfigError:
                cfg = None
            events = EventReader.for_run(entry).read_new()
            statuses = [e for e in events if e.get("type") == "status"]
            first = statuses[0] if statuses else {}
            last = statuses[-1] if statuses else {}
            status, pid, reason = last.get("status", QUEUED), last.get("pid"), last.get("reason")
            if status == RUNNING and not _pid_is_trainer_of(pid if isinstance(pid, int) else None, entry):
                status, reason = INTERRUPTED, "the trainer is gone (found after the run registry was rebuilt)"
                append_event(entry, "status", status=status, reason=reason)
            if status not in STATUSES:
                status = INTERRUPTED
            tracker = _LossTracker(entry)
            tracker.update()
            created = number(events[0].get("t")) if events else None
            with self._db(write=True) as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO runs (id, name, owner, status, created_at, started_at, finished_at, pid, "
                    "model, dataset, method, best_loss, last_loss, step, total_steps, reason, failure_kind, attempt, "
                    "events_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (entry.name, str(first.get("name") or (cfg.display_name if cfg else entry.name)),
                     str(first.get("owner") or "local"), status, created or entry.stat().st_mtime,
                     created if status != QUEUED else None,
                     number(last.get("t")) if status in FINAL_STATUSES else None,
                     pid if status == RUNNING else None,
                     cfg.model_name_or_path if cfg else None, cfg.dataset if cfg else None,
                     cfg.method_label if cfg else None, tracker.best_loss, tracker.last_loss, tracker.step,
                     tracker.total_steps, reason, last.get("kind") if status == FAILED else None,
                     sum(1 for e in statuses if e.get("status") == RUNNING),
                     _offset_of_last_start(entry) if status == RUNNING else 0))

    def _remove_leftovers(self) -> None:
        """Staging / deleting directories a crashed server left behind (an hour old: no one is using them)."""
        for entry in self.runs_root.glob(".[sd][te]*-*"):
            if entry.name.startswith((".staging-", ".deleting-")):
                try:
                    if time.time() - entry.stat().st_mtime > 3600:
                        shutil.rmtree(entry, ignore_errors=True)
                except OSError:
                    pass

    def _row_to_info(self, row: sqlite3.Row) -> RunInfo:
        data = {key: row[key] for key in _INFO_FIELDS if key in row.keys()}  # a newer runs.db may have more
        return RunInfo(run_dir=self.runs_root / data["id"], **data)

    def _fetch(self, conn: sqlite3.Connection, run_id: str) -> RunInfo:
        self._check_id(run_id)
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(f"no run '{run_id}' in {self.db_path}")
        return self._row_to_info(row)

    @staticmethod
    def _check_id(run_id: str) -> None:
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise UnknownRunError(f"'{run_id}' is not a run id (expected e.g. 20261123-053012-a1b2c3)")

    @staticmethod
    def _update(conn: sqlite3.Connection, run_id: str, where: str = "", params: tuple = (), **columns: Any) -> int:
        sets = ", ".join(f"{name} = ?" for name in columns)
        cursor = conn.execute(f"UPDATE runs SET {sets} WHERE id = ? {where}",
                              (*columns.values(), run_id, *params))
        return cursor.rowcount

    # --- queries --------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        self._check_id(run_id)
        return self.runs_root / run_id

    def get(self, run_id: str) -> RunInfo:
        """The run's row; UnknownRunError (a KeyError and a JobError) when there is none."""
        with self._db() as conn:
            return self._fetch(conn, run_id)

    def read_config(self, run_id: str) -> TrainConfig:
        """The run's config.yaml (as the trainer sees it: after a resume or an OOM restart, the changed one)."""
        return TrainConfig.from_yaml(self.run_dir(run_id) / CONFIG_FILE)

    def list_runs(self, status: str | Iterable[str] | None = None, owner: str | None = None) -> list[RunInfo]:
        """Runs, newest first; optionally only some statuses and/or one owner."""
        clauses, params = [], []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            unknown = [s for s in wanted if s not in STATUSES]
            if unknown:
                raise JobError(f"unknown status {unknown[0]!r}; one of {', '.join(STATUSES)}")
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db() as conn:
            rows = conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC, id DESC", params).fetchall()
        return [self._row_to_info(r) for r in rows]

    # --- submit ---------------------------------------------------------------------------------
    def submit(self, cfg: TrainConfig | dict[str, Any] | str | Path, owner: str = "local",
               name: str | None = None) -> str:
        """Validate the config, write ``<run_id>/config.yaml`` and a ``queued`` row; return the run id.

        Raises ConfigError for a bad config. Nothing is left behind when anything fails.
        """
        cfg = load_config(cfg)
        cfg = TrainConfig.from_dict(cfg.to_dict())  # re-validate: a copy built without validation is caught here
        if cfg.resume_from_checkpoint == "last":
            # A config copied from a resumed run: its new directory has no checkpoint, `last` means nothing.
            cfg = cfg.replace(resume_from_checkpoint=None)
        cfg = _with_absolute_paths(cfg)
        owner = str(owner or "local")
        name = (name or "").strip() or cfg.display_name
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
            cfg.save(staging / CONFIG_FILE)
            # Owner and name ride in the first event too: a lost runs.db can be rebuilt from the directories.
            append_event(staging, "status", status=QUEUED, reason=None, owner=owner, name=name)
            os.rename(staging, final)  # the run directory appears whole, or not at all
            with self._db(write=True) as conn:
                conn.execute(
                    "INSERT INTO runs (id, name, owner, status, created_at, model, dataset, method) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, name, owner, QUEUED, time.time(), cfg.model_name_or_path, cfg.dataset,
                     cfg.method_label))
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
        with self._db(write=True) as conn:
            info = self._fetch(conn, run_id)
            self._check_owner(info, owner, "abort")
            if info.status == QUEUED:
                self._update(conn, run_id, "AND status = ?", (QUEUED,), status=ABORTED, finished_at=time.time(),
                             reason="aborted before it started", abort_requested_at=time.time())
                append_event(info.run_dir, "status", status=ABORTED, reason="aborted before it started")
            elif info.status == RUNNING:
                if info.abort_requested_at is None:
                    self._update(conn, run_id, abort_requested_at=time.time())
            else:
                raise JobError(f"run {run_id} is already {info.status}; there is nothing to abort")
        if info.status == RUNNING:
            # The trainer checks this file at every step; SIGTERM makes it look now.
            (info.run_dir / ABORT_FILE).touch()
            if _pid_is_trainer_of(info.pid, info.run_dir):
                try:
                    os.kill(info.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self._wake()
        return self.get(run_id)

    def resume(self, run_id: str, owner: str | None = None) -> RunInfo:
        """Queue an aborted / interrupted / failed run again, from its newest checkpoint, in the same directory."""
        with self._db(write=True) as conn:
            info = self._fetch(conn, run_id)
            self._check_owner(info, owner, "resume")
            if info.status not in (ABORTED, INTERRUPTED, FAILED):
                raise JobError(f"run {run_id} is {info.status}: only an aborted, interrupted or failed run can "
                               "be resumed")
            checkpoint = latest_checkpoint(info.run_dir)
            if checkpoint is None:
                raise JobError(f"run {run_id} saved no checkpoint before it stopped, so there is nothing to resume "
                               "from; start it again as a new run (lower save_steps to checkpoint more often)")
            cfg = self.read_config(info.id)
            cfg.replace(resume_from_checkpoint="last").save(info.run_dir / CONFIG_FILE)
            self._requeue(conn, info)
            append_event(info.run_dir, "message", level="info",
                         text=f"Resumed from {checkpoint.name}: the run continues from step "
                              f"{checkpoint.name.split('-')[-1]}.")
            append_event(info.run_dir, "status", status=QUEUED, reason=None)
        self._wake()
        return self.get(run_id)

    def delete(self, run_id: str, owner: str | None = None) -> None:
        """Remove a finished / aborted / failed / interrupted run: its directory and its row."""
        with self._db(write=True) as conn:
            info = self._fetch(conn, run_id)
            self._check_owner(info, owner, "delete")
            if info.status not in FINAL_STATUSES:
                raise JobError(f"run {run_id} is {info.status}: abort it first, then delete it")
            # Renamed away first, so the run vanishes at once even if removing a large directory is slow.
            doomed = self.runs_root / f".deleting-{run_id}-{secrets.token_hex(2)}"
            if info.run_dir.exists():
                os.rename(info.run_dir, doomed)
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._trackers.pop(run_id, None)
        shutil.rmtree(doomed, ignore_errors=True)

    @staticmethod
    def _check_owner(info: RunInfo, owner: str | None, action: str) -> None:
        if owner is not None and owner != info.owner:
            raise PermissionError(f"run {info.id} belongs to '{info.owner}': only its owner may {action} it "
                                  f"(you are '{owner}')")

    def _requeue(self, conn: sqlite3.Connection, info: RunInfo, reason: str | None = None) -> None:
        self._update(conn, info.id, status=QUEUED, pid=None, exit_code=None, finished_at=None, reason=reason,
                     failure_kind=None, abort_requested_at=None)
        try:
            (info.run_dir / ABORT_FILE).unlink()
        except FileNotFoundError:
            pass

    # --- the scheduler --------------------------------------------------------------------------
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

    def __enter__(self) -> "JobManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _wake(self) -> None:
        self._wake_event.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.runs_root.is_dir():  # the runs root was removed (a test's tmp dir): nothing to run
                print(f"tunedeck jobs: {self.runs_root} is gone; the scheduler stops", file=sys.stderr)
                return
            try:
                self.refresh()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    print(f"tunedeck jobs: refresh failed: {exc!r}", file=sys.stderr)
                else:  # runs.db was removed under us: a fresh one, rebuilt from the run directories
                    try:
                        self._init_db()
                        self._adopt_run_dirs()
                    except Exception as again:
                        print(f"tunedeck jobs: could not rebuild {self.db_path}: {again!r}", file=sys.stderr)
            except Exception as exc:  # keep scheduling: one bad row must not stop every run
                print(f"tunedeck jobs: refresh failed: {exc!r}", file=sys.stderr)
            self._wake_event.wait(self.poll_interval_s)
            self._wake_event.clear()

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
        with self._db() as conn:
            rows = [self._row_to_info(r) for r in conn.execute("SELECT * FROM runs WHERE status = ?", (RUNNING,))]
        for info in rows:
            if info.id in self._children:
                alive = True
            elif info.pid and _is_zombie(info.pid) and self._zombie_wait(info.pid):
                continue  # ended; the manager that started it reaps it and records the exit code
            else:
                alive = _pid_is_trainer_of(info.pid, info.run_dir)
            if not alive:
                self._finalize(info.id, info.pid, None)
                continue
            if (info.abort_requested_at is not None and time.time() - info.abort_requested_at > self.abort_grace_s):
                try:  # the trainer had its chance to stop cleanly: kill it and anything it started
                    os.killpg(info.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            tracker = self._tracker(info)
            changed = tracker.update()
            ended_at = tracker.final_status_at
            if (ended_at is not None and info.started_at is not None and ended_at >= info.started_at
                    and time.time() - ended_at > _EXIT_GRACE_S):
                # The trainer reported its end but its process lingers (a stuck thread): end it, so the run
                # does not show `running` forever. Its own status event still decides how it ended.
                try:
                    os.killpg(info.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if changed:
                with self._db(write=True) as conn:
                    self._update(conn, info.id, "AND status = ?", (RUNNING,), **tracker.columns())

    def _zombie_wait(self, pid: int) -> bool:
        """Leave an unreaped trainer to its parent manager for a while; after that (the parent is stuck, or
        is an init that never reaps orphans) record it here."""
        first_seen = self._zombies_seen.setdefault(pid, time.monotonic())
        return time.monotonic() - first_seen < max(5.0, 3 * self.poll_interval_s)

    def _tracker(self, info: RunInfo) -> _LossTracker:
        tracker = self._trackers.get(info.id)
        if tracker is None:
            tracker = self._trackers[info.id] = _LossTracker(info.run_dir)
        return tracker

    def _start_queued(self) -> None:
        with self._db() as conn:  # a cheap read first: the write lock is taken only when there is work
            if not conn.execute("SELECT 1 FROM runs WHERE status = ? LIMIT 1", (QUEUED,)).fetchone():
                return
        with self._db(write=True) as conn:
            running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (RUNNING,)).fetchone()[0]
            free = self.max_concurrent - running
            if free <= 0:
                return
            queued = conn.execute("SELECT * FROM runs WHERE status = ? ORDER BY created_at, id LIMIT ?",
                                  (QUEUED, free)).fetchall()
            for row in queued:
                info = self._row_to_info(row)
                # One run per GPU: the trainer sees only the GPU it was given (CUDA_VISIBLE_DEVICES).
                in_use = [r[0] for r in conn.execute("SELECT gpu FROM runs WHERE status = ?", (RUNNING,))]
                gpu = pick_gpu(self.gpus, in_use)
                # The claim: only one manager can move this row out of `queued` (we hold the write lock).
                if not self._update(conn, info.id, "AND status = ?", (QUEUED,), status=RUNNING,
                                    started_at=time.time(), attempt=info.attempt + 1, gpu=gpu):
                    continue
                try:
                    proc, offset = self._spawn(info, gpu)
                except Exception as exc:
                    reason = f"could not start the trainer: {exc}"
                    self._update(conn, info.id, status=FAILED, finished_at=time.time(), reason=reason,
                                 failure_kind="other")
                    append_event(info.run_dir, "status", status=FAILED, reason=reason, kind="other")
                    continue
                self._children[info.id] = proc
                self._update(conn, info.id, pid=proc.pid, events_offset=offset)

    def _spawn(self, info: RunInfo, gpu: str | None) -> tuple[subprocess.Popen, int]:
        run_dir = info.run_dir
        if not (run_dir / CONFIG_FILE).is_file():
            raise JobError(f"{run_dir / CONFIG_FILE} is missing")
        try:  # a stale ABORT file from an earlier attempt would stop the new one at once
            (run_dir / ABORT_FILE).unlink()
        except FileNotFoundError:
            pass
        try:
            offset = (run_dir / EVENTS_FILE).stat().st_size
        except FileNotFoundError:
            offset = 0
        argv = [self.python, "-m", "trainer", "train", str(run_dir / CONFIG_FILE), "--run-dir", str(run_dir)]
        env = dict(os.environ)  # inherited as is: secrets stay in the environment, never in a file
        env["PYTHONUNBUFFERED"] = "1"  # stdout.log is read live
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        with open(run_dir / STDOUT_FILE, "ab") as log:
            on = f" on GPU {gpu}" if gpu is not None else ""
            log.write(f"--- tunedeck: attempt {info.attempt + 1} started {time.strftime('%Y-%m-%d %H:%M:%S')}{on} ---\n"
                      .encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True, close_fds=True)
        return proc, offset

    # --- how a run ended ------------------------------------------------------------------------
    def _finalize(self, run_id: str, pid: int | None, exit_code: int | None) -> None:
        """Record the end of a running run: from its final status event, else from how it vanished."""
        try:
            info = self.get(run_id)
        except UnknownRunError:
            return
        if info.status != RUNNING or info.pid != pid:
            if info.pid == pid and exit_code is not None and info.exit_code is None:
                with self._db(write=True) as conn:  # another manager recorded it first; add what only we know
                    self._update(conn, run_id, "AND pid = ? AND exit_code IS NULL", (pid,), exit_code=exit_code)
            return
        tracker = self._tracker(info)
        tracker.update()
        reader = EventReader.for_run(info.run_dir)
        reader.offset = info.events_offset
        final = None
        for event in reader.read_new():
            if event.get("type") == "status" and event.get("status") in FINAL_STATUSES:
                final = event
        kind = None
        if final is not None:
            status = final["status"]
            reason = final.get("reason")
            kind = final.get("kind")
            if status == FAILED and kind is None and "out of memory" in str(reason or "").lower():
                kind = "oom"
        else:
            status, reason = self._classify_vanished(info, exit_code)
            event: dict[str, Any] = {"status": status, "reason": reason, "exit_code": exit_code}
            if status == FAILED:
                kind = "other"
                event["kind"] = kind
                event["log_tail"] = tail_lines(info.run_dir / STDOUT_FILE, _LOG_TAIL_LINES)
            append_event(info.run_dir, "status", **event)
        with self._db(write=True) as conn:
            changed = self._update(conn, run_id, "AND status = ? AND pid IS ?", (RUNNING, pid), status=status,
                                   finished_at=time.time(), exit_code=exit_code, reason=reason,
                                   failure_kind=kind, **tracker.columns())
        if not changed:
            return
        try:
            (info.run_dir / ABORT_FILE).unlink()
        except FileNotFoundError:
            pass
        if status == FAILED and kind == "oom":
            self._recover_from_oom(run_id)

    def _classify_vanished(self, info: RunInfo, exit_code: int | None) -> tuple[str, str]:
        """A trainer that ended without its final status event: aborted, interrupted or failed?"""
        if info.abort_requested_at is not None:
            if exit_code == -signal.SIGKILL:
                return ABORTED, (f"aborted on request; the trainer had not stopped after the {self.abort_grace_s:g} s "
                                 "grace and was killed (no checkpoint was saved at the abort)")
            if exit_code is not None and exit_code < 0:
                return ABORTED, f"aborted on request; the trainer ended by {_signal_name(-exit_code)} before reporting"
            return ABORTED, "aborted on request"
        resumable = ("resume it to continue from its last checkpoint" if latest_checkpoint(info.run_dir)
                     else "it saved no checkpoint, so start it again")
        if exit_code is None:
            return INTERRUPTED, (f"the trainer process (pid {info.pid}) is gone without reporting an end — the "
                                 f"server or machine restarted, or it was killed; {resumable}")
        if exit_code < 0:
            return INTERRUPTED, f"the trainer was killed by {_signal_name(-exit_code)}; {resumable}"
        last = [line for line in tail_lines(info.run_dir / STDOUT_FILE, 5) if line.strip()]
        output = ("; last output: " + " | ".join(last[-3:])) if last else ""
        return FAILED, f"the trainer exited with code {exit_code} without reporting why{output}"

    def _recover_from_oom(self, run_id: str) -> None:
        """oom_recovery: restart from the last checkpoint with half the micro-batch, same effective batch."""
        info = self.get(run_id)
        try:
            cfg = self.read_config(info.id)
        except ConfigError:
            return
        if not getattr(cfg, "oom_recovery", False):
            return
        micro, accumulation = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
        if micro <= 1:
            reason = (f"{info.reason or 'out of memory'} — OOM recovery gave up: the micro-batch is already 1 "
                      "(try a shorter cutoff_len, gradient checkpointing or 4-bit)")
            with self._db(write=True) as conn:
                self._update(conn, run_id, "AND status = ?", (FAILED,), reason=reason)
            append_event(info.run_dir, "message", level="error",
                         text="Out of memory at a micro-batch of 1: automatic recovery gave up.")
            return
        new_micro = micro // 2
        new_accumulation = math.ceil(micro * accumulation / new_micro)
        checkpoint = latest_checkpoint(info.run_dir)
        try:
            new_cfg = cfg.replace(per_device_train_batch_size=new_micro, gradient_accumulation_steps=new_accumulation,
                                  resume_from_checkpoint="last" if checkpoint else None)
        except ConfigError:
            return
        with self._db(write=True) as conn:
            if not self._update(conn, run_id, "AND status = ?", (FAILED,), status=QUEUED):
                return  # someone else (another manager, a user's resume) already acted on it
            new_cfg.save(info.run_dir / CONFIG_FILE)
            where = f"from {checkpoint.name}" if checkpoint else "from the start (no checkpoint was saved yet)"
            effective_old, effective_new = micro * accumulation, new_micro * new_accumulation
            same = (f"the effective batch stays {effective_new}" if effective_old == effective_new
                    else f"the effective batch goes from {effective_old} to {effective_new}, the nearest possible")
            text = (f"Out of memory at a micro-batch of {micro}: restarting {where} with micro-batch {new_micro} "
                    f"and gradient accumulation {new_accumulation} (was {accumulation}); {same}.")
            self._requeue(conn, info, reason=text)
            append_event(info.run_dir, "message", level="warning", text=text, oom_recovery=True,
                         per_device_train_batch_size=new_micro, gradient_accumulation_steps=new_accumulation)
            append_event(info.run_dir, "status", status=QUEUED, reason=text)
        self._wake()
