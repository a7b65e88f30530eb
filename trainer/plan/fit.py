"""Does a run fit: the verdict against a card (fits / tight / will not fit), the largest micro-batch that
fits, and the memory section of the run plan, from the estimate in trainer/plan/memory.py. Pure Python."""

from __future__ import annotations

from typing import Any, Callable, Optional

from trainer.plan.batching import keep_effective_batch
from trainer.plan.catalog import ModelShape
from trainer.plan.memory import FITS_BELOW, GB, MemorySettings, estimate_memory

def verdict(total_bytes: float, gpu_bytes: float) -> str:
    """`fits` under 90% of the card, `tight` up to 100%, else `will not fit`."""
    if gpu_bytes <= 0:
        raise ValueError("the GPU's memory must be positive")
    share = total_bytes / gpu_bytes
    if share <= FITS_BELOW:
        return "fits"
    if share <= 1.0:
        return "tight"
    return "will not fit"


def largest_fitting(fits: Callable[[int], bool], *, start: int = 1, limit: int = 4096) -> int:
    """The largest n in [1, limit] with fits(n), assuming fits is monotone (true up to a point, then false).

    Doubles from `start` until a size fails, then bisects between the last success and the failure, so
    it calls `fits` about 2·log2(answer) times. Returns 0 when even 1 does not fit.
    """
    if limit < 1:
        return 0
    n = max(1, min(start, limit))
    if not fits(n):
        if n == 1:
            return 0
        good, bad = 0, n  # fell from the start: bisect below it
    else:
        good = n
        bad = None
        while good < limit:
            n = min(good * 2, limit)
            if fits(n):
                good = n
            else:
                bad = n
                break
        if bad is None:
            return good
    while bad - good > 1:
        mid = (good + bad) // 2
        if mid < 1:
            break
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def largest_micro_batch(shape: ModelShape, settings: MemorySettings, gpu_bytes: float, *,
                        share: float = FITS_BELOW, limit: int = 1024) -> int:
    """The largest micro-batch whose estimate stays under `share` of the card (0: not even 1)."""
    return largest_fitting(lambda b: estimate_memory(shape, settings.with_batch(b)).total_bytes <= share * gpu_bytes,
                           limit=limit)


def plan_memory(shape: ModelShape, settings: MemorySettings, gpu_bytes: Optional[float] = None,
                gpu_label: Optional[str] = None) -> dict[str, Any]:
    """Everything the plan shows about memory: estimate, breakdown, verdict and largest micro-batch."""
    est = estimate_memory(shape, settings)
    out: dict[str, Any] = {
        "memory_breakdown_gb": est.breakdown_gb(),
        "memory_model": shape.name,
        "memory_model_source": shape.source,
        "trainable_parameters": est.trainable_parameters,
        "total_parameters": est.total_parameters,
    }
    if est.notes:
        out["memory_notes"] = est.notes
    if gpu_bytes:
        out["memory_gpu_gb"] = round(gpu_bytes / GB, 1)
        if gpu_label:
            out["memory_gpu"] = gpu_label
        out["memory_verdict"] = verdict(est.total_bytes, gpu_bytes)
        out["memory_share_of_gpu"] = round(est.total_bytes / gpu_bytes, 3)
        out["largest_micro_batch"] = largest_micro_batch(shape, settings, gpu_bytes)
    return out


def memory_plan_for_config(cfg: Any, *, precision: str, attn_implementation: str, use_liger_kernel: bool,
                           gpu_memory_gb: Optional[float] = None, gpu_label: Optional[str] = None,
                           unsorted_varied_batches: bool = False, device: str = "cuda", devices: int = 1
                           ) -> tuple[Optional[float], dict[str, Any], list[str]]:
    """(estimate in GB or None when the model is unknown, plan extras, warnings) for a TrainConfig.

    gpu_memory_gb: the card to judge against (detected, or picked from catalog.GPU_CHOICES), in GiB.
    Without one, the verdict is given for every size in GPU_CHOICES. device "cpu": the run trains on this
    machine's CPU, so the estimate is of RAM and no GPU is judged.
    """
    from trainer.plan.catalog import GPU_CHOICES, model_shape

    if gpu_memory_gb is not None and not (isinstance(gpu_memory_gb, (int, float)) and gpu_memory_gb > 0):
        gpu_memory_gb = None  # an unknown or nonsensical card size: judge against the list instead
    shape = model_shape(cfg.model_name_or_path)
    if shape is None:
        return None, {"memory_verdict": "unknown"}, [
            f"Memory estimate unknown: '{cfg.model_name_or_path}' is neither in the model catalog nor a local "
            "directory with a config.json."]
    settings = MemorySettings.from_config(cfg, precision=precision, attn_implementation=attn_implementation,
                                          use_liger_kernel=use_liger_kernel,
                                          unsorted_varied_batches=unsorted_varied_batches, device=device, devices=devices)
    if device != "cuda":
        extra = plan_memory(shape, settings)
        extra["memory_device"] = "cpu"
        return round(estimate_memory(shape, settings).total_gb, 2), extra, []
    gpu_bytes = gpu_memory_gb * GB if gpu_memory_gb else None
    extra = plan_memory(shape, settings, gpu_bytes, gpu_label)
    est_gb = round(estimate_memory(shape, settings).total_gb, 2)
    warnings: list[str] = []
    if gpu_bytes:
        best = extra["largest_micro_batch"]
        micro, accum = settings.micro_batch, cfg.gradient_accumulation_steps
        effective = micro * accum
        if extra["memory_verdict"] != "fits":
            if best >= 1:
                new_micro, new_accum = keep_effective_batch(effective, best)
                kept = "the same effective batch" if new_micro * new_accum == effective else \
                    f"effective batch {new_micro * new_accum}, was {effective}"
                advice = f"use micro-batch {new_micro} with gradient accumulation {new_accum} ({kept})"
            else:
                advice = "even micro-batch 1 does not fit: quantize the base (4-bit), turn on gradient " \
                         "checkpointing, shorten cutoff_len or pick a bigger GPU"
            warnings.append(f"Memory: about {est_gb:.1f} GB at micro-batch {micro} × {settings.seq_len} tokens on a "
                            f"{gpu_memory_gb:g} GB GPU: {extra['memory_verdict']}. {advice[0].upper()}{advice[1:]}.")
        if best:
            extra["suggested_micro_batch"], extra["suggested_gradient_accumulation"] = \
                keep_effective_batch(effective, best)
        else:
            extra["suggested_micro_batch"] = extra["suggested_gradient_accumulation"] = None
    else:
        extra["memory_verdict_by_gpu"] = {
            g.key: verdict(estimate_memory(shape, settings).total_bytes, g.total_bytes) for g in GPU_CHOICES}
    return est_gb, extra, warnings
