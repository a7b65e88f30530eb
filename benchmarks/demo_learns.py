"""CPU benchmark: what a new user's first demo run costs and shows — `python -m trainer train presets/demo.yaml`
from an empty model cache (the demo model is built first), then again with the model cached.

Records the process's wall and CPU seconds (CPU seconds stay honest on a shared, loaded box), the
first-run wait for the demo model (from the "building the demo model" event to the plan
event), the training time (the trainer's own train_runtime) and the whole process's wall time, and
the curve the Monitor tab draws: first logged loss, final smoothed loss (EMA 0.6, the page's default),
the highest loss after the first, and the eval losses. Goals (issue 13): the first loss at least 1.5x
the final smoothed loss, no loss above the first, eval falling, training under a minute on a 2-core CPU.

    python benchmarks/demo_learns.py [--config presets/demo.yaml] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_once(config: Path, cache: Path, run_dir: Path) -> dict:
    from trainer.run.events import read_events
    from trainer.run.series import ema

    env = {**os.environ, "TUNEDECK_CACHE": str(cache), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "trainer", "train", str(config), "--run-dir", str(run_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds do not grow with other processes' load the way wall time does on a shared box.
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"the demo run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    events = read_events(run_dir)
    building = next((e for e in events if e.get("phase") == "building_demo_model"), None)
    plan = next(e for e in events if e["type"] == "plan")
    status = events[-1]
    loss = [e["loss"] for e in events if e["type"] == "log"]
    return {
        "process_wall_s": round(wall, 1),
        "process_cpu_s": round(cpu, 1),
        "demo_model_build_s": round(plan["t"] - building["t"], 1) if building else None,
        "train_runtime_s": status.get("train_runtime"),
        "steps": len(loss),
        "first_loss": round(loss[0], 4),
        "highest_later_loss": round(max(loss[1:]), 4),
        "final_smoothed_loss": round(ema(loss, 0.6)[-1], 4),
        "first_over_final_smoothed": round(loss[0] / ema(loss, 0.6)[-1], 2),
        "eval_loss": [round(e["eval_loss"], 4) for e in events if e["type"] == "eval"],
        "loss_every_10_steps": [round(v, 3) for v in loss[::10]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "presets" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tunedeck-demo-bench-") as tmp:
        cache = Path(tmp) / "cache"
        first = run_once(args.config.resolve(), cache, Path(tmp) / "first")
        cached = run_once(args.config.resolve(), cache, Path(tmp) / "cached")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "config": str(args.config.resolve().relative_to(ROOT)) if args.config.resolve().is_relative_to(ROOT)
        else str(args.config),
        "first_run": first,
        "cached_model_run": cached,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_learns.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
