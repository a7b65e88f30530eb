"""What this machine can train on: GPUs, memory, bf16, optional fast kernels.

`detect()` imports torch lazily (the dashboard process may call it only when it really needs it) and
never raises: anything it cannot find out is reported as absent, and the plan falls back to the CPU.
"""

from __future__ import annotations

import importlib.util

from trainer.plan.resolve import Hardware


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def detect() -> Hardware:
    """The Hardware the plan and the trainer use (device 0 describes the card when there are several)."""
    try:
        import torch
    except ImportError:
        return Hardware()
    try:
        if not torch.cuda.is_available():
            return Hardware()
        count = torch.cuda.device_count()
        props = torch.cuda.get_device_properties(0)
        return Hardware(
            device="cuda",
            num_devices=max(1, count),
            gpu_name=props.name,
            gpu_total_gb=round(props.total_memory / 1024**3, 2),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            # FlashAttention 2 needs Ampere (compute capability 8.0) or newer.
            flash_attention=_importable("flash_attn") and props.major >= 8,
            liger=_importable("liger_kernel"),
        )
    except Exception:  # a broken driver must not take the plan down: train on the CPU instead
        return Hardware()
