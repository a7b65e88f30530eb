"""Every launch setting against every other: each combination of distribution × quantization × method ×
offload, of process counts × GPU lists, and of the multi-machine fields is either refused naming the field
the rule table below expects, or gives a launch that accelerate itself (the installed version's own
`accelerate launch` validation and environment builders) accepts, with the plan and the launcher agreeing on
the number of processes. Nothing is trained here: tests/test_distributed.py has the real 2-process run."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.engine import distributed
from trainer.plan.resolve import Hardware, resolve_plan

ROOT = Path(__file__).resolve().parents[1]
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
GPUS_HERE = 4  # the machine the launch files are generated for, in all but the CPU cases

launch = pytest.importorskip("accelerate.commands.launch")
launch_env = pytest.importorskip("accelerate.utils.launch")


@pytest.fixture(autouse=True)
def _no_port_probe(monkeypatch):
    """accelerate probes main_process_port on this machine: a port another test happens to hold would turn a
    valid multi-machine config into a ConnectionError. The probe is about this box, not about the config."""
    monkeypatch.setattr(launch_env, "is_port_in_use", lambda port: False)


def accelerate_accepts(cfg: TrainConfig, tmp_path: Path, gpus: int = GPUS_HERE):
    """Write the run's launch files and take them through what `accelerate launch --config_file` does before it
    starts anything: its validation, then the torchrun / DeepSpeed environment. Returns (args, command, env)."""
    path = distributed.write_launch_files(cfg, tmp_path, gpus)
    args = launch.launch_command_parser().parse_args(["--config_file", str(path), "-m", "trainer", "train", "c.yaml"])
    args, defaults, _ = launch._validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
        command, env = launch_env.prepare_deepspeed_cmd_env(args)
    else:
        command, env = None, launch_env.prepare_multi_gpu_env(args)
    return args, command, env


def expect_plan_counts(cfg: TrainConfig, gpus: int, processes: int) -> None:
    hw = Hardware(device="cuda", num_devices=gpus, gpu_total_gb=80, bf16_supported=True) if gpus else \
        Hardware(device="cpu", num_devices=1)
    plan = resolve_plan(cfg, 1000, hw=hw)
    effective = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * processes
    assert plan.effective_batch_size == effective
    assert plan.steps_per_epoch == math.ceil(1000 / effective)  # every process's micro-batches make one step


def refused_fields(values: dict) -> set[str] | None:
    """The fields a ConfigError names (each with a message), None when the config is accepted."""
    try:
        TrainConfig.from_dict(values)
    except ConfigError as exc:
        fields = exc.by_field()
        assert fields and all(message.strip() for message in fields.values()), fields
        return set(fields)
    return None


# --- distribution × quantization × method × offload ------------------------------------------------------

KINDS = distributed.SHARDED + ("ddp", "deepspeed_zero2")
COMBINATIONS = list(itertools.product(KINDS, (None, 8, 4), ("lora", "full"), (False, True), (False, True)))


def expected_refusal(kind, bits, method, offload_optimizer, offload_params) -> set[str]:
    """The rule table, written out independently of trainer/config_rules.py."""
    fields = set()
    if method == "full" and bits is not None:
        fields.add("quantization_bit")
    if offload_params and kind not in ("fsdp", "deepspeed_zero3"):
        fields.add("offload_params")
    if offload_optimizer and kind == "ddp":
        fields.add("offload_optimizer")
    if bits == 8 and kind in ("fsdp", "deepspeed_zero3"):
        fields.add("distributed_type")
    return fields


@pytest.mark.parametrize("kind,bits,method,offload_optimizer,offload_params", COMBINATIONS)
def test_each_combination_is_refused_by_name_or_launches(tmp_path, kind, bits, method, offload_optimizer,
                                                         offload_params):
    values = dict(distributed_type=kind, quantization_bit=bits, finetuning_type=method, num_processes=2,
                  offload_optimizer=offload_optimizer, offload_params=offload_params)
    expected = expected_refusal(kind, bits, method, offload_optimizer, offload_params)
    assert (refused_fields(values) or set()) == expected
    if expected:
        return
    cfg = TrainConfig.from_dict(values)
    args, _, env = accelerate_accepts(cfg, tmp_path)
    assert int(args.num_processes) == 2 and args.nproc_per_node == "2"
    assert (args.use_fsdp, args.use_deepspeed, args.multi_gpu) == (kind == "fsdp", kind.startswith("deepspeed"),
                                                                   kind == "ddp")
    if kind == "fsdp":
        # accelerate builds its FSDP plugin from this environment in each process: build it here too.
        from accelerate.utils import FullyShardedDataParallelPlugin, patch_environment

        with patch_environment(**{k: v for k, v in env.items() if k.startswith(("FSDP_", "ACCELERATE_"))}):
            plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2
        assert (type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy") is (offload_optimizer or offload_params)
    if kind.startswith("deepspeed"):
        assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == str(tmp_path / distributed.DEEPSPEED_CONFIG_FILE)
        ds = distributed.deepspeed_config(cfg)
        zero = ds["zero_optimization"]
        assert ("offload_optimizer" in zero, "offload_param" in zero) == (offload_optimizer, offload_params)
        # The Trainer's own optimizer may step on the CPU, else DeepSpeed stops at the start (ZeRORuntimeException).
        assert ds.get("zero_force_ds_cpu_optimizer", True) is not offload_optimizer
    expect_plan_counts(cfg, GPUS_HERE, 2)


@pytest.mark.parametrize("optim", ["adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_8bit",
                                   "paged_adamw_8bit", "paged_adamw_32bit"])
@pytest.mark.parametrize("kind,offload", [("deepspeed_zero2", "offload_optimizer"), ("fsdp", "offload_params"),
                                          ("deepspeed_zero3", "offload_optimizer"), ("fsdp", "offload_optimizer"),
                                          ("deepspeed_zero3", "offload_params")])
def test_an_offloaded_optimizer_steps_on_the_cpu(optim, kind, offload):
    """bitsandbytes' optimizers have GPU kernels only: where the optimizer state lives in CPU RAM they cannot
    step, which is refused naming `optim` (ZeRO-3's offload_params alone keeps the optimizer on the GPU)."""
    refused = refused_fields(dict(distributed_type=kind, num_processes=2, optim=optim, **{offload: True}))
    steps_on_cpu = not (kind == "deepspeed_zero3" and offload == "offload_params")
    bitsandbytes = optim in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
    assert refused == ({"optim"} if steps_on_cpu and bitsandbytes else None)


# --- process counts × GPU lists, on a machine with 4 GPUs and on one without ------------------------------

GPU_LISTS = {"empty": None, "one": "1", "two": "2,3", "five": "0,1,2,3,4", "twice": "1,1", "word": "0,gpu1",
             "negative": "-1", "fraction": "1.5", "list": [2, 3], "superscript": "²"}
BAD_LIST = {"twice", "word", "negative", "fraction", "superscript"}


@pytest.mark.parametrize("processes", [1, 2, "auto"])
@pytest.mark.parametrize("shape", list(GPU_LISTS))
@pytest.mark.parametrize("gpus", [GPUS_HERE, 0])
def test_process_counts_and_gpu_lists(tmp_path, processes, shape, gpus):
    values = dict(num_processes=processes, gpu_ids=GPU_LISTS[shape])
    listed = len(str(GPU_LISTS[shape]).split(",")) if shape != "list" else 2
    mismatch = GPU_LISTS[shape] is not None and processes != "auto" and listed != processes
    refused = refused_fields(values)
    if shape in BAD_LIST or mismatch:
        assert refused == {"gpu_ids"}
        return
    assert refused is None
    cfg = TrainConfig.from_dict(values)
    here = [str(i) for i in range(gpus)]
    problems = dict(distributed.machine_problems(cfg, here))
    per_machine = listed if processes == "auto" and GPU_LISTS[shape] is not None else \
        (max(gpus, 1) if processes == "auto" else processes)
    assert distributed.processes_per_machine(cfg, gpus) == per_machine
    if cfg.gpu_ids and any(g not in here for g in cfg.gpu_ids.split(",")):
        assert set(problems) == {"gpu_ids"} and "does not exist here" in problems["gpu_ids"]
        return  # the page and the job manager refuse to start it, naming the field
    assert problems == {}
    expect_plan_counts(cfg, gpus, per_machine)
    if not distributed.uses_launcher(cfg, gpus):
        assert per_machine == 1
        return
    args, _, env = accelerate_accepts(cfg, tmp_path, gpus)
    assert args.nproc_per_node == str(per_machine)
    # The GPUs named are the ones the processes see, also where no scheduler narrowed them (launch-commands).
    assert env.get("CUDA_VISIBLE_DEVICES") == cfg.gpu_ids


def test_cpu_processes_are_capped_by_the_cores():
    cores = os.cpu_count() or 1
    cap = max(2, cores)
    assert distributed.machine_problems(TrainConfig(num_processes=cap), []) == []
    problems = dict(distributed.machine_problems(TrainConfig(num_processes=cap + 1), []))
    assert problems["num_processes"].endswith(f"no GPU and {cores} CPU cores: at most {cap} here")
    assert distributed.machine_problems(TrainConfig(num_processes=cap + 1), [str(i) for i in range(cap + 1)]) == []


# --- several machines --------------------------------------------------------------------------------------

MACHINES = [
    (dict(num_machines=2, main_process_ip="10.0.0.1"), None),
    (dict(num_machines=2, main_process_ip="node-01.cluster", machine_rank=1), None),
    (dict(num_machines=2, main_process_ip="fe80::1", main_process_port=29555), None),
    (dict(num_machines=2), "main_process_ip"),
    (dict(num_machines=2, main_process_ip="  "), "main_process_ip"),
    (dict(num_machines=2, main_process_ip="10.0.0.1:29500"), "main_process_ip"),
    (dict(num_machines=2, main_process_ip="http://10.0.0.1"), "main_process_ip"),
    (dict(num_machines=2, main_process_ip="node 01"), "main_process_ip"),
    (dict(num_machines=2, main_process_ip="fe80::1%eth0"), "main_process_ip"),
    (dict(num_machines=2, main_process_ip="10.0.0.1", machine_rank=2), "machine_rank"),
    (dict(machine_rank=1), "machine_rank"),
    (dict(num_machines=0), "num_machines"),
    (dict(num_machines=2, main_process_ip="10.0.0.1", main_process_port=70000), "main_process_port"),
    (dict(num_machines=2, main_process_ip="10.0.0.1", main_process_port="http"), "main_process_port"),
    (dict(num_machines=2, main_process_ip="10.0.0.1", main_process_port=0), "main_process_port"),
]


@pytest.mark.parametrize("kind", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
@pytest.mark.parametrize("fields,refused", MACHINES)
def test_multi_machine_fields(tmp_path, kind, fields, refused):
    values = dict(distributed_type=kind, num_processes=2, gpu_ids="1,2", **fields)
    if refused:
        assert refused_fields(values) == {refused}
        return
    cfg = TrainConfig.from_dict(values)
    args, command, env = accelerate_accepts(cfg, tmp_path)
    # Every machine runs the same torchrun-style launch with its rank (no pdsh, no hostfile).
    assert command is None
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "2", cfg.machine_rank)
    # torchrun reads the address of machine 0 back as given (static rendezvous, its own endpoint parser).
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    assert args.rdzv_backend == "static"
    endpoint = getattr(args, "rdzv_endpoint", None) or f"{args.master_addr}:{args.master_port}"
    assert parse_rendezvous_endpoint(endpoint, 1) == (cfg.main_process_ip, cfg.main_process_port)
    assert env["CUDA_VISIBLE_DEVICES"] == "1,2"
    expect_plan_counts(cfg, GPUS_HERE, 4)
    # Queued here, a run is machine 0 (its own new run directory); the others join with launch-commands.
    problems = dict(distributed.machine_problems(cfg, [str(i) for i in range(GPUS_HERE)]))
    assert set(problems) == ({"machine_rank"} if cfg.machine_rank else set()) | \
        ({"distributed_type"} if kind.startswith("deepspeed") and not HAS_DEEPSPEED else set())


# --- num_processes auto on a machine without GPUs --------------------------------------------------------------

def test_check_plans_one_process_for_auto_without_gpus(tmp_path):
    config = tmp_path / "auto.yaml"
    config.write_text("model_name_or_path: demo\ndataset: demo\nmax_samples: 16\nnum_processes: auto\n")
    out = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "× 1 (device) = 16 rows per optimizer step" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr



# --- launch-commands: what is not a config --------------------------------------------------------------------

def _launch_commands(*argv: str) -> int:
    import argparse

    from trainer.cli import launch_commands

    parser = argparse.ArgumentParser(prog="launch-commands")
    launch_commands.add_arguments(parser)
    return launch_commands.run(parser.parse_args(list(argv)))


def test_launch_commands_names_the_option_or_directory_it_cannot_use(tmp_path, capsys):
    config = tmp_path / "multi.yaml"
    config.write_text("num_machines: 2\nmain_process_ip: 10.0.0.1\ndistributed_type: deepspeed_zero3\n"
                      "num_processes: auto\n")
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    assert _launch_commands(str(config), "--run-dir", str(in_the_way / "run")) == 1
    assert f"--run-dir: cannot write the run directory {in_the_way / 'run'}" in capsys.readouterr().err
    for gpus, message in (("-3", "expects 0 or more GPUs per machine, not -3"), ("two", "expects a whole number")):
        with pytest.raises(SystemExit) as exited:
            _launch_commands(str(config), "--gpus", gpus)
        assert exited.value.code == 2 and message in capsys.readouterr().err
    # The same config, written where it can be: ZeRO-3 over two machines of 2 GPUs (auto), each with its rank.
    assert _launch_commands(str(config), "--run-dir", str(tmp_path / "run"), "--gpus", "2") == 0
    assert capsys.readouterr().out.count("--machine_rank") == 2
    args, command, _ = accelerate_accepts(TrainConfig.from_yaml(tmp_path / "run" / "config.yaml"), tmp_path / "run", 2)
    assert command is None and args.use_deepspeed and args.nnodes == "2" and args.nproc_per_node == "2"
