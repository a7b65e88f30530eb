"""Model FLOPs utilisation (MFU): how much of a GPU's peak a run's tokens/s amounts to, and what to expect.

Pure functions, no torch. The plan states FLOPs per token, the card's peak and an estimate of the tokens/s
it will reach; the Monitor divides the measured tokens/s by the same numbers (trainer/run/series.py).

FLOPs per trained token (`training_flops_per_token`), the PaLM convention (model FLOPs, not hardware
FLOPs: gradient checkpointing's recomputation is not counted, so the card does about a third more work):

    full fine-tuning:  6·N + 12·L·T·d
    LoRA / QLoRA:      4·N + 6·N_lora + 12·L·T·d

N: the model's parameters (embeddings included, as the benchmarks count them); every weight costs 2
FLOPs per token forward, 2 backward for the gradient of its input and 2 for the gradient of the weight
itself. LoRA freezes the base, which skips that last 2·N; its adapters (N_lora) cost the full 6.
12·L·T·d is attention (no weights, so not in N): per layer QKᵀ and AV are 2·T·d FLOPs each forward,
three times that with the backward, for L layers, rows of T tokens (the mean real row length: packed
rows attend within themselves) and d = heads × head_dim. Causal masking is not halved, as PaLM counts it.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from trainer.plan.catalog import GPU_MODELS, GpuChoice, ModelShape, catalog_shape, gpu_model

# Measured in benchmarks/README.md (H100 SXM, Llama-3.1-8B shape, QLoRA r 16 all-linear, cutoff 2048,
# log-uniform row lengths 64..2048 whose mean is (2048 - 64) / ln 32 = 572 tokens): tokens/s of real tokens.
_REFERENCE_PEAK_TFLOPS = 989.0
_REFERENCE_MODEL = "meta-llama/Llama-3.1-8B"
_REFERENCE_LORA_RANK = 16
_REFERENCE_MEAN_ROW = 572
_REFERENCE_RUNS = {
    # batching: (tokens/s, mean row length) as measured
    "padded": (3032.0, _REFERENCE_MEAN_ROW),  # group_by_length + Liger, padding efficiency 0.84
    "packed_sdpa": (3323.0, _REFERENCE_MEAN_ROW),  # padding-free best-fit-decreasing packing on SDPA
    "no_padding": (6270.0, 2048),  # every row exactly 2048 tokens: the ceiling of that stack
}
# The benchmarks measured 1B-8B models; below 1B a step is bound by kernel launches, not FLOPs.
ESTIMATE_MIN_PARAMETERS = 1_000_000_000
# Why a plan has no MFU (its `mfu_reason`); the page words each one.
MFU_REASONS = ("cpu", "precision", "unknown_model", "mixture_of_experts", "small_model", "unknown_gpu",
               "no_gpu_size")
CPU_NOTE = "no MFU on a CPU: MFU is a share of a GPU's tensor-core peak, which a CPU does not have"


def training_flops_per_token(shape: ModelShape, *, finetuning_type: str, trainable_parameters: int,
                             mean_row_tokens: float) -> float:
    """FLOPs of one trained token (forward + backward), by the formulas in this module's docstring."""
    n = shape.parameter_count()
    attention = 12 * shape.num_layers * mean_row_tokens * shape.q_size
    if finetuning_type == "full":
        return 6 * n + attention
    return 4 * n + 6 * trainable_parameters + attention


def mfu(tokens_per_second: float, flops_per_token: float, peak_tflops: float, devices: int = 1) -> Optional[float]:
    """tokens/s × FLOPs per token / (peak × devices); None when any of them is missing or not positive."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
               for v in (tokens_per_second, flops_per_token, peak_tflops, devices)):
        return None
    return tokens_per_second * flops_per_token / (peak_tflops * 1e12 * devices)


def reference_mfu(batching: str) -> float:
    """The MFU the benchmark measured for `batching` (padded | packed_sdpa | no_padding), recomputed with
    this module's FLOPs per token so that the estimate and the live MFU use one formula."""
    from trainer.plan.memory import lora_parameter_count

    shape = catalog_shape(_REFERENCE_MODEL)
    assert shape is not None, "the reference model is in the catalog"
    tokens_per_second, mean_row = _REFERENCE_RUNS[batching]
    flops = training_flops_per_token(shape, finetuning_type="lora", mean_row_tokens=mean_row,
                                     trainable_parameters=lora_parameter_count(shape, _REFERENCE_LORA_RANK))
    return tokens_per_second * flops / (_REFERENCE_PEAK_TFLOPS * 1e12)


def expected_batching(packing: bool, attention: str) -> str:
    """Which measured run a plan resembles: FlashAttention's varlen kernel on packed rows wastes nothing,
    so it is expected near the no-padding ceiling (not measured yet); SDPA packing and padded batches as
    measured."""
    if packing:
        return "no_padding" if "flash" in attention else "packed_sdpa"
    return "padded"


def mean_row_tokens(token_lengths: Optional[Sequence[int]], cutoff_len: int) -> tuple[float, bool]:
    """(mean real tokens per row, measured?): rows clipped to cutoff_len; cutoff_len itself when the lengths
    are unknown (an upper bound of the attention term)."""
    clipped = [min(n, cutoff_len) for n in token_lengths or () if n > 0]
    if not clipped:
        return float(cutoff_len), False
    return sum(clipped) / len(clipped), True


