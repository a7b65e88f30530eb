"""tunedeck's dashboard: `python app.py [--host H] [--port P] [--runs-dir DIR] [--share]`.

Also the Hugging Face Space entry point. The server never imports torch: the first page answers in
seconds, and a crash in training (a separate process) can never take the page down.
"""

from __future__ import annotations

import argparse
import os
import sys

RUNS_DIR_ENV = "TUNEDECK_RUNS_DIR"
AUTH_ENV = "TUNEDECK_AUTH"  # "user:password,user2:password2"; from the environment only, never a flag or a file


def auth_from_env() -> list[tuple[str, str]] | None:
    """Logins for the page (each run is then owned by its user); None leaves the page open, owner "local"."""
    raw = os.environ.get(AUTH_ENV, "").strip()
    if not raw:
        return None
    pairs = []
    for item in raw.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{AUTH_ENV}: expected user:password[,user2:password2], got an entry without both")
        pairs.append((user, password))
    return pairs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description="tunedeck: a dashboard for fine-tuning LLMs")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 to reach it from other machines; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port to listen on (default 7860)")
    parser.add_argument("--runs-dir", default=os.environ.get(RUNS_DIR_ENV) or "runs",
                        help=f"where runs, runs.db and user presets live (env {RUNS_DIR_ENV}; default ./runs)")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2
    os.environ[RUNS_DIR_ENV] = args.runs_dir  # the trainer subprocesses and the presets see the same root
    try:
        os.makedirs(args.runs_dir, exist_ok=True)
    except OSError as exc:
        print(f"error: --runs-dir {args.runs_dir}: cannot create it ({exc.strerror})", file=sys.stderr)
        return 2
    try:
        auth = auth_from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from trainer.jobs.registry import JobError
    from webui.page import build, launch_options

    try:
        demo = build(args.runs_dir)
    except JobError as exc:  # a damaged runs.db, a full disk: what to do, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tunedeck: runs in {os.path.abspath(args.runs_dir)}", flush=True)
    try:
        demo.queue(default_concurrency_limit=8).launch(
            server_name=args.host, server_port=args.port, share=args.share, auth=auth, **launch_options())
    except OSError as exc:  # the port is taken, the host is not an address of this machine, ...
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
