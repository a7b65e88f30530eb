"""The LLaMA-Factory mapping, one table read in both directions.

A field with the same meaning under a LLaMA-Factory key declares it in the schema (``lf="cutoff_len"``,
and ``lf_default`` where LLaMA-Factory's default differs from ours): :func:`lf_keys` and
:func:`lf_defaults` read those declarations, and import and export both walk them. What is not a rename
is converted here, both ways, in :func:`import_special` / :func:`export_special` (fields listed in
``SPECIAL``); the dataset and its dataset_info.json entry in lf_datasets.py. ``NOT_TAKEN`` lists the
LLaMA-Factory keys tunedeck deliberately leaves out, with why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import LORA_TARGET_ALL, ConfigError, TrainConfig
from trainer.config_rules import GPU_ONLY_OPTIMIZERS, parse_switch
from trainer.fieldspecs import field_specs
from trainer.plan.resolve import Hardware

# Fields converted by code rather than renamed: field -> the LLaMA-Factory keys that carry it.
SPECIAL: dict[str, str] = {
    "template": "template (the same names; yi, gemma2, qwen3_nothink mapped to tunedeck's; plain <-> default)",
    "attn_implementation": "flash_attn (auto, disabled, sdpa, fa2)",
    "stage": "stage (sft; pt is plain-text training, dataset_format text)",
    "finetuning_type": "finetuning_type (freeze is imported as lora)",
    "quantization_bit": "quantization_bit with quantization_method bnb (LLaMA-Factory's QuantizationMethod value)",
    "lora_target": "lora_target (all <-> all-linear, comma-separated names)",
    "gradient_checkpointing": "disable_gradient_checkpointing (inverted)",
    "offload_activations": "use_unsloth_gc on import; LLaMA-Factory has no activation offload without Unsloth",
    "precision": "bf16, fp16, pure_bf16",
    "packing": "packing and neat_packing (stage pt packs by default)",
    "warmup_ratio": "warmup_steps below 1 (transformers 5 took warmup_ratio into warmup_steps); warmup_ratio before",
    "warmup_steps": "warmup_steps of 1 or more",
    "group_by_length": "train_sampling_strategy: group_by_length (transformers 5; group_by_length before it)",
    "resume_from_checkpoint": "resume_from_checkpoint (a checkpoint folder; last has no equivalent)",
    "dataset": "dataset and dataset_dir with a dataset_info.json entry (lf_datasets.py)",
    "dataset_format": "formatting, columns and tags of the dataset_info.json entry (lf_datasets.py)",
    "dataset_split": "split of the dataset_info.json entry (lf_datasets.py)",
    "dataset_subset": "subset of the dataset_info.json entry (lf_datasets.py)",
    "column_mapping": "columns of the dataset_info.json entry (lf_datasets.py)",
}

# LLaMA-Factory keys tunedeck deliberately does not take, and why.
NOT_TAKEN: dict[str, str] = {
    "output_dir": "tunedeck chooses the run directory (runs/<run_id>/)",
    "overwrite_output_dir": "every tunedeck run gets a fresh run directory",
    "logging_dir": "tunedeck logs to runs/<run_id>/tensorboard/",
    "plot_loss": "the dashboard always plots the loss",
    "preprocessing_num_workers": "tunedeck picks the tokenizing processes from the CPU cores",
    "dataloader_num_workers": "tunedeck chooses the data loader workers",
    "overwrite_cache": "tunedeck's tokenized-data cache is keyed by the file, tokenizer and options: never stale",
    "ddp_timeout": "tunedeck's launches keep torch's default collective timeout",
    "fsdp": "LLaMA-Factory's FSDP options are not read: set distributed_type fsdp (offload_params to offload)",
    "save_only_model": "tunedeck checkpoints keep the optimizer state so runs can resume",
    "use_unsloth": "tunedeck does not use Unsloth; use_liger_kernel gives fused kernels",
    "use_unsloth_gc": "tunedeck does not use Unsloth; offload_activations offloads checkpointed activations",
    "eval_dataset": "tunedeck evaluates on a split of the training data (val_size)",
    "tokenized_path": "tunedeck caches tokenized rows in the runs root itself (keyed by the file and options)",
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
    "use_reentrant_gc": "tunedeck always uses non-reentrant gradient checkpointing",
    "rope_scaling": "RoPE scaling is not configurable in tunedeck",
    "shift_attn": "shift short attention is not supported",
    "use_llama_pro": "LLaMA Pro is not supported",
    "freeze_trainable_layers": "freeze fine-tuning is not supported (imported as LoRA)",
    "freeze_trainable_modules": "freeze fine-tuning is not supported (imported as LoRA)",
    "freeze_extra_modules": "freeze fine-tuning is not supported (imported as LoRA)",
    "lr_scheduler_kwargs": "scheduler arguments are not configurable in tunedeck",
    "ddp_find_unused_parameters": "not configurable in tunedeck",
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

# Sections of an exported YAML, as in LLaMA-Factory's examples; a field's group decides where it goes.
SECTIONS = ("model", "method", "dataset", "output", "train", "eval")
_GROUP_SECTION = {"model": "model", "method": "method", "data": "dataset", "batch": "train", "optimizer": "train",
                  "lora": "method", "memory": "model", "eval": "eval", "logging": "output"}
_KEY_SECTION = {"val_size": "eval", "per_device_eval_batch_size": "eval", "save_strategy": "output",
                "save_steps": "output", "save_total_limit": "output"}

_FLASH_ATTN = {"auto": "auto", "disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2",
               "flash_attention_2": "flash_attention_2", "eager": "eager"}
_FLASH_ATTN_BACK = {"auto": "auto", "eager": "disabled", "sdpa": "sdpa", "flash_attention_2": "fa2"}
_BNB_METHODS = ("bnb", "bitsandbytes")
# LLaMA-Factory's QuantizationMethod values: an unknown string is accepted by its parser and quantizes nothing.
LF_QUANTIZATION_METHODS = ("bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8")
# LLaMA-Factory template names whose text is that of a tunedeck template of another name (its own names
# map to themselves; tests/test_templates_lf.py holds each to LLaMA-Factory's rendering).
_TEMPLATE_ALIASES = {"yi": "chatml", "qwen3_nothink": "chatml", "gemma2": "gemma"}


@dataclass
class Report:
    """What a conversion left behind (key -> why) and how it read what it did take."""

    unmapped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@functools.cache
def lf_keys() -> dict[str, str]:
    """{field: LLaMA-Factory key} for every field the schema declares with the same meaning there."""
    return {s.name: s.lf for s in field_specs() if s.lf}


@functools.cache
def lf_defaults() -> dict[str, Any]:
    """LLaMA-Factory's defaults where they differ from tunedeck's: an imported file that leaves a key out
    trains what ``llamafactory-cli train`` would have trained."""
    return {s.name: s.lf_default for s in field_specs() if s.lf_default != s.default}


def section_of(name: str) -> str:
    """The exported YAML's section for a field (or a LLaMA-Factory key named after one)."""
    if name in _KEY_SECTION:
        return _KEY_SECTION[name]
    group = TrainConfig.model_fields[name].json_schema_extra["group"]  # type: ignore[index]
    return _GROUP_SECTION[group]


