"""CPU benchmark: end-to-end wall time of `python -m trainer train` vs the plain transformers+peft+trl
script that `python -m trainer export-script` writes for the same config (the same model, data,
template, LoRA and SFTConfig; no events, telemetry, abort handling or plan).

Each side runs as a fresh process (imports, model and data loading included), alternating so that
load on the shared machine hits all alike; the figures are medians of the repeats. tunedeck runs a
tiny model's CPU training on one torch thread (trainer.train: extra threads only wait for each other);
the exported script uses torch's default. So the script runs twice: as exported (`plain`) and with
OMP_NUM_THREADS=1 (`plain_1thread`, the same work on the same threads).
Dashboard overhead = median(tunedeck) / median(plain_1thread) - 1. Goal: at most 10%.

    python benchmarks/train_overhead.py [--config presets/demo.yaml] [--repeats 3] [--out benchmarks/results]
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


def timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "presets" / "demo.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    from trainer.config import TrainConfig
    from trainer.engine.demo import ensure_demo_model
    from trainer.interop.export_script import write_script

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env.setdefault("TUNEDECK_CACHE", str(ROOT / ".cache" / "tunedeck"))
    os.environ["TUNEDECK_CACHE"] = env["TUNEDECK_CACHE"]
    ensure_demo_model()  # built once, outside the timings
    cfg = TrainConfig.from_yaml(args.config)
    times: dict[str, list[float]] = {"tunedeck": [], "plain": [], "plain_1thread": []}
    with tempfile.TemporaryDirectory(prefix="tunedeck-overhead-") as tmp:
        script = write_script(cfg, Path(tmp) / "plain_train.py", base_dir=args.config.parent)
        # a warm-up of each, untimed: file caches, compiled bytecode
        for i in range(args.repeats + 1):
            for side in times:
                out_dir = Path(tmp) / f"{side}-{i}"
                cmd = ([sys.executable, "-m", "trainer", "train", str(args.config), "--run-dir", str(out_dir)]
                       if side == "tunedeck" else [sys.executable, str(script), "--output-dir", str(out_dir)])
                seconds, code, tail = timed(cmd, {**env, "OMP_NUM_THREADS": "1"} if side == "plain_1thread" else env)
                if code != 0:
                    print(f"{side} failed (exit {code}):\n{tail}", file=sys.stderr)
                    return 1
                if i:
                    times[side].append(round(seconds, 2))
                print(f"{'warm-up' if not i else f'run {i}'}: {side} {seconds:.1f}s", flush=True)
    tunedeck, plain = statistics.median(times["tunedeck"]), statistics.median(times["plain"])
    same_threads = statistics.median(times["plain_1thread"])
    overhead = tunedeck / same_threads - 1
    print(f"median tunedeck {tunedeck:.1f}s, plain script {plain:.1f}s as exported, {same_threads:.1f}s on one thread: "
          f"dashboard overhead {overhead:+.1%}, vs the script as exported {tunedeck / plain - 1:+.1%}")
    import torch

    result = {
        "benchmark": "train_overhead", "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores, shared), torch {torch.__version__}",
        "command": f"python benchmarks/train_overhead.py --config {args.config.relative_to(ROOT)} "
                   f"--repeats {args.repeats}",
        "config": str(args.config.relative_to(ROOT)), "times_s": times,
        "median_tunedeck_s": tunedeck, "median_plain_s": plain, "median_plain_1thread_s": same_threads,
        "overhead": round(overhead, 4), "vs_plain_as_exported": round(tunedeck / plain - 1, 4),
        "goal": "overhead <= 0.10", "met": overhead <= 0.10,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_overhead.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