def throughput_plan(shape: Optional[ModelShape], *, finetuning_type: str, trainable_parameters: Optional[int],
                    token_lengths: Optional[Sequence[int]], cutoff_len: int, packing: bool, attention: str,
                    precision: str, device: str, gpu_name: Optional[str] = None,
                    gpu_choice: Optional[GpuChoice] = None, devices: int = 1) -> dict[str, Any]:
    """The plan's throughput extras: flops_per_token always (when the model is known), and, planned for a GPU
    whose peak is known, gpu_peak_tflops, expected_mfu and expected_tokens_per_second (an estimate: the
    benchmark's measured MFU on this card's peak). `mfu_reason` (one of MFU_REASONS) and `mfu_note` (its
    words) say why a number is missing."""
    out: dict[str, Any] = {}
    if shape is None:
        out.update(mfu_reason="unknown_model",
                   mfu_note="no MFU: the model's shape is unknown, so are its FLOPs per token")
        return out
    if shape.num_experts > 1:
        out["mfu_reason"] = "mixture_of_experts"
        out["mfu_note"] = ("no MFU for a mixture of experts: the plan does not know how many experts each token "
                           "uses, so its FLOPs per token are unknown")
        return out
    mean_row, measured = mean_row_tokens(token_lengths, cutoff_len)
    trainable = trainable_parameters or 0
    flops = training_flops_per_token(shape, finetuning_type=finetuning_type, trainable_parameters=trainable,
                                     mean_row_tokens=mean_row)
    out["flops_per_token"] = float(f"{flops:.4g}")
    out["flops_mean_row_tokens"] = round(mean_row, 1)
    out["flops_mean_row_measured"] = measured
    if device != "cuda":
        out.update(mfu_reason="cpu", mfu_note=CPU_NOTE)
        return out
    if precision not in ("bf16", "fp16"):
        out["mfu_reason"] = "precision"
        out["mfu_note"] = f"no MFU at {precision}: the peaks known are the cards' 16-bit tensor-core figures"
        return out
    if shape.parameter_count() < ESTIMATE_MIN_PARAMETERS:
        out.update(mfu_reason="small_model", mfu_note=(
            "no expected tokens/s under 1B parameters: such a model is bound by kernel launches and the data "
            "loader, not by FLOPs (the live MFU is still measured)"))
        return out
    batching = expected_batching(packing, attention)
    expected = reference_mfu(batching)
    out["expected_mfu"] = round(expected, 4)
    out["expected_basis"] = batching
    model = gpu_model(gpu_name)
    if model is not None:
        out["gpu_model"] = model.name
        out["gpu_peak_tflops"] = model.peak_tflops
        out["mfu_devices"] = devices
        out["expected_tokens_per_second"] = round(expected * model.peak_tflops * 1e12 * devices
                                                  / out["flops_per_token"])
        return out
    models = [m for m in GPU_MODELS if gpu_choice is not None and m.name in gpu_choice.models]
    if models:
        rates = {m.name: round(expected * m.peak_tflops * 1e12 * devices / out["flops_per_token"]) for m in models}
        out["expected_tokens_per_second_by_gpu"] = rates
        return out
    out["mfu_reason"] = "unknown_gpu" if gpu_name else "no_gpu_size"
    out["mfu_note"] = (f"no expected tokens/s: the peak of '{gpu_name}' is not in the GPU table" if gpu_name else
                       "no expected tokens/s: pick a GPU size, or plan on a GPU machine")
    return out



def live_mfu(plan: Optional[dict[str, Any]], tokens_per_second: Optional[float]) -> Optional[float]:
    """The MFU a logged tokens/s means under the run's plan (its FLOPs per token, the card's peak and the
    devices); None on a CPU or when the plan lacks any of them."""
    if not plan or tokens_per_second is None:
        return None
    return mfu(tokens_per_second, plan.get("flops_per_token"), plan.get("gpu_peak_tflops"),  # type: ignore[arg-type]
               plan.get("mfu_devices") or 1)


def throughput_line(plan: dict[str, Any]) -> Optional[str]:
    """The plan's throughput in one sentence, for `python -m trainer check`; None when the model is unknown."""
    if not plan.get("flops_per_token"):
        return plan.get("mfu_note")
    flops = f"{plan['flops_per_token']:.3g} FLOPs per token"
    if plan.get("expected_tokens_per_second"):
        return (f"expected ≈ {plan['expected_tokens_per_second']:,} tokens/s = MFU {plan['expected_mfu']:.1%} of "
                f"{plan['gpu_model']} ({plan['gpu_peak_tflops']:g} TFLOP/s per GPU), {flops} — an estimate from "
                f"the benchmarks' measured MFU ({plan['expected_basis'].replace('_', ' ')} batches)")
    rates = plan.get("expected_tokens_per_second_by_gpu")
    if rates:
        return (f"expected tokens/s: {', '.join(f'{name} ≈ {v:,}' for name, v in rates.items())} = MFU "
                f"{plan['expected_mfu']:.1%}, {flops} — an estimate from the benchmarks' measured MFU")
    return f"{flops}; {plan.get('mfu_note')}"