# --- import ------------------------------------------------------------------------------------------

def import_renamed(data: dict[str, Any], out: dict[str, Any], consumed: set[str]) -> None:
    """Every field with a LLaMA-Factory key of the same meaning, from ``data`` into ``out``."""
    optional = {s.name for s in field_specs() if s.optional}
    for name, key in lf_keys().items():
        if key in data:
            consumed.add(key)
            if data[key] is not None or name in optional:
                out[name] = data[key]


def import_special(data: dict[str, Any], out: dict[str, Any], report: Report, consumed: set[str],
                   source: str | None) -> None:
    """The conversions that are not a rename, LLaMA-Factory -> tunedeck."""
    unmapped, notes = report.unmapped, report.notes

    def take(key: str) -> Any:
        consumed.add(key)
        return data.get(key)

    _refuse_predict_only(data, source)
    stage = take("stage")
    if stage is not None and str(stage) != "sft":
        if str(stage) == "pt":
            out["dataset_format"] = "text"
            notes.append("stage pt (continued pre-training) imported as SFT on plain text (dataset_format text)")
            if data.get("packing") is None:  # LLaMA-Factory packs pt data unless told not to
                out["packing"] = True
                notes.append("stage pt: packing on, as LLaMA-Factory packs pre-training text by default")
        else:
            raise ConfigError([("stage", f"stage '{stage}' is not supported: tunedeck trains supervised "
                                "fine-tuning (sft) only")], source)
    if take("do_train") is False:
        unmapped["do_train"] = "false means no training; tunedeck's run always trains"

    method = take("finetuning_type")
    if method is not None:
        out["finetuning_type"] = method if method in ("lora", "full") else "lora"
        if method == "freeze":
            unmapped["finetuning_type"] = "freeze (training the last layers fully) is not supported: imported as lora"
        elif method not in ("lora", "full"):
            unmapped["finetuning_type"] = f"'{method}' is not supported: imported as lora"

    if "lora_target" in data:
        target = take("lora_target")
        if isinstance(target, (str, list)) or target is None:
            names = [n.strip() for n in target.split(",")] if isinstance(target, str) else list(target or [])
            out["lora_target"] = LORA_TARGET_ALL if names in (["all"], []) else names
        else:
            unmapped["lora_target"] = f"{target!r} is not a list of layer names: all linear layers used"
    if data.get("lora_alpha") is None:  # LLaMA-Factory: alpha = 2 × rank
        rank = out.get("lora_rank")
        if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0:
            out["lora_alpha"] = 2 * rank

    template = take("template")
    if template:
        out["template"] = _import_template(str(template), unmapped, notes)

    bits, qmethod = take("quantization_bit"), take("quantization_method")
    if bits is not None:
        if str(bits) in ("4", "8") and (qmethod is None or str(qmethod).lower() in _BNB_METHODS):
            out["quantization_bit"] = int(bits)
        else:
            unmapped["quantization_bit"] = f"{bits}-bit quantization with {qmethod or 'bitsandbytes'} is not " \
                                           "supported (tunedeck quantizes with bitsandbytes, 4 or 8 bits): the " \
                                           "base is loaded unquantized"
    if qmethod is not None and str(qmethod).lower() not in _BNB_METHODS:
        unmapped["quantization_method"] = f"'{qmethod}': tunedeck quantizes with bitsandbytes only" \
            if str(qmethod).lower() in LF_QUANTIZATION_METHODS else \
            f"'{qmethod}' is not one of LLaMA-Factory's methods ({', '.join(LF_QUANTIZATION_METHODS)}): it would " \
            "load the base unquantized"

    bf16, fp16, pure = (_switch(take(key), key, unmapped) for key in ("bf16", "fp16", "pure_bf16"))
    if pure:
        out["precision"] = "bf16"
        unmapped["pure_bf16"] = "pure bf16 (weights and optimizer state in bf16, no fp32 copy) is not supported: " \
                                "imported as precision bf16, mixed precision with fp32 master weights (more memory)"
    if bf16 and fp16:
        unmapped["fp16"] = "bf16 and fp16 both set: kept bf16"
        out["precision"] = "bf16"
    elif bf16 or fp16:
        out["precision"] = "bf16" if bf16 else "fp16"

    flash = take("flash_attn")
    if flash is not None:
        if str(flash) in ("fa2", "flash_attention_2"):
            # LLaMA-Factory falls back to SDPA (with a warning) where flash-attn is missing; tunedeck's
            # flash_attention_2 is a hard requirement, its auto is the same request with the same fallback.
            out["attn_implementation"] = "auto"
            notes.append(f"flash_attn {flash} imported as attn_implementation auto: FlashAttention-2 where it is "
                         "installed on the GPU, else SDPA with a warning in the plan (as LLaMA-Factory falls back)")
        elif str(flash) in _FLASH_ATTN:
            out["attn_implementation"] = _FLASH_ATTN[str(flash)]
        else:
            unmapped["flash_attn"] = f"unknown value '{flash}'"
    disable_gc = _switch(take("disable_gradient_checkpointing"), "disable_gradient_checkpointing", unmapped)
    if disable_gc is not None:
        out["gradient_checkpointing"] = not disable_gc
    checkpointing = _switch(take("gradient_checkpointing"), "gradient_checkpointing", unmapped)
    if checkpointing is not None:
        out["gradient_checkpointing"] = checkpointing
    _import_sampling(data, out, unmapped, take)
    _import_warmup(data, out, take)
    _import_deepspeed(take("deepspeed"), out, unmapped, notes)
    packing, neat = (_switch(take(key), key, unmapped) for key in ("packing", "neat_packing"))
    if packing is not None:
        out["packing"] = packing
    if neat:
        # Neat packing keeps packed rows from attending to each other; tunedeck's packing is padding-free
        # with per-row position ids, which does the same where the attention kernel supports it.
        out["packing"] = True
        notes.append("neat_packing imported as packing: tunedeck keeps packed rows apart (per-row position ids)")
    if _switch(take("use_unsloth_gc"), "use_unsloth_gc", unmapped):
        out["offload_activations"] = True
        notes.append("use_unsloth_gc (offloaded gradient checkpointing) imported as offload_activations")

    if "evaluation_strategy" in data:  # the name before transformers 4.41
        out.setdefault("eval_strategy", take("evaluation_strategy"))
    if out.get("eval_strategy") == "steps" and "eval_steps" not in out:
        # transformers: eval_steps defaults to logging_steps
        out["eval_steps"] = out.get("logging_steps", lf_defaults().get("logging_steps"))
    metric = take("metric_for_best_model")
    take("greater_is_better")
    if metric not in (None, "eval_loss", "loss"):
        unmapped["metric_for_best_model"] = f"'{metric}': tunedeck keeps the checkpoint with the lowest eval loss"
    if out.get("resume_from_checkpoint") in (False, "false", "False"):
        out["resume_from_checkpoint"] = None


