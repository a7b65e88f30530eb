"""The run registry: ``<runs root>/runs.db``, one SQLite row per run, and its rebuilding from the run
directories when it is lost.

Several managers (two server processes) may share one runs.db: rows are changed in short
transactions, and a check-then-update happens under an immediate (write-locked) transaction, so only
one of them can, say, move a row out of `queued`. The loss columns come from trainer.run.series, the
same summary the page's charts use. Standard library only: no torch.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from trainer.config import ConfigError, TrainConfig
from trainer.jobs.processes import pid_is_trainer_of
from trainer.run.events import (
    FAILED, FINAL_STATUSES, INTERRUPTED, QUEUED, RUNNING, STATUSES, append_event, number, read_events,
)
from trainer.run.layout import DB_FILE, EVENTS_FILE, clear_abort_request, config_path, is_run_id
from trainer.run.series import RunSummary

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
    ("best_eval_loss", "REAL"),
    ("earlier_attempts_s", "REAL"),
    ("queue_order", "REAL"),  # place in the line of queued runs (smaller starts first); NULL: created_at
]
_SCHEMA = (f"CREATE TABLE IF NOT EXISTS runs ({', '.join(f'{n} {d}' for n, d in _COLUMNS)});\n"
           "CREATE INDEX IF NOT EXISTS runs_status ON runs(status, created_at);\n")
# The order queued runs start in: the queue's own order, then submission (rows from before the column).
QUEUE_ORDER_SQL = "COALESCE(queue_order, created_at), created_at, id"
_INFO_FIELDS = [name for name, _ in _COLUMNS]


class JobError(ValueError):
    """A request the registry refuses (wrong state, no checkpoint, ...); the message says why."""


class RegistryError(JobError):
    """runs.db cannot be used: damaged, or the disk under it is full. The message says what to do."""


def registry_problem(exc: BaseException, db_path: Path) -> str | None:
    """What a user should know and do about a database error of runs.db; None for an ordinary error."""
    text = str(exc).lower()
    if "disk is full" in text or "no space" in text:
        return (f"the disk holding {db_path.parent} is full: free some space (old runs' checkpoints are the "
                "largest files); runs cannot be recorded or started until then")
    if "malformed" in text or "not a database" in text or "disk i/o error" in text or "file is encrypted" in text:
        return (f"{db_path} is damaged ({exc}): stop the server, move the file away (e.g. to runs.db.broken) "
                "and start again; a fresh one is rebuilt from the run directories")
    return None


class UnknownRunError(JobError, KeyError):
    """No run with that id."""

    __str__ = JobError.__str__  # KeyError would quote the message


@dataclass(frozen=True)
class RunInfo:
    """One row of the registry. best_loss is the lowest training loss, best_eval_loss the lowest eval loss
    (trainer.run.series.RunSummary says exactly what each number is)."""

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
    best_eval_loss: float | None
    earlier_attempts_s: float | None  # seconds run before the current attempt (a resumed run's earlier segments)
    run_dir: Path
    queue_order: float | None = None

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


def summary_columns(summary: RunSummary) -> dict[str, Any]:
    """The registry's columns that come from the run's events."""
    return {"best_loss": summary.best_loss, "best_eval_loss": summary.best_eval_loss,
            "last_loss": summary.last_loss, "step": summary.step, "total_steps": summary.total_steps,
            "earlier_attempts_s": summary.earlier_attempts_seconds}


def check_run_id(run_id: str) -> None:
    if not is_run_id(run_id):
        raise UnknownRunError(f"'{run_id}' is not a run id (expected e.g. 20261123-053012-a1b2c3)")


class Registry:
    """runs.db of one runs root: short transactions, rows as RunInfo."""

    def __init__(self, runs_root: Path):
        self.runs_root = runs_root
        self.db_path = runs_root / DB_FILE

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)  # autocommit; explicit BEGIN
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one short transaction. A damaged runs.db or a full disk is a RegistryError that
        says so, not a bare sqlite error."""
        try:
            with self._transaction(write) as conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            problem = registry_problem(exc, self.db_path)
            if problem is None:
                raise
            raise RegistryError(problem) from None

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
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

    def init(self) -> None:
        """Create the table, or add the columns an older tunedeck's runs.db lacks."""
        try:
            conn = self.connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                present = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
                for name, declaration in _COLUMNS:
                    if name not in present:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {declaration.replace('NOT NULL ', '')}")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise RegistryError(registry_problem(exc, self.db_path) or
                                f"{self.db_path} is not a usable run registry ({exc}); move it away and a fresh "
                                "one is rebuilt from the run directories next to it") from None

    def row_to_info(self, row: sqlite3.Row) -> RunInfo:
        data = {key: row[key] for key in _INFO_FIELDS if key in row.keys()}  # a newer runs.db may have more
        return RunInfo(run_dir=self.runs_root / data["id"], **data)

    def fetch(self, conn: sqlite3.Connection, run_id: str) -> RunInfo:
        check_run_id(run_id)
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(f"no run '{run_id}' in {self.db_path}")
        return self.row_to_info(row)

    @staticmethod
    def update(conn: sqlite3.Connection, run_id: str, where: str = "", params: tuple = (), **columns: Any) -> int:
        """UPDATE one row (plus an extra `where` condition); returns how many rows changed (0 or 1)."""
        sets = ", ".join(f"{name} = ?" for name in columns)
        cursor = conn.execute(f"UPDATE runs SET {sets} WHERE id = ? {where}", (*columns.values(), run_id, *params))
        return cursor.rowcount

    def get(self, run_id: str) -> RunInfo:
        with self.transaction() as conn:
            return self.fetch(conn, run_id)

    def with_status(self, status: str) -> list[RunInfo]:
        with self.transaction() as conn:
            return [self.row_to_info(r) for r in conn.execute("SELECT * FROM runs WHERE status = ?", (status,))]

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
        with self.transaction() as conn:
            rows = conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC, id DESC", params).fetchall()
        return [self.row_to_info(r) for r in rows]

    def insert_queued(self, conn: sqlite3.Connection, run_id: str, name: str, owner: str, cfg: TrainConfig) -> None:
        now = time.time()
        conn.execute("INSERT INTO runs (id, name, owner, status, created_at, model, dataset, method, queue_order) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, name, owner, QUEUED, now, cfg.model_name_or_path, cfg.dataset, cfg.method_label,
                      self.back_of_queue(conn, now)))

    @staticmethod
    def back_of_queue(conn: sqlite3.Connection, now: float) -> float:
        """A queue_order after every queued run (an admin's reordering may have used later values)."""
        last = conn.execute("SELECT MAX(COALESCE(queue_order, created_at)) FROM runs WHERE status = ?",
                            (QUEUED,)).fetchone()[0]
        return now if last is None or last < now else last + 1.0

    @staticmethod
    def queued_count(conn: sqlite3.Connection, owner: str) -> int:
        return conn.execute("SELECT COUNT(*) FROM runs WHERE status = ? AND owner = ?", (QUEUED, owner)).fetchone()[0]

    def requeue(self, conn: sqlite3.Connection, info: RunInfo, reason: str | None = None,
                to_back: bool = True) -> None:
        """Back to `queued` for another attempt in the same directory, keeping the time run so far: at the back
        of the line (a resume waits like a new run), or where it stood (`to_back` False: an automatic restart
        keeps the turn it had)."""
        place = {"queue_order": self.back_of_queue(conn, time.time())} if to_back else {}
        ran = (info.finished_at - info.started_at) if info.started_at and info.finished_at else 0.0
        self.update(conn, info.id, status=QUEUED, pid=None, exit_code=None, started_at=None, finished_at=None,
                    reason=reason, failure_kind=None, abort_requested_at=None,
                    earlier_attempts_s=(info.earlier_attempts_s or 0.0) + max(0.0, ran), **place)
        clear_abort_request(info.run_dir)

    def adopt_run_dirs(self) -> None:
        """Give a row to every run directory that has none (runs.db was lost or replaced): the directory is
        the truth. Status from its last status event; a run whose trainer is still alive is reattached,
        one that was running and is gone becomes interrupted."""
        with self.transaction() as conn:
            known = {row[0] for row in conn.execute("SELECT id FROM runs")}
        for entry in sorted(self.runs_root.iterdir()):
            if not is_run_id(entry.name) or entry.name in known or not config_path(entry).is_file():
                continue
            try:
                cfg = TrainConfig.from_yaml(config_path(entry))
            except ConfigError:
                cfg = None
            events = read_events(entry)
            statuses = [e for e in events if e.get("type") == "status"]
            first = statuses[0] if statuses else {}
            last = statuses[-1] if statuses else {}
            status, pid, reason = last.get("status", QUEUED), last.get("pid"), last.get("reason")
            if status == RUNNING and not pid_is_trainer_of(pid if isinstance(pid, int) else None, entry):
                status, reason = INTERRUPTED, "the trainer is gone (found after the run registry was rebuilt)"
                append_event(entry, "status", status=status, reason=reason)
            if status not in STATUSES:
                status = INTERRUPTED
            summary = RunSummary()
            summary.update(events)
            created = number(events[0].get("t")) if events else None
            row = {
                "id": entry.name, "name": str(first.get("name") or (cfg.display_name if cfg else entry.name)),
                "owner": str(first.get("owner") or "local"), "status": status,
                "created_at": created or entry.stat().st_mtime,
                "started_at": (summary.attempts[-1][0] if summary.attempts else created) if status != QUEUED else None,
                "finished_at": number(last.get("t")) if status in FINAL_STATUSES else None,
                "pid": pid if status == RUNNING else None,
                "model": cfg.model_name_or_path if cfg else None, "dataset": cfg.dataset if cfg else None,
                "method": cfg.method_label if cfg else None, **summary_columns(summary),
                "reason": reason, "failure_kind": last.get("kind") if status == FAILED else None,
                "attempt": sum(1 for e in statuses if e.get("status") == RUNNING),
                "events_offset": _offset_of_last_start(entry) if status == RUNNING else 0,
            }
            with self.transaction(write=True) as conn:
                conn.execute(f"INSERT OR IGNORE INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                             tuple(row.values()))


def _offset_of_last_start(run_dir: Path) -> int:
    """Byte offset of the line where the trainer's newest attempt announced itself (status running)."""
    try:
        data = (run_dir / EVENTS_FILE).read_bytes()
    except OSError:
        return 0
    at = data.rfind(b'"status":"running"')
    return 0 if at < 0 else data.rfind(b"\n", 0, at) + 1


def owner_of_run(runs_root: str | Path, run_id: str) -> str | None:
    """Who owns the run `run_id` of the registry in `runs_root`; None for no such run or no registry."""
    if not is_run_id(run_id) or not (Path(runs_root) / DB_FILE).is_file():
        return None
    try:
        return Registry(runs_root).get(run_id).owner
    except (JobError, sqlite3.Error):
        return None
