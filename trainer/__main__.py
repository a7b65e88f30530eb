"""`python -m trainer COMMAND ...`: the same code paths the dashboard uses.

Each command lives in its own module with `add_arguments(parser)` and `run(args) -> int`; the module
is imported only when its command runs, so `check` never pays for torch unless it needs a tokenizer.
Exit codes: 0 success, 2 invalid input (config, dataset, file), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("trainer.cli.train", "run one training in the foreground: CONFIG.yaml --run-dir DIR"),
    "check": ("trainer.cli.check", "validate a config and its dataset; print the resolved plan"),
    "convert": ("trainer.cli.convert", "LLaMA-Factory YAML <-> tunedeck preset: --from/--to llamafactory IN OUT"),
    "export-script": ("trainer.cli.export", "write the plain transformers+peft+trl script of a config: CONFIG OUT.py"),
    "launch-commands": ("trainer.cli.launch_commands", "write the accelerate config of a multi-device or multi-machine "
                        "run and print each machine's command: CONFIG.yaml [--run-dir DIR]"),
    "probe": ("trainer.cli.probe", "measure the largest micro-batch that fits the GPU (a few real steps each)"),
    "chat": ("trainer.cli.chat", "talk to a run's model (or its base): RUN_DIR [--prompt TEXT] [--base]"),
    "evaluate": ("trainer.cli.evaluate", "loss and perplexity of a run beside its base: RUN_DIR [--dataset D] [--json]"),
    "merge": ("trainer.cli.merge", "merge a run's adapter into its base: RUN_DIR OUT_DIR [--gguf] [--zip FILE]"),
    "push": ("trainer.cli.push", "publish a run on the Hugging Face Hub: RUN_DIR REPO_ID [--merged] [--dry-run]"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m trainer", description="tunedeck's training engine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help(sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    command_parser = argparse.ArgumentParser(prog=f"python -m trainer {argv[0]}", description=help_text)
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # `python -m trainer check x.yaml | head -1`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
