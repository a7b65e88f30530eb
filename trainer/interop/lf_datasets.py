"""LLaMA-Factory datasets: a dataset_info.json entry read into tunedeck's dataset settings, and written
from them (``file_name`` or ``hf_hub_url``, ``formatting`` alpaca/sharegpt, ``columns``, ``tags``,
``subset``, ``split``). Pure apart from reading the files named; no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from trainer.config import ConfigError, TrainConfig
from trainer.textio import load_json

# dataset_info.json columns (LLaMA-Factory role -> tunedeck's column name), per format.
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                   "history": "history"}
_DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system", "observation_tag": "observation", "function_tag": "function_call"}
_OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                "system_tag": "system"}
LLAMAFACTORY_DEFAULT_DATASET_DIR = "data"



def import_dataset(data: dict[str, Any], out: dict[str, Any], unmapped: dict[str, str], notes: list[str],
                    consumed: set[str], source: str | None, base_dir: Union[str, Path, None]) -> None:
    consumed.update({"dataset", "dataset_dir"})
    names_value = data.get("dataset")
    if not names_value:
        raise ConfigError([("dataset", "missing: name the dataset (an entry of dataset_dir/dataset_info.json)")],
                          source)
    if isinstance(names_value, str):
        names = [n.strip() for n in names_value.split(",")]
    elif isinstance(names_value, list):
        names = [str(n).strip() for n in names_value]
    else:
        raise ConfigError([("dataset", f"expected dataset names separated by commas, got {names_value!r}")], source)
    names = [n for n in names if n]
    if len(names) > 1:
        unmapped["dataset"] = f"tunedeck trains on one dataset: imported '{names[0]}', left out " \
                              f"{', '.join(names[1:])} (merge them into one file to train on all)"
    name = names[0]
    dataset_dir_value = str(data.get("dataset_dir") or LLAMAFACTORY_DEFAULT_DATASET_DIR)
    if dataset_dir_value == "ONLINE":  # LLaMA-Factory: the names are Hub dataset ids
        out["dataset"] = name
        notes.append(f"dataset_dir ONLINE: '{name}' is a Hugging Face Hub dataset id")
        return
    if dataset_dir_value.startswith("REMOTE:"):  # LLaMA-Factory downloads dataset_info.json from a Hub repo
        repo = dataset_dir_value[len("REMOTE:"):]
        out["dataset"] = str(Path(repo) / name)  # a path that does not exist, so `check` names it as missing
        unmapped["dataset_dir"] = f"{dataset_dir_value}: LLaMA-Factory downloads dataset_info.json and the data " \
                                  f"from the Hub dataset repository {repo}; tunedeck does not: download it and set " \
                                  f"dataset to the file of '{name}' before training"
        return
    dataset_dir = _resolve_dir(dataset_dir_value, base_dir)
    info_path = dataset_dir / "dataset_info.json" if dataset_dir else None
    info: dict[str, Any] = {}
    if info_path is not None and info_path.is_file():
        try:
            info = load_json(info_path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise ConfigError([("dataset_dir", f"{info_path}: invalid JSON at line {exc.lineno}, column "
                                f"{exc.colno}: {exc.msg}")], source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("dataset_dir", f"{info_path}: cannot read: {exc}")], source) from None
        if not isinstance(info, dict):
            raise ConfigError([("dataset_dir", f"{info_path}: expected a JSON object of dataset entries")], source)
    entry = info.get(name)
    if entry is None:
        # No description: LLaMA-Factory would fail; take the name as a file or Hub id where it is one.
        direct = (dataset_dir / name) if dataset_dir else None
        if direct is not None and direct.is_file():
            out["dataset"] = str(direct)
            notes.append(f"dataset '{name}' is not in dataset_info.json; used the file {direct}")
        else:
            # Written as the file LLaMA-Factory would not find either, so `check` and training name it as
            # missing rather than trying the name as a Hub dataset id.
            out["dataset"] = str(direct) if direct is not None else name
            if info_path is not None and info_path.is_file():
                unmapped["dataset_dir"] = f"dataset '{name}' has no entry in {info_path} (LLaMA-Factory fails on it " \
                                          "too): set dataset to a local file or a Hub id before training"
            else:
                unmapped["dataset_dir"] = f"dataset '{name}': no {dataset_dir_value}/dataset_info.json beside the " \
                                          "YAML, above it or in the current folder: set dataset to its file (in " \
                                          "LLaMA-Factory's data folder) or a Hub id before training"
        return
    if not isinstance(entry, dict):
        raise ConfigError([("dataset", f"{info_path}: the entry for '{name}' is not a JSON object")], source)
    for key in ("columns", "tags"):  # LLaMA-Factory's shape: {"prompt": "instruction", ...}
        value = entry.get(key)
        if value is not None and not (isinstance(value, dict)
                                      and all(isinstance(v, (str, type(None))) for v in value.values())):
            raise ConfigError([("dataset", f"{info_path}: the entry for '{name}': \"{key}\" must be a JSON object "
                                f"of names, as {{\"prompt\": \"instruction\"}}; got {json.dumps(value)[:80]}")], source)
        if value is not None:  # a null name means the role is not used, as LLaMA-Factory reads it
            entry = {**entry, key: {role: column for role, column in value.items() if column is not None}}
    _refuse_kind(name, entry, info_path, source)
    notes.append(f"dataset '{name}' resolved through {info_path}")
    from trainer.datasets.sources import FILE_SUFFIXES

    if entry.get("hf_hub_url"):
        out["dataset"] = str(entry["hf_hub_url"])
    elif entry.get("file_name"):
        path = Path(str(entry["file_name"]))
        path = path if path.is_absolute() else dataset_dir / path  # type: ignore[operator]
        out["dataset"] = str(path)
        if path.is_dir():
            unmapped["dataset"] = f"{path} is a folder of files: tunedeck reads one file; name one of them"
        elif path.suffix.lower() not in FILE_SUFFIXES:  # LLaMA-Factory also reads .txt (a row per line) and .arrow
            unmapped["dataset"] = f"'{name}' is a {path.suffix or 'suffix-less'} file ({path.name}): tunedeck reads " \
                                  f"{', '.join(FILE_SUFFIXES)}; convert it (e.g. one {{\"text\": ...}} JSON line per " \
                                  "line of text) and set dataset to the new file"
    elif entry.get("ms_hub_url") or entry.get("om_hub_url"):
        out["dataset"] = str(entry.get("ms_hub_url") or entry.get("om_hub_url"))
        unmapped["dataset"] = "ModelScope/Modelers hub datasets are not supported: kept the id; set a Hugging Face " \
                              "Hub id or a local file"
    elif entry.get("script_url"):
        out["dataset"] = str(entry["script_url"])
        unmapped["dataset"] = "dataset loading scripts are not supported: set a file or Hub id"
    else:
        raise ConfigError([("dataset", f"{info_path}: the entry for '{name}' has no file_name or hf_hub_url")],
                          source)
    if entry.get("subset"):
        out["dataset_subset"] = str(entry["subset"])
    if entry.get("split"):
        out["dataset_split"] = str(entry["split"])
    for key in ("folder", "num_samples", "cloud_file_name"):
        if entry.get(key):
            unmapped[f"dataset_info.{key}"] = f"{entry[key]!r}: not supported (dataset entry '{name}')"
    formatting = str(entry.get("formatting") or "alpaca")
    columns = entry.get("columns") or {}
    tags = {**_DEFAULT_TAGS, **(entry.get("tags") or {})}
    if out.get("dataset_format") != "text" and formatting == "alpaca" and set(columns) == {"prompt"}:
        # LLaMA-Factory's pre-training corpora (c4_demo, fineweb, ...): text only, no response to train on.
        out["dataset_format"] = "text"
        notes.append(f"dataset '{name}' is plain text (only a prompt column, '{columns['prompt']}', no response): "
                     "imported as plain-text training (dataset_format text), as LLaMA-Factory's stage pt reads it; "
                     "its stage sft would drop every row for having no response")
    if out.get("dataset_format") == "text":  # stage pt: only the prompt column is text
        prompt_col = columns.get("prompt", "text")
        if prompt_col != "text":
            out["column_mapping"] = {prompt_col: "text"}
        return
    mapping: dict[str, str] = {}
    if formatting == "alpaca":
        out["dataset_format"] = "alpaca"
        for role, column in columns.items():
            if role == "kto_tag":
                continue
            if role in _ALPACA_COLUMNS:
                if column and column != _ALPACA_COLUMNS[role]:
                    mapping[str(column)] = _ALPACA_COLUMNS[role]
            elif column:
                unmapped[f"dataset_info.columns.{role}"] = f"column '{column}' ({role}) is not used by tunedeck's SFT"
    elif formatting == "sharegpt":
        openai_style = tags.get("role_tag") == "role" and tags.get("content_tag") == "content"
        out["dataset_format"] = "messages" if openai_style else "sharegpt"
        expected = "messages" if openai_style else "conversations"
        messages_col = columns.get("messages", "conversations")
        if messages_col != expected:
            mapping[str(messages_col)] = expected
        for role in ("system", "tools"):  # tunedeck reads both beside the turns
            if columns.get(role) and columns[role] != role:
                mapping[str(columns[role])] = role
        for role, column in columns.items():
            if role not in ("messages", "system", "tools", "kto_tag") and column:
                unmapped[f"dataset_info.columns.{role}"] = f"column '{column}' ({role}) is not used by tunedeck's SFT"
        from trainer.datasets import SHAREGPT_ROLES

        if tags.get("role_tag") not in ("from", "role") or tags.get("content_tag") not in ("value", "content"):
            unmapped["dataset_info.tags"] = f"role_tag '{tags.get('role_tag')}' / content_tag " \
                                            f"'{tags.get('content_tag')}': tunedeck reads turns as from/value or " \
                                            "role/content; the rows will not load as they are"
        for tag in ("user_tag", "assistant_tag", "system_tag", "observation_tag", "function_tag"):
            if str(tags.get(tag)).lower() not in SHAREGPT_ROLES:
                unmapped[f"dataset_info.tags.{tag}"] = f"role '{tags.get(tag)}' is not one tunedeck knows " \
                                                       f"({', '.join(SHAREGPT_ROLES)}); rename it in the data"
    else:
        unmapped["dataset_info.formatting"] = f"'{formatting}' is unknown: the format is detected from the columns"
    kto = columns.get("kto_tag")
    if kto:
        # tunedeck names KTO data by a true/false kto_tag or label column (datasets/kinds.py).
        if kto not in ("kto_tag", "label"):
            mapping[str(kto)] = "kto_tag"
        unmapped["dataset"] = f"'{name}' is KTO data (its kto_tag column '{kto}' marks which answers to imitate): " \
                              "tunedeck trains SFT, so `check` refuses it unless kto_desirable_only is set, which " \
                              "trains on the desirable rows only"
    if mapping:
        out["column_mapping"] = mapping


_MEDIA_ROLES = ("images", "videos", "audios")


def _refuse_kind(name: str, entry: dict[str, Any], info_path: Any, source: str | None) -> None:
    """Preference and multimodal entries cannot mean an SFT run on text: refused, naming the entry and why."""
    columns = entry.get("columns") if isinstance(entry.get("columns"), dict) else {}
    if entry.get("ranking"):
        raise ConfigError([("dataset", f"{info_path}: '{name}' is a preference (ranking) dataset (chosen and rejected "
                            "answers, for stages dpo/rm; LLaMA-Factory refuses it for sft too): tunedeck trains "
                            "supervised fine-tuning on one answer per prompt; name an SFT dataset")], source)
    media = [f"{role} column '{columns[role]}'" for role in _MEDIA_ROLES if columns.get(role)]
    if media:
        raise ConfigError([("dataset", f"{info_path}: '{name}' is multimodal data ({', '.join(media)}): tunedeck "
                            "fine-tunes text-only models and would train the <image>/<video>/<audio> placeholders as "
                            "literal text; name a text dataset")], source)


def _resolve_dir(value: str, base_dir: Union[str, Path, None]) -> Optional[Path]:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    # LLaMA-Factory reads dataset_dir relative to where llamafactory-cli runs, its checkout's root, while its
    # examples sit folders below it (examples/train_lora/x.yaml names dataset_dir: data): after the YAML's
    # folder and the current one, the folders above the YAML that hold dataset_dir/dataset_info.json.
    base = Path(base_dir) if base_dir is not None else None
    above = [parent / path for parent in base.resolve().parents][:_PARENT_LEVELS] if base is not None else []
    candidates = ([base / path] if base is not None else []) + [Path.cwd() / path]
    for candidate in candidates + above:
        if (candidate / "dataset_info.json").is_file():
            return candidate.resolve()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return candidates[0].resolve()


_PARENT_LEVELS = 4  # examples/v1/train_lora/x.yaml is three folders below LLaMA-Factory's root


def dataset_entry(cfg: TrainConfig, base_dir: Union[str, Path, None], unmapped: dict[str, str],
                   notes: list[str]) -> tuple[str, dict[str, Any], str]:
    """(dataset name, dataset_info.json entry, LLaMA-Factory stage) for cfg's dataset."""
    from trainer.datasets import DataError, resolve_source

    try:
        kind, where = resolve_source(cfg.dataset, base_dir)
    except DataError as exc:
        raise ConfigError([("dataset", str(exc))]) from None
    fmt = cfg.dataset_format
    entry: dict[str, Any] = {}
    file_columns: set[str] = set()
    if kind == "file":
        path = Path(where).resolve()
        entry["file_name"] = str(path)
        name = f"tunedeck_{path.stem}"
        detected, file_columns = _sniff_format(path, cfg.column_mapping)
        if fmt == "auto":
            fmt = detected or "auto"
            notes.append(f"dataset format detected from {path.name}: {fmt}")
    else:
        entry["hf_hub_url"] = where
        name = "tunedeck_" + where.replace("/", "_").replace("-", "_")
        if cfg.dataset_subset:
            entry["subset"] = cfg.dataset_subset
        if cfg.dataset_split != "train":
            entry["split"] = cfg.dataset_split
        if fmt == "auto":
            unmapped["dataset_format"] = "auto (detected when training): LLaMA-Factory needs the format; written " \
                                         "as alpaca — set formatting in dataset_info.json if it is another"
            fmt = "alpaca"
    # tunedeck's column_mapping renames {file column: expected name}; LLaMA-Factory maps {role: file column}.
    renamed = {new: old for old, new in cfg.column_mapping.items()}
    stage = "sft"
    if fmt in ("alpaca", "auto"):
        cols = {role: renamed.get(col, col) for role, col in _ALPACA_COLUMNS.items()}
        entry["columns"] = {"prompt": cols["prompt"], "query": cols["query"], "response": cols["response"]}
        # LLaMA-Factory reads the optional columns only when named, and fails when a named one is missing.
        if kind == "file" and cols["query"] not in file_columns:
            del entry["columns"]["query"]
        for role in ("system", "history"):
            if cols[role] in file_columns:
                entry["columns"][role] = cols[role]
    elif fmt in ("sharegpt", "messages"):
        entry["formatting"] = "sharegpt"
        entry["columns"] = {"messages": renamed.get(fmt if fmt == "messages" else "conversations",
                                                    fmt if fmt == "messages" else "conversations")}
        if fmt == "messages":
            entry["tags"] = dict(_OPENAI_TAGS)
        _optional_columns(entry, renamed, file_columns, kind, notes, ("system", "tools"))
        if fmt == "messages" and kind == "file" and _has_tool_calls(Path(where)):
            unmapped["dataset_format"] = "OpenAI tool_calls/tool messages: LLaMA-Factory reads tool calls as sharegpt " \
                                         "function_call/observation turns (from/value) and would drop these rows; " \
                                         "write the dataset in that form to train them there"
    elif fmt == "prompt_completion":
        entry["columns"] = {"prompt": renamed.get("prompt", "prompt"), "response": renamed.get("completion", "completion")}
        _optional_columns(entry, renamed, file_columns, kind, notes, ("system",))
        notes.append("prompt/completion rows written as alpaca columns prompt -> prompt, response -> completion")
    elif fmt == "text":
        stage = "pt"
        entry["columns"] = {"prompt": renamed.get("text", "text")}
        notes.append("plain-text rows (dataset_format text) are continued pre-training in LLaMA-Factory: stage pt")
    return name, entry, stage


