"""The micro-batch probe: its search and batch arithmetic, and its clear refusal on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainer.engine.probe import _full_length_rows, search
from trainer.plan.batching import keep_effective_batch


def test_probe_on_a_cpu_says_it_needs_a_gpu_and_exits_2(repo_root):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "trainer", "probe", str(repo_root / "presets" / "demo.yaml")],
                          cwd=repo_root, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "needs a GPU" in proc.stderr and "Traceback" not in proc.stderr


def test_probe_with_a_bad_config_exits_2_naming_the_file(repo_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("per_device_train_batch_size: 0\n")
    proc = subprocess.run([sys.executable, "-m", "trainer", "probe", str(bad)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "per_device_train_batch_size" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("answer,start", [(0, 1), (1, 1), (5, 1), (6, 4), (13, 8), (40, 8), (64, 64), (3, 32)])
def test_search_finds_the_largest_fitting_micro_batch(answer, start):
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= answer

    assert search(fits, start=start, limit=64) == answer
    assert len(tried) == len(set(tried)) or answer == 0  # no candidate measured twice
    assert max(tried) <= 64


def test_search_never_tries_beyond_the_limit():
    tried = []
    assert search(lambda b: tried.append(b) or True, start=3, limit=20) == 20
    assert max(tried) == 20


@pytest.mark.parametrize("effective,largest,expected", [
    (16, 16, (16, 1)),
    (16, 5, (4, 4)),       # a divisor keeps the effective batch exactly
    (16, 40, (16, 1)),     # never a micro-batch above the effective batch
    (12, 5, (4, 3)),
    (17, 5, (5, 4)),       # prime: closest from above
    (8, 0, (0, 0)),        # nothing fits
])
def test_keep_effective_batch(effective, largest, expected):
    assert keep_effective_batch(effective, largest) == expected


def test_full_length_rows_are_the_worst_case():
    rows = _full_length_rows(64, 3, vocab=100)
    assert len(rows) == 3
    assert all(len(r["input_ids"]) == 64 and sum(r["completion_mask"]) == 64 for r in rows)
    assert all(3 <= t < 100 for r in rows for t in r["input_ids"])


@pytest.mark.slow
def test_one_probe_try_trains_full_length_rows_in_a_subprocess(repo_root, tmp_path):
    """The child the probe spawns per candidate, run for real on the demo model (on a CPU it reports RAM)."""
    import json

    config = tmp_path / "config.yaml"
    config.write_text("model_name_or_path: demo\ndataset: demo\ncutoff_len: 32\nper_device_train_batch_size: 8\n"
                      "gradient_accumulation_steps: 4\neval_strategy: steps\nval_size: 0.1\n")
    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "trainer.engine.probe", "--child", str(config), "3", str(result)],
                          cwd=repo_root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    data = json.loads(result.read_text())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert data["finished"] is True and data["micro_batch"] == 3 and data["device"] == "cpu"
    assert data["peak_reserved_bytes"] > 0 and data["total_bytes"] > data["peak_reserved_bytes"]