def _switch(value: Any, key: str, unmapped: dict[str, str]) -> bool | None:
    """A LLaMA-Factory true/false key as its author meant it ("false" is off); None when absent, or when the
    value is no switch (said in the report, and the key left at tunedeck's default)."""
    if value is None:
        return None
    switch = parse_switch(value)
    if switch is None:
        unmapped[key] = f"{value!r} is not true or false: left at tunedeck's default"
    return switch


def _refuse_predict_only(data: dict[str, Any], source: str | None) -> None:
    """A config that only predicts or evaluates (LLaMA-Factory's *_predict.yaml examples) is not a training run:
    say so, rather than that its dataset is missing."""
    if data.get("do_train") or not (data.get("do_predict") or data.get("do_eval")):
        return
    what = "do_predict" if data.get("do_predict") else "do_eval"
    raise ConfigError([(what, f"this is a {'prediction' if what == 'do_predict' else 'evaluation'}-only "
                        f"LLaMA-Factory config ({what}: true without do_train"
                        + (f", eval_dataset {data['eval_dataset']}" if data.get("eval_dataset") else "")
                        + "): tunedeck imports training configs (do_train); import the config that trained the "
                          "model instead")], source)


def _import_sampling(data: dict[str, Any], out: dict[str, Any], unmapped: dict[str, str], take: Any) -> None:
    """group_by_length (transformers 4) or train_sampling_strategy (transformers 5) -> group_by_length."""
    grouped = _switch(take("group_by_length"), "group_by_length", unmapped)
    if grouped is not None:
        out["group_by_length"] = grouped
    strategy = take("train_sampling_strategy")
    if strategy is None:
        return
    if str(strategy) in ("group_by_length", "random"):
        out["group_by_length"] = str(strategy) == "group_by_length"
    else:
        unmapped["train_sampling_strategy"] = f"'{strategy}': tunedeck shuffles rows (random) or groups them by " \
                                              "length (group_by_length)"


