"""Experiment trackers beside the dashboard: what each needs, the environment it reads, and where its run is.

The config's ``report_to`` names the trackers (tensorboard, trackio, wandb, mlflow, swanlab); transformers'
own integrations do the logging (trainer/engine/sft_args.py passes ``report_to``, ``project`` and
``trackio_space_id``). This module, torch-free, answers the questions around that: is the package installed
and are its credentials in the environment (:func:`tracker_problems`, asked by `check` and by the trainer
before the model loads), which environment variables carry the project, run name and tags to the trackers
that read them from there (:func:`tracker_environment`), and the links the Monitor shows
(:func:`tracker_links`: the TensorBoard and Trackio commands, the W&B/MLflow/SwanLab run URL once the
training process has recorded it in ``trackers.json``). Credentials are only read from the environment,
never written anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from trainer.config import TrainConfig
from trainer.hub import hub_offline
from trainer.run.layout import TENSORBOARD_DIR, TRACKERS_FILE
from trainer.textio import write_text_atomic

DEFAULT_PROJECT = "tunedeck"
RECORDED = ("wandb", "mlflow")  # trackers whose run link the training process records (live_links)


@dataclass(frozen=True)
class Tracker:
    name: str
    title: str
    module: str  # the package to import
    extra: Optional[str]  # pip install 'tunedeck[extra]'; None: a core dependency
    credentials: tuple[str, ...] = ()  # any one of these environment variables is enough
    # An environment variable and the values of it under which the tracker logs locally, without credentials.
    local_mode: tuple[str, tuple[str, ...]] = ("", ())
    login_hint: str = ""


TRACKERS: dict[str, Tracker] = {t.name: t for t in (
    Tracker("tensorboard", "TensorBoard", "tensorboard", None),
    Tracker("trackio", "Trackio", "trackio", "trackio"),
    Tracker("wandb", "Weights & Biases", "wandb", "wandb", ("WANDB_API_KEY",),
            ("WANDB_MODE", ("offline", "disabled", "dryrun")),
            "your key from https://wandb.ai/authorize"),
    Tracker("mlflow", "MLflow", "mlflow", "mlflow"),
    Tracker("swanlab", "SwanLab", "swanlab", "swanlab", ("SWANLAB_API_KEY",),
            ("SWANLAB_MODE", ("local", "offline", "disabled")),
            "your key from https://swanlab.cn/settings"),
)}


def project_name(cfg: TrainConfig) -> str:
    return (cfg.tracker_project or "").strip() or DEFAULT_PROJECT


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Characters W&B refuses in a project name (Trackio makes a file of it): refused for every tracker alike.
PROJECT_FORBIDDEN = '/\\#?%:'
WANDB_PROJECT_MAX, WANDB_TAG_MAX = 128, 64
SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
# Where a tracker would log on this machine when offline mode is on and the user chose no mode.
OFFLINE_MODES = {"wandb": "offline", "swanlab": "offline"}


def _controls(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def tracker_problems(cfg: TrainConfig) -> list[tuple[str, str]]:
    """Why a tracker cannot log this run: (field, message naming the tracker and the fix), ConfigError's form."""
    problems = []
    offline = hub_offline()
    for name in cfg.report_to:
        tracker = TRACKERS[name]
        if not _installed(tracker.module):
            install = (f"pip install 'tunedeck[{tracker.extra}]'" if tracker.extra
                       else f"pip install {tracker.module}")
            problems.append(("report_to", f"{tracker.title} ({name}) is not installed here: {install}, or remove "
                                          f"{name} from report_to"))
            continue
        variable, local_values = tracker.local_mode
        mode = os.environ.get(variable, "").strip().lower() if variable else ""
        local = mode in local_values or (offline and not mode)  # offline: tracker_environment sets the local mode
        if tracker.credentials and offline and not local:
            problems.append(("report_to", (
                f"{tracker.title} ({name}) is set to log online ({variable}={mode}) but offline mode is on: set "
                f"{variable}={local_values[0]} to log on this machine only")))
        elif tracker.credentials and not local and not any(os.environ.get(v, "").strip() for v in tracker.credentials):
            problems.append(("report_to", (
                f"{tracker.title} ({name}) needs {tracker.credentials[0]} in the environment ({tracker.login_hint}) "
                f"before tunedeck starts, or {variable}={local_values[0]} to log on this machine only")))
        uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if name == "mlflow" and offline and uri.startswith(("http://", "https://")):
            problems.append(("report_to", (
                f"MLflow (mlflow) logs to the server {uri} but offline mode is on: unset MLFLOW_TRACKING_URI to "
                "log in the runs root on this machine (mlruns), or remove mlflow from report_to")))
    problems += _space_problems(cfg, offline)
    project = cfg.tracker_project or ""
    bad = sorted({c for c in project if c in PROJECT_FORBIDDEN})
    if bad or _controls(project):
        shown = " ".join(f"'{c}'" for c in bad) or "a control character (a line break, a tab)"
        problems.append(("tracker_project", f"{project!r} has {shown}, which trackers do not accept in a project "
                                            f"name (none of {' '.join(PROJECT_FORBIDDEN)} or control characters)"))
    elif "wandb" in cfg.report_to and len(project) > WANDB_PROJECT_MAX:
        problems.append(("tracker_project", f"W&B accepts project names of at most {WANDB_PROJECT_MAX} characters; "
                                            f"this one has {len(project)}"))
    for tag in cfg.tracker_tags:
        if "," in tag or _controls(tag):
            problems.append(("tracker_tags", f"the tag {tag!r} has a comma or a control character: trackers read "
                                             "tags as a comma-separated list, so give each tag on its own"))
        elif "wandb" in cfg.report_to and len(tag) > WANDB_TAG_MAX:
            problems.append(("tracker_tags", f"W&B accepts tags of at most {WANDB_TAG_MAX} characters; "
                                             f"'{tag[:20]}...' has {len(tag)}"))
    return problems


