"""`python -m trainer export-script CONFIG.yaml OUT.py`: the plain transformers + peft + trl script that
reproduces a run without tunedeck (see trainer/export_script.py). Exit 2 on a config it cannot use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a tunedeck config or preset YAML")
    parser.add_argument("output", help="the Python script to write")
    parser.add_argument("--allow-unknown", action="store_true", help="ignore keys this version does not know")


def run(args: argparse.Namespace) -> int:
    from trainer.cli.convert import EXIT_INVALID, _load_config
    from trainer.interop.export_script import write_script

    try:
        cfg = _load_config(Path(args.config), args.allow_unknown)
        out = write_script(cfg, args.output)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        print(f"error: {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {out}: python {out} --output-dir OUT")
    return 0