def _import_deepspeed(value: Any, out: dict[str, Any], unmapped: dict[str, str], notes: list[str]) -> None:
    """deepspeed: examples/deepspeed/ds_z3_offload_config.json -> distributed_type deepspeed_zero3 with offload,
    on every GPU (LLaMA-Factory launches it with torchrun on all of them). The stage is read from the names of
    LLaMA-Factory's shipped files, never from the file: a shared server does not open a path a user names."""
    if value in (None, False, "", "none", "None"):
        return
    name = Path(str(value)).name.lower()
    stage = next((digit for digit in "0123" if f"z{digit}" in name or f"zero{digit}" in name or
                  f"stage{digit}" in name), None)
    if stage in (None, "1"):
        unmapped["deepspeed"] = f"'{value}': tunedeck cannot tell its ZeRO stage from the name (it reads " \
                                "LLaMA-Factory's ds_z0/z2/z3[_offload]_config.json): set distributed_type to " \
                                "deepspeed_zero2, deepspeed_zero3 or fsdp" + (" (no ZeRO-1 here)" if stage else "")
        return
    if stage == "3" and out.get("quantization_bit") == 8:
        unmapped["deepspeed"] = f"'{value}': ZeRO-3 cannot shard 8-bit weights; set distributed_type " \
                                "deepspeed_zero2 or quantization_bit 4"
        return
    offload = "offload" in name
    if offload and str(out.get("optim")) in GPU_ONLY_OPTIMIZERS:
        offload = False
        notes.append(f"deepspeed {value}: the optimizer stays on the GPUs, as {out['optim']} steps there only")
    out["num_processes"] = None  # every visible GPU, as torchrun
    if stage == "0":  # ZeRO stage 0 shards nothing: plain data parallelism
        out["distributed_type"] = "ddp"
    else:
        out["distributed_type"] = f"deepspeed_zero{stage}"
        out["offload_optimizer"] = offload
        out["offload_params"] = offload and stage == "3"
    with_offload = " with CPU offload" if offload and stage != "0" else ""
    notes.append(f"deepspeed {value} imported as distributed_type {out['distributed_type']}{with_offload} on every GPU "
                 "(num_processes empty), from its file name; tunedeck writes its own DeepSpeed config")


