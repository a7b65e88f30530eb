"""Run a named job of the data worker (trainer/engine/data_worker.py) in a capped child process.

The web server calls `run_job("preview", {...})` instead of loading datasets or tokenizers itself: the
child gets an address-space limit (RLIMIT_AS, set by the child before its first import), a deadline, its own session (killed as a group), an
environment without the server's logins, and at most MAX_WORKERS run at once. The answer is JSON; every
failure is a SandboxError with a message a user can act on (too much memory, too slow, too busy).

torch-free: this module only starts processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any

from trainer.access import ADMINS_ENV, AUTH_ENV
from trainer.local_names import SHARED_ENV, sign_in_configured

MEMORY_LIMIT_GB = float(os.environ.get("TUNEDECK_WORKER_MEMORY_GB", "6"))
TIME_LIMIT_S = float(os.environ.get("TUNEDECK_WORKER_TIMEOUT_S", "120"))
MAX_WORKERS = int(os.environ.get("TUNEDECK_WORKERS", "2"))
MAX_ANSWER_BYTES = 50_000_000
_HIDDEN_ENV = (AUTH_ENV, ADMINS_ENV)  # the server's passwords are none of a worker's business
_slots = threading.BoundedSemaphore(MAX_WORKERS)


class SandboxError(RuntimeError):
    """A worker job that did not answer: over its memory or time limit, busy, or failed. `kind` says which."""

    def __init__(self, message: str, kind: str = "error"):
        self.kind = kind
        super().__init__(message)


def run_job(job: str, request: dict[str, Any], *, memory_gb: float | None = None, timeout_s: float | None = None,
            python: str = sys.executable) -> dict[str, Any]:
    """The job's result (a dict), or SandboxError. Waits at most `timeout_s` for a free slot too."""
    memory_gb = MEMORY_LIMIT_GB if memory_gb is None else memory_gb
    timeout_s = TIME_LIMIT_S if timeout_s is None else timeout_s
    if not _slots.acquire(timeout=timeout_s):
        raise SandboxError("the data worker is busy with other users' previews: try again in a moment", "busy")
    try:
        return _run(job, request, memory_gb, timeout_s, python)
    finally:
        _slots.release()


def _run(job: str, request: dict[str, Any], memory_gb: float, timeout_s: float, python: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in _HIDDEN_ENV}
    if sign_in_configured():  # without the passwords the worker still knows it serves a shared server
        env[SHARED_ENV] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryFile() as errors:
        # The child caps itself (--memory-bytes, before its imports): a preexec_fn could deadlock in a
        # threaded server.
        proc = subprocess.Popen([python, "-m", "trainer.engine.data_worker", "--memory-bytes",
                                 str(int(memory_gb * 1024**3))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=errors, env=env, start_new_session=True)
        try:
            out, _ = proc.communicate(json.dumps({**request, "job": job}).encode(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise SandboxError(f"stopped after {timeout_s:g} s: the data is too large or too slow to read here",
                               "timeout") from None
        errors.seek(max(0, os.fstat(errors.fileno()).st_size - 4000))
        tail = errors.read().decode("utf-8", "replace")
    if len(out) > MAX_ANSWER_BYTES:
        raise SandboxError("the answer was too large to show", "error")
    try:
        answer = json.loads(out) if out else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if "MemoryError" in tail or "std::bad_alloc" in tail or proc.returncode in (-signal.SIGKILL, -signal.SIGSEGV):
            raise SandboxError(f"stopped: it needed more than the {memory_gb:g} GB memory limit", "memory")
        last = tail.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise SandboxError(f"the data worker failed: {last[0][:300]}", "error")
    if not answer.get("ok"):
        kind = answer.get("kind", "error")
        if kind == "memory":
            raise SandboxError(f"stopped: it needed more than the {memory_gb:g} GB memory limit", "memory")
        raise SandboxError(str(answer.get("error") or "failed"), kind)
    return answer["result"]


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
