"""LLaMA-Factory interop: import a ``llamafactory-cli train`` YAML, export a config as one.

Import (:func:`import_llamafactory_file` / :func:`import_llamafactory_text`) maps every key it can
onto TrainConfig and lists every key it could not, each with why (``ImportResult.unmapped``). Keys the
file leaves out take LLaMA-Factory's own defaults (LoRA rank 8, alpha = 2 × rank, dropout 0, cutoff
2048, lr 5e-5, micro-batch 8, linear schedule, logging every 500 steps, ...: the schema's ``lf_default``),
so the imported config trains what ``llamafactory-cli train`` would have trained, not what tunedeck's
defaults would. ``dataset`` names are resolved through ``dataset_dir/dataset_info.json`` (lf_datasets.py).

Export (:func:`export_llamafactory`) writes every value explicitly (so LLaMA-Factory's defaults do not
change the run), the dataset as an entry for ``dataset_info.json``, and lists what LLaMA-Factory has no
equivalent for (``ExportResult.unmapped``).

Both directions read one table (lf_table.py: the schema's ``lf=`` keys and the special conversions).
Pure functions on text and dicts, apart from reading the files named; no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from trainer.config import ConfigError, TrainConfig
from trainer.interop.lf_datasets import LLAMAFACTORY_DEFAULT_DATASET_DIR, dataset_entry, import_dataset
from trainer.interop.lf_table import (NOT_TAKEN, SECTIONS, Report, export_renamed, export_skipped, export_special,
                                      finish_import, import_renamed, import_special, shipped_names)
from trainer.plan.hardware import detect_light
from trainer.plan.resolve import Hardware
from trainer.textio import parse_yaml, read_text_file


@dataclass
class ImportResult:
    """An imported config and every key that did not make it, each with why."""

    config: TrainConfig
    unmapped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how keys were interpreted (e.g. the dataset's source)

    def report(self) -> str:
        lines = [f"not imported: {key}: {why}" for key, why in self.unmapped.items()]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


@dataclass
class ExportResult:
    """A LLaMA-Factory training YAML, its dataset_info.json entry and what LLaMA-Factory lacks."""

    yaml_text: str
    data: dict[str, Any]
    dataset_name: str
    dataset_info: dict[str, Any]  # {dataset_name: entry}, for dataset_dir/dataset_info.json
    unmapped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"not exported: {key}: {why}" for key, why in self.unmapped.items()]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# --- import --------------------------------------------------------------------------------------

def import_llamafactory_file(path: Union[str, Path], base_dir: Union[str, Path, None] = None) -> ImportResult:
    """Read a LLaMA-Factory training YAML. ``dataset_dir`` is resolved against ``base_dir`` (default: the
    YAML's folder, then the current directory)."""
    path = Path(path)
    text = read_text_file(path, "YAML file")
    return import_llamafactory_text(text, str(path), base_dir=base_dir if base_dir is not None else path.parent)


def import_llamafactory_text(text: str, source: str | None = None,
                             base_dir: Union[str, Path, None] = None) -> ImportResult:
    data = parse_yaml(text, source)
    if not isinstance(data, dict) or not data:
        what = "empty" if data == {} else f"a {type(data).__name__}, not a mapping of key: value"
        raise ConfigError([("", f"not a LLaMA-Factory training YAML: the file is {what}")], source)
    return import_llamafactory_dict(data, source, base_dir=base_dir)


def import_llamafactory_dict(data: dict[str, Any], source: str | None = None,
                             base_dir: Union[str, Path, None] = None) -> ImportResult:
    """A parsed LLaMA-Factory training config -> ImportResult. Raises ConfigError only when the file
    cannot mean an SFT run at all (another stage, no model, no dataset, values even LLaMA-Factory refuses)."""
    _refuse_not_training(data, source)
    try:
        return _import(data, source, base_dir)
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value of a type nobody writes
        raise ConfigError([("", f"cannot read this LLaMA-Factory config: a value has an unexpected type ({exc})")],
                          source) from None


# Keys that mark LLaMA-Factory's (and Accelerate's) other YAML files, which are not training configs.
_ACCELERATE_KEYS = ("compute_environment", "distributed_type", "num_processes", "mixed_precision", "fsdp_config")
_V1_KEYS = ("train_dataset", "peft_config", "model_class", "dist_config", "kernel_config", "quant_config",
            "micro_batch_size")


def _refuse_not_training(data: dict[str, Any], source: str | None) -> None:
    """LLaMA-Factory's examples folder also holds Accelerate launch configs, v1-trainer configs, inference and
    merge configs: each is named for what it is, rather than told that a training key is missing."""
    keys = [str(k) for k in data]
    has = [k for k in keys if k in _ACCELERATE_KEYS]
    if "compute_environment" in keys or "distributed_type" in keys:
        raise ConfigError([("", f"this is an Accelerate launch config ({', '.join(has)}): it says how "
                            "`accelerate launch` spreads LLaMA-Factory over GPUs, not what to train; import the "
                            "training YAML passed to llamafactory-cli train instead")], source)
    v1 = [k for k in keys if k in _V1_KEYS]
    if "model_name_or_path" not in data and ("model" in data or v1):
        found = (["model"] if "model" in data else []) + v1
        # A v1 file does not say what it trains (sft, dpo or rm is the llamafactory-cli command): not guessed.
        raise ConfigError([(found[0], f"this is a config of LLaMA-Factory's v1 trainer ({', '.join(found)}), whose "
                            "stage is the llamafactory-cli command rather than a key: tunedeck imports the "
                            "`llamafactory-cli train` YAML (model_name_or_path, stage, dataset, finetuning_type, "
                            "...)")], source)
    if data.get("do_train") or data.get("stage") or data.get("dataset"):
        return
    if data.get("export_dir"):
        raise ConfigError([("export_dir", "this is a LLaMA-Factory export (merge) config (export_dir "
                            f"{data['export_dir']}, no dataset): it merges or exports a trained model rather than "
                            "training one; tunedeck merges a run's adapter with `python -m trainer merge`")], source)
    if data.get("model_name_or_path"):
        raise ConfigError([("dataset", "this is a LLaMA-Factory inference config (a model"
                            + (f" and infer_backend {data['infer_backend']}" if data.get("infer_backend") else "")
                            + ", no dataset, stage or do_train): it is for llamafactory-cli chat/api, not training; "
                              "import a training YAML, or chat with a model in tunedeck's Chat tab")], source)
    if not any(k in data for k in ("model_name_or_path", "dataset", "stage", "finetuning_type")):
        shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
        raise ConfigError([("", f"not a LLaMA-Factory training YAML: it has none of model_name_or_path, stage, "
                            f"dataset, finetuning_type (its keys: {shown})")], source)


def _import(data: dict[str, Any], source: str | None, base_dir: Union[str, Path, None]) -> ImportResult:
    data = {str(k): v for k, v in data.items()}
    report = Report()
    out: dict[str, Any] = {}
    consumed: set[str] = set()
    import_renamed(data, out, consumed)
    import_special(data, out, report, consumed, source)
    if not data.get("model_name_or_path"):
        raise ConfigError([("model_name_or_path", "missing: a LLaMA-Factory training YAML names its model "
                            "in model_name_or_path")], source)
    import_dataset(data, out, report.unmapped, report.notes, consumed, source, base_dir)

    for key in data:
        if key in consumed or key in report.unmapped:
            continue
        if key in NOT_TAKEN:
            if key == "split":
                continue
            if data[key] in (None, False, "none", "None", "") and key != "output_dir":
                continue  # an unset option loses nothing
            report.unmapped[key] = NOT_TAKEN[key]
        elif key in TrainConfig.model_fields:
            out[key] = data[key]  # a tunedeck field written into a LLaMA-Factory file
        else:
            report.unmapped[key] = "no equivalent in tunedeck"

    shipped_names(out)
    merged = finish_import(out, report)
    config = _validate_dropping(merged, report.unmapped, source)
    return ImportResult(config, report.unmapped, report.notes)


def _validate_dropping(values: dict[str, Any], unmapped: dict[str, str], source: str | None) -> TrainConfig:
    """TrainConfig from values; a field LLaMA-Factory accepts but tunedeck rejects is reported and reset."""
    for _ in range(len(values) + 1):
        try:
            return TrainConfig.from_dict(values, source)
        except ConfigError as exc:
            fields = [f for f, _ in exc.errors if f in values and f != "model_name_or_path"]
            if not fields:
                raise
            for name, message in exc.errors:
                if name in values and name != "model_name_or_path":
                    unmapped[name] = f"{values[name]!r}: {message}; tunedeck's default used"
                    default = TrainConfig.model_fields[name].default if name in TrainConfig.model_fields else None
                    if name in TrainConfig.model_fields:
                        values[name] = default
                    else:
                        values.pop(name)
    return TrainConfig.from_dict(values, source)


# --- export --------------------------------------------------------------------------------------

def export_llamafactory(cfg: TrainConfig, base_dir: Union[str, Path, None] = None,
                        dataset_dir: Union[str, Path, None] = None,
                        output_dir: str | None = None, hardware: Optional[Hardware] = None) -> ExportResult:
    """A LLaMA-Factory training YAML equivalent to ``cfg``.

    ``dataset_dir``: the folder whose dataset_info.json will hold ``ExportResult.dataset_info`` (written
    into the YAML as dataset_dir; default ``data``, LLaMA-Factory's). ``model_name_or_path: demo`` is
    written as the built demo model's directory. ``hardware`` (default: this machine, through NVML) decides
    what precision ``auto`` is written as.
    """
    report = Report()
    dataset_name, entry, stage = dataset_entry(cfg, base_dir, report.unmapped, report.notes)
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    sections["method"].update(stage=stage, do_train=True)
    sections["dataset"].update(dataset=dataset_name, dataset_dir=str(dataset_dir) if dataset_dir is not None
                               else LLAMAFACTORY_DEFAULT_DATASET_DIR)
    sections["output"].update(output_dir=output_dir or f"saves/{cfg.display_name}", plot_loss=True)
    sections["model"]["model_name_or_path"] = cfg.model_name_or_path
    export_special(cfg, sections, report, hardware if hardware is not None else detect_light())
    export_renamed(cfg, sections, report)
    export_skipped(cfg, report)
    sections["train"]["ddp_timeout"] = 180000000

    d = sections["dataset"]
    text = ["# LLaMA-Factory training config exported by tunedeck: llamafactory-cli train THIS_FILE.yaml",
            f"# The dataset '{dataset_name}' needs an entry in {d['dataset_dir']}/dataset_info.json "
            "(`python -m trainer convert --to llamafactory` writes it there)."]
    for key, why in report.unmapped.items():
        text.append(f"# not exported: {key}: {why}")
    data: dict[str, Any] = {}
    for section, values in sections.items():
        if not values:
            continue
        data.update(values)
        text.append(f"\n### {section}")
        text.append(yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=100).rstrip())
    return ExportResult("\n".join(text) + "\n", data, dataset_name, {dataset_name: entry}, report.unmapped,
                        report.notes)


def to_llamafactory_yaml(cfg: TrainConfig) -> str:
    """One downloadable file (for the page's Export): the LLaMA-Factory YAML, with the dataset_info.json
    entry it needs and what could not be exported as comments at the top."""
    result = export_llamafactory(cfg)
    entry = json.dumps(result.dataset_info, indent=2, ensure_ascii=False)
    head = ["# Add this entry to dataset_info.json in dataset_dir (LLaMA-Factory's data/ folder):"]
    head += [f"#   {line}" for line in entry.splitlines()]
    head += [f"# note: {n}" for n in result.notes]
    return "\n".join(head) + "\n" + result.yaml_text
