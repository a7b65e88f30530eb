"""Several devices, several machines: the accelerate launch of a run, generated from the schema.

A run whose config asks for more than one process (num_processes, num_machines) or for a sharding
engine (FSDP, DeepSpeed ZeRO) is started through ``accelerate launch`` with a config file written into
its run directory (`write_launch_files`): accelerate's own YAML, plus a DeepSpeed JSON for the ZeRO
choices (batch, accumulation, clipping and precision left "auto": the Trainer fills them in from the
same SFTConfig as a single-process run). Every process runs the same ``python -m trainer train``.

Inside the training processes, trainer.engine.ranks says which process this is: only rank 0 writes the
run directory.

No torch, no accelerate import here: the scheduler and the web server build the command line too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from trainer.config import TrainConfig

ACCELERATE_CONFIG_FILE = "accelerate_config.yaml"
DEEPSPEED_CONFIG_FILE = "deepspeed_config.json"
SHARDED = ("fsdp", "deepspeed_zero3")  # weights sharded over the devices, not only gradients/optimizer
_ZERO_STAGE = {"deepspeed_zero2": 2, "deepspeed_zero3": 3}


# --- how many processes ---------------------------------------------------------------------------

def processes_per_machine(cfg: TrainConfig, gpu_count: int) -> int:
    """Processes each machine starts: num_processes, else (`auto`) one per listed or visible GPU, else 1."""
    if cfg.num_processes is not None:
        return cfg.num_processes
    if cfg.gpu_ids:
        return len(cfg.gpu_ids.split(","))
    return max(1, gpu_count)


def total_processes(cfg: TrainConfig, gpu_count: int) -> int:
    """Every process of the run on every machine: what the effective batch is multiplied by."""
    return processes_per_machine(cfg, gpu_count) * cfg.num_machines


def uses_launcher(cfg: TrainConfig, gpu_count: int) -> bool:
    """One process with DDP trains as it always did; anything else goes through accelerate launch."""
    return total_processes(cfg, gpu_count) > 1 or cfg.distributed_type != "ddp"


def gpus_needed(cfg: TrainConfig, gpu_count: int) -> int:
    """GPUs of this machine the scheduler must reserve for the run (0 on a machine without GPUs)."""
    return processes_per_machine(cfg, gpu_count) if gpu_count else 0


def machine_problems(cfg: TrainConfig, gpus: list[str]) -> list[tuple[str, str]]:
    """(field, message) for what this machine cannot do of the config: missing GPUs, missing libraries."""
    problems: list[tuple[str, str]] = []
    if cfg.gpu_ids:
        missing = [g for g in cfg.gpu_ids.split(",") if g not in gpus]
        if missing:
            found = ", ".join(gpus) if gpus else "none"
            problems.append(("gpu_ids", f"GPU {', '.join(missing)} does not exist here (GPUs found: {found})"))
    elif gpus and cfg.num_processes is not None and cfg.num_processes > len(gpus):
        problems.append(("num_processes", f"{cfg.num_processes} processes but this machine has {len(gpus)} "
                         f"GPU{'s' if len(gpus) != 1 else ''}: one process per GPU"))
    elif not gpus and cfg.num_processes is not None and cfg.num_processes > max(2, os.cpu_count() or 1):
        # Without GPUs every process is a whole copy of the model on the CPU: more than the cores only thrashes.
        problems.append(("num_processes", f"{cfg.num_processes} CPU processes but this machine has no GPU and "
                         f"{os.cpu_count()} CPU cores: at most {max(2, os.cpu_count() or 1)} here"))
    if cfg.machine_rank:
        # A run queued here gets a run directory of its own, so only machine 0 can start from here: the other
        # machines join it with their line from launch-commands, on the run directory machine 0 made.
        problems.append(("machine_rank", f"a run started here is machine 0 of the run, not machine {cfg.machine_rank}: "
                         "set machine_rank 0 here and start the other machines with their line from "
                         "python -m trainer launch-commands"))
    if cfg.distributed_type.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        problems.append(("distributed_type", f"{cfg.distributed_type} needs the deepspeed package, which is not "
                         "installed here: pip install deepspeed (or use fsdp, which ships with PyTorch)"))
    if cfg.use_liger_kernel:
        # Liger's kernels are Triton GPU kernels, and transformers stops at once when the package is missing.
        if not gpus:
            problems.append(("use_liger_kernel", "Liger's fused kernels run on a GPU and this machine has none: "
                             "turn use_liger_kernel off, or leave it empty (auto)"))
        elif importlib.util.find_spec("liger_kernel") is None:
            problems.append(("use_liger_kernel", "use_liger_kernel needs the liger-kernel package, which is not "
                             "installed here: pip install liger-kernel, or leave it empty (auto: on where installed)"))
    if cfg.distributed_type != "ddp" and not gpus:
        problems.append(("distributed_type", f"{cfg.distributed_type} shards the model over GPUs and this machine "
                         "has none: use ddp (several CPU processes) here"))
    return problems


# --- the generated files ----------------------------------------------------------------------------

def deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    """The DeepSpeed JSON of a ZeRO choice. "auto" values are filled in by transformers' Trainer from the
    run's SFTConfig, so the batch, accumulation, clipping and precision are decided in one place."""
    stage = _ZERO_STAGE[cfg.distributed_type]
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    offload: dict[str, Any] = {}
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        # The Trainer builds the run's own optimizer (`optim`), a "client" optimizer to DeepSpeed, which
        # refuses to step one on the CPU (ZeRORuntimeException at the start) unless told it may.
        offload["zero_force_ds_cpu_optimizer"] = False
    if stage == 3:
        zero.update({"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     "stage3_gather_16bit_weights_on_model_save": True})
        if cfg.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    else:
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 2e8, "reduce_scatter": True})
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        **offload,
    }


