"""The run directory: its file names, run ids, the runs root, checkpoints, and the command that trains it.

Everything that names a file of a run or finds a checkpoint goes through this module, so the job
scheduler, the trainer, the CLI and the page agree by construction. Standard library only: no torch, no
gradio, not even pydantic at import time.

    <runs root>/                    $TUNEDECK_RUNS_DIR, else ./runs
      runs.db                       the registry (trainer.jobs.registry)
      <run id>/                     YYYYMMDD-HHMMSS-xxxxxx
        config.yaml                 the resolved config the trainer reads (write_run_config)
        events.jsonl                one JSON event a line (trainer.run.events)
        stdout.log                  the trainer's output
        ABORT                       present: the trainer stops at the next step
        checkpoints/checkpoint-N/   resumable checkpoints (complete when trainer_state.json is there)
        adapter/                    the final adapter (or the full model)
        tensorboard/                TensorBoard logs
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from trainer.config import TrainConfig

DB_FILE = "runs.db"
CONFIG_FILE = "config.yaml"
EVENTS_FILE = "events.jsonl"
STDOUT_FILE = "stdout.log"
ABORT_FILE = "ABORT"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
TENSORBOARD_DIR = "tensorboard"
TRACKERS_FILE = "trackers.json"  # the W&B / MLflow run links, written by the training process for the Monitor
CHECKPOINT_STATE_FILE = "trainer_state.json"  # written last by a save: its presence marks a complete checkpoint

RUNS_DIR_ENV = "TUNEDECK_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
# `python -m trainer train` without --run-dir writes here, apart from the registry's runs: the dashboard
# adopts a run directory it finds in the root, and could not tell whether such a run's process is alive.
FOREGROUND_SUBDIR = "foreground"
RESUME_LATEST = ("last", "latest", "true")  # resume_from_checkpoint values meaning "this run's newest checkpoint"

_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# --- the runs root and run ids --------------------------------------------------------------------

def default_runs_root() -> Path:
    """$TUNEDECK_RUNS_DIR, else ./runs: the root the job manager, the presets and the page share."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def new_run_id(now: float | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC): sorts by creation second, random suffix for uniqueness."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def foreground_run_dir() -> Path:
    """Where a training started by hand without --run-dir goes: <runs root>/foreground/<new run id>."""
    return default_runs_root() / FOREGROUND_SUBDIR / new_run_id()


def is_run_id(value: object) -> bool:
    """A well-formed run id (also what keeps a requested id from naming a path outside the runs root)."""
    return isinstance(value, str) and bool(_RUN_ID.match(value))


# --- files of one run -----------------------------------------------------------------------------

def config_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def stdout_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / STDOUT_FILE


def write_run_config(cfg: "TrainConfig", run_dir: str | Path) -> Path:
    """Write the run's config.yaml (atomically: a reader sees the old file or the new one, never half)."""
    path = config_path(run_dir)
    cfg.save(path)
    return path


def read_run_config(run_dir: str | Path) -> "TrainConfig":
    """The run's config.yaml as the trainer sees it; ConfigError when it is invalid."""
    from trainer.config import TrainConfig

    return TrainConfig.from_yaml(config_path(run_dir))


def request_abort(run_dir: str | Path) -> None:
    """Leave the ABORT file: the trainer checks for it at every step and stops cleanly."""
    (Path(run_dir) / ABORT_FILE).touch()


def clear_abort_request(run_dir: str | Path) -> None:
    """Remove a stale ABORT file, which would stop the next attempt at once."""
    try:
        (Path(run_dir) / ABORT_FILE).unlink()
    except FileNotFoundError:
        pass


