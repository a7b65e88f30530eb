"""CPU benchmark of the data pipeline: load + validate, tokenize with masks, length statistics.

Builds a synthetic alpaca JSON-lines file of N rows from the demo dataset (each row made unique), then
times trainer.data.load_examples, tokenize_examples with the demo tokenizer's own jinja template and
with a named template, and length_stats (which packs with plan.pack_best_fit_decreasing). Offline.

    python benchmarks/data_pipeline.py --rows 20000 [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=None, help="directory for data_pipeline.json")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from trainer.config import TrainConfig
    from trainer.datasets import length_stats, load_examples, tokenize_examples
    from trainer.engine.demo import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    demo = [json.loads(line) for line in (ROOT / "data" / "demo.jsonl").read_text(encoding="utf-8").splitlines()]
    results: dict[str, float | int] = {"rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(args.rows):
                row = dict(demo[i % len(demo)])
                row["instruction"] += f" (#{i})"
                fh.write(json.dumps(row) + "\n")
        cfg = TrainConfig(dataset=str(path), cutoff_len=256, per_device_train_batch_size=8)

        start = time.perf_counter()
        loaded = load_examples(cfg)
        results["load_s"] = time.perf_counter() - start

        start = time.perf_counter()
        rows = tokenize_examples(loaded.train, tokenizer, cfg)
        results["tokenize_own_template_s"] = time.perf_counter() - start

        start = time.perf_counter()
        tokenize_examples(loaded.train, tokenizer, cfg.replace(template="chatml"))
        results["tokenize_named_template_s"] = time.perf_counter() - start

        start = time.perf_counter()
        length_stats(rows.full_lengths, cfg)
        results["length_stats_s"] = time.perf_counter() - start
        results["tokens"] = sum(len(r["input_ids"]) for r in rows)

    for key, value in results.items():
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "data_pipeline.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
