"""LLaMA-Factory interop: import a ``llamafactory-cli train`` YAML, export a config as one.

Import (:func:`import_llamafactory_file` / :func:`import_llamafactory_text`) maps every key it can
onto TrainConfig and lists every key it could not, each with why (``ImportResult.unmapped``). Keys the
file leaves out take LLaMA-Factory's own defaults (``LLAMAFACTORY_DEFAULTS``: LoRA rank 8, alpha =
2 × rank, dropout 0, cutoff 2048, lr 5e-5, micro-batch 8, linear schedule, logging every 500 steps,
...), so the imported config trains what ``llamafactory-cli train`` would have trained, not what
tunedeck's defaults would. ``dataset`` names are resolved through ``dataset_dir/dataset_info.json``
(``file_name``, ``hf_hub_url``, ``formatting`` alpaca/sharegpt, ``columns``, ``tags``, ``subset``,
``split``).

Export (:func:`export_llamafactory`) writes every value explicitly (so LLaMA-Factory's defaults do not
change the run), the dataset as an entry for ``dataset_info.json``, and lists what LLaMA-Factory has no
equivalent for (``ExportResult.unmapped``).

Pure functions on text and dicts, apart from reading the files named; no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from trainer.config import LORA_TARGET_ALL, ConfigError, TrainConfig, parse_yaml, read_text_file

# LLaMA-Factory's defaults (its FinetuningArguments / DataArguments / ModelArguments and transformers'
# TrainingArguments) for the TrainConfig fields, applied when an imported file leaves a key out.
LLAMAFACTORY_DEFAULTS: dict[str, Any] = {
    "template": "auto",  # no template: LLaMA-Factory uses the tokenizer's chat template
    "trust_remote_code": False,
    "attn_implementation": "auto",
    "finetuning_type": "lora",
    "quantization_bit": None,
    "quantization_type": "nf4",
    "double_quantization": True,
    "cutoff_len": 2048,
    "max_samples": None,
    "val_size": 0.0,
    "train_on_prompt": False,
    "packing": False,  # LLaMA-Factory packs only for stage pt by default
    "group_by_length": False,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.0,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "optim": "adamw_torch",
    "seed": 42,
    "lora_rank": 8,
    "lora_alpha": 16,  # LLaMA-Factory: 2 x lora_rank
    "lora_dropout": 0.0,
    "lora_target": LORA_TARGET_ALL,
    "use_rslora": False,
    "use_dora": False,
    "gradient_checkpointing": True,
    "precision": "fp32",  # neither bf16 nor fp16: transformers trains without mixed precision
    "use_liger_kernel": False,
    "eval_strategy": "no",
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": None,
    "load_best_model_at_end": False,
    "logging_steps": 500,
    "resume_from_checkpoint": None,
}

# Keys with the same name and meaning on both sides.
_SAME_NAME = (
    "model_name_or_path", "trust_remote_code", "cutoff_len", "max_samples", "val_size", "train_on_prompt",
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
    "weight_decay", "max_grad_norm", "optim", "seed", "lora_rank", "lora_alpha", "lora_dropout", "use_rslora",
    "use_dora", "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit",
    "load_best_model_at_end", "logging_steps", "run_name", "group_by_length", "double_quantization",
    "quantization_type", "resume_from_checkpoint",
)

# Keys tunedeck deliberately does not take, and why.
_NOT_MAPPED: dict[str, str] = {
    "output_dir": "tunedeck chooses the run directory (runs/<run_id>/)",
    "overwrite_output_dir": "every tunedeck run gets a fresh run directory",
    "logging_dir": "tunedeck logs to runs/<run_id>/tensorboard/",
    "plot_loss": "the dashboard always plots the loss",
    "report_to": "tunedeck always writes TensorBoard logs and its own events.jsonl",
    "preprocessing_num_workers": "tunedeck tokenizes in the training process",
    "dataloader_num_workers": "tunedeck chooses the data loader workers",
    "overwrite_cache": "tunedeck keeps no dataset cache to overwrite",
    "ddp_timeout": "tunedeck trains on one node; no distributed timeout to set",
    "deepspeed": "DeepSpeed configs are not supported; use QLoRA or gradient checkpointing to fit memory",
    "fsdp": "FSDP is not supported",
    "save_only_model": "tunedeck checkpoints keep the optimizer state so runs can resume",
    "use_unsloth": "tunedeck does not use Unsloth; use_liger_kernel gives fused kernels",
    "use_unsloth_gc": "tunedeck does not use Unsloth; offload_activations offloads checkpointed activations",
    "eval_dataset": "tunedeck evaluates on a split of the training data (val_size)",
    "tokenized_path": "tunedeck tokenizes every run from the dataset",
    "streaming": "tunedeck loads the dataset into memory",
    "buffer_size": "tunedeck loads the dataset into memory",
    "mix_strategy": "tunedeck trains on one dataset",
    "interleave_probs": "tunedeck trains on one dataset",
    "do_eval": "tunedeck evaluates during training when eval_strategy and val_size are set",
    "do_predict": "prediction is not part of a tunedeck training run",
    "predict_with_generate": "prediction is not part of a tunedeck training run",
    "cache_dir": "models are cached in the Hugging Face cache",
    "hf_hub_token": "secrets are never stored in a config: set HF_TOKEN in the environment",
    "ms_hub_token": "secrets are never stored in a config",
    "om_hub_token": "secrets are never stored in a config",
    "adapter_name_or_path": "tunedeck starts a new adapter (resume a run with resume_from_checkpoint)",
    "additional_target": "tunedeck trains LoRA adapters only (no extra fully-trained modules)",
    "loraplus_lr_ratio": "LoRA+ is not supported",
    "pissa_init": "PiSSA initialisation is not supported",
    "pure_bf16": "tunedeck trains with mixed precision (precision: bf16 keeps fp32 master weights)",
    "use_reentrant_gc": "tunedeck always uses non-reentrant gradient checkpointing",
    "rope_scaling": "RoPE scaling is not configurable in tunedeck",
    "shift_attn": "shift short attention is not supported",
    "neftune_noise_alpha": "NEFTune is not supported",
    "use_llama_pro": "LLaMA Pro is not supported",
    "freeze_trainable_layers": "freeze fine-tuning is not supported (imported as LoRA)",
    "freeze_trainable_modules": "freeze fine-tuning is not supported (imported as LoRA)",
    "freeze_extra_modules": "freeze fine-tuning is not supported (imported as LoRA)",
    "lr_scheduler_kwargs": "scheduler arguments are not configurable in tunedeck",
    "ddp_find_unused_parameters": "tunedeck trains on one node",
    "bf16_full_eval": "evaluation runs in the training precision",
    "include_num_input_tokens_seen": "tunedeck counts tokens itself",
    "print_param_status": "tunedeck reports trainable parameters itself",
    "export_dir": "export settings are not part of training",
    "infer_backend": "inference settings are not part of training",
    "compute_accuracy": "tunedeck reports loss only",
    "disable_shuffling": "tunedeck always shuffles the training rows",
    "upcast_layernorm": "not configurable in tunedeck",
    "upcast_lmhead_output": "not configurable in tunedeck",
    "quantization_device_map": "tunedeck places the model itself",
    "low_cpu_mem_usage": "tunedeck loads models with low CPU memory use",
    "model_revision": "model revisions are not configurable in tunedeck; name a local copy instead",
    "split": "tunedeck reads the dataset split from dataset_info.json (dataset_split)",
}

_FLASH_ATTN = {"auto": "auto", "disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2",
               "flash_attention_2": "flash_attention_2", "eager": "eager"}
_FLASH_ATTN_BACK = {"auto": "auto", "eager": "disabled", "sdpa": "sdpa", "flash_attention_2": "fa2"}
_BNB_METHODS = ("bnb", "bitsandbytes")

# dataset_info.json columns (LLaMA-Factory role -> tunedeck's column name), per format.
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                   "history": "history"}
_SHAREGPT_COLUMNS = {"messages": "conversations", "system": "system"}
_DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system", "observation_tag": "observation", "function_tag": "function_call"}
_OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                "system_tag": "system"}
LLAMAFACTORY_DEFAULT_DATASET_DIR = "data"


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
    try:
        return _import(data, source, base_dir)
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value of a type nobody writes
        raise ConfigError([("", f"cannot read this LLaMA-Factory config: a value has an unexpected type ({exc})")],
                          source) from None


def _import(data: dict[str, Any], source: str | None, base_dir: Union[str, Path, None]) -> ImportResult:
    data = {str(k): v for k, v in data.items()}
    unmapped: dict[str, str] = {}
    notes: list[str] = []
    out: dict[str, Any] = {}
    consumed: set[str] = set()

    def take(key: str) -> Any:
        consumed.add(key)
        return data.get(key)

    stage = take("stage")
    if stage is not None and str(stage) != "sft":
        if str(stage) == "pt":
            out["dataset_format"] = "text"
            notes.append("stage pt (continued pre-training) imported as SFT on plain text (dataset_format text)")
        else:
            raise ConfigError([("stage", f"stage '{stage}' is not supported: tunedeck trains supervised "
                                "fine-tuning (sft) only")], source)
    if not data.get("model_name_or_path"):
        raise ConfigError([("model_name_or_path", "missing: a LLaMA-Factory training YAML names its model "
                            "in model_name_or_path")], source)
    do_train = take("do_train")
    if do_train is False:
        unmapped["do_train"] = "false means no training; tunedeck's run always trains"

    for key in _SAME_NAME:
        if key in data:
            consumed.add(key)
            if data[key] is not None or key in ("max_samples", "save_total_limit", "resume_from_checkpoint"):
                out[key] = data[key]

    method = take("finetuning_type")
    if method is not None:
        if method in ("lora", "full"):
            out["finetuning_type"] = method
        elif method == "freeze":
            out["finetuning_type"] = "lora"
            unmapped["finetuning_type"] = "freeze (training the last layers fully) is not supported: imported as lora"
        else:
            out["finetuning_type"] = "lora"
            unmapped["finetuning_type"] = f"'{method}' is not supported: imported as lora"

    if "lora_target" in data:
        consumed.add("lora_target")
        target = data["lora_target"]
        if isinstance(target, (str, list)) or target is None:
            names = [n.strip() for n in target.split(",")] if isinstance(target, str) else list(target or [])
            out["lora_target"] = LORA_TARGET_ALL if names in (["all"], []) else names
        else:
            unmapped["lora_target"] = f"{target!r} is not a list of layer names: all linear layers used"
    if "lora_alpha" not in data or data.get("lora_alpha") is None:  # LLaMA-Factory: alpha = 2 × rank
        rank = out.get("lora_rank")
        if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0:
            out["lora_alpha"] = 2 * rank

    template = take("template")
    if template:
        out["template"] = _import_template(str(template), unmapped)

    bits = take("quantization_bit")
    qmethod = take("quantization_method")
    if bits is not None:
        if str(bits) in ("4", "8") and (qmethod is None or str(qmethod).lower() in _BNB_METHODS):
            out["quantization_bit"] = int(bits)
        else:
            unmapped["quantization_bit"] = f"{bits}-bit quantization with {qmethod or 'bitsandbytes'} is not " \
                                           "supported (tunedeck quantizes with bitsandbytes, 4 or 8 bits): the " \
                                           "base is loaded unquantized"
    if qmethod is not None and str(qmethod).lower() not in _BNB_METHODS:
        unmapped["quantization_method"] = f"'{qmethod}': tunedeck quantizes with bitsandbytes only"

    bf16, fp16, pure = take("bf16"), take("fp16"), take("pure_bf16")
    if pure:
        out["precision"] = "bf16"
    if bf16 and fp16:
        unmapped["fp16"] = "bf16 and fp16 both set: kept bf16"
        out["precision"] = "bf16"
    elif bf16 or fp16:
        out["precision"] = "bf16" if bf16 else "fp16"

    flash = take("flash_attn")
    if flash is not None:
        if str(flash) in _FLASH_ATTN:
            out["attn_implementation"] = _FLASH_ATTN[str(flash)]
        else:
            unmapped["flash_attn"] = f"unknown value '{flash}'"
    liger = take("enable_liger_kernel")
    if liger is not None:
        out["use_liger_kernel"] = bool(liger)
    disable_gc = take("disable_gradient_checkpointing")
    if disable_gc is not None:
        out["gradient_checkpointing"] = not bool(disable_gc)
    if "gradient_checkpointing" in data:
        consumed.add("gradient_checkpointing")
        out["gradient_checkpointing"] = bool(data["gradient_checkpointing"])
    packing, neat = take("packing"), take("neat_packing")
    if packing is not None:
        out["packing"] = bool(packing)
    if neat:
        # Neat packing keeps packed rows from attending to each other; tunedeck's packing is padding-free
        # with per-row position ids, which does the same where the attention kernel supports it.
        out["packing"] = True
        notes.append("neat_packing imported as packing: tunedeck keeps packed rows apart (per-row position ids)")
    if "evaluation_strategy" in data:
        consumed.add("evaluation_strategy")
        out.setdefault("eval_strategy", data["evaluation_strategy"])
    if "use_unsloth_gc" in data and data.get("use_unsloth_gc"):
        out["offload_activations"] = True
        consumed.add("use_unsloth_gc")
        notes.append("use_unsloth_gc (offloaded gradient checkpointing) imported as offload_activations")
    if out.get("eval_strategy") == "steps" and "eval_steps" not in out:
        # transformers: eval_steps defaults to logging_steps
        out["eval_steps"] = out.get("logging_steps", LLAMAFACTORY_DEFAULTS["logging_steps"])
    metric = take("metric_for_best_model")
    take("greater_is_better")
    if metric not in (None, "eval_loss", "loss"):
        unmapped["metric_for_best_model"] = f"'{metric}': tunedeck keeps the checkpoint with the lowest eval loss"
    if out.get("resume_from_checkpoint") in (False, "false", "False"):
        out["resume_from_checkpoint"] = None

    _import_dataset(data, out, unmapped, notes, consumed, source, base_dir)

    for key in data:
        if key in consumed or key in unmapped:
            continue
        if key in _NOT_MAPPED:
            if key == "split":
                continue
            if data[key] in (None, False, "none", "None", "") and key not in ("output_dir",):
                continue  # an unset option loses nothing
            unmapped[key] = _NOT_MAPPED[key]
        elif key in TrainConfig.model_fields:
            out[key] = data[key]  # a tunedeck field written into a LLaMA-Factory file
        else:
            unmapped[key] = "no equivalent in tunedeck"

    _shipped_names(out)
    merged = {k: v for k, v in LLAMAFACTORY_DEFAULTS.items()}
    merged.update(out)
    if merged.get("warmup_steps") and "warmup_ratio" not in out:
        merged["warmup_ratio"] = 0.0
    if merged.get("eval_strategy") != "no" and merged.get("val_size", 0) == 0:
        unmapped["eval_strategy"] = f"'{merged['eval_strategy']}' but no val_size: tunedeck evaluates on a held-out " \
                                    "split only, so evaluation is off"
        merged["eval_strategy"] = "no"
        merged["load_best_model_at_end"] = False
    config = _validate_dropping(merged, unmapped, source)
    return ImportResult(config, unmapped, notes)


def _shipped_names(out: dict[str, Any]) -> None:
    """The demo model's cache directory and the shipped datasets' files go back to their names (`demo`),
    so an exported demo config imports as the demo again on any machine."""
    from trainer.datasets import SHIPPED_DATASETS
    from trainer.engine.demo import DEMO_NAME, demo_model_dir

    model = out.get("model_name_or_path")
    if isinstance(model, str) and Path(model).expanduser().resolve() == demo_model_dir().resolve():
        out["model_name_or_path"] = DEMO_NAME
    dataset = out.get("dataset")
    for name, path in SHIPPED_DATASETS.items():
        if isinstance(dataset, str) and Path(dataset).expanduser().resolve() == path.resolve():
            out["dataset"] = name


def _import_template(name: str, unmapped: dict[str, str]) -> str:
    from trainer.templates import NAMED_TEMPLATES

    # LLaMA-Factory template names whose text is the same as one of tunedeck's named templates.
    aliases = {"qwen": "chatml", "qwen3": "chatml", "yi": "chatml", "chatml": "chatml", "llama3": "llama3",
               "mistral": "mistral", "llama2": "mistral", "gemma": "gemma", "gemma2": "gemma", "alpaca": "alpaca",
               "vicuna": "vicuna"}
    mapped = aliases.get(name, name)
    if mapped in NAMED_TEMPLATES:
        return mapped
    unmapped["template"] = f"LLaMA-Factory's '{name}' template has no tunedeck equivalent: using the tokenizer's " \
                           "own chat template (template: auto)"
    return "auto"


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


def _import_dataset(data: dict[str, Any], out: dict[str, Any], unmapped: dict[str, str], notes: list[str],
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
    dataset_dir = _resolve_dir(dataset_dir_value, base_dir)
    info_path = dataset_dir / "dataset_info.json" if dataset_dir else None
    info: dict[str, Any] = {}
    if info_path is not None and info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8-sig"))
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
            out["dataset"] = name
            where = str(info_path) if info_path is not None and info_path.is_file() else \
                f"{dataset_dir_value}/dataset_info.json (not found)"
            unmapped["dataset_dir"] = f"dataset '{name}' has no entry in {where}: kept the name as given; set " \
                                      "dataset to a local file or a Hub id before training"
        return
    if not isinstance(entry, dict):
        raise ConfigError([("dataset", f"{info_path}: the entry for '{name}' is not a JSON object")], source)
    notes.append(f"dataset '{name}' resolved through {info_path}")
    if entry.get("ranking"):
        unmapped["dataset"] = f"'{name}' is a preference (ranking) dataset, for DPO/RM: tunedeck trains SFT only"
    if entry.get("hf_hub_url"):
        out["dataset"] = str(entry["hf_hub_url"])
    elif entry.get("file_name"):
        path = Path(str(entry["file_name"]))
        path = path if path.is_absolute() else dataset_dir / path  # type: ignore[operator]
        out["dataset"] = str(path)
        if path.is_dir():
            unmapped["dataset"] = f"{path} is a folder of files: tunedeck reads one file; name one of them"
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
    if out.get("dataset_format") == "text":  # stage pt: only the prompt column is text
        prompt_col = columns.get("prompt", "text")
        if prompt_col != "text":
            out["column_mapping"] = {prompt_col: "text"}
        return
    mapping: dict[str, str] = {}
    if formatting == "alpaca":
        out["dataset_format"] = "alpaca"
        for role, column in columns.items():
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
        if columns.get("system") and columns["system"] != "system":
            mapping[str(columns["system"])] = "system"
        for role, column in columns.items():
            if role not in ("messages", "system") and column:
                unmapped[f"dataset_info.columns.{role}"] = f"column '{column}' ({role}) is not used by tunedeck's SFT"
        from trainer.datasets import SHAREGPT_ROLES

        if tags.get("role_tag") not in ("from", "role") or tags.get("content_tag") not in ("value", "content"):
            unmapped["dataset_info.tags"] = f"role_tag '{tags.get('role_tag')}' / content_tag " \
                                            f"'{tags.get('content_tag')}': tunedeck reads turns as from/value or " \
                                            "role/content; the rows will not load as they are"
        for tag in ("user_tag", "assistant_tag", "system_tag"):
            if str(tags.get(tag)).lower() not in SHAREGPT_ROLES:
                unmapped[f"dataset_info.tags.{tag}"] = f"role '{tags.get(tag)}' is not one tunedeck knows " \
                                                       f"({', '.join(SHAREGPT_ROLES)}); rename it in the data"
    else:
        unmapped["dataset_info.formatting"] = f"'{formatting}' is unknown: the format is detected from the columns"
    if mapping:
        out["column_mapping"] = mapping


def _resolve_dir(value: str, base_dir: Union[str, Path, None]) -> Optional[Path]:
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    candidates = ([Path(base_dir) / path] if base_dir is not None else []) + [Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return candidates[0].resolve()


# --- export --------------------------------------------------------------------------------------

def _dataset_entry(cfg: TrainConfig, base_dir: Union[str, Path, None], unmapped: dict[str, str],
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
        for role in ("system", "history"):
            if cols[role] in file_columns:
                entry["columns"][role] = cols[role]
    elif fmt == "sharegpt":
        entry["formatting"] = "sharegpt"
        entry["columns"] = {"messages": renamed.get("conversations", "conversations"),
                            "system": renamed.get("system", "system")}
    elif fmt == "messages":
        entry["formatting"] = "sharegpt"
        entry["columns"] = {"messages": renamed.get("messages", "messages"), "system": renamed.get("system", "system")}
        entry["tags"] = dict(_OPENAI_TAGS)
    elif fmt == "prompt_completion":
        entry["columns"] = {"prompt": renamed.get("prompt", "prompt"), "response": renamed.get("completion", "completion"),
                            "system": renamed.get("system", "system")}
        notes.append("prompt/completion rows written as alpaca columns prompt -> prompt, response -> completion")
    elif fmt == "text":
        stage = "pt"
        entry["columns"] = {"prompt": renamed.get("text", "text")}
        notes.append("plain-text rows (dataset_format text) are continued pre-training in LLaMA-Factory: stage pt")
    return name, entry, stage


def _sniff_format(path: Path, column_mapping: dict[str, str]) -> tuple[Optional[str], set[str]]:
    """(format, columns) of a local JSON/JSONL/CSV file from its first rows, as tunedeck's auto detection
    sees them: the format after column_mapping, the columns before it."""
    from trainer.datasets import detect_format

    rows: list[dict] = []
    try:
        if path.suffix.lower() == ".jsonl":
            with path.open(encoding="utf-8-sig") as fh:
                for line in fh:
                    if line.strip():
                        rows.append(json.loads(line))
                    if len(rows) >= 50:
                        break
        elif path.suffix.lower() == ".json":
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
            rows = doc[:50] if isinstance(doc, list) else []
        elif path.suffix.lower() == ".csv":
            import csv

            with path.open(encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh), [])
            rows = [{h: "x" for h in header}]
    except (OSError, ValueError):
        return None, set()
    rows = [r for r in rows if isinstance(r, dict)]
    mapped = [{column_mapping.get(k, k): v for k, v in r.items()} for r in rows]
    return detect_format(mapped), {k for r in rows for k in r}


def export_llamafactory(cfg: TrainConfig, base_dir: Union[str, Path, None] = None,
                        dataset_dir: Union[str, Path, None] = None,
                        output_dir: str | None = None) -> ExportResult:
    """A LLaMA-Factory training YAML equivalent to ``cfg``.

    ``dataset_dir``: the folder whose dataset_info.json will hold ``ExportResult.dataset_info`` (written
    into the YAML as dataset_dir; default ``data``, LLaMA-Factory's). ``model_name_or_path: demo`` is
    written as the built demo model's directory.
    """
    unmapped: dict[str, str] = {}
    notes: list[str] = []
    model = cfg.model_name_or_path
    if model.strip().lower() == "demo":
        from trainer.engine.demo import ensure_demo_model

        model = str(ensure_demo_model())
        notes.append(f"model demo written as its local directory {model}")
    dataset_name, entry, stage = _dataset_entry(cfg, base_dir, unmapped, notes)

    sections: dict[str, dict[str, Any]] = {"model": {}, "method": {}, "dataset": {}, "output": {}, "train": {},
                                           "eval": {}}
    m = sections["model"]
    m["model_name_or_path"] = model
    if cfg.trust_remote_code:
        m["trust_remote_code"] = True
    if cfg.quantization_bit:
        m["quantization_bit"] = cfg.quantization_bit
        m["quantization_method"] = "bitsandbytes"
        m["quantization_type"] = cfg.quantization_type
        m["double_quantization"] = cfg.double_quantization
    m["flash_attn"] = _FLASH_ATTN_BACK[cfg.attn_implementation]
    if cfg.use_liger_kernel is not None:
        m["enable_liger_kernel"] = bool(cfg.use_liger_kernel)
    else:
        notes.append("use_liger_kernel auto: left to LLaMA-Factory's default (off)")

    me = sections["method"]
    me["stage"] = stage
    me["do_train"] = True
    me["finetuning_type"] = cfg.finetuning_type
    if cfg.finetuning_type == "lora":
        me["lora_target"] = "all" if cfg.lora_target == LORA_TARGET_ALL else ",".join(cfg.lora_target)
        me["lora_rank"] = cfg.lora_rank
        me["lora_alpha"] = cfg.lora_alpha
        me["lora_dropout"] = cfg.lora_dropout
        if cfg.use_rslora:
            me["use_rslora"] = True
        if cfg.use_dora:
            me["use_dora"] = True
        if cfg.lora_bias != "none":
            unmapped["lora_bias"] = f"'{cfg.lora_bias}': LLaMA-Factory trains no LoRA bias"
    me["disable_gradient_checkpointing"] = not cfg.gradient_checkpointing
    if cfg.offload_activations:
        unmapped["offload_activations"] = "LLaMA-Factory has no activation offload (use_unsloth_gc needs Unsloth)"

    d = sections["dataset"]
    d["dataset"] = dataset_name
    d["dataset_dir"] = str(dataset_dir) if dataset_dir is not None else LLAMAFACTORY_DEFAULT_DATASET_DIR
    if cfg.template == "plain":
        d["template"] = "default"
        notes.append("template plain written as LLaMA-Factory's 'default' (Human:/Assistant: rather than "
                     "User:/Assistant:)")
    elif cfg.template != "auto":
        d["template"] = cfg.template
    else:
        notes.append("template auto: no template key, so LLaMA-Factory uses the tokenizer's chat template")
    d["cutoff_len"] = cfg.cutoff_len
    if cfg.max_samples is not None:
        d["max_samples"] = cfg.max_samples
    if cfg.train_on_prompt:
        d["train_on_prompt"] = True
    if cfg.packing is None:
        notes.append("packing auto: written as packing: false (LLaMA-Factory's SFT default)")
        d["packing"] = False
    else:
        d["packing"] = bool(cfg.packing)
        if cfg.packing:
            d["neat_packing"] = True  # packed rows do not attend to each other, as in tunedeck
    if cfg.skip_invalid_rows:
        unmapped["skip_invalid_rows"] = "LLaMA-Factory has no such switch (it skips unusable rows with a warning)"

    o = sections["output"]
    o["output_dir"] = output_dir or f"saves/{cfg.display_name}"
    o["logging_steps"] = cfg.logging_steps
    o["save_strategy"] = cfg.save_strategy
    o["save_steps"] = cfg.save_steps
    if cfg.save_total_limit is not None:
        o["save_total_limit"] = cfg.save_total_limit
    o["plot_loss"] = True
    o["overwrite_output_dir"] = cfg.resume_from_checkpoint is None
    o["report_to"] = "tensorboard"
    if cfg.run_name:
        o["run_name"] = cfg.run_name

    t = sections["train"]
    t["per_device_train_batch_size"] = cfg.per_device_train_batch_size
    t["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps
    t["learning_rate"] = cfg.learning_rate
    t["num_train_epochs"] = cfg.num_train_epochs
    if cfg.max_steps > 0:
        t["max_steps"] = cfg.max_steps
    t["lr_scheduler_type"] = cfg.lr_scheduler_type
    t["warmup_ratio"] = cfg.warmup_ratio
    if cfg.warmup_steps:
        t["warmup_steps"] = cfg.warmup_steps
    t["weight_decay"] = cfg.weight_decay
    t["max_grad_norm"] = cfg.max_grad_norm
    t["optim"] = cfg.optim
    t["seed"] = cfg.seed
    if cfg.group_by_length is not None:
        t["group_by_length"] = bool(cfg.group_by_length)
    else:
        notes.append("group_by_length auto: written as false (transformers' default)")
        t["group_by_length"] = False
    if cfg.precision in ("bf16", "fp16"):
        t[cfg.precision] = True
    elif cfg.precision == "auto":
        t["bf16"] = True
        notes.append("precision auto: written as bf16: true (change to fp16 on GPUs without bf16, e.g. T4, V100)")
    if cfg.resume_from_checkpoint == "last":
        notes.append("resume_from_checkpoint last: LLaMA-Factory resumes from output_dir's newest checkpoint when "
                     "overwrite_output_dir is false")
    elif cfg.resume_from_checkpoint:
        t["resume_from_checkpoint"] = cfg.resume_from_checkpoint
    t["ddp_timeout"] = 180000000

    e = sections["eval"]
    if cfg.val_size:
        e["val_size"] = cfg.val_size
    if cfg.per_device_eval_batch_size is not None:
        e["per_device_eval_batch_size"] = cfg.per_device_eval_batch_size
    e["eval_strategy"] = cfg.eval_strategy
    if cfg.eval_strategy == "steps":
        e["eval_steps"] = cfg.eval_steps
    if cfg.load_best_model_at_end:
        e["load_best_model_at_end"] = True
        e["metric_for_best_model"] = "eval_loss"
    if cfg.early_stopping_patience is not None:
        unmapped["early_stopping_patience"] = "LLaMA-Factory has no early stopping"
    for name in TrainConfig.model_fields:
        if name not in _EXPORT_HANDLED and getattr(cfg, name) != TrainConfig.model_fields[name].default:
            unmapped.setdefault(name, "no LLaMA-Factory equivalent")

    text = ["# LLaMA-Factory training config exported by tunedeck: llamafactory-cli train THIS_FILE.yaml",
            f"# The dataset '{dataset_name}' needs an entry in {d['dataset_dir']}/dataset_info.json "
            "(`python -m trainer convert --to llamafactory` writes it there)."]
    for key, why in unmapped.items():
        text.append(f"# not exported: {key}: {why}")
    data: dict[str, Any] = {}
    for section, values in sections.items():
        if not values:
            continue
        data.update(values)
        text.append(f"\n### {section}")
        text.append(yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=100).rstrip())
    return ExportResult("\n".join(text) + "\n", data, dataset_name, {dataset_name: entry}, unmapped, notes)


_EXPORT_HANDLED = {
    "model_name_or_path", "template", "trust_remote_code", "attn_implementation", "stage", "finetuning_type",
    "quantization_bit", "dataset", "dataset_format", "dataset_split", "dataset_subset", "column_mapping",
    "cutoff_len", "max_samples", "val_size", "train_on_prompt", "skip_invalid_rows", "packing", "group_by_length",
    "per_device_train_batch_size", "gradient_accumulation_steps", "per_device_eval_batch_size", "num_train_epochs",
    "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay",
    "max_grad_norm", "optim", "seed", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "lora_bias",
    "use_rslora", "use_dora", "quantization_type", "double_quantization", "gradient_checkpointing",
    "offload_activations", "precision", "use_liger_kernel", "eval_strategy", "eval_steps", "save_strategy",
    "save_steps", "save_total_limit", "load_best_model_at_end", "early_stopping_patience",
    "early_stopping_threshold", "resume_from_checkpoint", "run_name", "logging_steps",
}


def merge_dataset_info(path: Union[str, Path], entries: dict[str, Any]) -> dict[str, Any]:
    """dataset_info.json at ``path`` with ``entries`` added (replacing same-named ones); ConfigError on a
    broken existing file. Returns the merged mapping (the caller writes it)."""
    path = Path(path)
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise ConfigError([("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; fix or "
                                "remove it")], str(path)) from None
        if not isinstance(existing, dict):
            raise ConfigError([("", "expected a JSON object of dataset entries")], str(path))
    existing.update(entries)
    return existing


def to_llamafactory_yaml(cfg: TrainConfig) -> str:
    """One downloadable file (for the page's Export): the LLaMA-Factory YAML, with the dataset_info.json
    entry it needs and what could not be exported as comments at the top."""
    result = export_llamafactory(cfg)
    entry = json.dumps(result.dataset_info, indent=2, ensure_ascii=False)
    head = ["# Add this entry to dataset_info.json in dataset_dir (LLaMA-Factory's data/ folder):"]
    head += [f"#   {line}" for line in entry.splitlines()]
    head += [f"# note: {n}" for n in result.notes]
    return "\n".join(head) + "\n" + result.yaml_text


# Names the dashboard looks up.
import_file = import_llamafactory_file
