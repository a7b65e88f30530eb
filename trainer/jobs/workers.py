"""The web server's side of the chat worker: spawn it, send requests, stream its answers, unload it.

The model lives in a worker process (trainer.engine.worker), never in the server, which never imports
torch. One ChatWorker holds at most one loaded run. It refuses to load while training needs the GPU it
would use (a running run on that GPU, or queued runs that will take the free ones), unloads itself when
such a run appears, and after `idle_timeout_s` without a request. On a machine without a GPU there is no
contention: the worker runs on the CPU beside any training.

    worker = ChatWorker(jobs=job_manager, idle_timeout_s=900)
    for event in worker.load(run_dir, checkpoint=None, wait=False):   # {"type": "progress", "text"} ...
        ...                                                            # ... then {"type": "loaded", "info"}
    for event in worker.chat("Hello", history=[], settings={"temperature": 0.7}, models=("tuned", "base")):
        ...   # {"type": "chunk", "model", "text"}, {"type": "end", "model", "text", "seconds", "stopped"}
    worker.stop(); worker.unload(); worker.close()

Errors: WorkerError (load failure, worker crash, bad request: the message says why), GPUBusyError
(a WorkerError: training needs the GPU; `.runs` names the runs).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from trainer.jobs.scheduler import pick_gpu
from trainer.plan.hardware import visible_gpus
from trainer.run.events import QUEUED, RUNNING

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IDLE_TIMEOUT_S = 900.0
_WATCH_INTERVAL_S = 2.0
_STDERR_LINES = 30
_BUSY_WAIT_S = 30.0


class WorkerError(RuntimeError):
    """The chat worker could not do what was asked; the message is for the user."""


class GPUBusyError(WorkerError):
    """Training needs the GPU the chat model would use."""

    def __init__(self, message: str, runs: list[str]):
        super().__init__(message)
        self.runs = runs


def gpus_needed_by_training(gpus: list[str], runs: Iterable[Any],
                            max_concurrent: Optional[int] = None) -> tuple[list[str], list[str]]:
    """(GPUs, run ids): the GPUs training holds or takes next. A running run holds its GPU; queued runs
    take the ones the scheduler picks next (as many as it may start)."""
    runs = list(runs)
    running = [r for r in runs if r.status == RUNNING]
    queued = [r for r in runs if r.status == QUEUED]
    in_use = [r.gpu for r in running if r.gpu is not None]
    startable = len(queued) if max_concurrent is None else max(0, min(len(queued), max_concurrent - len(running)))
    taken = list(in_use)
    for _ in range(startable):
        taken.append(pick_gpu(gpus, taken))
    needed = [g for g in gpus if g in taken]
    return needed, [r.id for r in running] + [r.id for r in queued]


def busy_reason(runs: Iterable[Any]) -> str:
    runs = list(runs)
    running = [r.id for r in runs if r.status == RUNNING]
    queued = [r.id for r in runs if r.status == QUEUED]
    parts = []
    if running:
        parts.append(f"training run {', '.join(running[:3])}{', ...' if len(running) > 3 else ''} is using it")
    if queued:
        parts.append(f"{', '.join(queued[:3])}{', ...' if len(queued) > 3 else ''} {'is' if len(queued) == 1 else 'are'} "
                     "queued for it")
    return f"the GPU is needed for training ({'; '.join(parts)}); the chat model loads when it is free (wait, or " \
           "abort the run)"


class ChatWorker:
    """One chat worker process at a time, loaded with one run's model (see the module docstring)."""

    def __init__(self, jobs: Any = None, *, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 python: str = sys.executable, gpus: Optional[list[str]] = None, start_timeout_s: float = 300.0):
        self.jobs = jobs  # a JobManager (list_runs, max_concurrent), or None: no registry to respect
        self.idle_timeout_s = idle_timeout_s
        self.python = python
        self.gpus = list(gpus) if gpus is not None else list(getattr(jobs, "gpus", None) or visible_gpus())
        self.start_timeout_s = start_timeout_s
        self.loaded: Optional[dict[str, Any]] = None  # the worker's `info` of the loaded run
        self.unload_reason: Optional[str] = None  # why the model was unloaded without being asked
        self._proc: Optional[subprocess.Popen] = None
        self._gpu: Optional[str] = None
        self._answers: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._request_lock = threading.Lock()  # one request at a time
        self._state_lock = threading.RLock()
        self._next_id = 0
        self._last_used = time.monotonic()
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="chat-worker-watch", daemon=True)
        self._watcher.start()

    # --- contention -----------------------------------------------------------------------------
    def gpu_contention(self) -> tuple[Optional[str], str, list[str]]:
        """(gpu, reason, run ids) from the registry now: the GPU the chat model may use ("" on a machine
        without GPUs: nothing to share), or None and why not."""
        if not self.gpus:
            return "", "", []
        if self.jobs is None:
            return self.gpus[-1], "", []
        runs = self.jobs.list_runs(status=[RUNNING, QUEUED])
        needed, ids = gpus_needed_by_training(self.gpus, runs, getattr(self.jobs, "max_concurrent", None))
        free = [g for g in self.gpus if g not in needed]
        if self._gpu in free:
            return self._gpu, "", []
        if free:
            return free[-1], "", []
        return None, busy_reason(runs), ids

    # --- requests -------------------------------------------------------------------------------
    def load(self, run_dir: str | Path, checkpoint: Optional[str] = None, *, wait: bool = False,
             poll_s: float = 5.0, wait_timeout_s: Optional[float] = None) -> Iterator[dict[str, Any]]:
        """Load a run's weights in the worker; yields progress events, the last one {"type": "loaded", "info"}.

        While training needs the GPU: GPUBusyError, or with `wait` {"type": "waiting", "text", "runs"}
        events every `poll_s` until it is free (GPUBusyError after `wait_timeout_s`).
        """
        started = time.monotonic()
        while True:
            gpu, reason, runs = self.gpu_contention()
            if gpu is not None:
                break
            if not wait or (wait_timeout_s is not None and time.monotonic() - started > wait_timeout_s):
                raise GPUBusyError(f"cannot load the chat model: {reason}", runs)
            yield {"type": "waiting", "text": reason, "runs": runs}
            if self._closed.wait(poll_s):
                raise WorkerError("the chat worker was closed while waiting for the GPU")
        with self._exclusive():
            self._ensure_process(gpu)
            self.loaded, self.unload_reason = None, None
            info = None
            for event in self._request({"op": "load", "run_dir": str(run_dir), "checkpoint": checkpoint}):
                if event["type"] == "loaded":
                    info = event["info"]
                yield event
                if event["type"] == "loaded":
                    break
            self.loaded = info

    def chat(self, message: str, history: Optional[list[dict[str, str]]] = None,
             settings: Optional[dict[str, Any]] = None, models: Iterable[str] = ("tuned",)) -> Iterator[dict[str, Any]]:
        """Send a user message after `history` (earlier {"role": "user"/"assistant", "content"} turns);
        yields chunk and end events of all `models` as they come (both generate at once: interleaved). `settings` are
        GenerationSettings fields (system_prompt, temperature, top_p, max_new_tokens, repetition_penalty,
        seed). Closing the generator early (the page's stop button) stops the generation in the worker.
        """
        with self._exclusive():
            if self.loaded is None or self._proc is None:
                raise WorkerError(self.unload_reason or "no model is loaded: pick a run and load it first")
            request = {"op": "chat", "message": message, "history": list(history or []), "settings": settings or {},
                       "models": list(models)}
            finished = False
            try:
                for event in self._request(request):
                    if event["type"] == "done":
                        finished = True
                        return
                    yield event
            except WorkerError:
                finished = True  # the worker answered with an error: nothing left to read
                raise
            finally:
                if not finished and self._alive():
                    self._send({"op": "stop"})
                    self._drain_until_done()

    def stop(self) -> None:
        """End the reply being generated (safe from any thread)."""
        if self._alive():
            self._send({"op": "stop"})

    def unload(self, reason: Optional[str] = None) -> None:
        """Free the model: the worker process ends, and with it every byte it held."""
        with self._state_lock:
            proc, self._proc, self.loaded = self._proc, None, None
            self.unload_reason = reason
        if proc is not None:
            _end_process(proc)

    def close(self) -> None:
        self._closed.set()
        self.unload()

    def status(self) -> dict[str, Any]:
        """What the page shows: the loaded run (or None), why it was unloaded, the GPU it holds."""
        return {"loaded": self.loaded, "unload_reason": self.unload_reason, "gpu": self._gpu or None,
                "pid": self._proc.pid if self._alive() else None,
                "idle_s": round(time.monotonic() - self._last_used, 1)}

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One request at a time; a second one waits a little, then is told why not."""
        if not self._request_lock.acquire(timeout=_BUSY_WAIT_S):
            raise WorkerError("the chat worker is busy with another request; stop it or try again")
        try:
            yield
        finally:
            self._request_lock.release()

    # --- the process ----------------------------------------------------------------------------
    def _alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def _ensure_process(self, gpu: str) -> None:
        if self._alive() and self._gpu == gpu:
            return
        self.unload()
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        proc = subprocess.Popen([self.python, "-m", "trainer.engine.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                                encoding="utf-8", bufsize=1, close_fds=True)
        answers: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
        threading.Thread(target=self._read_stdout, args=(proc, answers), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(proc,), daemon=True).start()
        with self._state_lock:
            self._proc, self._gpu, self._answers = proc, gpu, answers
            self._stderr.clear()
        ready = self._next_answer(self.start_timeout_s)
        if ready is None or ready.get("type") != "ready":
            self.unload()
            raise WorkerError(f"the chat worker did not start{self._stderr_tail()}")

    def _read_stdout(self, proc: subprocess.Popen, answers: "queue.Queue") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                answers.put(json.loads(line))
            except ValueError:
                self._stderr.append(line.rstrip())
        answers.put(None)  # the process ended

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._stderr.append(line.rstrip())

    def _stderr_tail(self) -> str:
        lines = [line for line in self._stderr if line.strip()]
        return f": {lines[-1]}" if lines else ""

    def _send(self, request: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise WorkerError(self.unload_reason or "the chat worker is not running")
        try:
            proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise WorkerError(f"the chat worker has stopped{self._stderr_tail()}") from None

    def _next_answer(self, timeout: Optional[float] = None) -> Optional[dict[str, Any]]:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            return None

    def _request(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send one request and yield its answers until its last one (done, loaded, unloaded or error)."""
        self._next_id += 1
        request_id = request["id"] = self._next_id
        self._last_used = time.monotonic()
        self._send(request)
        while True:
            answer = self._answers.get()
            self._last_used = time.monotonic()
            if answer is None:
                reason = self.unload_reason
                self.unload(reason)
                raise WorkerError(reason or f"the chat worker stopped unexpectedly{self._stderr_tail()}")
            if answer.get("id") not in (request_id, None):
                continue  # a late answer to a request that was given up
            if answer.get("type") == "error":
                raise WorkerError(answer.get("message") or "the chat worker failed")
            answer.pop("id", None)
            yield answer
            if answer.get("type") in ("done", "loaded", "unloaded", "pong"):
                return

    def _drain_until_done(self) -> None:
        """After a stop: read the rest of the stopped request so the next one starts clean."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = self._next_answer(timeout=max(0.1, deadline - time.monotonic()))
            if answer is None or answer.get("type") in ("done", "error"):
                return

    def _watch(self) -> None:
        """Unload after the idle timeout, or at once when training needs the GPU the model holds."""
        while not self._closed.wait(_WATCH_INTERVAL_S):
            if not self._alive() or self._request_lock.locked():
                continue
            if time.monotonic() - self._last_used > self.idle_timeout_s:
                self.unload(f"the chat model was unloaded after {self.idle_timeout_s / 60:g} idle minutes; load it "
                            "again to continue")
            elif self._gpu and self.jobs is not None:
                try:
                    runs = self.jobs.list_runs(status=[RUNNING, QUEUED])
                except Exception:  # noqa: BLE001 — a busy registry must not stop the watch
                    continue
                needed, _ = gpus_needed_by_training(self.gpus, runs, getattr(self.jobs, "max_concurrent", None))
                if self._gpu in needed:
                    self.unload(f"the chat model was unloaded to free the GPU: {busy_reason(runs)}")


def _end_process(proc: subprocess.Popen) -> None:
    try:
        if proc.stdin:
            proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
            proc.stdin.flush()
    except (OSError, ValueError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
