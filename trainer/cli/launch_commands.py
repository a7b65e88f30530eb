"""`python -m trainer launch-commands CONFIG.yaml [--run-dir DIR]`: the commands that start a run on
several machines (or several devices of one), and the accelerate config they read.

It prepares the run directory (config.yaml, accelerate_config.yaml and, for ZeRO, deepspeed_config.json)
and prints one command per machine. Every machine must see the run directory at the same path (shared
storage: NFS, Lustre, a cluster's home); machine 0 writes the events, checkpoints and adapter there, so
a dashboard whose runs root is that storage follows the run. Under Slurm, one `srun` task per node runs
the command with --machine_rank $SLURM_NODEID (see --slurm).
Exit codes: 0 printed, 2 invalid config or option, 1 the run directory cannot be written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the run's config (YAML) with num_machines, main_process_ip, ...")
    parser.add_argument("--run-dir", default=None,
                        help="the run directory on storage every machine sees at the same path (default: "
                             "<runs root>/<new run id>)")
    parser.add_argument("--python", default="python",
                        help="the interpreter to run on each machine (default: python, from the PATH there)")
    parser.add_argument("--gpus", type=_gpu_count, default=None,
                        help="GPUs per machine, for num_processes auto (default: this machine's)")
    parser.add_argument("--slurm", action="store_true",
                        help="print one srun line for all machines instead of one command per machine")


def _gpu_count(text: str) -> int:
    """--gpus: a count of GPUs, 0 or more (argparse names the option and exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a whole number of GPUs per machine, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expects 0 or more GPUs per machine, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from trainer.config import ConfigError, TrainConfig
    from trainer.engine.distributed import (
        ACCELERATE_CONFIG_FILE, processes_per_machine, total_processes, write_launch_files,
    )
    from trainer.plan.hardware import gpu_count
    from trainer.run.layout import default_runs_root, machine_commands, new_run_id, write_run_config

    try:
        cfg = TrainConfig.from_yaml(args.config)
    except ConfigError as exc:
        print(f"invalid config: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else default_runs_root() / new_run_id()
    run_dir = run_dir.expanduser().resolve()
    gpus = gpu_count() if args.gpus is None else args.gpus
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(cfg, run_dir)
        write_launch_files(cfg, run_dir, gpus)
    except OSError as exc:  # a file in the way, a read-only or missing mount: say which directory and why
        print(f"--run-dir: cannot write the run directory {run_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    per_machine = processes_per_machine(cfg, gpus)
    print(f"# run directory {run_dir} (must be the same path on every machine)")
    print(f"# {cfg.num_machines} machine(s) × {per_machine} process(es) = {total_processes(cfg, gpus)} processes; "
          f"accelerate config: {run_dir / ACCELERATE_CONFIG_FILE}")
    commands = machine_commands(cfg, run_dir, args.python)
    if args.slurm:
        line = commands[0][1].replace("--machine_rank 0", "--machine_rank $SLURM_NODEID")
        print(f"srun --nodes={cfg.num_machines} --ntasks-per-node=1 bash -c {shlex.quote(line)}")
        return 0
    for machine, line in commands:
        where = " (main: writes the run directory)" if machine == 0 else ""
        print(f"# machine {machine}{where}")
        print(line)
    return 0