def _import_warmup(data: dict[str, Any], out: dict[str, Any], take: Any) -> None:
    """warmup_ratio (transformers 4), or warmup_steps as a ratio when below 1 (transformers 5)."""
    if "warmup_ratio" in data:
        out["warmup_ratio"] = take("warmup_ratio")
    steps = take("warmup_steps")
    if isinstance(steps, (int, float)) and not isinstance(steps, bool) and 0 < steps < 1:
        out["warmup_ratio"] = steps
    elif steps is not None:
        out["warmup_steps"] = steps


def finish_import(out: dict[str, Any], report: Report) -> dict[str, Any]:
    """LLaMA-Factory's defaults under what the file set, and the rules that follow from both."""
    merged = {**lf_defaults(), **out}
    if merged.get("warmup_steps") and "warmup_ratio" not in out:
        merged["warmup_ratio"] = 0.0
    if merged.get("eval_strategy", "no") != "no" and merged.get("val_size", 0) == 0:
        report.unmapped["eval_strategy"] = f"'{merged['eval_strategy']}' but no val_size: tunedeck evaluates on a " \
                                           "held-out split only, so evaluation is off"
        merged["eval_strategy"] = "no"
        merged["load_best_model_at_end"] = False
    return merged


def _import_template(name: str, unmapped: dict[str, str], notes: list[str]) -> str:
    from trainer.templates import LLAMAFACTORY_DIFFERENCES, NAMED_TEMPLATES

    if name == "default":  # the export writes plain as default: both are a model's first plain-text format
        notes.append("template default imported as plain, which differs in its words: LLaMA-Factory's 'default' "
                     "writes 'System: ...', 'Human: ...' and an end-of-sequence token after every turn, tunedeck's "
                     "plain the system prompt alone, 'User: ...' and the end-of-sequence token after answers only")
        return "plain"
    mapped = _TEMPLATE_ALIASES.get(name, name)
    if mapped in NAMED_TEMPLATES:
        if mapped in LLAMAFACTORY_DIFFERENCES:
            notes.append(f"template {name}: as LLaMA-Factory renders it, except: {LLAMAFACTORY_DIFFERENCES[mapped]}")
        return mapped
    unmapped["template"] = f"LLaMA-Factory's '{name}' template has no tunedeck equivalent: using the tokenizer's " \
                           "own chat template (template: auto)"
    return "auto"