def _space_problems(cfg: TrainConfig, offline: bool) -> list[tuple[str, str]]:
    space = cfg.trackio_space_id
    if space is None or (not space.strip() and "trackio" not in cfg.report_to):
        return []
    if "trackio" not in cfg.report_to:
        return [("trackio_space_id", f"a Trackio Space ({space.strip() or 'blank'}) is set but trackio is not in "
                                     "report_to: add trackio to report_to, or clear trackio_space_id")]
    if not SPACE_ID.fullmatch(space):
        return [("trackio_space_id", f"{space!r} is not a Space id: give it as owner/name (for example "
                                     "my-team/trackio), not a URL, or clear it to keep the dashboard on this machine")]
    if offline:
        return [("trackio_space_id", (
            f"the Trackio Space {space} is on the Hugging Face Hub, but offline mode is on: clear "
            "trackio_space_id to keep the dashboard on this machine"))]
    if not os.environ.get("HF_TOKEN", "").strip():
        return [("trackio_space_id", (
            f"the Trackio Space {space} needs HF_TOKEN (a token with write access) in the environment, or "
            "clear trackio_space_id to keep the dashboard on this machine"))]
    return []


def tracker_environment(cfg: TrainConfig, run_dir: str | Path) -> dict[str, str]:
    """Environment variables for the training process: the trackers that read project, run name and tags from
    the environment get them here (a variable the user set already wins)."""
    project = project_name(cfg)
    tags = [t for t in cfg.tracker_tags if t]
    wanted: dict[str, str] = {}
    if "wandb" in cfg.report_to:
        wanted.update(WANDB_PROJECT=project, WANDB_DIR=str(Path(run_dir)))
        if tags:
            wanted["WANDB_TAGS"] = ",".join(tags)
    if "mlflow" in cfg.report_to:
        wanted["MLFLOW_EXPERIMENT_NAME"] = project
        # MLflow's own default is a store in the process's working folder (the server's, or the project's
        # checkout): the runs root keeps it with the runs, on a Space's persistent storage too.
        wanted["MLFLOW_TRACKING_URI"] = mlflow_local_store(run_dir)
        if tags:
            wanted["MLFLOW_TAGS"] = json.dumps({tag: "" for tag in tags})
    if "swanlab" in cfg.report_to:
        wanted.update(SWANLAB_PROJECT=project, SWANLAB_LOG_DIR=str(Path(run_dir) / "swanlog"))
    if hub_offline():  # no network: the trackers that would log online log on this machine instead
        for name, mode in OFFLINE_MODES.items():
            if name in cfg.report_to:
                wanted[TRACKERS[name].local_mode[0]] = mode
    return {key: value for key, value in wanted.items() if not os.environ.get(key)}


def mlflow_local_store(run_dir: str | Path) -> str:
    """Where MLflow logs without a tracking server: `mlruns` in the runs root, shared by its runs so that
    `mlflow ui` compares them."""
    return (Path(run_dir).resolve().parent / "mlruns").as_uri()


def live_links() -> dict[str, str]:
    """The W&B and MLflow run links known inside the training process once their runs have started: read from
    the modules transformers imported, never importing one."""
    links: dict[str, str] = {}
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None and getattr(wandb.run, "url", None):
        links["wandb"] = str(wandb.run.url)
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        run = mlflow.active_run()
        if run is not None:
            uri = str(mlflow.get_tracking_uri())
            experiment = run.info.experiment_id
            links["mlflow"] = (f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run.info.run_id}"
                               if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}  (run "
                                                                 f"{run.info.run_id})")
    return links


def record_live_links(run_dir: str | Path) -> dict[str, str]:
    """Save :func:`live_links` in the run directory for the Monitor (URLs only: no secret is in them)."""
    links = live_links()
    if links:
        write_text_atomic(Path(run_dir) / TRACKERS_FILE, json.dumps(links, indent=1))
    return links


def tracker_links(cfg: TrainConfig, run_dir: str | Path) -> list[tuple[str, str]]:
    """(tracker title, command or URL) for each tracker of a run, for the Monitor and the CLI."""
    run_dir = Path(run_dir)
    try:
        recorded = json.loads((run_dir / TRACKERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    project = project_name(cfg)
    links = []
    for name in cfg.report_to:
        title = TRACKERS[name].title
        if name == "tensorboard":
            links.append((title, f"tensorboard --logdir {shlex.quote(str(run_dir / TENSORBOARD_DIR))}"))
        elif name == "trackio":
            if cfg.trackio_space_id:
                links.append((title, f"https://huggingface.co/spaces/{cfg.trackio_space_id}"))
            links.append((title, f"trackio show --project {shlex.quote(project)}"))
        elif recorded.get(name):
            links.append((title, str(recorded[name])))
        elif name in RECORDED:
            links.append((title, f"project {project} (the run's link appears once training starts)"))
        else:
            links.append((title, f"project {project}"))
    return links