def train_argv(run_dir: str | Path, python: str | None = None, cfg: Optional["TrainConfig"] = None,
               gpu_count: int | None = None) -> list[str]:
    """The command that trains a run: what the scheduler starts and what the page's Preview shows.

    `python`: the interpreter, this one (sys.executable at call time) by default. `cfg`: the run's config
    (default: its config.yaml when there is one); `gpu_count`: the GPUs the run gets (default: visible).
    One process: ``python -m trainer train``. Several processes or machines, FSDP or DeepSpeed: the same
    command under ``accelerate launch`` with RUN_DIR/accelerate_config.yaml, which
    trainer.engine.distributed.write_launch_files writes before the start.
    """
    run_dir = Path(run_dir)
    train_args = _train_args(run_dir)
    if cfg is None:
        cfg = _config_if_valid(run_dir)
    if cfg is not None:
        from trainer.engine import distributed
        from trainer.plan.hardware import gpu_count as visible_gpu_count

        count = visible_gpu_count() if gpu_count is None else gpu_count
        if distributed.uses_launcher(cfg, count):
            return distributed.launch_argv(run_dir, train_args, python)
    return [python or sys.executable, "-m", *train_args]


def _config_if_valid(run_dir: Path) -> Optional["TrainConfig"]:
    """The run's config, None when it has none or a broken one: the trainer then refuses it in its own words
    (a status event naming the field), which a launcher would only delay."""
    from trainer.config import ConfigError

    try:
        return read_run_config(run_dir)
    except (ConfigError, OSError):
        return None


def _train_args(run_dir: Path) -> list[str]:
    return ["trainer", "train", str(config_path(run_dir)), "--run-dir", str(run_dir)]


def machine_commands(cfg: "TrainConfig", run_dir: str | Path, python: str = "python") -> list[tuple[int, str]]:
    """(machine rank, shell line) of a run on several machines: the same launch on each, with its own rank.
    Every machine must see the run directory at the same path (shared storage)."""
    from trainer.engine.distributed import launch_argv

    return [(machine, shlex.join(launch_argv(run_dir, _train_args(Path(run_dir)), python, machine_rank=machine)))
            for machine in range(cfg.num_machines)]


def train_command(run_dir: str | Path, python: str | None = None, cfg: Optional["TrainConfig"] = None) -> str:
    """`train_argv` as one shell line, for people to read and copy (the page's Preview)."""
    return shlex.join(train_argv(run_dir, python, cfg))


# --- checkpoints ----------------------------------------------------------------------------------

def checkpoint_step(path: str | Path) -> Optional[int]:
    """N of a ``checkpoint-N`` directory name, else None."""
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: str | Path) -> bool:
    return (Path(path) / CHECKPOINT_STATE_FILE).is_file()


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest complete ``checkpoints/checkpoint-N`` of a run (by N; a save cut short by a kill has no
    trainer_state.json and does not count), or None."""
    best: tuple[int, Optional[Path]] = (-1, None)
    try:
        entries = list((Path(run_dir) / CHECKPOINTS_DIR).iterdir())
    except OSError:
        return None
    for entry in entries:
        step = checkpoint_step(entry)
        if step is not None and step > best[0] and is_complete_checkpoint(entry):
            best = (step, entry)
    return best[1]


def resolve_resume(value: Optional[str], run_dir: str | Path) -> Optional[Path]:
    """The checkpoint a run resumes from, given its resume_from_checkpoint setting.

    Empty: none. `last` (or latest/true): the newest checkpoint of this run, None while it has none.
    A path: a checkpoint directory itself, or a run directory / its checkpoints/ folder (its newest
    checkpoint). Raises ConfigError naming the field when the path holds no checkpoint.
    """
    from trainer.config import ConfigError  # imported here: the CLI reads ABORT_FILE before any heavy import

    if not value or not str(value).strip():
        return None
    if str(value).strip().lower() in RESUME_LATEST:
        return latest_checkpoint(run_dir)
    path = Path(str(value).strip()).expanduser()
    if not path.is_dir():
        raise ConfigError([("resume_from_checkpoint", f"no checkpoint directory at {path}")])
    if is_complete_checkpoint(path):
        return path
    inner = latest_checkpoint(path.parent if path.name == CHECKPOINTS_DIR else path)
    if inner is None:
        raise ConfigError([("resume_from_checkpoint",
                            f"{path} holds no checkpoint (no {CHECKPOINT_STATE_FILE})")])
    return inner