def shipped_names(out: dict[str, Any]) -> None:
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


# --- export ------------------------------------------------------------------------------------------

def export_renamed(cfg: TrainConfig, sections: dict[str, dict[str, Any]], report: Report) -> None:
    """Every field with a LLaMA-Factory key of the same meaning that export_special has not written; an
    empty (auto) one is left to LLaMA-Factory's default."""
    defaults = lf_defaults()
    written = {key for values in sections.values() for key in values}
    for name, key in lf_keys().items():
        value = getattr(cfg, name)
        if key in written:  # export_special chose the value
            continue
        if value is None:
            if defaults.get(name) is not None:
                report.notes.append(f"{name} empty (auto): left to LLaMA-Factory's default ({key}: {defaults[name]})")
            continue
        sections[section_of(name)][key] = value


def export_special(cfg: TrainConfig, sections: dict[str, dict[str, Any]], report: Report,
                   hardware: Hardware) -> None:
    """The conversions that are not a rename, tunedeck -> LLaMA-Factory (the dataset: lf_datasets.py).
    Runs before export_renamed, which leaves the keys written here alone."""
    m, me, d, t = sections["model"], sections["method"], sections["dataset"], sections["train"]
    if cfg.model_name_or_path.strip().lower() == "demo":
        from trainer.engine.demo import ensure_demo_model

        m["model_name_or_path"] = str(ensure_demo_model())
        report.notes.append(f"model demo written as its local directory {m['model_name_or_path']}")
    if cfg.quantization_bit:
        m["quantization_bit"] = cfg.quantization_bit
        m["quantization_method"] = "bnb"
    m["flash_attn"] = _FLASH_ATTN_BACK[cfg.attn_implementation]
    if cfg.per_device_eval_batch_size is None:  # ours: the micro-batch; LLaMA-Factory's default would be 8
        sections["eval"]["per_device_eval_batch_size"] = cfg.per_device_train_batch_size
    me["finetuning_type"] = cfg.finetuning_type
    me["lora_target"] = "all" if cfg.lora_target == LORA_TARGET_ALL else ",".join(cfg.lora_target)
    me["disable_gradient_checkpointing"] = not cfg.gradient_checkpointing
    if cfg.offload_activations:
        report.unmapped["offload_activations"] = "LLaMA-Factory has no activation offload (use_unsloth_gc needs " \
                                                 "Unsloth)"
    if cfg.template == "plain":
        d["template"] = "default"
        report.notes.append("template plain written as LLaMA-Factory's 'default' (Human:/Assistant: rather than "
                            "User:/Assistant:)")
    elif cfg.template != "auto":
        from trainer.templates import LLAMAFACTORY_DIFFERENCES

        d["template"] = cfg.template
        if cfg.template in LLAMAFACTORY_DIFFERENCES:
            report.notes.append(f"template {cfg.template}: LLaMA-Factory's renders the same, except: "
                                f"{LLAMAFACTORY_DIFFERENCES[cfg.template]}")
    else:
        report.notes.append("template auto: no template key, so LLaMA-Factory uses the tokenizer's chat template")
    if cfg.packing is None:
        report.notes.append("packing auto: written as packing: false (LLaMA-Factory's SFT default)")
    d["packing"] = bool(cfg.packing)
    if cfg.packing:
        d["neat_packing"] = True  # packed rows do not attend to each other, as in tunedeck
    if cfg.distributed_type.startswith("deepspeed_zero"):
        # The stage as the file LLaMA-Factory ships (relative to its checkout, where its YAMLs run from);
        # offload is not carried (reported by export_skipped): its *_offload files offload more than asked.
        t["deepspeed"] = f"examples/deepspeed/ds_z{cfg.distributed_type[-1]}_config.json"
        report.notes.append(f"distributed_type {cfg.distributed_type} written as deepspeed: {t['deepspeed']} "
                            "(launch with FORCE_TORCHRUN=1 llamafactory-cli train)")
    _export_precision(cfg, t, report, hardware)
    if cfg.warmup_steps:
        t["warmup_steps"] = cfg.warmup_steps
    elif cfg.warmup_ratio:
        t["warmup_steps"] = cfg.warmup_ratio
        report.notes.append(f"warmup_ratio {cfg.warmup_ratio:g} written as warmup_steps: {cfg.warmup_ratio:g} (a "
                            "ratio of the steps in transformers 5); with transformers 4 write warmup_ratio instead")
    if cfg.group_by_length:
        t["train_sampling_strategy"] = "group_by_length"
        report.notes.append("group_by_length written as train_sampling_strategy: group_by_length (transformers 5); "
                            "with transformers 4 write group_by_length: true instead")
    elif cfg.group_by_length is None and not cfg.packing:
        report.notes.append("group_by_length auto: not written, so LLaMA-Factory samples rows in random order")
    # overwrite_output_dir is not written: transformers 5 removed it from TrainingArguments.
    if cfg.resume_from_checkpoint == "last":
        report.unmapped["resume_from_checkpoint"] = "last: name the checkpoint folder to resume from " \
                                                    "(resume_from_checkpoint: OUTPUT_DIR/checkpoint-N)"
    elif cfg.resume_from_checkpoint:
        t["resume_from_checkpoint"] = cfg.resume_from_checkpoint


