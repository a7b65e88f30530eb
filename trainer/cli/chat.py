"""`python -m trainer chat RUN_DIR [--checkpoint NAME] [--base] [--prompt TEXT]`: talk to a run's model.

With --prompt, prints the reply and exits; without it, an interactive loop (empty line or Ctrl-D ends
it, /clear forgets the history). The same loading and rendering as the dashboard's chat worker.
Exit codes: 0 done, 2 a run without weights, a missing base model or a bad setting.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run's directory (runs/<run id>)")
    parser.add_argument("--checkpoint", default=None, help="adapter (default) or checkpoint-N of the run")
    parser.add_argument("--base", action="store_true", help="talk to the base model, without the adapter")
    parser.add_argument("--prompt", default=None, help="one message; the reply is printed (default: interactive)")
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from trainer.engine.artifacts import BASE, TUNED, AfterTrainingError, load_run, resolve_weights
    from trainer.engine.chat import GenerationSettings, conversation, stream_reply

    try:
        settings = GenerationSettings.from_dict({
            "system_prompt": args.system, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
            "top_p": args.top_p, "repetition_penalty": args.repetition_penalty, "seed": args.seed})
        weights = resolve_weights(args.run_dir, args.checkpoint)
        loaded = load_run(weights, progress=lambda text: print(f"tunedeck: {text}", file=sys.stderr, flush=True))
        which = BASE if args.base else TUNED
        if args.prompt is not None:
            messages = conversation([], args.prompt, settings.system_prompt)
            for text in stream_reply(loaded, messages, settings, which):
                print(text, end="", flush=True)
            print()
            return 0
        return _interactive(loaded, settings, which)
    except AfterTrainingError as exc:
        print(f"tunedeck chat: {exc}", file=sys.stderr)
        return 2


def _interactive(loaded, settings, which: str) -> int:
    from trainer.engine.artifacts import AfterTrainingError
    from trainer.engine.chat import conversation, stream_reply

    history: list[dict[str, str]] = []
    print(f"chatting with the {which} model of {loaded.weights.run_dir.name} ({loaded.weights.label}); "
          "an empty line ends, /clear forgets the history", file=sys.stderr)
    while True:
        try:
            message = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not message.strip():
            return 0
        if message.strip() == "/clear":
            history = []
            continue
        try:
            messages = conversation(history, message, settings.system_prompt)
            parts = []
            for text in stream_reply(loaded, messages, settings, which):
                parts.append(text)
                print(text, end="", flush=True)
            print()
        except AfterTrainingError as exc:
            print(f"tunedeck chat: {exc}", file=sys.stderr)
            continue
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue
        history += [{"role": "user", "content": message}, {"role": "assistant", "content": "".join(parts)}]
