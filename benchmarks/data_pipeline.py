"""CPU benchmark of the data pipeline at scale: `check` against a plain `datasets` baseline, and a run's
tokenizing, first and cached.

For each row count, builds a synthetic alpaca JSON-lines file from the demo dataset (each row made
unique) in a temporary directory, then measures, each stage in a fresh process (wall time and peak
RSS of that process):

  baseline   datasets.load_dataset("json") + a batched map tokenizing instruction, input and output
             with the same fast tokenizer (the issue's yardstick)
  check      `python -m trainer check config.yaml --json`, the real command
  train_first / train_cached
             what `train` does before its first step: load_examples, the tokenizer, tokenize_cached
             into an empty runs root, then again (the cache hit a second run or a resume gets)

check and baseline (and check_before: the same command with another checkout's code) alternate over
--repeats rounds (the box is shared: medians, and the ratio of each round). Offline.

    python benchmarks/data_pipeline.py --rows 100000 1000000 --repeats 3 --out benchmarks/results
    python benchmarks/data_pipeline.py --rows 100000 --check-before ../main   # check_before: older code
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the same for every stage, whatever the caller set
STAGES = ("baseline", "check", "train_first", "train_cached")


def write_rows(path: Path, rows: int) -> None:
    demo = [json.loads(line) for line in (ROOT / "data" / "demo.jsonl").read_text(encoding="utf-8").splitlines()]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            row = dict(demo[i % len(demo)])
            row["instruction"] += f" (#{i})"
            fh.write(json.dumps(row) + "\n")


def measured(argv: list[str], cwd: Path = ROOT) -> dict:
    """Run argv in a fresh wrapper process: its wall time and the peak RSS of the child it ran.

    cwd decides the code `python -m trainer` imports: the directory it starts in comes first on sys.path."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "start = time.perf_counter()\n"
               "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
               "print(json.dumps({'seconds': time.perf_counter() - start, 'peak_rss_mb': peak / 1024, 'code': code}))\n")
    env = dict(os.environ, PYTHONPATH=str(cwd))
    done = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, check=True,
                          cwd=cwd, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {result['code']}: {done.stderr[-2000:]}")
    return {"seconds": round(result["seconds"], 2), "peak_rss_mb": round(result["peak_rss_mb"])}


def stage_main(stage: str, config: Path, runs_root: Path) -> int:
    """One stage, run inside its own process."""
    from trainer.config import TrainConfig
    from trainer.engine.model import load_tokenizer

    cfg = TrainConfig.from_yaml(config)
    tokenizer = load_tokenizer(cfg)
    if stage == "baseline":
        import datasets

        # A fresh cache every time: datasets would otherwise reuse the Arrow file and the map of an earlier round.
        cache_dir = tempfile.mkdtemp(prefix="hf-", dir=runs_root)
        data = datasets.load_dataset("json", data_files=cfg.dataset, split="train", cache_dir=cache_dir)

        def tokenize(batch):
            texts = [f"{i}\n{x}\n{o}" for i, x, o in zip(batch["instruction"], batch["input"], batch["output"])]
            return tokenizer(texts)

        data.map(tokenize, batched=True, remove_columns=data.column_names)
        shutil.rmtree(cache_dir)
        return 0
    from trainer.datasets import load_examples, tokenize_cached

    loaded = load_examples(cfg)
    result = tokenize_cached(loaded.train, tokenizer, cfg, loaded, runs_root=runs_root)
    expected_hit = stage == "train_cached"
    if result.cache_hit != expected_hit:
        raise SystemExit(f"{stage}: cache_hit is {result.cache_hit}")
    return 0


def bench(rows: int, repeats: int, skip: set[str], before: Path | None) -> dict:
    results: dict = {"rows": rows}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "rows.jsonl"
        write_rows(data, rows)
        results["file_mb"] = round(data.stat().st_size / 2**20, 1)
        config = tmp_path / "config.yaml"
        from trainer.config import TrainConfig

        TrainConfig.from_yaml(ROOT / "presets" / "demo.yaml").replace(dataset=str(data)).save(config)
        script = [sys.executable, str(Path(__file__).resolve())]
        runs = tmp_path / "runs"
        runs.mkdir()
        check = [sys.executable, "-m", "trainer", "check", str(config), "--json"]
        commands = {"baseline": script + ["--stage", "baseline", "--config", str(config), "--runs-root", str(runs)],
                    "check": check}
        places = {name: ROOT for name in commands}
        if before is not None:  # the same command run by another checkout's code
            commands["check_before"], places["check_before"] = check, before.resolve()
        rounds: dict[str, list[dict]] = {name: [] for name in commands if name not in skip}
        for i in range(repeats):
            order = list(rounds) if i % 2 == 0 else list(reversed(list(rounds)))
            for name in order:
                rounds[name].append(measured(commands[name], places[name]))
                print(f"  {rows:>9,} rows  {name:13s} {rounds[name][-1]}", flush=True)
        for name, runs_of in rounds.items():
            results[name] = {"seconds": statistics.median(r["seconds"] for r in runs_of),
                             "peak_rss_mb": max(r["peak_rss_mb"] for r in runs_of), "runs": runs_of}
        for name in ("check", "check_before"):
            if name in rounds and "baseline" in rounds:
                ratios = [c["seconds"] / b["seconds"] for c, b in zip(rounds[name], rounds["baseline"])]
                results[f"{name}_over_baseline"] = {"median": round(statistics.median(ratios), 2),
                                                    "rounds": [round(r, 2) for r in ratios]}
        for name in ("train_first", "train_cached"):
            if name not in skip:
                results[name] = measured(script + ["--stage", name, "--config", str(config), "--runs-root", str(runs)])
                print(f"  {rows:>9,} rows  {name:13s} {results[name]}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds of check and baseline")
    parser.add_argument("--skip", default="", help=f"comma-separated stages to leave out ({', '.join(STAGES)})")
    parser.add_argument("--out", type=Path, default=None, help="directory for data_pipeline.json")
    parser.add_argument("--check-before", type=Path, default=None, metavar="CHECKOUT",
                        help="also time `check` with the code of another checkout (e.g. the main branch before)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs-root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        return stage_main(args.stage, args.config, args.runs_root)

    from trainer.engine.demo import ensure_demo_model

    ensure_demo_model()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "load_average": [round(x, 2) for x in os.getloadavg()], "sizes": []}
    for rows in args.rows:
        report["sizes"].append(bench(rows, args.repeats, skip, args.check_before))
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    if args.out:  # sizes measured earlier and not now are kept
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "data_pipeline.json"
        earlier = json.loads(path.read_text(encoding="utf-8")).get("sizes", []) if path.is_file() else []
        measured_now = {size["rows"] for size in report["sizes"]}
        report["sizes"] = sorted([s for s in earlier if s["rows"] not in measured_now] + report["sizes"],
                                 key=lambda size: size["rows"])
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
