"""`python -m trainer merge RUN_DIR OUT_DIR [--checkpoint NAME] [--gguf] [--zip FILE]`: a standalone model.

OUT_DIR gets sharded safetensors, the tokenizer (with the run's chat template) and the generation
config: AutoModelForCausalLM.from_pretrained(OUT_DIR) loads it alone. --gguf also writes
OUT_DIR/model-f16.gguf with llama.cpp's converter; --zip FILE writes the adapter as a zip instead of
merging. Exit codes: 0 done, 2 a run without weights, a missing base model, an OUT_DIR that is not
empty, no GGUF converter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run's directory (runs/<run id>)")
    parser.add_argument("out_dir", nargs="?", default=None, help="a new (or empty) directory for the merged model")
    parser.add_argument("--checkpoint", default=None, help="adapter (default) or checkpoint-N of the run")
    parser.add_argument("--gguf", action="store_true", help="also convert to GGUF (needs llama.cpp's converter)")
    parser.add_argument("--gguf-type", default="f16", help="GGUF tensor type (f16, bf16, q8_0, ...)")
    parser.add_argument("--zip", default=None, metavar="FILE", help="write the adapter as a zip file instead")


def run(args: argparse.Namespace) -> int:
    from trainer.engine.artifacts import AfterTrainingError
    from trainer.engine.merge import adapter_zip, export_gguf, find_gguf_converter, merge_run

    say = lambda text: print(f"tunedeck: {text}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.zip:
            print(adapter_zip(args.run_dir, args.zip, args.checkpoint))
            return 0
        if not args.out_dir:
            raise AfterTrainingError("OUT_DIR: give the directory to write the merged model to (or --zip FILE)")
        if args.gguf and find_gguf_converter() is None:
            export_gguf(args.out_dir, Path(args.out_dir) / "model.gguf")  # raises the message about the converter
        result = merge_run(args.run_dir, args.out_dir, args.checkpoint, progress=say)
        for note in result.notes:
            say(f"note: {note}")
        print(result.out_dir)
        if args.gguf:
            print(export_gguf(result.out_dir, result.out_dir / f"model-{args.gguf_type}.gguf", args.gguf_type,
                              progress=say))
    except AfterTrainingError as exc:
        print(f"tunedeck merge: {exc}", file=sys.stderr)
        return 2
    return 0
