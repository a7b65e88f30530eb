"""The page's one place for what a run directory holds and how a run is started.

The page reads a run's `config.yaml` and `stdout.log` and shows the command line Start runs (Preview);
the names and the command come from the job manager, so the page never spells them itself.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from trainer.jobs.manager import CONFIG_FILE, STDOUT_FILE


def config_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG_FILE


def stdout_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / STDOUT_FILE


def train_command(runs_root: str | Path, run_id: str = "<run_id>") -> str:
    """The command line the scheduler runs for a run (shown by Preview)."""
    run_dir = Path(runs_root) / run_id
    return shlex.join([sys.executable, "-m", "trainer", "train", str(config_path(run_dir)), "--run-dir", str(run_dir)])
