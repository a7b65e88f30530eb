"""Where the server runs: the runs root on a Space's persistent storage, the warning when runs would not
survive a restart, whether an address reaches beyond this machine, and Gradio's Space reloader kept quiet.
Standard library only (Gradio imported inside that one function)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Mapping

from trainer.run.layout import DEFAULT_RUNS_DIR, RUNS_DIR_ENV

SPACE_STORAGE = Path("/data")  # where a Hugging Face Space mounts its persistent storage


def default_runs_dir(environ: Mapping[str, str] | None = None, storage: Path = SPACE_STORAGE) -> str:
    """$TUNEDECK_RUNS_DIR; else <storage>/runs when the persistent storage exists (a Space keeps its runs
    across restarts); else ./runs. The environment is read when called, never captured at import."""
    environ = os.environ if environ is None else environ
    if environ.get(RUNS_DIR_ENV):
        return environ[RUNS_DIR_ENV]
    if storage.is_dir() and os.access(storage, os.W_OK):
        return str(storage / "runs")
    return DEFAULT_RUNS_DIR


def storage_warning(runs_dir: str | Path, environ: Mapping[str, str] | None = None,
                    storage: Path = SPACE_STORAGE) -> str | None:
    """On a Space, the warning the page shows when runs are not on persistent storage (None when they are,
    or off a Space: a machine's own disk keeps them). The page calls it with its runs root."""
    environ = os.environ if environ is None else environ
    if not environ.get("SPACE_ID"):
        return None
    on_storage = storage.is_dir() and Path(runs_dir).resolve().is_relative_to(storage.resolve())
    if on_storage and os.path.ismount(storage):
        return None
    return ("Runs are kept in the Space's container, which loses them on every restart or rebuild: add "
            "persistent storage in the Space's settings (it appears as /data and runs go there).")


def is_loopback(host: str) -> bool:
    """Does listening on `host` stay on this machine?"""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def quiet_spaces_reloader() -> bool:
    """On a Space (SYSTEM=spaces) Gradio starts its dev-mode reloader, which needs the `spaces` package; a
    Docker Space has none, and the reloader's thread dies with a traceback in the Space's log at every
    start. tunedeck never hot-reloads: without the package the reloader is a no-op. True when it was."""
    import importlib.util

    if importlib.util.find_spec("spaces") is not None:
        return False
    try:
        from gradio import http_server
    except ImportError:
        return False
    if not hasattr(http_server, "watchfn_spaces"):  # another Gradio: nothing of this to quiet
        return False
    http_server.watchfn_spaces = lambda reloader: None
    return True
