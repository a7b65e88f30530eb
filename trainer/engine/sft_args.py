"""TrainConfig -> SFTConfig: the one mapping, used by the trainer and copied into the exported script.

The schema says where each field goes (trainer/config.py): ``sft="name"`` passes the value unchanged
under that SFTConfig name, ``sft_via="converter"`` through one of the CONVERTERS below. ``sft_kwargs``
applies those routes to a *resolved* config: a plain dict of field values in which every ``auto`` has
been replaced by the decision taken for this machine (precision, packing, group_by_length, Liger) and
run_name by the run's display name. The trainer resolves it from its plan (:func:`sft_config_kwargs`).

The exported script gets the same mapping: the arguments that follow from the config alone as literal
SFTConfig arguments (:func:`static_sft_kwargs`), and the source of the converters and ``sft_kwargs``
for the machine-dependent rest (everything from ``FIXED`` to ``device_kwargs`` is plain Python over
dicts with no imports, so it can be copied into a script that runs without tunedeck).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.fieldspecs import field_specs

# SFTConfig arguments that no field decides: how tunedeck always trains.
FIXED = {
    "packing_strategy": "bfd",
    "completion_only_loss": True,  # the rows carry completion_mask: loss on the answers only
    "logging_first_step": True,
    "logging_nan_inf_filter": False,  # a NaN loss must be seen, not averaged away
    # LoRA leaves the frozen base without gradients on purpose: DDP need not search for unused parameters.
    "ddp_find_unused_parameters": False,
}

# Below 1, transformers reads warmup_steps as a fraction of the steps: this is "all of them".
ALL_STEPS_FRACTION = 1 - 2 ** -53


def _seed(values, device):
    return {"seed": values["seed"], "data_seed": values["seed"]}


def _eval_batch_size(values, device):
    return {"per_device_eval_batch_size": values["per_device_eval_batch_size"]
            or values["per_device_train_batch_size"]}


def _warmup(values, device):
    if values["warmup_steps"] > 0:
        return {"warmup_steps": values["warmup_steps"]}
    ratio = values["warmup_ratio"]
    return {"warmup_steps": ratio if ratio < 1 else ALL_STEPS_FRACTION}


def _optim(values, device):
    return {"optim": {"adamw_8bit": "adamw_bnb_8bit"}.get(values["optim"], values["optim"])}


def _precision(values, device):
    return {"bf16": values["precision"] == "bf16", "fp16": values["precision"] == "fp16"}


def _checkpointing(values, device):
    on = values["gradient_checkpointing"]
    return {"activation_checkpointing": on, "activation_checkpointing_kwargs": {"use_reentrant": False} if on else None}


def _offload(values, device):
    # On a CPU the activations are in RAM already (and TRL's offloading needs an accelerator).
    return {"activation_offloading": values["offload_activations"] and device == "cuda"}


def _group_by_length(values, device):
    grouped = values["group_by_length"] and not values["packing"]
    return {"train_sampling_strategy": "group_by_length" if grouped else "random"}


def _evaluation(values, device):
    out = {"eval_strategy": values["eval_strategy"]}
    if values["eval_strategy"] == "steps":
        out["eval_steps"] = values["eval_steps"]
    if values["eval_strategy"] != "no":
        out.update(metric_for_best_model="eval_loss", greater_is_better=False)
    return out


def _saving(values, device):
    out = {"save_strategy": values["save_strategy"]}
    if values["save_strategy"] == "steps":
        out["save_steps"] = values["save_steps"]
    return out


def _trackers(values, device):
    # transformers' own integrations log to each tracker; Trackio files the run under `project`.
    return {"report_to": list(values["report_to"]) or "none",
            "project": (values["tracker_project"] or "").strip() or "tunedeck"}


CONVERTERS = {
    "seed": _seed,
    "eval_batch_size": _eval_batch_size,
    "warmup": _warmup,
    "optim": _optim,
    "precision": _precision,
    "checkpointing": _checkpointing,
    "offload": _offload,
    "group_by_length": _group_by_length,
    "evaluation": _evaluation,
    "saving": _saving,
    "trackers": _trackers,
}


def sft_kwargs(values, device, routes):
    """SFTConfig keyword arguments of a resolved config on ``device`` ("cuda" or "cpu") along ``routes``:
    (field, SFTConfig name or None, converter name or None) per field, from the schema."""
    kwargs = {}
    applied = set()
    for field, name, via in routes:
        if name:
            kwargs[name] = values[field]
        if via and via not in applied:
            applied.add(via)
            kwargs.update(CONVERTERS[via](values, device))
    return kwargs


def device_kwargs(device):
    return {"use_cpu": device != "cuda", "dataloader_pin_memory": device == "cuda"}


# --- tunedeck's side --------------------------------------------------------------------------------

# Fields whose `auto` the plan resolves for the machine (under the same names on the plan), and
# converters that read the device: the exported script decides these when it runs and receives the
# rest as literal SFTConfig arguments.
RESOLVED_FIELDS = ("precision", "attn_implementation", "packing", "group_by_length", "use_liger_kernel")
DEVICE_CONVERTERS = ("offload",)


@functools.cache
def sft_routes() -> tuple[tuple[str, Any, Any], ...]:
    """(field, SFTConfig name, converter name) for every field the schema routes to SFTConfig."""
    return tuple((s.name, s.sft, s.sft_via) for s in field_specs() if s.sft or s.sft_via)


def runtime_routes() -> tuple[tuple[str, Any, Any], ...]:
    """The routes that depend on the machine (see RESOLVED_FIELDS)."""
    return tuple(r for r in sft_routes() if r[0] in RESOLVED_FIELDS or r[2] in DEVICE_CONVERTERS)


def config_values(cfg: TrainConfig) -> dict[str, Any]:
    """cfg's values as the mapping reads them: plain data, run_name the run's display name."""
    return {**cfg.to_dict(), "run_name": cfg.display_name}


def resolved_values(cfg: TrainConfig, plan) -> dict[str, Any]:
    """config_values with every `auto` replaced by the plan's decision."""
    return {**config_values(cfg), **{name: getattr(plan, name) for name in RESOLVED_FIELDS}}


def static_sft_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The SFTConfig arguments that follow from the config alone, whatever the machine (for the script)."""
    runtime = runtime_routes()
    static = tuple(r for r in sft_routes() if r not in runtime)
    return {**FIXED, **sft_kwargs(config_values(cfg), None, static)}


def sft_config_kwargs(cfg: TrainConfig, checkpoints_dir: str | Path, plan, hw) -> dict[str, Any]:
    """SFTConfig keyword arguments of a tunedeck run: the mapping plus where the run writes and logs."""
    return {
        **FIXED,
        **sft_kwargs(resolved_values(cfg, plan), hw.device, sft_routes()),
        **device_kwargs(hw.device),
        "output_dir": str(checkpoints_dir),
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": not sys.stdout.isatty(),
    }
