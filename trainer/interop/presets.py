"""Presets: built-in recipes (read-only, in ``presets/``) and user presets (``<runs_root>/presets/``).

A preset file is a TrainConfig YAML plus one ``preset:`` mapping of metadata. Metadata keys used:

- ``title``, ``description``: what the page shows; the description says when to use the recipe.
- ``gpu_gb``, ``hardware``: the card the recipe is sized for (informative).
- ``micro_batch: auto``: the micro-batch is left to the memory planner. The config still carries a
  conservative explicit ``per_device_train_batch_size`` so ``check`` and ``train`` work as written;
  :func:`resolve_auto_micro_batch` replaces it by the planner's choice for a given GPU when the
  planner (``trainer.plan.memory``) can make one.
- ``saved_at``: when a user preset was saved (UTC, ISO 8601).
- ``owner``: who saved a user preset (the page's signed-in name; ``local`` on an open page). A preset
  saved before owners were recorded belongs to ``local``: on a server with sign-in, only an admin
  renames, overwrites or deletes it (the page decides who may, through webui/auth.py).

Every function here is pure apart from reading and writing preset files; nothing imports torch.
Errors are :class:`trainer.config.ConfigError` (or a subclass) with a message a user can act on.
Secrets are never written: ``preset_secrets.strip_secrets`` removes any key that names one (token,
password, secret, API key, ...) and any value that looks like one (``hf_...``, ``sk-...``, ...), and
says which.
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import yaml

from trainer.config import ALIAS_KEYS, PRESET_META_KEY, ConfigError, TrainConfig
from trainer.interop.preset_secrets import strip_secrets
from trainer.run.layout import default_runs_root
from trainer.textio import parse_yaml, read_text_file, write_text_atomic

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "presets"
USER_SUBDIR = "presets"
MAX_PRESET_BYTES = 1_000_000  # an upload larger than this is not a preset
MAX_NAME_LENGTH = 80
AUTO = "auto"

# Windows device names: a file called like this cannot be created or opened there.
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}
_NAME_RE = re.compile(r"^[\w][\w .()+\-]*$")


class PresetError(ConfigError):
    """A preset operation that cannot be done (bad name, missing preset, read-only built-in...)."""

    def __init__(self, message: str, field: str = "name", source: str | None = None):
        super().__init__([(field, message)], source)


class UnknownKeysError(ConfigError):
    """A preset with keys this version does not know. ``unknown`` maps each key to a hint.

    Raised by the loaders unless ``allow_unknown=True``; the page then asks the user whether to load
    the rest, and calls again with ``allow_unknown=True``.
    """

    def __init__(self, unknown: dict[str, str], source: str | None = None, hint: str = ""):
        self.unknown = unknown
        keys = ", ".join(unknown)
        lines = [("", f"unknown key{'s' if len(unknown) > 1 else ''} {keys} (written by another version "
                  f"or another tool){hint}")]
        lines += [(key, why) for key, why in unknown.items()]
        lines.append(("", "load the rest and ignore these keys? (allow_unknown=True)"))
        super().__init__(lines, source)


class LoadedPreset(NamedTuple):
    """What a loader returns: unpack as ``meta, config, ignored = load_preset(...)``.

    ``ignored`` maps each key that was not loaded to why: an unknown key (with the closest known
    name), or a secret that was stripped. Empty when everything was loaded.
    """

    meta: dict[str, Any]
    config: TrainConfig
    ignored: dict[str, str]


OWNER_KEY = "owner"
LOCAL_OWNER = "local"  # the owner of what was made on an open page, or before owners were recorded


@dataclass(frozen=True)
class PresetInfo:
    """One entry of :func:`list_presets`. ``error`` is set (and ``title`` is the name) for a broken file."""

    name: str
    title: str
    description: str
    builtin: bool
    path: Path
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    error: Optional[str] = None

    @property
    def owner(self) -> str:
        """Who may change this user preset (with the admins): its saver, ``local`` when none was recorded."""
        return str(self.meta.get(OWNER_KEY) or LOCAL_OWNER)


@dataclass(frozen=True)
class SavedPreset:
    name: str
    path: Path
    stripped: dict[str, str]  # secret keys removed before writing, key -> why


# --- names -----------------------------------------------------------------------------------------

def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def validate_name(name: Any) -> str:
    """The cleaned preset name, or PresetError saying what is wrong with it.

    Allowed: letters, digits, space, ``. _ - ( ) +``, starting with a letter or digit, at most 80
    characters. That excludes path separators, ``..``, absolute paths and NUL bytes, so a name can
    never point outside the presets folder. Built-in names are reserved (built-ins are read-only).
    """
    if not isinstance(name, str):
        raise PresetError(f"a preset name must be text, got {type(name).__name__}")
    if "\x00" in name:
        raise PresetError("the name contains a NUL byte; use letters, digits, spaces and . _ - ( ) +")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise PresetError("the name is empty: give the preset a name")
    if "/" in cleaned or "\\" in cleaned or os.path.isabs(cleaned) or cleaned.startswith("~"):
        raise PresetError(f"'{cleaned}' is a path: a preset name cannot contain / or \\ (presets are stored "
                          "in the runs root's presets folder)")
    if cleaned in (".", "..") or ".." in cleaned:
        raise PresetError(f"'{cleaned}' contains '..': not allowed in a preset name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise PresetError(f"the name is {len(cleaned)} characters long; at most {MAX_NAME_LENGTH}")
    if not _NAME_RE.match(cleaned):
        bad = sorted({c for c in cleaned if not re.match(r"[\w .()+\-]", c)})
        what = ", ".join(repr(c) for c in bad) if bad else "its first character"
        raise PresetError(f"'{cleaned}' has characters a preset name cannot use ({what}); use letters, digits, "
                          "spaces and . _ - ( ) +, starting with a letter or digit")
    if cleaned.endswith((".", " ")):
        raise PresetError(f"'{cleaned}' ends with a dot or a space: not allowed in a preset name")
    stem = cleaned.split(".")[0].casefold()
    if stem in _WINDOWS_RESERVED:
        raise PresetError(f"'{cleaned}' is a reserved device name on Windows; pick another name")
    if cleaned.casefold() in {n.casefold() for n in builtin_names()}:
        raise PresetError(f"'{cleaned}' is a built-in preset (read-only); save yours under another name")
    return cleaned


def user_dir(runs_root: Union[str, Path, None] = None) -> Path:
    return Path(default_runs_root() if runs_root is None else runs_root) / USER_SUBDIR


def _user_path(name: str, runs_root: Union[str, Path, None]) -> Path:
    folder = user_dir(runs_root).resolve()
    path = (folder / f"{name}.yaml").resolve()
    if path.parent != folder:  # belt and braces: validate_name already excludes this
        raise PresetError(f"'{name}' would be stored outside the presets folder")
    return path


# --- reading ---------------------------------------------------------------------------------------

def _split_meta(data: Any, source: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError([("", f"not a preset: the file holds {kind}, not a mapping of field: value")], source)
    meta = data.get(PRESET_META_KEY) or {}
    if not isinstance(meta, dict):
        raise ConfigError([(PRESET_META_KEY, "must be a mapping (title: ..., description: ...)")], source)
    fields = {k: v for k, v in data.items() if k != PRESET_META_KEY}
    return dict(meta), fields


# Names other tools (TRL, PEFT, Axolotl, Unsloth notebooks) give to a field of ours: hints, never applied.
_OTHER_TOOLS_NAMES = {
    "max_seq_length": "cutoff_len", "max_length": "cutoff_len", "sequence_len": "cutoff_len",
    "lora_r": "lora_rank", "r": "lora_rank", "target_modules": "lora_target", "lora_target_modules": "lora_target",
    "load_in_4bit": "quantization_bit", "load_in_8bit": "quantization_bit", "bnb_4bit_quant_type": "quantization_type",
    "bnb_4bit_use_double_quant": "double_quantization", "model_name": "model_name_or_path",
    "base_model": "model_name_or_path", "model": "model_name_or_path", "num_epochs": "num_train_epochs",
    "epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size",
    "micro_batch_size": "per_device_train_batch_size", "lr": "learning_rate",
    "gradient_accumulation": "gradient_accumulation_steps", "use_gradient_checkpointing": "gradient_checkpointing",
    "dataset_name": "dataset", "dataset_path": "dataset", "data_path": "dataset", "bias": "lora_bias",
    "flash_attention": "attn_implementation", "sample_packing": "packing", "val_set_size": "val_size",
}


def _closest(key: str) -> str:
    if key in _OTHER_TOOLS_NAMES:
        return f"did you mean '{_OTHER_TOOLS_NAMES[key]}'? (what other tools call '{key}')"
    close = difflib.get_close_matches(key, list(TrainConfig.model_fields), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "no similar field in this version"


def _looks_like_llamafactory(keys: set[str]) -> bool:
    return bool(keys & {"do_train", "output_dir", "dataset_dir", "overwrite_output_dir", "plot_loss",
                        "ddp_timeout", "preprocessing_num_workers", "flash_attn", "enable_liger_kernel"})


def preset_from_data(data: Any, source: str | None = None, *, allow_unknown: bool = False) -> LoadedPreset:
    """A parsed preset (dict) -> LoadedPreset. Secrets are stripped; unknown keys raise unless allowed."""
    meta, fields = _split_meta(data, source)
    meta, stripped_meta = strip_secrets(meta, f"{PRESET_META_KEY}.")
    fields, stripped = strip_secrets(fields)
    stripped.update(stripped_meta)
    known = set(TrainConfig.model_fields) | ALIAS_KEYS
    unknown = {str(k): _closest(str(k)) for k in fields if not isinstance(k, str) or k not in known}
    if unknown and not allow_unknown:
        hint = ""
        if _looks_like_llamafactory(set(map(str, fields))):
            hint = "; this looks like a LLaMA-Factory training YAML: import it with `python -m trainer convert " \
                   "--from llamafactory` (or Import in the page) to map its keys"
        raise UnknownKeysError(unknown, source, hint)
    fields = {k: v for k, v in fields.items() if str(k) not in unknown}
    # Meta on its own: ConfigError from from_dict would mention only fields.
    config = TrainConfig.from_dict(fields, source)
    ignored = {k: f"unknown key ({why})" for k, why in unknown.items()}
    ignored.update({k: f"secret stripped: {why}" for k, why in stripped.items()})
    return LoadedPreset(meta, config, ignored)


def preset_from_text(text: str, source: str | None = None, *, allow_unknown: bool = False) -> LoadedPreset:
    data = parse_yaml(text, source)
    if data == {} and not text.strip():
        raise ConfigError([("", "the file is empty: not a preset")], source)
    return preset_from_data(data, source, allow_unknown=allow_unknown)


def preset_from_bytes(data: bytes, source: str = "uploaded file", *, allow_unknown: bool = False) -> LoadedPreset:
    """An uploaded preset file's bytes -> LoadedPreset (for the page's Upload). ConfigError on a broken file:
    too large, not UTF-8, a YAML syntax error (with its line and column), not a mapping, bad values."""
    if len(data) > MAX_PRESET_BYTES:
        raise ConfigError([("", f"{len(data):,} bytes is too large for a preset (at most {MAX_PRESET_BYTES:,})")],
                          source)
    if b"\x00" in data:
        raise ConfigError([("", "a binary file, not a YAML preset")], source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([("", f"not UTF-8 text (byte {exc.start}): a preset is a YAML text file")], source) from None
    return preset_from_text(text, source, allow_unknown=allow_unknown)


def preset_from_file(path: Union[str, Path], *, allow_unknown: bool = False) -> LoadedPreset:
    return preset_from_text(read_text_file(path, "preset file"), str(path), allow_unknown=allow_unknown)


def _info(path: Path, builtin: bool) -> PresetInfo:
    try:
        data = parse_yaml(read_text_file(path, "preset file"), str(path))
        meta, _ = _split_meta(data, str(path))
        meta, _ = strip_secrets(meta)
        return PresetInfo(path.stem, str(meta.get("title") or path.stem), str(meta.get("description") or "").strip(),
                          builtin, path, meta)
    except (ConfigError, OSError, UnicodeDecodeError) as exc:
        return PresetInfo(path.stem, path.stem, "", builtin, path, {}, error=str(exc))


def list_presets(runs_root: Union[str, Path, None] = None) -> list[PresetInfo]:
    """Built-in presets (demo first, then by name), then the user's (by name). A broken user file is listed
    with ``error`` set rather than hidden, so it can be fixed or deleted."""
    builtins = sorted(BUILTIN_DIR.glob("*.yaml"), key=lambda p: (p.stem != "demo", p.stem))
    out = [_info(p, True) for p in builtins]
    folder = user_dir(runs_root)
    if folder.is_dir():
        reserved = {p.stem.casefold() for p in builtins}
        for path in sorted(folder.glob("*.yaml"), key=lambda p: p.stem.casefold()):
            if path.stem.casefold() in reserved:  # copied in by hand: the built-in of that name wins
                out.append(PresetInfo(path.stem, path.stem, "", False, path, {},
                                      error=f"{path}: has the name of a built-in preset, which is loaded instead; "
                                            "rename the file to use it"))
            else:
                out.append(_info(path, False))
    return out


def find_preset(name: str, runs_root: Union[str, Path, None] = None) -> PresetInfo:
    """The preset called ``name`` (built-in or user), or PresetError naming the closest ones."""
    presets = list_presets(runs_root)
    for info in presets:
        if info.name == name:
            return info
    for info in presets:
        if info.name.casefold() == str(name).casefold():
            return info
    names = [p.name for p in presets]
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known presets: {', '.join(names)}"
    raise PresetError(f"no preset named '{name}'{hint}")


def load_preset(name_or_path: Union[str, Path], allow_unknown: bool = False,
                runs_root: Union[str, Path, None] = None) -> LoadedPreset:
    """Load a preset by name (built-in or user) or by file path -> ``(meta, config, ignored)``.

    A ``Path``, or a string with a path separator or a .yaml/.yml ending, is a file path (for the CLI);
    any other string is a preset name (see :func:`load_named_preset`). Unknown keys raise
    :class:`UnknownKeysError` (naming each with the closest known field) unless ``allow_unknown``; then
    they are skipped and listed in ``ignored``. Secrets are always skipped and listed in ``ignored``.
    Invalid values raise ConfigError naming the field.
    """
    text = str(name_or_path)
    if "\x00" in text:
        raise PresetError("the name contains a NUL byte")
    if isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith((".yaml", ".yml")):
        return preset_from_file(Path(text), allow_unknown=allow_unknown)
    return load_named_preset(text, allow_unknown=allow_unknown, runs_root=runs_root)


def load_named_preset(name: str, allow_unknown: bool = False,
                      runs_root: Union[str, Path, None] = None) -> LoadedPreset:
    """Load a preset by its name only (what the page calls): never reads a path given as a name."""
    if not isinstance(name, str) or "\x00" in name or "/" in name or "\\" in name or ".." in name \
            or os.path.isabs(name):
        raise PresetError(f"{name!r} is not a preset name (names cannot contain paths)")
    info = find_preset(name.strip(), runs_root)
    return preset_from_file(info.path, allow_unknown=allow_unknown)


# --- writing ---------------------------------------------------------------------------------------

def preset_to_yaml(cfg: Union[TrainConfig, dict[str, Any]], title: str | None = None,
                   description: str | None = None, meta: dict[str, Any] | None = None) -> str:
    """A preset file's text: ``preset:`` metadata first, then every config field. Never holds a secret.

    For the page's Download. ``cfg`` may be a TrainConfig or a dict of form values (validated here).
    """
    text, _ = _render(cfg, title, description, meta)
    return text


def _render(cfg: Union[TrainConfig, dict[str, Any]], title: str | None, description: str | None,
            meta: dict[str, Any] | None) -> tuple[str, dict[str, str]]:
    stripped: dict[str, str] = {}
    if isinstance(cfg, dict):
        values, stripped = strip_secrets({k: v for k, v in cfg.items() if k != PRESET_META_KEY})
        cfg = TrainConfig.from_dict(values)
    values, more = strip_secrets(cfg.to_dict())
    stripped.update(more)
    if more:  # a secret-looking value in a schema field: write the field's default instead
        cfg = TrainConfig.from_dict(values)
        values = cfg.to_dict()
    head: dict[str, Any] = {"title": None, "description": None, **(meta or {})}
    if title is not None:
        head["title"] = str(title)
    if description is not None:
        head["description"] = str(description)
    head, more = strip_secrets(head, f"{PRESET_META_KEY}.")
    stripped.update(more)
    head = {k: v for k, v in head.items() if v not in (None, "")}
    doc: dict[str, Any] = {PRESET_META_KEY: head} if head else {}
    doc.update(values)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100), stripped


def save_user_preset(name: str, cfg: Union[TrainConfig, dict[str, Any]],
                     runs_root: Union[str, Path, None] = None, title: str | None = None,
                     description: str | None = None, overwrite: bool = False,
                     meta: dict[str, Any] | None = None, owner: str | None = None) -> SavedPreset:
    """Save ``cfg`` as user preset ``name`` in ``<runs_root>/presets/<name>.yaml`` (atomically).

    The name is validated (:func:`validate_name`). An existing preset of that name is replaced only
    with ``overwrite=True``. Secrets are stripped and reported in ``SavedPreset.stripped``. ``owner`` is
    recorded in the ``preset:`` block (who may change it is the caller's rule).
    """
    name = validate_name(name)
    path = _user_path(name, runs_root)
    if path.exists() and not overwrite:
        raise PresetError(f"a preset named '{name}' already exists: choose another name or overwrite it")
    head = dict(meta or {})
    head.setdefault("title", name)
    head["saved_at"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    if owner:
        head[OWNER_KEY] = str(owner)
    text, stripped = _render(cfg, title, description, head)
    write_text_atomic(path, text)
    return SavedPreset(name, path, stripped)


def _existing_user_preset(name: str, runs_root: Union[str, Path, None]) -> tuple[str, Path]:
    if isinstance(name, str) and name.strip().casefold() in {n.casefold() for n in builtin_names()}:
        raise PresetError(f"'{name.strip()}' is a built-in preset and read-only")
    name = validate_name(name)
    path = _user_path(name, runs_root)
    if not path.is_file():
        raise PresetError(f"no user preset named '{name}'")
    return name, path


def rename_user_preset(old: str, new: str, runs_root: Union[str, Path, None] = None,
                       overwrite: bool = False) -> Path:
    """Rename a user preset; its title follows when it was the old name. Returns the new path."""
    old, old_path = _existing_user_preset(old, runs_root)
    new = validate_name(new)
    new_path = _user_path(new, runs_root)
    if new_path == old_path:
        return old_path
    if new_path.exists() and not overwrite and new.casefold() != old.casefold():
        raise PresetError(f"a preset named '{new}' already exists", field="new")
    text = old_path.read_text(encoding="utf-8")
    try:
        data = parse_yaml(text, str(old_path))
    except ConfigError:
        data = None
    if isinstance(data, dict) and isinstance(data.get(PRESET_META_KEY), dict) \
            and data[PRESET_META_KEY].get("title") == old:
        data[PRESET_META_KEY]["title"] = new
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    write_text_atomic(new_path, text)
    # On a case-insensitive file system "Mine" -> "mine" is one file: do not delete what was just written.
    if old_path.exists() and not old_path.samefile(new_path):
        old_path.unlink()
    return new_path


def delete_user_preset(name: str, runs_root: Union[str, Path, None] = None) -> None:
    """Delete a user preset. Built-ins are read-only (PresetError)."""
    _, path = _existing_user_preset(name, runs_root)
    path.unlink()


# --- the memory planner's micro-batch ----------------------------------------------------------------

def wants_auto_micro_batch(meta: dict[str, Any]) -> bool:
    return str(meta.get("micro_batch", "")).strip().lower() == AUTO


def resolve_auto_micro_batch(meta: dict[str, Any], cfg: TrainConfig, hw: Any = None,
                             gpu_memory_gb: Optional[float] = None) -> TrainConfig:
    """The config with the memory planner's micro-batch when the preset says ``micro_batch: auto``
    (see :func:`auto_micro_batch`, which also says what it chose)."""
    return auto_micro_batch(meta, cfg, hw, gpu_memory_gb)[0]


def auto_micro_batch(meta: dict[str, Any], cfg: TrainConfig, hw: Any = None,
                     gpu_memory_gb: Optional[float] = None) -> tuple[TrainConfig, Optional[str]]:
    """(config, note): the memory planner's micro-batch when the preset says ``micro_batch: auto``.

    The card is ``gpu_memory_gb``, else the detected GPU of ``hw`` (a plan.Hardware), else the preset's
    ``gpu_gb``. The micro-batch becomes the largest that the planner (trainer/memory.py, through
    plan.resolve_plan's ``largest_micro_batch``) fits on it; the gradient accumulation stays as the
    recipe wrote it. Unchanged (note None) when the preset does not ask, or the model's shape is
    unknown, or not even micro-batch 1 fits (then the plan's memory warning says what to do).
    """
    if not wants_auto_micro_batch(meta):
        return cfg, None
    from trainer.plan.resolve import CPU, resolve_plan

    hw = hw or CPU
    card = gpu_memory_gb or (hw.gpu_total_gb if getattr(hw, "device", "cpu") == "cuda" else None)
    if not card:
        try:
            card = float(meta.get("gpu_gb")) if meta.get("gpu_gb") is not None else None
        except (TypeError, ValueError):
            card = None
    if not card:
        return cfg, None
    plan = resolve_plan(cfg, hw=hw, gpu_memory_gb=card)
    best = plan.to_dict().get("largest_micro_batch")
    if not isinstance(best, int) or best < 1:
        return cfg, None
    if best == cfg.per_device_train_batch_size:
        return cfg, f"micro-batch {best}: the largest that fits a {card:g} GB GPU (memory planner)"
    new = cfg.replace(per_device_train_batch_size=best)
    return new, (f"micro-batch {best} (was {cfg.per_device_train_batch_size}): the largest that fits a {card:g} GB "
                 f"GPU (memory planner); effective batch {best * cfg.gradient_accumulation_steps}")
