"""What this machine can train on: GPUs, memory, bf16, optional fast kernels. The one home of hardware
detection, in three depths:

- `visible_gpus()` / `gpu_count()`: the GPUs a trainer may use, from CUDA_VISIBLE_DEVICES or the
  driver's /proc listing. Standard library only: the job scheduler hands them out.
- `detect_light()`: the first visible GPU's name, memory and bf16 through NVML, without importing
  torch, for the web server's plan. `nvml_memory(index)`: device-wide used/total for the trainer's
  memory events (every process on the card, which torch's own counters do not see).
- `detect()`: torch's view (the engine side): what the trainer and the probe plan with.

None of them raises: anything that cannot be found out is reported as absent, and the plan falls back
to the CPU.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from trainer.plan.resolve import CPU, Hardware

GB = 1024 ** 3


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --- visible GPUs, no library at all ----------------------------------------------------------------

def visible_gpus() -> list[str]:
    """The GPUs a trainer may use, as CUDA_VISIBLE_DEVICES entries: this process's CUDA_VISIBLE_DEVICES if
    set, else every NVIDIA GPU the driver lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [d.strip() for d in visible.split(",") if d.strip()]
        if "-1" in entries:  # CUDA ignores this entry and every one after it
            entries = entries[:entries.index("-1")]
        return entries
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def gpu_count() -> int:
    return len(visible_gpus())


# --- NVML: the driver's view, without torch -----------------------------------------------------------

_nvml_state: dict[str, Any] = {"ready": None}


def _nvml() -> Any:
    """The initialised pynvml module, or None without the package or a driver (tried once per process)."""
    if _nvml_state["ready"] is None:
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            _nvml_state["ready"] = pynvml
        except Exception:  # noqa: BLE001 - no package, no driver, no permission: no NVML
            _nvml_state["ready"] = False
    return _nvml_state["ready"] or None


def _nvml_handle(nvml: Any, index: int) -> Any:
    """NVML's handle for CUDA's device `index`. CUDA_VISIBLE_DEVICES renumbers devices and NVML does not:
    the entry is mapped back to the physical card (by number, or by UUID for GPU-/MIG- entries)."""
    entries = visible_gpus() if os.environ.get("CUDA_VISIBLE_DEVICES") is not None else []
    entry = entries[index] if index < len(entries) else str(index)
    if entry.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    return nvml.nvmlDeviceGetHandleByUUID(entry)


def nvml_memory(index: int) -> dict[str, float]:
    """Device-wide used/total GB of CUDA device `index` ({} when NVML is unavailable)."""
    nvml = _nvml()
    if nvml is None:
        return {}
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(_nvml_handle(nvml, index))
    except Exception:  # noqa: BLE001 - a card NVML cannot read: no reading rather than no run
        return {}
    return {"device_used_gb": round(info.used / GB, 3), "device_total_gb": round(info.total / GB, 3)}


def gpu_list() -> list[tuple[str, str, float | None]]:
    """(id, name, total GB) of every visible GPU, through NVML (no torch): what the form offers to pick.
    The name is "GPU <id>" and the size None where NVML cannot read the card."""
    nvml = _nvml()
    found = []
    for index, entry in enumerate(visible_gpus()):
        name, total = f"GPU {entry}", None
        if nvml is not None:
            try:
                handle = _nvml_handle(nvml, index)
                raw = nvml.nvmlDeviceGetName(handle)
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                total = round(nvml.nvmlDeviceGetMemoryInfo(handle).total / GB, 1)
            except Exception:  # noqa: BLE001 - listed but unreadable: still offered by its number
                pass
        found.append((entry, name, total))
    return found


def detect_light() -> Hardware:
    """The first visible GPU through NVML (no torch import: the web server stays light); the CPU when there
    is none. FlashAttention and Liger are reported absent: only the trainer's `detect()` checks them."""
    count = gpu_count()
    if count == 0:
        return CPU
    nvml = _nvml()
    if nvml is None:
        return CPU
    try:
        handle = _nvml_handle(nvml, 0)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        total = nvml.nvmlDeviceGetMemoryInfo(handle).total / GB
        major, _ = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    except Exception:  # noqa: BLE001 - a listed GPU NVML cannot read: plan for the CPU
        return CPU
    return Hardware(device="cuda", num_devices=count, gpu_name=name, gpu_total_gb=round(total, 2),
                    bf16_supported=major >= 8, flash_attention=False, liger=False)


# --- torch: the engine's view -------------------------------------------------------------------------

# transformers 5 loads FlashAttention from the Hub through the `kernels` package when given the repository
# as attn_implementation; the one transformers itself falls back to for flash_attention_2 (CUDA builds).
HUB_FLASH_ATTENTION = "kernels-community/flash-attn2"


def hub_attention_kernel() -> str | None:
    """HUB_FLASH_ATTENTION when the `kernels` package is installed and the kernel is already in the local Hub
    cache: a run must not depend on reaching the Hub when it loads the model (fetch it once with
    `python -c "import kernels; kernels.get_kernel('kernels-community/flash-attn2')"`)."""
    from huggingface_hub import constants
    from transformers.utils.import_utils import is_kernels_available  # the `kernels` versions transformers takes

    if not is_kernels_available():
        return None
    owner, name = HUB_FLASH_ATTENTION.split("/")
    snapshots = os.path.join(constants.HF_HUB_CACHE, f"models--{owner}--{name}", "snapshots")
    try:
        return HUB_FLASH_ATTENTION if any(os.scandir(snapshots)) else None
    except OSError:
        return None


def detect() -> Hardware:
    """The Hardware the plan and the trainer use (device 0 describes the card when there are several).
    Imports torch: for the engine's subprocesses, not the web server."""
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
            gpu_total_gb=round(props.total_memory / GB, 2),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
            # FlashAttention 2 needs Ampere (compute capability 8.0) or newer, FlashAttention 3 a Hopper (9.x).
            flash_attention=_importable("flash_attn") and props.major >= 8,
            flash_attention_3=_importable("flash_attn_interface") and props.major == 9,
            hub_attention_kernel=hub_attention_kernel() if props.major >= 8 else None,
            liger=_importable("liger_kernel"),
        )
    except Exception:  # a broken driver must not take the plan down: train on the CPU instead
        return Hardware()
