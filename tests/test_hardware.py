"""The one hardware module (trainer/plan/hardware.py): visible GPUs, the web server's NVML-only detection
(no torch), and CUDA_VISIBLE_DEVICES mapped back to the physical card NVML numbers.

This machine has no GPU, so NVML is stood in for by a small module that records which card was asked for;
what is under test is the mapping and the fallbacks, which are ours."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from trainer.plan import hardware
from trainer.plan.resolve import CPU


class _Memory:
    def __init__(self, total_gib: float, used_gib: float):
        self.total, self.used = int(total_gib * 1024**3), int(used_gib * 1024**3)


@pytest.fixture
def fake_nvml(monkeypatch):
    """A stand-in pynvml with two physical cards: index 0 (24 GiB, sm 8.6) and 3 (80 GiB, sm 9.0)."""
    cards = {0: ("NVIDIA A10", 24.0, 8), 3: ("NVIDIA H100 80GB HBM3", 80.0, 9), "GPU-abc": ("NVIDIA L4", 22.0, 8)}
    asked: list = []
    module = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: asked.append(i) or cards[i],
        nvmlDeviceGetHandleByUUID=lambda u: asked.append(u) or cards[u],
        nvmlDeviceGetName=lambda h: h[0].encode(),
        nvmlDeviceGetMemoryInfo=lambda h: _Memory(h[1], h[1] / 4),
        nvmlDeviceGetCudaComputeCapability=lambda h: (h[2], 0),
    )
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setitem(hardware._nvml_state, "ready", None)
    return asked


def test_light_detection_reads_the_first_visible_card_not_physical_card_0(fake_nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,0")
    hw = hardware.detect_light()
    assert (hw.device, hw.gpu_name, hw.gpu_total_gb, hw.num_devices, hw.bf16_supported) == \
        ("cuda", "NVIDIA H100 80GB HBM3", 80.0, 2, True)
    assert fake_nvml == [3]
    # the trainer's memory events: its cuda:1 is physical card 0
    assert hardware.nvml_memory(1) == {"device_used_gb": 6.0, "device_total_gb": 24.0}


def test_uuid_entries_are_looked_up_by_uuid(fake_nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc")
    assert hardware.detect_light().gpu_name == "NVIDIA L4" and fake_nvml == ["GPU-abc"]
    assert hardware.nvml_memory(5) == {}  # a device NVML cannot find: no reading, no exception


def test_no_visible_gpu_means_the_cpu_without_asking_nvml(fake_nvml, monkeypatch):
    for hidden in ("", "-1", "-1,0"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert hardware.gpu_count() == 0 and hardware.detect_light() == CPU
    assert fake_nvml == []


def test_without_nvml_the_light_detection_plans_for_the_cpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed: importing it raises ImportError
    monkeypatch.setitem(hardware._nvml_state, "ready", None)
    assert hardware.detect_light() == CPU and hardware.nvml_memory(0) == {}


def test_the_light_detection_never_imports_torch(repo_root):
    code = ("import sys; from trainer.plan.hardware import detect_light, gpu_count; detect_light(); gpu_count(); "
            "import trainer.jobs.manager, trainer.run.series, trainer.run.layout, webui.views, webui.charts; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
