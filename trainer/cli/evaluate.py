"""`python -m trainer evaluate RUN_DIR [--checkpoint NAME] [--dataset D] [--json]`: loss and perplexity.

Prints eval_loss, perplexity, base_eval_loss, base_perplexity and rows (and a few greedy answers beside
the reference), and adds the result to RUN_DIR/evaluation.json. Exit codes: 0 done, 2 a run without
weights or validation split, a missing base model or dataset.
"""

from __future__ import annotations

import argparse
import json
import sys

SUMMARY_KEYS = ("eval_loss", "perplexity", "base_eval_loss", "base_perplexity", "rows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run's directory (runs/<run id>)")
    parser.add_argument("--checkpoint", default=None, help="adapter (default) or checkpoint-N of the run")
    parser.add_argument("--dataset", default=None,
                        help="evaluate on every row of this dataset (default: the run's validation split)")
    parser.add_argument("--max-rows", type=int, default=None, help="at most this many rows")
    parser.add_argument("--samples", type=int, default=3, help="rows answered greedily by both models (0: none)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="length of those answers")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")


def run(args: argparse.Namespace) -> int:
    from trainer.engine.artifacts import AfterTrainingError
    from trainer.engine.evaluate import evaluate_run

    for name in ("max_rows", "samples", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "samples" else 1):
            print(f"tunedeck evaluate: --{name.replace('_', '-')} must be at least {0 if name == 'samples' else 1}",
                  file=sys.stderr)
            return 2
    try:
        result = evaluate_run(args.run_dir, args.checkpoint, args.dataset, sample_rows=args.samples,
                              max_new_tokens=args.max_new_tokens, max_rows=args.max_rows,
                              progress=lambda text: print(f"tunedeck: {text}", file=sys.stderr, flush=True))
    except AfterTrainingError as exc:
        print(f"tunedeck evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return 0
    for key in SUMMARY_KEYS:
        value = result[key]
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    for sample in result["samples"]:
        print(f"\nprompt:    {sample['prompt']}\nreference: {sample['reference']}\nbase:      {sample['base']}\n"
              f"tuned:     {sample['tuned']}")
    return 0
