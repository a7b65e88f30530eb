"""What every session of the page shares: the runs root, the job manager, caches, this machine's hardware.

No gradio here: the tabs' handlers take a `Context` and plain values, so tests build one on a temporary
runs root and call them directly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Any

from trainer.access import BUILTIN_NAMES, Access, access_from_env, looks_local, user_uploads_dir
from trainer.config import ConfigError, TrainConfig
from trainer.interop.lf_datasets import LLAMAFACTORY_DEFAULT_DATASET_DIR
from trainer.interop.llamafactory import ImportResult, import_llamafactory_dict, import_llamafactory_file
from trainer.textio import parse_yaml, read_text_file
from trainer.engine.model import DEMO_NAME, ModelNotFoundError, looks_like_local_path, model_source
from trainer.jobs.sandbox import SandboxError, run_job
from trainer.plan.catalog import GPU_CHOICES, gpu_choice
from trainer.plan.resolve import CPU, Hardware
from trainer.trackers import tracker_problems

from .after import Commands, SharedChat
from .api_tokens import TokenStore
from .auth import User, can_modify, require_modify, user_of
from .data_view import file_stamp
from .i18n import t
from .state import EventCache
from .views import error_text, run_choice_label, short


@dataclass
class Context:
    runs_root: Path
    jobs: Any  # trainer.jobs.manager.JobManager
    cache: EventCache = field(default_factory=EventCache)
    datasets: "DatasetFactsCache" = field(default_factory=lambda: DatasetFactsCache())
    hardware: Hardware = CPU
    chat: SharedChat = None  # type: ignore[assignment]  # the server's one chat worker (made in __post_init__)
    commands: Commands = field(default_factory=Commands)  # evaluate, merge and push subprocesses
    tokens: TokenStore = None  # type: ignore[assignment]  # API tokens; the server shares its one with the API

    def __post_init__(self) -> None:
        if self.chat is None:
            self.chat = SharedChat(self.jobs)
        if self.tokens is None:
            self.tokens = TokenStore(self.runs_root)

    def run_choices(self) -> list[tuple[str, str]]:
        """(label, run id) of every run, newest first, for a run selector."""
        try:
            return [(run_choice_label(i), i.id) for i in self.jobs.list_runs()]
        except Exception:  # noqa: BLE001 - a locked or missing db must not break the page
            return []

    def default_run(self) -> str | None:
        """On a fresh page: the newest live run, else the newest run."""
        try:
            infos = self.jobs.list_runs()
        except Exception:  # noqa: BLE001
            return None
        live = [i for i in infos if i.status in ("running", "queued")]
        return (live or infos)[0].id if (live or infos) else None


# --- hardware choices for the plan ----------------------------------------------------------------

def hardware_choices(local: Hardware, lang: str | None = None) -> list[tuple[str, str]]:
    """The plan's "Plan for" choices: this machine, then the catalog's GPU sizes."""
    here = (t(lang, "this_machine_gpu", name=local.gpu_name, gb=f"{local.gpu_total_gb:g}") if local.device == "cuda"
            else t(lang, "this_machine_cpu"))
    return [(here, "local")] + [(c.label, c.key) for c in GPU_CHOICES]


def hardware_for(key: str | None, local: Hardware) -> Hardware:
    choice = gpu_choice(key) if key and key != "local" else None
    if choice is None:
        return local
    return Hardware(device="cuda", num_devices=1, gpu_name=choice.label, gpu_total_gb=float(choice.memory_gib),
                    bf16_supported=choice.bf16)


# --- who may read what: one function builds the access policy of a request -------------------------

def access_for(ctx: "Context", user: str | None) -> Access:
    """The access policy of one request (trainer/access.py): shared when a sign-in is configured (passwords,
    a users file or Hugging Face), admins from TUNEDECK_ADMINS, readable folders TUNEDECK_ALLOWED_PATHS
    plus the user's own uploads."""
    return access_from_env(user, ctx.runs_root)


def checked_path(ctx: "Context", user: str | None, value: str | None, field: str) -> str:
    """A path field handed to a trainer subprocess (evaluate's dataset): ConfigError naming `field` when this
    user may not read it, else the value, a local path made absolute so that the subprocess (which runs in
    another working directory) reads the very file the check allowed."""
    name = (value or "").strip()
    access_for(ctx, user).check_path(name, field)
    if name and name not in BUILTIN_NAMES and looks_local(name):
        return os.path.abspath(os.path.expanduser(name))
    return name


def import_llamafactory_for(ctx: "Context", user: str | None, path: str | Path) -> ImportResult:
    """A LLaMA-Factory YAML imported as `user` may read it: on a shared server a non-admin's `dataset_dir`
    (whose dataset_info.json the import reads) must lie in the allowed folders, a relative one counting from
    their own upload folder (never the server's working directory); the dataset it names is then checked
    like the form's, and a refused one keeps nothing of what the import learned about it."""
    access = access_for(ctx, user)
    if not access.shared or access.admin:
        return import_llamafactory_file(path)
    data = parse_yaml(read_text_file(path, "YAML file"), str(path))
    if not isinstance(data, dict) or not data:
        return import_llamafactory_file(path)  # its own message for a file that is not a mapping
    value = str(data.get("dataset_dir") or LLAMAFACTORY_DEFAULT_DATASET_DIR).strip()
    if value != "ONLINE":
        where = Path(value).expanduser()
        where = Path(os.path.abspath(where if where.is_absolute() else user_uploads_dir(ctx.runs_root, user) / where))
        access.check_path(str(where), "dataset_dir")
        data = {**data, "dataset_dir": str(where)}
    result = import_llamafactory_dict(data, str(path), base_dir=user_uploads_dir(ctx.runs_root, user))
    try:
        access.check_path(result.config.dataset, "dataset")
    except ConfigError as exc:  # whatever the import noted about that file (found or not) goes unsaid
        result.unmapped.pop("dataset_dir", None)
        result.unmapped["dataset"] = exc.errors[0][1]
        result.notes[:] = [n for n in result.notes if not n.startswith("dataset")]
    return result


