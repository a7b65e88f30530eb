"""tunedeck's dashboard: `python app.py [--host H] [--port P] [--runs-dir DIR] [--share] [--allow-open]`.

Also the Hugging Face Space entry point. One server, one port: the page and the HTTP API (webui.api).
Sign-in comes from the environment (webui.auth): Hugging Face on a Space with OAuth, else password
logins (TUNEDECK_AUTH, TUNEDECK_USERS_FILE), else none — and a server without sign-in refuses to listen
beyond this machine (a non-loopback --host, or --share) unless --allow-open says that is meant.
The server never imports torch: the first page answers in seconds, and a crash in training (a separate
process) can never take the page down.
"""

from __future__ import annotations

import argparse
import os
import sys

from trainer.run.layout import RUNS_DIR_ENV
from webui.api_tokens import TokenStore, hf_token_days
from webui.auth import AUTH_ENV, HUGGING_FACE, PASSWORD, sign_in_from_env
from webui.server_log import quiet_lost_sessions
from webui.space import default_runs_dir, is_loopback, quiet_spaces_reloader, storage_warning

MAX_QUEUED_ENV = "TUNEDECK_MAX_QUEUED"  # queued runs one person may have waiting (default 3 with sign-in)
DEFAULT_MAX_QUEUED = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description="tunedeck: a dashboard for fine-tuning LLMs")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (0.0.0.0 to reach it from other machines; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port to listen on (default 7860)")
    parser.add_argument("--runs-dir", default=default_runs_dir(),
                        help=f"where runs, runs.db and user presets live (env {RUNS_DIR_ENV}; default /data/runs "
                             "when /data exists, else ./runs)")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument("--allow-open", action="store_true",
                        help="serve beyond this machine (a non-loopback --host, or --share) without any sign-in")
    return parser.parse_args(argv)


def _max_queued(open_server: bool) -> int | None:
    raw = os.environ.get(MAX_QUEUED_ENV, "").strip()
    if not raw:
        return None if open_server else DEFAULT_MAX_QUEUED
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MAX_QUEUED_ENV}: expected a whole number of at least 1, got {raw!r}")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2
    try:
        sign_in = sign_in_from_env()
        max_queued = _max_queued(sign_in.is_open)
        token_days = hf_token_days() if sign_in.mode == HUGGING_FACE else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if sign_in.is_open and (args.share or not is_loopback(args.host)) and not args.allow_open:
        where = "a public share link" if args.share else f"{args.host}"
        print(f"error: refusing to serve on {where} without sign-in: set {AUTH_ENV} or TUNEDECK_USERS_FILE, "
              "or pass --allow-open if anyone who reaches it may use it", file=sys.stderr)
        return 2
    os.environ[RUNS_DIR_ENV] = args.runs_dir  # the trainer subprocesses and the presets see the same root
    try:
        os.makedirs(args.runs_dir, exist_ok=True)
    except OSError as exc:
        print(f"error: --runs-dir {args.runs_dir}: cannot create it ({exc.strerror})", file=sys.stderr)
        return 2
    from trainer.jobs.manager import JobManager
    from trainer.jobs.registry import JobError
    from webui.api import server_extension
    from webui.page import build, launch_options

    try:
        jobs = JobManager(args.runs_dir, max_queued_per_owner=max_queued)
    except JobError as exc:  # a damaged runs.db, a full disk: what to do, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        loopback_only = sign_in.is_open and is_loopback(args.host) and not args.share
        # One store for the API and the page: a revoke takes effect at once. With Hugging Face sign-in a
        # token lapses when its owner has not signed in on the page for a while (membership is checked there).
        tokens = TokenStore(args.runs_dir, max_age_days=token_days)
        extension = server_extension(jobs, sign_in, tokens, loopback_only)
    except ImportError as exc:  # Hugging Face sign-in without Gradio's OAuth extras
        jobs.close()
        print(f"error: Hugging Face sign-in needs `pip install authlib itsdangerous` ({exc})", file=sys.stderr)
        return 2
    try:
        demo = build(args.runs_dir, jobs=jobs, tokens=tokens)
    except JobError as exc:  # a damaged runs.db, a full disk: what to do, not a traceback
        jobs.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"tunedeck: runs in {os.path.abspath(args.runs_dir)}", flush=True)
    print(f"tunedeck: {sign_in.describe()}; API at /api", flush=True)
    warning = storage_warning(args.runs_dir)
    if warning:
        print(f"tunedeck: warning: {warning}", flush=True)
    auth_options: dict = {}
    if sign_in.mode == PASSWORD:
        auth_options = {"auth": sign_in.accounts.gradio_auth, "auth_message": "Sign in to tunedeck"}
    elif sign_in.mode == HUGGING_FACE:
        from webui.hf_sign_in import hf_auth_dependency

        auth_options = {"auth_dependency": hf_auth_dependency(sign_in, on_verified=tokens.renew)}
    quiet_spaces_reloader()
    quiet_lost_sessions()
    try:
        demo.queue(default_concurrency_limit=8).launch(
            server_name=args.host, server_port=args.port, share=args.share, **launch_options(),
            # The API (and the OAuth routes) join Gradio's own app: one server, one port, routes before Gradio's.
            app_kwargs={"routes": list(extension.router.routes), "middleware": list(extension.user_middleware)},
            **auth_options)
    except OSError as exc:  # the port is taken, the host is not an address of this machine, ...
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    finally:
        jobs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
