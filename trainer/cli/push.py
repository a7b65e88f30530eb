"""`python -m trainer push RUN_DIR REPO_ID [--merged] [--private] [--dry-run]`: publish on the Hub.

Uploads the adapter (or, with --merged, the model merged into the base) with a model card made from
the run's real numbers. The token comes from HF_TOKEN only. --dry-run prints the card and the file list
and changes nothing. Exit codes: 0 pushed, 2 a run without weights, a bad repo id, no token or no network.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run's directory (runs/<run id>)")
    parser.add_argument("repo_id", help="the Hub repository, e.g. your-name/my-model")
    parser.add_argument("--checkpoint", default=None, help="adapter (default) or checkpoint-N of the run")
    parser.add_argument("--merged", action="store_true", help="push the merged model instead of the adapter")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--message", default=None, help="the commit message")
    parser.add_argument("--dry-run", action="store_true", help="print the model card and the file list only")


def run(args: argparse.Namespace) -> int:
    from trainer.interop.hub import PublishError, check_repo_id, model_card, push, upload_files
    from trainer.engine.artifacts import AfterTrainingError

    try:
        repo_id = check_repo_id(args.repo_id)
        if args.dry_run:
            print(model_card(args.run_dir, repo_id, args.checkpoint, args.merged))
            print("--- files ---")
            for name, path in upload_files(args.run_dir, args.checkpoint, args.merged):
                print(f"{name}\t{path if path else '(generated)'}")
            return 0
        url = push(args.run_dir, repo_id, merged=args.merged, private=args.private, commit_message=args.message,
                   checkpoint=args.checkpoint,
                   progress=lambda text: print(f"tunedeck: {text}", file=sys.stderr, flush=True))
    except (PublishError, AfterTrainingError) as exc:
        print(f"tunedeck push: {exc}", file=sys.stderr)
        return 2
    print(url)
    return 0