def _export_precision(cfg: TrainConfig, train: dict[str, Any], report: Report, hardware: Hardware) -> None:
    """bf16/fp16 as LLaMA-Factory's TrainingArguments take them; `auto` resolved as tunedeck's plan would:
    fp32 for the demo model (it trains on a CPU), else the GPU's best, bf16 when this machine has none."""
    if cfg.precision in ("bf16", "fp16"):
        train[cfg.precision] = True
        return
    if cfg.precision == "fp32":
        return
    if cfg.model_name_or_path.strip().lower() == "demo":
        report.notes.append("precision auto: the demo model trains in fp32 (no bf16/fp16), so it runs on a CPU")
    elif hardware.device == "cuda":
        train["bf16" if hardware.bf16_supported else "fp16"] = True
        report.notes.append(f"precision auto: written as {'bf16' if hardware.bf16_supported else 'fp16'} for this "
                            f"machine's {hardware.gpu_name or 'GPU'}")
    else:
        train["bf16"] = True
        report.notes.append("precision auto: no GPU here, written as bf16: true (change to fp16 on GPUs without "
                            "bf16, e.g. T4, V100; remove it to train on a CPU)")


def export_skipped(cfg: TrainConfig, report: Report) -> None:
    """Fields LLaMA-Factory has no word for, reported when they differ from the default."""
    for spec in field_specs():
        if spec.name == "distributed_type" and cfg.distributed_type.startswith("deepspeed_zero"):
            continue  # written as LLaMA-Factory's `deepspeed` file (export_special)
        if spec.lf_skip and getattr(cfg, spec.name) != spec.default:
            report.unmapped.setdefault(spec.name, f"{getattr(cfg, spec.name)!r}: {spec.lf_skip}")