def exported_text(cfg: TrainConfig, kind: str) -> str:
    """The config as a LLaMA-Factory YAML (`llamafactory`) or a plain script (`script`), rendered by the data
    worker: both read the dataset file, which may be any size. SandboxError says why not."""
    return run_job("export", {"config": cfg.to_dict(), "kind": kind})["text"]


# --- who may change what: the page's one roles check --------------------------------------------

def acting_as(user: str | None) -> User:
    """The handler's signed-in name as a `webui.auth.User`: admins from TUNEDECK_ADMINS; an open page (None)
    is its operator, who may change everything."""
    return user_of(SimpleNamespace(username=user))


def may_change(user: str | None, owner: str) -> bool:
    return can_modify(acting_as(user), owner)


def require_change(user: str | None, owner: str, action: str, what: str = "run") -> None:
    """PermissionError (shown as a toast) unless `user` owns the thing or is an admin; every page handler that
    changes a run, a queued run or a preset asks this first, so the trainer-side calls need no owner filter."""
    require_modify(acting_as(user), owner, action, what)


# --- dataset facts for the plan, cached per dataset file version ---------------------------------

@dataclass
class DatasetFacts:
    num_train: int | None
    note: str
    token_lengths: list[int] | None = None
    problem: str | None = None  # why a run of this dataset would be refused before it starts (as `check` says)
    format: str | None = None
    skipped: int = 0


class DatasetFactsCache:
    """Row counts of local datasets (counted by the data worker, once per file version), token lengths once
    the Data tab has computed them."""

    def __init__(self) -> None:
        self._facts: dict[tuple, DatasetFacts] = {}
        self._lengths: dict[tuple, list[int]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(cfg: TrainConfig, stamp: Any) -> tuple:
        return (stamp, cfg.dataset_format, tuple(sorted(cfg.column_mapping.items())), cfg.max_samples,
                cfg.val_size, cfg.seed, cfg.skip_invalid_rows)

    @staticmethod
    def _lengths_key(key: tuple, cfg: TrainConfig) -> tuple:
        return (key, cfg.cutoff_len, cfg.template, cfg.model_name_or_path)

    def facts(self, cfg: TrainConfig, access: Access | None = None) -> DatasetFacts:
        if access is not None:
            try:
                access.check_path(cfg.dataset, "dataset")
            except ConfigError as exc:
                return DatasetFacts(None, short(error_text(exc)))
        stamp = file_stamp(cfg.dataset, None, cfg.dataset_split)
        if stamp[0] == "error":
            return DatasetFacts(None, short(stamp[1]), problem=stamp[1])
        if stamp[0] == "hub":
            return DatasetFacts(None, "a Hub dataset: the row count is known once it is loaded")
        key = self.key(cfg, stamp)
        with self._lock:
            cached = self._facts.get(key)
        if cached is None:
            try:
                counted = run_job("facts", {"config": cfg.to_dict()})
                note = f"{counted['format']} format" + (f", {counted['skipped']} invalid rows skipped"
                                                         if counted["skipped"] else "")
                problem = None
                if cfg.eval_strategy != "no" and not counted["num_eval"]:  # the same refusal as `trainer check`
                    problem = "val_size: the validation split is empty: raise val_size or set eval_strategy no"
                cached = DatasetFacts(counted["num_train"], note, problem=problem, format=counted["format"],
                                      skipped=counted["skipped"])
            except SandboxError as exc:  # shown in the plan, never a traceback; bad input: a run would be refused
                problem = short(str(exc), 600) if exc.kind == "input" else None
                cached = DatasetFacts(None, short(str(exc)), problem=problem)
            with self._lock:
                self._facts[key] = cached
        with self._lock:
            lengths = self._lengths.get(self._lengths_key(key, cfg))
        return DatasetFacts(cached.num_train, cached.note, lengths, cached.problem, cached.format, cached.skipped)

    def set_lengths(self, cfg: TrainConfig, lengths: list[int]) -> None:
        stamp = file_stamp(cfg.dataset, None, cfg.dataset_split)
        if stamp[0] == "file":
            with self._lock:
                self._lengths[self._lengths_key(self.key(cfg, stamp), cfg)] = list(lengths)


def model_problem(cfg: TrainConfig) -> str | None:
    """Why the model cannot be loaded, where that is known without loading it: a local directory that is
    missing or not a saved model (the demo is built by the trainer; a Hub id is judged when it loads)."""
    name = cfg.model_name_or_path.strip()
    if name.lower() == DEMO_NAME or not looks_like_local_path(name):
        return None
    try:
        model_source(cfg)
    except ModelNotFoundError as exc:
        return str(exc)
    return None


def start_problems(ctx: Context, cfg: TrainConfig, access: Access | None = None) -> dict[str, str]:
    """{field: message} for what `trainer check` would refuse about the dataset, the model and the trackers:
    fast (the dataset's facts are cached per file version), and nothing is loaded with torch."""
    problems: dict[str, str] = {}
    facts = ctx.datasets.facts(cfg, access)
    if facts.problem:
        field = "val_size" if facts.problem.startswith("val_size:") else "dataset"
        problems[field] = facts.problem.removeprefix("val_size: ")
    model = model_problem(cfg)
    if model:
        problems["model_name_or_path"] = model
    for name, message in tracker_problems(cfg):  # a tracker's package or credential missing on this server
        problems.setdefault(name, message)
    return problems