def _optional_columns(entry: dict[str, Any], renamed: dict[str, str], file_columns: set[str], kind: str,
                     notes: list[str], roles: tuple[str, ...]) -> None:
    """Name an optional column (system, tools) only where the file has it: LLaMA-Factory's converter reads
    every named column of every row (KeyError on a row without it)."""
    for role in roles:
        column = renamed.get(role, role)
        if column in file_columns:
            entry["columns"][role] = column
        elif kind != "file" and role == "system":
            notes.append(f"a Hub dataset's columns are not read at export: add \"system\": \"{column}\" to the "
                         "entry's columns if its rows have one")


def _has_tool_calls(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    return '"tool_calls"' in text or '"role": "tool"' in text


def _sniff_format(path: Path, column_mapping: dict[str, str]) -> tuple[Optional[str], set[str]]:
    """(format, columns) of a local JSON/JSONL/CSV file, as tunedeck's auto detection sees it: the format of
    the first rows after column_mapping, the columns of every row before it."""
    from trainer.datasets import detect_format

    rows: list[dict] = []
    if not path.is_file():  # a FIFO would block the read; the dataset check names it later
        return None, set()
    # The format from the first rows; the columns from all of them, as `datasets` builds a file's columns.
    try:
        if path.suffix.lower() == ".jsonl":
            with path.open(encoding="utf-8-sig") as fh:
                rows = [load_json(line) for line in fh if line.strip()]
        elif path.suffix.lower() == ".json":
            doc = load_json(path.read_text(encoding="utf-8-sig"))
            rows = doc if isinstance(doc, list) else []
        elif path.suffix.lower() == ".csv":
            import csv

            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh), [])
            rows = [{h: "x" for h in header}]
    except (OSError, ValueError):
        return None, set()
    rows = [r for r in rows if isinstance(r, dict)]
    mapped = [{column_mapping.get(k, k): v for k, v in r.items()} for r in rows[:50]]
    return detect_format(mapped), {k for r in rows for k in r}


def merge_dataset_info(path: Union[str, Path], entries: dict[str, Any]) -> dict[str, Any]:
    """dataset_info.json at ``path`` with ``entries`` added (replacing same-named ones); ConfigError on a
    broken existing file. Returns the merged mapping (the caller writes it)."""
    path = Path(path)
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = load_json(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise ConfigError([("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; fix or "
                                "remove it")], str(path)) from None
        if not isinstance(existing, dict):
            raise ConfigError([("", "expected a JSON object of dataset entries")], str(path))
    existing.update(entries)
    return existing
