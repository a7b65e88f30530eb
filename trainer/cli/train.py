"""`python -m trainer train CONFIG.yaml [--run-dir DIR]`: one training in the foreground.

The same code path the dashboard's job manager launches (it redirects the output to RUN_DIR/stdout.log).
Exit codes: 0 finished, 3 aborted, 1 failed, 2 invalid config, dataset or model path. A rank of a
multi-process run leaves a clean abort with 0 (see run()).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from trainer.jobs.processes import set_allocator_default
from trainer.run.layout import ABORT_FILE, foreground_run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the run's config (YAML): a preset or a saved config.yaml")
    parser.add_argument("--run-dir", default=None,
                        help="where the run writes events, checkpoints and the adapter "
                             "(default: <runs root>/foreground/<new run id>, the runs root being $TUNEDECK_RUNS_DIR or "
                             "./runs)")


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir) if args.run_dir else foreground_run_dir()
    # Until the trainer installs its own handler (after the heavy imports), a SIGTERM is turned into the
    # ABORT file, so an abort during start-up is still a clean stop rather than a vanished process.
    def early_abort(signum, frame):
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ABORT_FILE).touch()
        except OSError:
            pass

    signal.signal(signal.SIGTERM, early_abort)
    set_allocator_default(os.environ)  # by hand as from the dashboard: before torch is imported


    from trainer.config import ConfigError, TrainConfig

    try:
        cfg = TrainConfig.from_yaml(args.config)
    except ConfigError as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        _record_invalid(run_dir, exc)
        return 2
    try:  # the page checked this for its user; a config.yaml edited or submitted otherwise is checked again
        for warning in _owner_access(run_dir).check_config(cfg):
            print(f"warning: {warning}", file=sys.stderr)
    except ConfigError as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        _record_invalid(run_dir, exc)
        return 2
    try:  # one probe file per process: every rank of a distributed run checks the same directory at once
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink(missing_ok=True)
    except OSError as exc:
        print(f"cannot write the run directory {run_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    from trainer.engine.ranks import world_size
    from trainer.engine.train import EXIT_ABORTED, run_training

    print(f"tunedeck: run directory {run_dir.resolve()}", flush=True)
    code = run_training(cfg, run_dir)
    if code == EXIT_ABORTED and world_size() > 1:
        # accelerate's launcher reads any code but 0 as a crash and prints "trainer FAILED" with a traceback
        # under a clean abort; the run's own status event says it was aborted, and where its checkpoint is.
        return 0
    return code


def _owner_access(run_dir: Path):
    """The access policy of the run's owner (its row in the registry next to the run directory). A run the
    registry does not know was started from a shell, by someone who reads these files anyway."""
    from trainer.access import Access, access_from_env
    from trainer.jobs.registry import JobError, Registry
    from trainer.run.layout import DB_FILE, is_run_id

    runs_root = run_dir.resolve().parent
    if not is_run_id(run_dir.name) or not (runs_root / DB_FILE).is_file():
        return Access()
    try:
        owner = Registry(runs_root).get(run_dir.name).owner
    except JobError:
        return Access()
    return access_from_env(owner, runs_root)


def _record_invalid(run_dir: Path, exc: Exception) -> None:
    """A run directory that exists gets the reason in its events, so the dashboard can show it."""
    if not run_dir.is_dir():
        return
    from trainer.run.events import FAILED, append_event

    append_event(run_dir, "status", status=FAILED, kind="config", reason=f"Invalid config: {exc}",
                 advice=["Fix the field named above (python -m trainer check CONFIG.yaml)."])