def fsdp_config(cfg: TrainConfig) -> dict[str, Any]:
    """accelerate's fsdp_config (FSDP2): every decoder layer its own shard unit, the final model gathered
    whole at the save so the adapter/model in the run directory loads like any other."""
    return {
        "fsdp_version": 2,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_reshard_after_forward": True,
        "fsdp_offload_params": bool(cfg.offload_params or cfg.offload_optimizer),
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_state_dict_type": "FULL_STATE_DICT",
        "fsdp_activation_checkpointing": False,  # the Trainer's gradient_checkpointing does it
    }


def accelerate_config(cfg: TrainConfig, gpu_count: int, *, run_dir: str | Path | None = None) -> dict[str, Any]:
    """accelerate's config file of the run (what `accelerate config` would have asked for)."""
    processes = processes_per_machine(cfg, gpu_count)
    data: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        # MULTI_GPU also on a CPU-only machine: it makes accelerate start one process per rank (torchrun);
        # the trainer's use_cpu then picks the gloo backend. Its --cpu would start a single process.
        "distributed_type": "MULTI_GPU",
        "downcast_bf16": "no",
        # The run's GPUs: under the scheduler CUDA_VISIBLE_DEVICES already holds these same ids; a command
        # printed by launch-commands (run by hand, or under Slurm) has only this to keep to them.
        "gpu_ids": cfg.gpu_ids or "all",
        "machine_rank": cfg.machine_rank,
        "main_training_function": "main",
        "mixed_precision": "no",  # the Trainer sets bf16/fp16 from the run's precision
        "num_machines": cfg.num_machines,
        "num_processes": processes * cfg.num_machines,  # accelerate counts every machine's processes
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    if cfg.num_machines > 1:
        data.update(main_process_ip=cfg.main_process_ip, main_process_port=cfg.main_process_port)
    else:
        data["main_process_port"] = local_port(cfg.main_process_port)
    if cfg.distributed_type == "fsdp":
        data["distributed_type"] = "FSDP"
        data["fsdp_config"] = fsdp_config(cfg)
    elif cfg.distributed_type in _ZERO_STAGE:
        data["distributed_type"] = "DEEPSPEED"
        where = Path(run_dir) / DEEPSPEED_CONFIG_FILE if run_dir is not None else Path(DEEPSPEED_CONFIG_FILE)
        data["deepspeed_config"] = {"deepspeed_config_file": str(where), "zero3_init_flag":
                                    cfg.distributed_type == "deepspeed_zero3"}
        if cfg.num_machines > 1:
            # accelerate's default for several machines is pdsh from one host with a hostfile; tunedeck starts
            # the same command on every machine (launch-commands), which is torchrun's way: "standard".
            data["deepspeed_config"]["deepspeed_multinode_launcher"] = "standard"
    return data


_handed_out: dict[int, float] = {}  # port -> when: a run started a moment ago may not have bound it yet


def local_port(preferred: int) -> int:
    """The port the processes of a one-machine run meet on: `preferred` when it is free here, else one the
    system picks. Two runs of one machine, each on its own GPUs, would otherwise both take the default and
    the second would fail with "address already in use"; the port never leaves the machine."""
    now = time.monotonic()
    for port, when in list(_handed_out.items()):
        if now - when > 60:
            del _handed_out[port]
    for candidate in (preferred, 0, 0, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", candidate))
            except OSError:
                continue
            port = probe.getsockname()[1]
        if port not in _handed_out:
            _handed_out[port] = now
            return port
    return preferred


def write_launch_files(cfg: TrainConfig, run_dir: str | Path, gpu_count: int) -> Path:
    """Write accelerate's config (and the DeepSpeed JSON) into the run directory; returns the config's path."""
    run_dir = Path(run_dir)
    if cfg.distributed_type in _ZERO_STAGE:
        _write(run_dir / DEEPSPEED_CONFIG_FILE, json.dumps(deepspeed_config(cfg), indent=2) + "\n")
    path = run_dir / ACCELERATE_CONFIG_FILE
    _write(path, yaml.safe_dump(accelerate_config(cfg, gpu_count, run_dir=run_dir), sort_keys=False))
    return path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- command lines ----------------------------------------------------------------------------------

def launch_argv(run_dir: str | Path, train_args: list[str], python: str | None = None,
                machine_rank: int | None = None) -> list[str]:
    """``accelerate launch --config_file RUN_DIR/accelerate_config.yaml -m trainer train ...`` with this
    interpreter (``python -m accelerate.commands.launch`` is that command, from the same environment)."""
    argv = [python or sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(Path(run_dir) / ACCELERATE_CONFIG_FILE)]
    if machine_rank is not None:
        argv += ["--machine_rank", str(machine_rank)]
    return argv + ["-m", *train_args]
