"""What the after-training tabs (Chat, Evaluate & export) share across every session of one server: the
one chat worker and who loaded what into it, and the trainer commands (evaluate, merge, push) running as
subprocesses. No gradio and no torch: the model loads in the worker, the heavy commands in
`python -m trainer COMMAND` processes whose stderr lines are the progress the page shows.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from trainer.engine.artifacts import list_weights
from trainer.jobs.workers import ChatWorker

from .i18n import UI_TEXT, t

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROGRESS_PREFIX = "tunedeck: "  # how the commands prefix a progress line on stderr
LOCAL_USER = "local"  # who acts when the page has no logins


def acting_user(user: Optional[str]) -> str:
    return user or LOCAL_USER


def runs_with_weights(jobs: Any, lang: Optional[str] = None) -> list[tuple[str, str]]:
    """(label, run id) of every run that has weights to use (finished, aborted or interrupted), newest first."""
    try:
        infos = jobs.list_runs()
    except Exception:  # noqa: BLE001 - a locked or missing db must not break the page
        return []
    return [(f"{i.name} · {status_word(lang, i.status)} · {i.id}", i.id) for i in infos if list_weights(i.run_dir)]


def picked_or_newest(choices: list[tuple[str, str]], current: Optional[str]) -> Optional[str]:
    """The run picker's value: the user's pick while it is still a choice, else the newest run with weights (a
    newcomer who opens the tab after a run finds it chosen, not an empty box)."""
    ids = [value for _, value in choices]
    return current if current in ids else (ids[0] if ids else None)


def status_word(lang: Optional[str], status: str) -> str:
    """A run's status in the page's language (the badges' words)."""
    return t(lang, f"status.{status}") if f"status.{status}" in UI_TEXT else status


# --- the chat worker ------------------------------------------------------------------------------

class SharedChat:
    """The server's one chat worker (one loaded model at a time, for every user) and who loaded it."""

    def __init__(self, jobs: Any, gpus: Optional[list[str]] = None):
        self.jobs = jobs
        self.gpus = gpus  # None: the GPUs this machine shows
        self.loaded_by: Optional[str] = None
        self.loaded_at: Optional[float] = None
        self.loading: Optional[tuple[str, str]] = None  # (user, what) while a load is under way
        self.generating_by: Optional[str] = None  # whose reply the worker is generating (who may stop it)
        self._worker: Optional[ChatWorker] = None
        self._lock = threading.Lock()

    def worker(self) -> ChatWorker:
        with self._lock:
            if self._worker is None:
                self._worker = ChatWorker(self.jobs, gpus=self.gpus)
            return self._worker

    def begin_loading(self, who: str, what: str) -> Optional[tuple[str, str]]:
        """Claim the worker for a load; the (user, what) of a load already under way instead, if any."""
        with self._lock:
            if self.loading:
                return self.loading
            self.loading = (who, what)
            return None

    def end_loading(self) -> None:
        with self._lock:
            self.loading = None

    def done_generating(self, who: str) -> None:
        with self._lock:
            if self.generating_by == who:
                self.generating_by = None

    def started(self) -> bool:
        return self._worker is not None

    def status(self) -> dict[str, Any]:
        """The worker's status plus who loaded it; a worker never started is simply empty."""
        base = self._worker.status() if self._worker is not None else {"loaded": None, "unload_reason": None}
        return {**base, "loaded_by": self.loaded_by if base.get("loaded") else None, "loaded_at": self.loaded_at,
                "loading": self.loading}

    def close(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()


# --- trainer commands in subprocesses -------------------------------------------------------------

class CommandBusy(RuntimeError):
    """The same command already runs for the same run (its user is named)."""

    def __init__(self, command: str, run_id: str, user: str):
        super().__init__(f"{command} is already running for run {run_id} (started by {user}); wait for it to finish")
        self.command, self.run_id, self.user = command, run_id, user


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    error: str  # the last line of stderr that is not progress: the command's one-line message
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None


def trainer_argv(command: str, *args: str) -> list[str]:
    """`python -m trainer COMMAND ARGS` with this interpreter: argv elements, never a shell line."""
    return [sys.executable, "-m", "trainer", command, *args]


class Commands:
    """Runs trainer commands one per (command, run) at a time. A command outlives the page that started it
    (a closed tab leaves an evaluation to finish and store its result); the next one waits for it."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def running(self, command: str, run_id: str) -> Optional[str]:
        """Who runs `command` on `run_id` now, or None."""
        with self._lock:
            return self._running.get((command, run_id))

    def run(self, command: str, run_id: str, user: str, args: list[str]) -> Iterator[str | CommandResult]:
        """Yields the command's progress lines, then its CommandResult. CommandBusy when it runs already."""
        key = (command, run_id)
        with self._lock:
            if key in self._running:
                raise CommandBusy(command, run_id, self._running[key])
            self._running[key] = user
        try:
            proc = subprocess.Popen(trainer_argv(command, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                    cwd=PROJECT_ROOT, env=_command_env(), close_fds=True)
        except OSError:
            self._release(key)
            raise
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        stdout: list[str] = []
        readers = [threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True),
                   threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)]
        for reader in readers:
            reader.start()
        threading.Thread(target=self._release_when_done, args=(key, proc, readers), daemon=True).start()
        errors: list[str] = []
        notes: list[str] = []
        while True:
            line = lines.get()
            if line is None:
                break
            if line.startswith(PROGRESS_PREFIX):
                text = line[len(PROGRESS_PREFIX):]
                if text.startswith("note: "):
                    notes.append(text[len("note: "):])
                yield text
            elif line.strip():
                errors.append(line.strip())
        proc.wait()
        for reader in readers:
            reader.join()
        yield CommandResult(proc.returncode, "".join(stdout), _one_line_error(errors, command), notes)

    def _release(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._running.pop(key, None)

    def _release_when_done(self, key: tuple[str, str], proc: subprocess.Popen, readers: list[threading.Thread]) -> None:
        proc.wait()
        for reader in readers:
            reader.join()
        self._release(key)


def _command_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _read_lines(stream: Any, lines: "queue.Queue[Optional[str]]") -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _one_line_error(errors: list[str], command: str) -> str:
    """The command's own one-line message (`tunedeck COMMAND: ...`), else the last line it printed."""
    prefix = f"tunedeck {command}: "
    own = [line[len(prefix):] for line in errors if line.startswith(prefix)]
    if own:
        return own[-1]
    return errors[-1] if errors else ""

