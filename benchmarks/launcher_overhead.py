"""The cost of `accelerate launch`: the same one-process training started directly (`python -m trainer
train`, what a one-process run uses) and through accelerate launch (what a multi-process run uses),
compared by training throughput (tokens/s from the run's own `log` events, the first steps skipped as
warm-up), alternating the two so load on the machine hits both alike. Goal: under 3% slower.

On a CUDA machine it trains on GPU 0; on a CPU-only machine, on the CPU (one gloo process).

    python benchmarks/launcher_overhead.py [--config presets/demo.yaml] [--repeats 3] [--max-steps 40]
                                           [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def throughput(run_dir: Path, skip: int) -> float | None:
    """Median tokens/s of the logged steps after the first `skip`."""
    from trainer.run.events import read_events

    rates = [e["tokens_per_second"] for e in read_events(run_dir)
             if e.get("type") == "log" and e.get("tokens_per_second") and e.get("step", 0) > skip]
    return statistics.median(rates) if rates else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "presets" / "demo.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    from trainer.config import TrainConfig
    from trainer.engine.distributed import launch_argv, write_launch_files
    from trainer.plan.hardware import gpu_count
    from trainer.run.layout import train_argv, write_run_config

    cfg = TrainConfig.from_yaml(args.config).replace(max_steps=args.max_steps, save_strategy="no",
                                                    logging_steps=1, eval_strategy="no", num_processes=1)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    gpus = gpu_count()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    results: dict[str, list[float]] = {"direct": [], "accelerate": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for how in ("direct", "accelerate"):
                run_dir = Path(tmp) / f"{how}-{repeat}"
                run_dir.mkdir()
                write_run_config(cfg, run_dir)
                argv = train_argv(run_dir, sys.executable, cfg, min(gpus, 1))  # one process: the direct command
                if how == "accelerate":
                    write_launch_files(cfg, run_dir, min(gpus, 1))
                    argv = launch_argv(run_dir, argv[2:], sys.executable)
                proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
                rate = throughput(run_dir, skip=5)
                if proc.returncode != 0 or rate is None:
                    print(f"{how} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}", file=sys.stderr)
                    return 1
                results[how].append(rate)
                print(f"{how:10s} repeat {repeat}: {rate:,.1f} tokens/s", flush=True)
    direct, launched = statistics.median(results["direct"]), statistics.median(results["accelerate"])
    overhead = 1 - launched / direct
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
               "device": "cuda" if gpus else "cpu", "config": str(args.config), "max_steps": args.max_steps,
               "tokens_per_second": results, "median_direct": direct, "median_accelerate": launched,
               "launcher_overhead": round(overhead, 4), "goal": "< 0.03", "met": overhead < 0.03}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"launcher_overhead_{summary['device']}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"direct {direct:,.1f} tokens/s, accelerate launch {launched:,.1f} tokens/s: "
          f"overhead {overhead:+.1%} (goal < 3%) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
