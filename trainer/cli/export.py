"""`python -m trainer export-script CONFIG.yaml OUT.py`: the plain transformers + peft + trl script that
reproduces a run without tunedeck (see trainer/interop/export_script.py). The same as
`python -m trainer convert --to script CONFIG.yaml OUT.py`; exit 2 on a config it cannot use."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a tunedeck config or preset YAML")
    parser.add_argument("output", help="the Python script to write")
    parser.add_argument("--allow-unknown", action="store_true", help="ignore keys this version does not know")


def run(args: argparse.Namespace) -> int:
    from trainer.cli import convert

    return convert.run(argparse.Namespace(from_format=None, to_format="script", input=args.config,
                                          output=args.output, allow_unknown=args.allow_unknown))
