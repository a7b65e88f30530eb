"""CPU benchmark: padding efficiency (real tokens / processed tokens) of tunedeck's defaults vs plain
padded batching, on the demo dataset and on a synthetic dataset of widely varied lengths.

Measured, not computed: each strategy's batches come from the real training path — trainer.train's
SFTTrainer (TRL collator, transformers' sampler) on the demo model — and one epoch of its training
dataloader is counted. The plan's prediction (trainer.plan.padding_efficiency) is printed beside it.

Strategies: `plain` (shuffled rows, padded to the longest in each micro-batch), `group_by_length` (the
default where padding-free packing is not available: a CPU, or a GPU without FlashAttention) and
`packing` (padding-free best-fit-decreasing packing, the default with FlashAttention).

Also checks that padding-free packing keeps rows apart on SDPA (transformers builds a block-diagonal
mask from the position ids): the packed forward's logits equal the rows' separate forwards.

    python benchmarks/padding_efficiency.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STRATEGIES = {"plain": dict(packing=False, group_by_length=False),
              "group_by_length": dict(packing=False, group_by_length=True),
              "packing": dict(packing=True, group_by_length=False)}


def varied_rows(n: int, low: int, high: int, vocab: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
        prompt = length // 4
        rows.append({"input_ids": [rng.randrange(10, vocab) for _ in range(length)],
                     "completion_mask": [0] * prompt + [1] * (length - prompt)})
    return rows


def measure(cfg, rows, model, tokenizer) -> dict:
    """Count real and processed tokens over one epoch of the trainer's own training dataloader."""
    from trainer.plan.resolve import CPU, resolve_plan
    from trainer.engine.train import _build_trainer

    plan = resolve_plan(cfg, len(rows), hw=CPU, token_lengths=[len(r["input_ids"]) for r in rows])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = _build_trainer(cfg, Path(run_dir), plan, CPU, model, tokenizer, rows, [])
        real = processed = batches = 0
        for batch in trainer.get_train_dataloader():
            ids = batch["input_ids"]
            processed += ids.numel()
            real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
            batches += 1
    return {"measured": round(real / processed, 4), "plan": plan.padding_efficiency, "batches": batches,
            "real_tokens": real, "processed_tokens": processed}


def packed_rows_stay_apart(model, tokenizer) -> float:
    """Max |logits(packed) - logits(separate)| for three rows packed padding-free on SDPA."""
    import torch

    rng = random.Random(3)
    rows = [[rng.randrange(10, len(tokenizer)) for _ in range(n)] for n in (7, 19, 12)]
    model.eval()
    with torch.no_grad():
        separate = [model(input_ids=torch.tensor([r])).logits[0] for r in rows]
        flat = torch.tensor([sum(rows, [])])
        positions = torch.tensor([sum((list(range(len(r))) for r in rows), [])])
        packed = model(input_ids=flat, position_ids=positions).logits[0]
    return float((packed - torch.cat(separate)).abs().max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import torch
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.config import TrainConfig
    from trainer.datasets import load_examples, tokenize_examples
    from trainer.engine.demo import ensure_demo_model

    started = time.time()
    model_dir = ensure_demo_model()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="sdpa")
    preset = TrainConfig.from_yaml(ROOT / "presets" / "demo.yaml").replace(eval_strategy="no")
    loaded = load_examples(preset)
    demo_rows = [{k: r[k] for k in ("input_ids", "completion_mask")}
                 for r in tokenize_examples(loaded.train, tokenizer, preset, loaded)]
    datasets = {
        "demo": (demo_rows, preset),
        # 2000 rows, lengths log-uniform in 16..1024 (a 64× spread), cutoff 1024, micro-batch 8
        "varied_synthetic": (varied_rows(2000, 16, 1024, len(tokenizer)),
                             preset.replace(cutoff_len=1024, per_device_train_batch_size=8,
                                            gradient_accumulation_steps=1)),
    }
    results: dict = {}
    for name, (rows, cfg) in datasets.items():
        lengths = [len(r["input_ids"]) for r in rows]
        results[name] = {"rows": len(rows), "micro_batch": cfg.per_device_train_batch_size,
                         "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
                         "cutoff_len": cfg.cutoff_len, "min_len": min(lengths), "max_len": max(lengths),
                         "mean_len": round(sum(lengths) / len(lengths), 1)}
        for strategy, overrides in STRATEGIES.items():
            results[name][strategy] = measure(cfg.replace(**overrides), rows, model, tokenizer)
            print(f"{name:18s} {strategy:16s} measured {results[name][strategy]['measured']:.3f} "
                  f"plan {results[name][strategy]['plan']}", flush=True)
    max_diff = packed_rows_stay_apart(model, tokenizer)
    print(f"padding-free packing on SDPA: max |packed - separate| logits = {max_diff:.2e}")
    out = {
        "benchmark": "padding_efficiency", "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores), torch {torch.__version__}, "
                   f"transformers {transformers.__version__}, trl {trl.__version__}",
        "command": "python benchmarks/padding_efficiency.py",
        "defaults": {"cpu, or gpu without flash-attn": "group_by_length", "gpu with flash-attn": "packing"},
        "results": results,
        "sdpa_packed_vs_separate_max_abs_logit_diff": max_diff,
        "wall_s": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "padding_efficiency.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
