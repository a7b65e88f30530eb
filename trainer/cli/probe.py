"""`python -m trainer probe CONFIG.yaml`: measure the largest micro-batch that fits the GPU.

Exit codes: 0 a micro-batch was found, 1 not even micro-batch 1 fits (or the tries failed), 2 invalid
config or no CUDA GPU on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from trainer.config import ConfigError, TrainConfig
from trainer.jobs.processes import set_allocator_default
from trainer.plan.memory import FITS_BELOW


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the run's config (YAML)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--max-share", type=float, default=FITS_BELOW,
                        help=f"largest share of the GPU's memory a micro-batch may reserve (default {FITS_BELOW:g}, "
                             "the memory plan's \"fits\")")
    parser.add_argument("--limit", type=int, default=None,
                        help="largest micro-batch to try (default: the effective batch)")


def run(args: argparse.Namespace) -> int:
    set_allocator_default(os.environ)  # measure with the allocator the training runs with, before torch starts
    from trainer.engine.probe import ProbeNeedsGPU, run_probe

    try:
        cfg = TrainConfig.from_yaml(args.config)
    except ConfigError as exc:
        print(f"invalid config:\n{exc}", file=sys.stderr)
        return 2
    if not 0.1 <= args.max_share <= 1.0:
        print("--max-share must be between 0.1 and 1.0", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("--limit must be at least 1", file=sys.stderr)
        return 2
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else \
        (lambda text: print(text, flush=True))
    try:
        result = run_probe(cfg, max_share=args.max_share, limit=args.limit, say=say)
    except ProbeNeedsGPU as exc:
        print(f"tunedeck probe needs a GPU: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    elif result.micro_batch:
        print(f"largest micro-batch under {result.max_share:.0%} of {result.gpu_name}: {result.micro_batch} "
              f"× {result.seq_len} tokens")
        print(f"set per_device_train_batch_size: {result.micro_batch} and gradient_accumulation_steps: "
              f"{result.gradient_accumulation_steps} (effective batch {result.effective_batch_size}, was "
              f"{result.original_micro_batch} × {result.original_gradient_accumulation_steps})")
    else:
        print(f"not even micro-batch 1 fits under {result.max_share:.0%} of {result.gpu_name} at {result.seq_len} "
              "tokens: use 4-bit quantization, gradient checkpointing, a shorter cutoff_len or a bigger GPU",
              file=sys.stderr)
    return 0 if result.micro_batch else 1
