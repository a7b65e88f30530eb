"""How long a multi-process run waits before its first step when its rows are not cached yet: the demo
model, a generated alpaca file of N rows, `num_processes` processes (CPU gloo here, GPUs where there are),
one optimizer step. The time is from the run's `running` status to its first `log` event, which is
loading the data, tokenizing it, loading the model and the step itself; the runs root is fresh each
repeat, so nothing is cached.

    python benchmarks/ranks_tokenize.py [--rows 120000] [--processes 2] [--repeats 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = "the a cat dog runs jumps over under quick slow red blue green happy sad".split()


def write_rows(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            fh.write(json.dumps({"instruction": " ".join(rng.choices(WORDS, k=20)), "input": "",
                                 "output": " ".join(rng.choices(WORDS, k=30))}) + "\n")


def one_run(data: Path, processes: int) -> dict:
    from trainer.config import TrainConfig
    from trainer.jobs.manager import JobManager
    from trainer.run.events import read_events

    with tempfile.TemporaryDirectory() as tmp:
        jm = JobManager(Path(tmp) / "runs", max_concurrent=1, poll_interval_s=0.2)
        try:
            run_id = jm.submit(TrainConfig.from_dict({
                "model_name_or_path": "demo", "dataset": str(data), "val_size": 0, "cutoff_len": 128,
                "num_processes": processes, "max_steps": 1, "save_steps": 1000, "logging_steps": 1}))
            while jm.get(run_id).status in ("queued", "running"):
                time.sleep(0.2)
            info = jm.get(run_id)
            events = read_events(info.run_dir)
        finally:
            jm.close()
    running = next(e["t"] for e in events if e.get("type") == "status" and e.get("status") == "running")
    first = next((e["t"] for e in events if e.get("type") == "log"), None)
    return {"status": info.status, "to_first_step_s": round(first - running, 1) if first else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        write_rows(data, args.rows)
        runs = [one_run(data, args.processes) for _ in range(args.repeats)]
    times = [r["to_first_step_s"] for r in runs if r["to_first_step_s"] is not None]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = {"rows": args.rows, "processes": args.processes, "runs": runs,
              "median_to_first_step_s": statistics.median(times) if times else None, "commit": commit,
              "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores"}
    print(json.dumps(result, indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranks_tokenize.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
