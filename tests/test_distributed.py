"""Several devices and machines: the schema's launch fields, the generated accelerate / DeepSpeed / FSDP
configs, the commands per machine, GPU sets in the scheduler, per-device memory; and, for real, the demo
trained by two CPU processes (gloo) through the job manager, and an abort that stops both."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.config import ConfigError, TrainConfig
from trainer.engine import distributed
from trainer.jobs.processes import run_processes
from trainer.jobs.scheduler import pick_gpus
from trainer.plan.memory import MemorySettings, estimate_memory
from trainer.plan.catalog import model_shape
from trainer.plan.resolve import Hardware, resolve_plan
from trainer.run.events import read_events
from trainer.run.layout import latest_checkpoint, machine_commands, train_argv, write_run_config
from trainer.run.series import RunSeries

ROOT = Path(__file__).resolve().parents[1]
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def errors_of(**values) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict(values)
    return caught.value.by_field()


# --- the schema's rules -----------------------------------------------------------------------------

def test_launch_fields_accept_the_usual_spellings():
    cfg = TrainConfig.from_dict({"num_processes": "auto", "gpu_ids": "2, 3"})
    assert cfg.num_processes is None and cfg.gpu_ids == "2,3"
    assert TrainConfig.from_dict({"gpu_ids": [0, 1], "num_processes": 2}).gpu_ids == "0,1"
    assert TrainConfig.from_dict({"gpu_ids": 1}).gpu_ids == "1"


def test_contradictions_are_errors_naming_the_field():
    assert "one GPU per process" in errors_of(num_processes=3, gpu_ids="0,1")["gpu_ids"]
    assert "twice" in errors_of(gpu_ids="0,0")["gpu_ids"]
    assert "not a GPU number" in errors_of(gpu_ids="0,cuda1")["gpu_ids"]
    assert "sharded" in errors_of(offload_params=True, distributed_type="deepspeed_zero2")["offload_params"]
    assert "DDP" in errors_of(offload_optimizer=True)["offload_optimizer"]
    assert "8-bit" in errors_of(quantization_bit=8, distributed_type="deepspeed_zero3")["distributed_type"]
    assert "8-bit" in errors_of(quantization_bit=8, distributed_type="fsdp")["distributed_type"]
    assert "address of machine 0" in errors_of(num_machines=2)["main_process_ip"]
    assert "numbered 0 to 1" in errors_of(num_machines=2, main_process_ip="10.0.0.1", machine_rank=2)["machine_rank"]
    # What the libraries support passes: QLoRA under ZeRO-3 / FSDP (4-bit weights stored in a float dtype).
    TrainConfig(quantization_bit=4, distributed_type="deepspeed_zero3", offload_params=True, offload_optimizer=True)
    TrainConfig(quantization_bit=4, distributed_type="fsdp", num_processes=None, gpu_ids="0,1,2")


def test_the_machine_is_checked_for_gpus_and_libraries():
    problems = dict(distributed.machine_problems(TrainConfig(gpu_ids="1,5", num_processes=2), ["0", "1"]))
    assert "GPU 5 does not exist here (GPUs found: 0, 1)" in problems["gpu_ids"]
    assert "has 2 GPUs" in dict(distributed.machine_problems(TrainConfig(num_processes=4), ["0", "1"]))["num_processes"]
    on_cpu = dict(distributed.machine_problems(TrainConfig(distributed_type="fsdp", num_processes=2), []))
    assert "has none: use ddp" in on_cpu["distributed_type"]
    assert distributed.machine_problems(TrainConfig(num_processes=2), []) == []  # CPU processes (gloo)
    zero = distributed.machine_problems(TrainConfig(distributed_type="deepspeed_zero2", num_processes=2), ["0", "1"])
    if not HAS_DEEPSPEED:
        assert zero == [("distributed_type", "deepspeed_zero2 needs the deepspeed package, which is not installed "
                         "here: pip install deepspeed (or use fsdp, which ships with PyTorch)")]


def test_liger_kernels_are_refused_where_they_cannot_run(monkeypatch):
    # Turned on by hand: refused without a GPU, and without the package on a GPU machine. Auto (empty) and
    # off are never refused: auto turns the kernels on only where they work.
    on_cpu = dict(distributed.machine_problems(TrainConfig(use_liger_kernel=True), []))
    assert "run on a GPU and this machine has none" in on_cpu["use_liger_kernel"]
    real_find_spec = distributed.importlib.util.find_spec
    monkeypatch.setattr(distributed.importlib.util, "find_spec",
                        lambda name, *a: None if name == "liger_kernel" else real_find_spec(name, *a))
    on_gpu = dict(distributed.machine_problems(TrainConfig(use_liger_kernel=True), ["0"]))
    assert "needs the liger-kernel package" in on_gpu["use_liger_kernel"]
    for value in (None, False):
        assert distributed.machine_problems(TrainConfig(use_liger_kernel=value), []) == []
        assert distributed.machine_problems(TrainConfig(use_liger_kernel=value), ["0"]) == []


@pytest.mark.skipif(HAS_DEEPSPEED, reason="checks the message shown where deepspeed is missing")
def test_check_says_clearly_that_deepspeed_is_missing(tmp_path):
    config = tmp_path / "zero.yaml"
    config.write_text("model_name_or_path: demo\ndataset: demo\nmax_samples: 16\ndistributed_type: deepspeed_zero3\n"
                      "num_processes: 2\n")
    out = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert "distributed_type: deepspeed_zero3 needs the deepspeed package" in out.stdout + out.stderr


# --- generated configs ------------------------------------------------------------------------------

def _accelerate_config(tmp_path: Path, **values):
    """Write the run's launch files and read them back through accelerate's own config loader."""
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = TrainConfig.from_dict(values)
    path = distributed.write_launch_files(cfg, tmp_path, gpu_count=4)
    return cfg, yaml.safe_load(path.read_text()), load_config_from_file(str(path))


def test_ddp_config_starts_one_process_per_device(tmp_path):
    _, data, loaded = _accelerate_config(tmp_path, num_processes=4)
    assert (data["distributed_type"], data["num_processes"], data["num_machines"]) == ("MULTI_GPU", 4, 1)
    assert loaded.distributed_type.value == "MULTI_GPU" and loaded.num_processes == 4
    assert not (tmp_path / distributed.DEEPSPEED_CONFIG_FILE).exists()
    # auto: every GPU the run was given
    _, data, _ = _accelerate_config(tmp_path, num_processes="auto")
    assert data["num_processes"] == 4


def test_fsdp_config_shards_and_offloads(tmp_path):
    _, data, loaded = _accelerate_config(tmp_path, num_processes=2, distributed_type="fsdp")
    assert data["distributed_type"] == "FSDP" and loaded.distributed_type.value == "FSDP"
    fsdp = data["fsdp_config"]
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_offload_params"] is False and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    _, data, _ = _accelerate_config(tmp_path, num_processes=2, distributed_type="fsdp", offload_params=True,
                                    offload_optimizer=True)
    assert data["fsdp_config"]["fsdp_offload_params"] is True
    from accelerate.commands.launch import launch_command_parser  # accelerate launch reads every key we write

    assert set(fsdp) <= set(vars(launch_command_parser().parse_args(["train.py"])))


@pytest.mark.parametrize("kind,stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_config_per_zero_stage(tmp_path, kind, stage):
    _, data, loaded = _accelerate_config(tmp_path, num_processes=2, distributed_type=kind, offload_optimizer=True,
                                         offload_params=stage == 3)
    assert data["distributed_type"] == "DEEPSPEED" and loaded.distributed_type.value == "DEEPSPEED"
    ds_path = Path(data["deepspeed_config"]["deepspeed_config_file"])
    assert ds_path == tmp_path / distributed.DEEPSPEED_CONFIG_FILE
    assert data["deepspeed_config"]["zero3_init_flag"] is (stage == 3)
    ds = json.loads(ds_path.read_text())
    zero = ds["zero_optimization"]
    assert zero["stage"] == stage and zero["offload_optimizer"]["device"] == "cpu"
    assert ("offload_param" in zero) is (stage == 3)
    if stage == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # the final save is a loadable model
    # The batch, accumulation, clipping and precision come from the run's SFTConfig, filled in by the Trainer.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ds[key] == "auto"
    assert ds["bf16"] == {"enabled": "auto"} and ds["fp16"] == {"enabled": "auto"}
    if HAS_DEEPSPEED:
        from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

        assert DeepSpeedZeroConfig(**{k: v for k, v in zero.items() if v != "auto"}).stage == stage


def test_one_process_keeps_the_direct_command_and_more_go_through_accelerate(tmp_path):
    direct = train_argv(tmp_path, "/py", TrainConfig(), gpu_count=4)
    assert direct == ["/py", "-m", "trainer", "train", str(tmp_path / "config.yaml"), "--run-dir", str(tmp_path)]
    for cfg, gpus in ((TrainConfig(num_processes=2), 0), (TrainConfig(num_processes=None), 2),
                      (TrainConfig(distributed_type="deepspeed_zero3"), 1)):
        argv = train_argv(tmp_path, "/py", cfg, gpu_count=gpus)
        assert argv[:5] == ["/py", "-m", "accelerate.commands.launch", "--config_file",
                            str(tmp_path / distributed.ACCELERATE_CONFIG_FILE)]
        assert argv[5:] == ["-m", *direct[2:]]
    assert train_argv(tmp_path, "/py", TrainConfig(num_processes=None), gpu_count=1) == direct


def test_two_runs_of_one_machine_meet_on_different_ports(tmp_path):
    import socket

    def port_of(run_dir):
        return yaml.safe_load((run_dir / distributed.ACCELERATE_CONFIG_FILE).read_text())["main_process_port"]

    with socket.socket() as held:  # something of this machine already listens on the configured port
        held.bind(("", 0))
        held.listen()
        busy = held.getsockname()[1]
        first, second = tmp_path / "a", tmp_path / "b"
        for run_dir in (first, second):  # started in the same scheduler tick: neither has bound its port yet
            run_dir.mkdir()
            distributed.write_launch_files(TrainConfig(num_processes=2, main_process_port=busy), run_dir, 4)
        ports = {port_of(first), port_of(second)}
    assert busy not in ports and len(ports) == 2
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("", port))  # free to take: the launcher will bind it
    # Several machines meet on the address and port the user gave, whatever this machine holds.
    cfg = TrainConfig(num_machines=2, num_processes=2, main_process_ip="10.1.2.3", main_process_port=busy)
    assert distributed.accelerate_config(cfg, gpu_count=2)["main_process_port"] == busy


def test_multi_machine_commands_and_config(tmp_path):
    cfg = TrainConfig(num_machines=3, num_processes=8, main_process_ip="10.1.2.3", main_process_port=29555,
                      distributed_type="deepspeed_zero3")
    commands = machine_commands(cfg, tmp_path, "python3")
    assert [machine for machine, _ in commands] == [0, 1, 2]
    for machine, line in commands:
        assert f"--machine_rank {machine}" in line
        assert line.startswith(f"python3 -m accelerate.commands.launch --config_file {tmp_path}/accelerate_config.yaml")
        assert line.endswith(f"-m trainer train {tmp_path}/config.yaml --run-dir {tmp_path}")
    data = distributed.accelerate_config(cfg, gpu_count=8, run_dir=tmp_path)
    assert (data["num_machines"], data["num_processes"], data["main_process_ip"], data["main_process_port"]) == \
        (3, 24, "10.1.2.3", 29555)
    plan = resolve_plan(cfg, 10_000, hw=Hardware(device="cuda", num_devices=8, gpu_total_gb=80, bf16_supported=True))
    assert plan.effective_batch_size == cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 24


def test_launch_commands_cli_writes_the_run_directory_and_prints_each_machine(tmp_path):
    config = tmp_path / "multi.yaml"
    config.write_text("model_name_or_path: demo\nnum_machines: 2\nnum_processes: 4\nmain_process_ip: 10.0.0.1\n")
    run_dir = tmp_path / "shared" / "run"
    out = subprocess.run([sys.executable, "-m", "trainer", "launch-commands", str(config), "--run-dir", str(run_dir)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 2 and "--machine_rank 0" in lines[0] and "--machine_rank 1" in lines[1]
    assert "2 machine(s) × 4 process(es) = 8 processes" in out.stdout
    assert TrainConfig.from_yaml(run_dir / "config.yaml").num_machines == 2
    assert yaml.safe_load((run_dir / "accelerate_config.yaml").read_text())["num_processes"] == 8
    slurm = subprocess.run([sys.executable, "-m", "trainer", "launch-commands", str(config), "--run-dir", str(run_dir),
                            "--slurm"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "srun --nodes=2 --ntasks-per-node=1" in slurm.stdout and "--machine_rank $SLURM_NODEID" in slurm.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_machines: 2\n")
    refused = subprocess.run([sys.executable, "-m", "trainer", "launch-commands", str(bad)], capture_output=True,
                             text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "main_process_ip" in refused.stderr


# --- the scheduler's GPU sets -------------------------------------------------------------------------

def test_gpu_sets_are_reserved_for_a_run():
    gpus = ["0", "1", "2", "3"]
    # Single-GPU runs side by side, each on a GPU of its own; sharing one only where max_concurrent allows.
    assert pick_gpus(gpus, [], 1) == "0"
    assert pick_gpus(gpus, ["0"], 1) == "1"
    assert pick_gpus(gpus, ["0", "1,2"], 1) == "3"
    assert pick_gpus(gpus, ["0,1,2", "3"], 1) is False
    assert pick_gpus(gpus, ["0,1", "2", "3", "2"], 1, share=True) == "0"
    # A two-GPU run takes two free ones, waits while too few are free.
    assert pick_gpus(gpus, ["0"], 2) == "1,2"
    assert pick_gpus(gpus, ["0,1", "2"], 2) is False
    # Named GPUs: exactly those, once they are free.
    assert pick_gpus(gpus, ["1"], 2, "2,3") == "2,3"
    assert pick_gpus(gpus, ["3"], 2, "2,3") is False
    assert pick_gpus(gpus, ["0"], 1, "0") is False
    assert pick_gpus([], [], 0) is None  # no GPU: CPU processes


# --- per-device memory --------------------------------------------------------------------------------

def test_sharding_divides_what_is_sharded_per_device():
    shape = model_shape("meta-llama/Llama-3.1-8B")
    full = dict(finetuning_type="full", precision="bf16", micro_batch=1, seq_len=1024, devices=4)
    ddp = estimate_memory(shape, MemorySettings(**full)).breakdown
    zero2 = estimate_memory(shape, MemorySettings(sharding="deepspeed_zero2", **full)).breakdown
    zero3 = estimate_memory(shape, MemorySettings(sharding="deepspeed_zero3", **full)).breakdown
    assert zero2["optimizer_state"] == pytest.approx(ddp["optimizer_state"] / 4)
    assert zero2["gradients"] == pytest.approx(ddp["gradients"] / 4) and zero2["weights"] == ddp["weights"]
    assert zero3["weights"] == pytest.approx(ddp["weights"] / 4)
    offloaded = estimate_memory(shape, MemorySettings(sharding="deepspeed_zero3", offload_optimizer=True,
                                                      offload_params=True, **full)).breakdown
    assert offloaded["optimizer_state"] == 0 and offloaded["weights"] == 0
    cfg = TrainConfig(model_name_or_path="meta-llama/Llama-3.1-8B", finetuning_type="full", learning_rate=2e-5,
                      num_processes=4, distributed_type="fsdp")
    hw = Hardware(device="cuda", num_devices=4, gpu_total_gb=80, bf16_supported=True)
    sharded = resolve_plan(cfg, 1000, hw=hw)
    whole = resolve_plan(cfg.replace(distributed_type="ddp"), 1000, hw=hw)
    assert sharded.memory_estimate_gb < whole.memory_estimate_gb / 2
    assert any("The memory estimate is per device" in line for line in sharded.summary)


def test_the_memory_chart_shows_every_device():
    from webui.charts import memory_figure

    events = [{"t": 100.0, "type": "status", "status": "running"}]
    for step in (1, 2):
        devices = [{"device": f"cuda:{r}", "rank": r, "allocated_gb": 10.0 + r + step, "reserved_gb": 12.0 + r,
                    "peak_gb": 11.0 + r + step} for r in range(2)]
        events.append({"t": 100.0 + step, "type": "log", "step": step, "loss": 1.0,
                       "memory": {**devices[0], "devices": devices}})
    series = RunSeries()
    series.extend(events)
    assert series.memory_devices == ["rank 0 (cuda:0)", "rank 1 (cuda:1)"]
    figure = memory_figure(series)
    names = [trace.name for trace in figure.data]
    assert len(names) == 6 and "rank 1 (cuda:1) peak allocated" in names
    assert list(figure.data[names.index("rank 1 (cuda:1) allocated (PyTorch)")].y) == [12.0, 13.0]


# --- for real: two CPU processes ----------------------------------------------------------------------

def _two_process_config(**changes) -> TrainConfig:
    data = dict(model_name_or_path="demo", dataset="demo", cutoff_len=64, max_samples=32, val_size=0,
                per_device_train_batch_size=2, gradient_accumulation_steps=2, num_train_epochs=1,
                learning_rate=3e-3, lr_scheduler_type="constant", warmup_ratio=0, save_steps=2, logging_steps=1,
                gradient_checkpointing=False, lora_rank=4, lora_alpha=8, num_processes=2)
    data.update(changes)
    return TrainConfig.from_dict(data)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_two_cpu_processes_train_one_run_and_abort_stops_both(tmp_path):
    from test_jobs import _kill_leftovers, status_is, wait_for

    from trainer.jobs.manager import JobManager

    jm = JobManager(tmp_path / "runs", max_concurrent=1, poll_interval_s=0.3, abort_grace_s=120)
    try:
        run_id = jm.submit(_two_process_config())
        info = wait_for(status_is(jm, run_id, "finished", "failed", "aborted", "interrupted"), "the 2-process run",
                        manager=jm)
        run_dir = info.run_dir
        log = (run_dir / "stdout.log").read_text()
        assert info.status == "finished", log[-3000:]
        # Both ranks trained: each logged the steps.
        for rank in (0, 1):
            assert f"tunedeck: rank {rank}/2 step 1 loss" in log, log[-3000:]
        # The rows were tokenized once, by rank 0; rank 1 took them from the cache.
        assert "tunedeck[rank 1]: waiting for the first rank of this machine to tokenize" in log, log[-3000:]
        assert len(list((run_dir.parent / ".cache" / "tokenized").iterdir())) == 1
        # Only rank 0 wrote the run: one plan, one running and one finished status, the adapter.
        events = read_events(run_dir)
        assert [e["status"] for e in events if e["type"] == "status"] == ["queued", "running", "finished"]
        assert sum(e["type"] == "plan" for e in events) == 1
        assert not any("rank" in e for e in events)
        assert (run_dir / "adapter" / "adapter_config.json").is_file()
        assert (run_dir / "accelerate_config.yaml").is_file()
        # The plan counts both processes: the effective batch doubles and the steps halve against one process.
        plan = next(e["plan"] for e in events if e["type"] == "plan")
        single = resolve_plan(_two_process_config(num_processes=1), plan["num_train_samples"])
        assert plan["num_devices"] == 2 and plan["effective_batch_size"] == 2 * single.effective_batch_size
        assert plan["total_steps"] * 2 == single.total_steps
        steps = [e["step"] for e in events if e["type"] == "log"]
        assert steps[-1] == plan["total_steps"]
        # Memory readings from both ranks reach the events.
        memory = next(e["memory"] for e in events if e["type"] == "log")
        assert [d["rank"] for d in memory["devices"]] == [0, 1]

        # Abort: both ranks stop at the same step, save a checkpoint, and no process of the run survives.
        long_run = jm.submit(_two_process_config(max_steps=400, save_steps=1000))
        running = wait_for(lambda: (lambda i: i if i.status == "running" and i.step and i.step >= 2 else None)(
            jm.get(long_run)), "the long run to log steps", manager=jm)
        pids = run_processes(running.pid)
        assert len(pids) >= 3, pids  # the launcher and two ranks (each in its own session)
        jm.abort(long_run)
        aborted = wait_for(status_is(jm, long_run, "aborted", "failed", "interrupted"), "the abort", manager=jm)
        assert aborted.status == "aborted", aborted.reason
        wait_for(lambda: not [pid for pid in pids if _alive(pid)], "every process of the run to end", timeout=60)
        # The ranks stopped by themselves: the launcher was not told to stop them (it would kill them after
        # 30 s, in the middle of a large checkpoint).
        launcher_log = (aborted.run_dir / "stdout.log").read_text()
        assert "death signal" not in launcher_log and "forcefully exiting" not in launcher_log, launcher_log[-3000:]
        assert "ChildFailedError" not in launcher_log, launcher_log[-3000:]  # a clean abort is no crash report
        checkpoint = latest_checkpoint(aborted.run_dir)
        assert checkpoint is not None

        # Resume from the shared checkpoint: both ranks load it and the steps go on from there.
        stopped_at = int(checkpoint.name.split("-")[1])
        write_run_config(jm.read_config(long_run).replace(max_steps=stopped_at + 2), aborted.run_dir)
        before = len(read_events(aborted.run_dir))
        jm.resume(long_run)
        resumed = wait_for(status_is(jm, long_run, "finished", "failed", "aborted", "interrupted"), "the resumed run",
                           manager=jm)
        assert resumed.status == "finished", resumed.reason
        steps = [e["step"] for e in read_events(resumed.run_dir)[before:] if e.get("type") == "log"]
        assert steps == [stopped_at + 1, stopped_at + 2]
    finally:
        jm.close()
        _kill_leftovers(jm)


@pytest.mark.slow
def test_a_crash_of_one_rank_fails_the_run_with_that_ranks_reason(tmp_path, monkeypatch):
    from test_jobs import _kill_leftovers, status_is, wait_for

    from trainer.jobs.manager import JobManager

    monkeypatch.setenv("TUNEDECK_FAULT", "oom@2")  # the real forward pass of rank 1 alone runs out of memory
    monkeypatch.setenv("TUNEDECK_FAULT_RANK", "1")
    jm = JobManager(tmp_path / "runs", max_concurrent=1, poll_interval_s=0.3, abort_grace_s=120)
    try:
        run_id = jm.submit(_two_process_config(max_steps=20, save_steps=1000))
        info = wait_for(status_is(jm, run_id, "finished", "failed", "aborted", "interrupted"), "the crash", manager=jm)
        assert info.status == "failed", info.reason
        assert info.reason.startswith("rank 1: Out of memory"), info.reason
        assert info.failure_kind == "oom"
        wait_for(lambda: not [pid for pid in run_processes(info.pid) if _alive(pid)] if info.pid else True,
                 "every process of the run to end", timeout=60)
    finally:
        jm.close()
        _kill_leftovers(jm)


def test_the_page_previews_the_launch_plans_the_devices_and_refuses_a_missing_gpu(tmp_path):
    from test_webui_handlers import form, plan_values

    from trainer.jobs.manager import JobManager
    from webui.components import WARNING
    from webui.context import Context
    from webui.tabs import train

    jobs = JobManager(tmp_path / "runs", autostart=False)
    try:
        ctx = Context(runs_root=tmp_path / "runs", jobs=jobs)
        two = train.preview(ctx, form(num_processes=2))["train.preview_cmd"]
        assert "-m accelerate.commands.launch --config_file" in two and "accelerate_config.yaml" in two
        machines = train.preview(ctx, form(num_machines=2, main_process_ip="10.0.0.1"))["train.preview_cmd"]
        assert "# machine 1" in machines and "--machine_rank 1" in machines
        plan = train.refresh_plan(ctx, plan_values(form(num_processes=2)))["train.plan"]
        assert "× 2 (devices)" in plan
        if not jobs.gpus:  # this machine has no GPU 7 (nor any): Start names the field, nothing is queued
            reply = train.start(ctx, {**form(gpu_ids="7", num_processes=1), "train.shown": None})
            assert "Not started" in reply[WARNING] and jobs.list_runs() == []
            assert "GPU 7 does not exist here" in reply["gpu_ids"]["info"]
    finally:
        jobs.close()
