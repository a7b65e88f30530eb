"""How long `check` takes to answer for a Hub dataset id when the Hub cannot be reached (online mode, no network).

Runs the real `python -m trainer check config.yaml --json` (dataset: a Hub id, model: the demo) in a fresh
process with the offline variables cleared, against:

  default     the Hugging Face Hub as configured (https://huggingface.co, or HF_ENDPOINT when set)
  blackhole   HF_ENDPOINT pointing at an address that never answers (10.255.255.1): the slowest case, where
              only the connection probe's timeout decides
  hub_model   the demo dataset with a Hub model id instead (its tokenizer is what check would fetch)
and, as the yardstick, `datasets.load_dataset(ID)` itself in a fresh process (its own retries).

Wall time of each process (imports included), and the check's warning, into --out/hub_unreachable.json.

    python benchmarks/hub_unreachable.py --repeats 3 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET = "tatsu-lab/alpaca"
MODEL = "Qwen/Qwen2.5-0.5B"  # not in the local cache: its tokenizer would be fetched
ONLINE = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - start, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--skip-baseline", action="store_true", help="do not time datasets.load_dataset itself")
    args = parser.parse_args()
    base_env = {**os.environ, **ONLINE, "PYTHONPATH": str(ROOT)}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(f"model_name_or_path: demo\ndataset: {DATASET}\n", encoding="utf-8")
        model_config = Path(tmp) / "model.yaml"
        model_config.write_text(f"model_name_or_path: {MODEL}\ndataset: demo\n", encoding="utf-8")
        cases = {"default": ({}, config, DATASET), "blackhole": ({"HF_ENDPOINT": "http://10.255.255.1"}, config, DATASET),
                 "hub_model": ({}, model_config, MODEL)}
        for name, (extra, config_file, wanted) in cases.items():
            times, warning, code = [], "", None
            for _ in range(args.repeats):
                seconds, proc = _timed([sys.executable, "-m", "trainer", "check", str(config_file), "--json"],
                                       {**base_env, **extra})
                times.append(seconds)
                code = proc.returncode
                report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
                warning = next((w for w in report.get("warnings", []) if wanted in w), proc.stderr[-500:])
            results[f"check_{name}"] = {"seconds": times, "median_s": statistics.median(times), "exit_code": code,
                                        "message": warning}
            print(f"check ({name}): median {statistics.median(times):.2f} s, exit {code}: {warning}")
        if not args.skip_baseline:
            code = f"import datasets\ntry:\n    datasets.load_dataset({DATASET!r})\nexcept Exception as e:\n" \
                   "    print(type(e).__name__, str(e)[:300])"
            seconds, proc = _timed([sys.executable, "-c", code], base_env)
            results["baseline_load_dataset"] = {"seconds": [seconds], "median_s": seconds,
                                                "message": proc.stdout.strip()[-500:]}
            print(f"datasets.load_dataset: {seconds:.1f} s: {proc.stdout.strip()[-200:]}")
    results["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["load_average"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hub_unreachable.json").write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
