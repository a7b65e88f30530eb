"""Numbers derived from a config: what a run really resolves to, before it starts.

Pure functions, fast, no torch. Inputs: a TrainConfig, the number of training rows (after the
validation split), token lengths when known, and the hardware (see trainer.hardware.Hardware).
The same numbers go to `python -m trainer check`, the page's run plan panel and the run's `plan` event.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from trainer.config import TrainConfig


@dataclass(frozen=True)
class Hardware:
    """What the plan needs to know of the machine. Built by trainer.hardware.detect() or by hand."""

    device: str = "cpu"  # "cpu" or "cuda"
    num_devices: int = 1
    gpu_name: Optional[str] = None
    gpu_total_gb: Optional[float] = None
    bf16_supported: bool = False
    flash_attention: bool = False  # flash_attn (FlashAttention 2) importable and usable
    flash_attention_3: bool = False  # flash_attn_interface (FlashAttention 3) importable on a Hopper GPU
    hub_attention_kernel: Optional[str] = None  # a FlashAttention kernel of the Hub (`kernels`), cached here
    liger: bool = False  # liger_kernel importable


CPU = Hardware()


# --- batching and padding: pure math on token lengths -------------------------------------------

def _batches_padded_tokens(batches: Sequence[Sequence[int]]) -> int:
    return sum(max(b) * len(b) for b in batches if b)


def length_group_rows(num_rows: int, batch_rows: int) -> int:
    """Rows per sorted mega-batch of transformers' LengthGroupedSampler for a dataset of num_rows.

    batch_rows is micro-batch × accumulation (what the Trainer hands the sampler); the sampler sorts
    min(50, num_rows // (4 × batch_rows)) batches at a time (at least one), so small datasets group less.
    """
    return max(1, min(num_rows // max(1, 4 * batch_rows), 50)) * max(1, batch_rows)


def padding_efficiency(lengths: Sequence[int], micro_batch: int, strategy: str = "plain",
                       cutoff_len: int | None = None, seed: int = 42,
                       mega_batch_rows: int | None = None) -> float:
    """Real tokens / processed tokens when batches are padded to their longest row.

    strategy: "plain" (shuffled rows), "group_by_length" (transformers' LengthGroupedSampler: shuffled
    mega-batches of `mega_batch_rows` rows, default 50 micro-batches, each sorted by length; see
    length_group_rows), or "packing" (best-fit-decreasing packs of cutoff_len tokens, padding-free: every
    processed token is a real one).
    """
    clipped = [min(n, cutoff_len) if cutoff_len else n for n in lengths if n > 0]
    if not clipped:
        return 1.0
    real = sum(clipped)
    if strategy == "packing":
        return 1.0
    order = list(clipped)
    random.Random(seed).shuffle(order)
    if strategy == "group_by_length":
        mega = mega_batch_rows or micro_batch * 50
        grouped: list[int] = []
        for start in range(0, len(order), mega):
            grouped.extend(sorted(order[start:start + mega], reverse=True))
        order = grouped
    elif strategy != "plain":
        raise ValueError(f"unknown batching strategy {strategy!r}")
    batches = [order[i:i + micro_batch] for i in range(0, len(order), micro_batch)]
    return real / _batches_padded_tokens(batches)


def pack_best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of row lengths (each clipped to capacity), filled best-fit decreasing.

    Best fit = the bin with the least free space that still holds the row (the oldest bin on a tie),
    found by bisection in the bins ordered by free space: O(n log n), so 100k rows pack in a second.
    """
    bins: list[list[int]] = []
    by_space: list[tuple[int, int]] = []  # (free space, bin index), sorted
    for n in sorted((min(n, capacity) for n in lengths if n > 0), reverse=True):
        k = bisect.bisect_left(by_space, (n, -1))
        if k == len(by_space):
            bins.append([n])
            bisect.insort(by_space, (capacity - n, len(bins) - 1))
        else:
            free, best = by_space.pop(k)
            bins[best].append(n)
            bisect.insort(by_space, (free - n, best))
    return bins


def packing_factor(max_row_len: int, pack_len: int) -> int:
    """How many rows are guaranteed to fit one packed sequence: rows of at most 768 tokens pack 5 to 3840."""
    return max(1, pack_len // max(1, max_row_len))


# --- the plan ------------------------------------------------------------------------------------

@dataclass
class Plan:
    effective_batch_size: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    num_devices: int
    num_train_samples: Optional[int]  # rows (or packed sequences) per epoch; None when unknown
    steps_per_epoch: Optional[int]
    total_steps: Optional[int]
    warmup_steps: Optional[int]
    epochs_effective: Optional[float]
    max_steps_overrides_epochs: bool
    precision: str
    packing: bool
    group_by_length: bool
    use_liger_kernel: bool
    attn_implementation: str
    padding_efficiency: Optional[float] = None
    memory_estimate_gb: Optional[float] = None
    summary: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


def resolve_precision(cfg: TrainConfig, hw: Hardware) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    if hw.device != "cuda":
        return "fp32"
    return "bf16" if hw.bf16_supported else "fp16"


def resolve_attention(cfg: TrainConfig, hw: Hardware) -> str:
    """`auto` on a GPU: the fastest FlashAttention installed (3 on Hopper, then 2, then the `kernels` Hub
    build), else PyTorch's SDPA; SDPA on a CPU."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    if hw.device != "cuda":
        return "sdpa"
    if hw.flash_attention_3:
        return "flash_attention_3"
    if hw.flash_attention:
        return "flash_attention_2"
    return hw.hub_attention_kernel or "sdpa"


# Attention kernels that keep padding-free packed rows apart by their position ids: FlashAttention's varlen
# kernel, and SDPA, for which transformers 5 builds a block-diagonal mask from them (packed vs separate
# logits agree to 5e-6 on the CPU; 1.10x the tokens/s of grouped batches on an H100: benchmarks/README.md).
def keeps_packed_rows_apart(attention: str) -> bool:
    return attention == "sdpa" or "flash" in attention

# Why `auto` packed or not (the plan's `batching_reason`; the page words each key).
BATCHING_REASONS = {
    "set": "packing set in the config",
    "gpu_padding_free": "auto on a GPU: padding-free best-fit-decreasing packing, the packed rows kept apart by "
                        "{attention}; no compute spent on padding",
    "attention_not_padding_free": "auto with {attention} attention: packed rows would attend to each other, so "
                                  "batches are grouped by length instead",
    "cpu_grouped": "auto on a CPU: batches grouped by length (the CPU default is unchanged; set packing to "
                   "true to pack)",
}


def resolve_packing(cfg: TrainConfig, hw: Hardware) -> tuple[bool, bool]:
    """(packing, group_by_length) after the `auto` choices: `batching_reason` says why."""
    packing = cfg.packing if cfg.packing is not None else batching_reason(cfg, hw) == "gpu_padding_free"
    group = cfg.group_by_length if cfg.group_by_length is not None else not packing
    return packing, group


def batching_reason(cfg: TrainConfig, hw: Hardware) -> str:
    """The key of BATCHING_REASONS that decided packing.

    On a GPU, auto packs padding-free wherever the attention kernel keeps packed rows apart
    (keeps_packed_rows_apart: every FlashAttention, SDPA; not eager). On a CPU it keeps grouping by length: the demo's short CPU runs and the
    plan's counts are held against transformers' length-grouped sampler, and a CPU gains little from it.
    """
    if cfg.packing is not None:
        return "set"
    if hw.device != "cuda":
        return "cpu_grouped"
    return "gpu_padding_free" if keeps_packed_rows_apart(resolve_attention(cfg, hw)) else "attention_not_padding_free"


def resolve_plan(cfg: TrainConfig, num_samples: Optional[int] = None, *, hw: Hardware = CPU,
                 token_lengths: Optional[Sequence[int]] = None,
                 reference_effective_batch: Optional[int] = None,
                 reference_learning_rate: Optional[float] = None,
                 gpu_memory_gb: Optional[float] = None,
                 token_lengths_sample_of: Optional[int] = None) -> Plan:
    """Resolve a config into the numbers a run will really use.

    num_samples: training rows after the validation split (None when the dataset is not reachable).
    token_lengths: tokenized length of each training row, when known (padding efficiency, packing).
    reference_*: the preset's effective batch and learning rate, for the learning-rate note.
    gpu_memory_gb: the card (GiB) to judge the memory estimate against; default the detected GPU.
    token_lengths_sample_of: token_lengths are a sample of this many training rows (a big dataset is
    measured, not tokenized whole): the packed sequences are scaled up to them.
    """
    from trainer.engine.distributed import processes_per_machine

    per_machine = processes_per_machine(cfg, hw.num_devices if hw.device == "cuda" else 0)
    devices = per_machine * cfg.num_machines
    micro, accum = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    effective = micro * accum * devices
    packing, group = resolve_packing(cfg, hw)
    warnings: list[str] = []
    summary: list[str] = []
    reason = batching_reason(cfg, hw)
    extra: dict[str, Any] = {"batching_reason": reason,
                             "batching_note": BATCHING_REASONS[reason].format(attention=resolve_attention(cfg, hw))}

    # Packing changes what one "sample" is: a packed sequence of up to cutoff_len tokens.
    rows = num_samples
    pad_eff = None
    if token_lengths:
        strategy = "packing" if packing else ("group_by_length" if group else "plain")
        mega = length_group_rows(len(token_lengths), micro * accum)
        pad_eff = round(padding_efficiency(token_lengths, micro, strategy, cfg.cutoff_len, cfg.seed, mega), 4)
        plain = padding_efficiency(token_lengths, micro, "plain", cfg.cutoff_len, cfg.seed)
        extra["padding_efficiency_plain"] = round(plain, 4)
        if packing:
            packs = pack_best_fit_decreasing(token_lengths, cfg.cutoff_len)
            rows = len(packs)
            if token_lengths_sample_of:
                rows = math.ceil(rows * token_lengths_sample_of / len(token_lengths))
            extra["packed_sequences"] = rows
            extra["rows_per_packed_sequence"] = round(len(token_lengths) / max(1, len(packs)), 2)
        elif pad_eff < 0.8:
            warnings.append(
                f"Padding waste: only {pad_eff:.0%} of the tokens processed are real at micro-batch {micro}. "
                "Turn on packing or group_by_length; a bigger batch buys nothing until you do.")

    steps_per_epoch = total_steps = None
    epochs_effective: Optional[float] = None
    overrides = cfg.max_steps > 0
    if rows is not None:
        if rows <= 0:
            warnings.append("The training split is empty: there is nothing to train on.")
        else:
            batches_per_epoch = math.ceil(rows / (micro * devices))
            # As transformers' Trainer counts: a last partial accumulation still makes an optimizer step.
            steps_per_epoch = max(1, math.ceil(batches_per_epoch / accum))
            if rows < effective:
                warnings.append(f"The effective batch ({effective}) is larger than the dataset ({rows} rows): "
                                "each optimizer step sees the whole dataset at most once.")
    if overrides:
        total_steps = cfg.max_steps
        if rows:
            epochs_effective = round(total_steps * effective / rows, 2)
            by_epochs = math.ceil(cfg.num_train_epochs * steps_per_epoch)  # type: ignore[operator]
            summary.append(
                f"max_steps = {cfg.max_steps} overrides num_train_epochs = {_num(cfg.num_train_epochs)}: the run "
                f"lasts {cfg.max_steps} steps ≈ {_num(epochs_effective)} epochs ({total_steps * effective:,} samples "
                f"of {rows:,}), instead of {_num(cfg.num_train_epochs)} epochs ({by_epochs} steps).")
            if epochs_effective > 1.5 * cfg.num_train_epochs:
                warnings.append(f"max_steps makes the run last {_num(epochs_effective)} epochs, not the "
                                f"{_num(cfg.num_train_epochs)} set in num_train_epochs; raising the batch with a fixed "
                                "max_steps makes the run longer, not shorter.")
        else:
            summary.append(f"max_steps = {cfg.max_steps} overrides num_train_epochs.")
    elif steps_per_epoch is not None:
        total_steps = math.ceil(cfg.num_train_epochs * steps_per_epoch)
        epochs_effective = float(cfg.num_train_epochs)
        summary.append(f"{_num(cfg.num_train_epochs)} epochs × {steps_per_epoch} steps per epoch = "
                       f"{total_steps} optimizer steps (max_steps not set).")
    machines = f" × {cfg.num_machines} (machines)" if cfg.num_machines > 1 else ""
    summary.insert(0, f"Effective batch = {micro} (micro-batch) × {accum} (accumulation) × {per_machine} "
                      f"(device{'s' if per_machine > 1 else ''}){machines} = {effective} rows per optimizer step.")
    if devices > 1 or cfg.distributed_type != "ddp":
        summary.append(_launch_line(cfg, per_machine))
    if hw.device == "cuda" and per_machine > hw.num_devices:
        warnings.append(f"{per_machine} processes per machine but {hw.num_devices} GPU"
                        f"{'s' if hw.num_devices != 1 else ''} here: one process per GPU.")

    warmup = None
    if total_steps is not None:
        warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else math.ceil(cfg.warmup_ratio * total_steps)
        if total_steps < 10:
            warnings.append(f"Only {total_steps} optimizer steps: the loss curve will say little. Use a smaller "
                            "effective batch or more epochs.")

    if reference_effective_batch and reference_effective_batch != effective:
        ratio = effective / reference_effective_batch
        lr_ref = reference_learning_rate or cfg.learning_rate
        extra["suggested_learning_rate"] = float(f"{lr_ref * math.sqrt(ratio):.3g}")
        summary.append(
            f"The effective batch moved from {reference_effective_batch} to {effective} (× {ratio:.3g}): consider "
            f"a learning rate of about {extra['suggested_learning_rate']:g} (square-root scaling from "
            f"{lr_ref:g}; linear scaling would give {lr_ref * ratio:.3g}).")

    precision = resolve_precision(cfg, hw)
    if hw.device == "cuda" and precision == "bf16" and not hw.bf16_supported:
        warnings.append("precision bf16 was chosen but this GPU does not support bf16: use fp16.")
    if hw.device != "cuda" and precision in ("bf16", "fp16") and cfg.precision != "auto":
        warnings.append(f"precision {precision} on a CPU is slow or unsupported; auto picks fp32 there.")
    if cfg.quantization_bit and hw.device != "cuda":
        warnings.append(f"{cfg.quantization_bit}-bit quantization on a CPU works but is slow; QLoRA is meant "
                        "for a GPU.")
    if cfg.finetuning_type == "lora" and not 0.5 <= cfg.lora_alpha / cfg.lora_rank <= 4 and not cfg.use_rslora:
        warnings.append(f"lora_alpha / lora_rank = {cfg.lora_alpha}/{cfg.lora_rank}: the usual range is 0.5 to 2 "
                        "(alpha 16-32 with rank 16-32).")
    warnings.extend(_absurd_values(cfg, total_steps, warmup))
    if cfg.val_size == 0:
        warnings.append("No validation split (val_size 0): you will not see whether the model overfits.")
    if cfg.save_strategy == "no":
        warnings.append("save_strategy is 'no': an interrupted run cannot be resumed.")

    liger = cfg.use_liger_kernel if cfg.use_liger_kernel is not None else (hw.device == "cuda" and hw.liger)

    # Peak GPU memory from the model's shape (catalog or local config.json): trainer/memory.py.
    from trainer.plan.fit import memory_plan_for_config

    # Judged against a GPU (picked, or this machine's), `auto` means what it will mean there: 16-bit. With
    # neither, the run trains on this CPU: the estimate is of RAM, at the CPU's precision.
    if not (isinstance(gpu_memory_gb, (int, float)) and math.isfinite(gpu_memory_gb) and gpu_memory_gb > 0):
        gpu_memory_gb = None  # an unknown or nonsensical card size: plan for this machine instead
    card_gb = gpu_memory_gb or (hw.gpu_total_gb if hw.device == "cuda" else None)
    memory_device = "cuda" if hw.device == "cuda" or gpu_memory_gb else "cpu"
    memory_precision = precision if memory_device == "cpu" or hw.device == "cuda" or cfg.precision != "auto" else "bf16"
    memory_gb, memory_extra, memory_warnings = memory_plan_for_config(
        cfg, precision=memory_precision, attn_implementation=resolve_attention(cfg, hw), use_liger_kernel=bool(liger),
        gpu_memory_gb=card_gb, gpu_label=hw.gpu_name if card_gb and not gpu_memory_gb else None,
        unsorted_varied_batches=not packing and not group, device=memory_device, devices=devices)
    extra.update(memory_extra)
    warnings.extend(memory_warnings)
    extra.update(_throughput(cfg, hw, token_lengths, packing=packing, precision=memory_precision,
                             device=memory_device, gpu_memory_gb=gpu_memory_gb, devices=devices,
                             trainable=memory_extra.get("trainable_parameters")))
    return Plan(
        effective_batch_size=effective,
        micro_batch_size=micro,
        gradient_accumulation_steps=accum,
        num_devices=devices,
        num_train_samples=rows,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup,
        epochs_effective=epochs_effective,
        max_steps_overrides_epochs=overrides,
        precision=precision,
        packing=packing,
        group_by_length=group,
        use_liger_kernel=bool(liger),
        attn_implementation=resolve_attention(cfg, hw),
        padding_efficiency=pad_eff,
        memory_estimate_gb=memory_gb,
        summary=summary,
        warnings=warnings,
        extra=extra,
    )


def _throughput(cfg: TrainConfig, hw: Hardware, token_lengths: Optional[Sequence[int]], *, packing: bool,
                precision: str, device: str, gpu_memory_gb: Optional[float], devices: int,
                trainable: Optional[int]) -> dict[str, Any]:
    """FLOPs per token, expected MFU and tokens/s (trainer/plan/mfu.py) on the card planned for: this machine's
    GPU by name, else the picked size's models."""
    from trainer.plan.catalog import gpu_choice, model_shape
    from trainer.plan.mfu import throughput_plan

    this_gpu = hw.device == "cuda" and (not gpu_memory_gb or gpu_choice(gpu_memory_gb) == gpu_choice(hw.gpu_total_gb or 0))
    return throughput_plan(model_shape(cfg.model_name_or_path), finetuning_type=cfg.finetuning_type,
                           trainable_parameters=trainable, token_lengths=token_lengths, cutoff_len=cfg.cutoff_len,
                           packing=packing, attention=resolve_attention(cfg, hw), precision=precision, device=device,
                           gpu_name=hw.gpu_name if this_gpu else None,
                           gpu_choice=gpu_choice(gpu_memory_gb) if gpu_memory_gb else None, devices=devices)


# Beyond these the run diverges or learns nothing, whatever the model: the plan says so before it starts.
DIVERGING_LORA_LEARNING_RATE = 1e-2
DIVERGING_LEARNING_RATE = 0.1


def _absurd_values(cfg: TrainConfig, total_steps: Optional[int], warmup: Optional[int]) -> list[str]:
    """Warnings for values the schema allows but no run is helped by (learning rate 1.0, ...)."""
    out: list[str] = []
    lr = cfg.learning_rate
    typical = "1e-4..3e-4 is typical for LoRA" if cfg.finetuning_type == "lora" else \
        "1e-5..5e-5 is typical for full fine-tuning"
    if lr >= DIVERGING_LEARNING_RATE:
        out.append(f"learning_rate {lr:g} is far too high: the loss will diverge to NaN within a few steps ({typical}).")
    elif cfg.finetuning_type == "lora" and lr >= DIVERGING_LORA_LEARNING_RATE:
        out.append(f"learning_rate {lr:g} is very high for LoRA (1e-4..3e-4 is typical): expect spikes or a NaN loss.")
    elif cfg.finetuning_type == "full" and lr > 1e-4:
        out.append(f"learning_rate {lr:g} is high for full fine-tuning (1e-5..5e-5 is typical).")
    if cfg.finetuning_type == "lora" and lr < 1e-5:
        out.append(f"learning_rate {lr:g} is low for LoRA (1e-4..3e-4 is typical).")
    if cfg.weight_decay > 0.5:
        out.append(f"weight_decay {cfg.weight_decay:g} pulls the weights to zero faster than they learn "
                   "(0-0.1 is typical).")
    if cfg.finetuning_type == "lora" and cfg.lora_dropout >= 0.5:
        out.append(f"lora_dropout {cfg.lora_dropout:g} drops most of the adapter's input (0-0.1 is typical).")
    if total_steps and warmup is not None and warmup > total_steps / 2:
        out.append(f"Warmup takes {warmup} of the {total_steps} steps: most of the run trains at a reduced learning "
                   "rate (warmup_ratio 0.03-0.1 is typical).")
    return out


def _launch_line(cfg: TrainConfig, per_machine: int) -> str:
    how = {"ddp": "DDP: each device holds the whole model", "fsdp": "FSDP: weights, gradients and optimizer state "
           "sharded over the devices", "deepspeed_zero2": "DeepSpeed ZeRO-2: gradients and optimizer state sharded",
           "deepspeed_zero3": "DeepSpeed ZeRO-3: weights, gradients and optimizer state sharded"}[cfg.distributed_type]
    offload = [what for what, on in (("optimizer", cfg.offload_optimizer), ("weights", cfg.offload_params)) if on]
    where = f" on {cfg.num_machines} machines" if cfg.num_machines > 1 else ""
    extra = f"; {' and '.join(offload)} offloaded to CPU RAM" if offload else ""
    return (f"Launched through accelerate: {per_machine} process{'es' if per_machine > 1 else ''} per machine{where}; "
            f"{how}{extra}. The memory estimate is per device.")


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
