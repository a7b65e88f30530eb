"""The trainer's processes: starting one in its own session, telling a live trainer from a reused pid or
a zombie, and signals. Standard library only (the dashboard process stays light)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import MutableMapping

from trainer.run.layout import STDOUT_FILE

_PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Expandable segments let torch's CUDA allocator grow a segment instead of reserving a new block per new
# batch shape: less fragmentation with varied-length batches (measured on an H100: 24.2 GiB reserved instead
# of 29.6 for padded varied batches, benchmarks/README.md). Either variable set by the user wins.
ALLOCATOR_VARIABLES = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
DEFAULT_ALLOCATOR = "expandable_segments:True"


def set_allocator_default(env: MutableMapping[str, str]) -> None:
    """PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in `env` unless the user configured the allocator.
    Read when CUDA starts: set it before the trainer imports torch."""
    if not any(env.get(name) for name in ALLOCATOR_VARIABLES):
        env["PYTORCH_CUDA_ALLOC_CONF"] = DEFAULT_ALLOCATOR


def spawn_trainer(argv: list[str], run_dir: Path, *, attempt: int, gpu: str | None) -> subprocess.Popen:
    """Start `argv` (trainer.run.layout.train_argv) in its own session, so it outlives the server, with its
    output appended to the run's stdout.log and only the GPU it was given visible."""
    env = dict(os.environ)  # inherited as is: secrets stay in the environment, never in a file
    env["PYTHONUNBUFFERED"] = "1"  # stdout.log is read live
    set_allocator_default(env)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    with open(run_dir / STDOUT_FILE, "ab") as log:
        on = f" on GPU {gpu}" if gpu is not None else ""
        log.write(f"--- tunedeck: attempt {attempt} started {time.strftime('%Y-%m-%d %H:%M:%S')}{on} ---\n".encode())
        log.flush()
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)


def pid_is_trainer_of(pid: int | None, run_dir: Path) -> bool:
    """Is `pid` alive and really the trainer of this run (not a reused pid, not an unreaped zombie)?"""
    if not pid or pid <= 0:
        return False
    proc = Path("/proc") / str(pid)
    if Path("/proc/self").exists():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # gone, or a zombie already reaped
        if str(run_dir).encode() in cmdline:
            return True
        return _run_dir_argument(proc, cmdline) == Path(run_dir).resolve()
    try:  # no /proc (macOS): the best we can do is "some process has this pid"
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_dir_argument(proc: Path, cmdline: list[bytes]) -> Path | None:
    """The --run-dir of a trainer started by hand (`python -m trainer train CONFIG --run-dir runs/x`),
    resolved against that process's working directory."""
    args = [arg.decode(errors="replace") for arg in cmdline]
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--run-dir" and i + 1 < len(args) else (
            arg.split("=", 1)[1] if arg.startswith("--run-dir=") else None)
        if value:
            try:
                return (Path(os.readlink(proc / "cwd")) / value).resolve()
            except OSError:
                return None
    return None


def _children_by_parent() -> dict[int, list[int]] | None:
    """Every live process's children, from the parent links in /proc (None without /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def run_processes(pid: int | None) -> list[int]:
    """The trainer and every live process it started, found by parent links in /proc (a multi-process
    run's launcher starts each rank in a session of its own, so its process group does not hold them)."""
    if not pid:
        return []
    children = _children_by_parent()
    if children is None:
        return [pid]
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def terminate(pid: int | None) -> None:
    """SIGTERM to the trainer: it stops at the next step, after saving a checkpoint (or before loading the model,
    between two chunks of tokenizing), and its own helper processes (the tokenizer's workers) finish their
    chunk rather than die under it. A multi-process run's launcher is not told either: on SIGTERM it gives
    its ranks 30 s and then SIGKILLs them, which could cut a large checkpoint short; its ranks are told, and
    it ends with them. Whatever has not stopped after the grace goes with kill_group."""
    if not pid:
        return
    targets = [pid]
    if _is_launcher(pid):
        targets = (_children_by_parent() or {}).get(pid) or [pid]  # no ranks yet: the launcher itself
    _send(targets, signal.SIGTERM)


def _is_launcher(pid: int) -> bool:
    try:
        return b"accelerate.commands.launch" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def kill_group(pid: int | None) -> None:
    """SIGKILL to the trainer's session (it leads it when the scheduler started it) and to every process it
    started, collected first: a rank whose launcher is gone could not be found any more."""
    if not pid:
        return
    members = run_processes(pid)
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _send(members, signal.SIGKILL)


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):  # gone meanwhile, or not ours: nothing to stop
            pass


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
