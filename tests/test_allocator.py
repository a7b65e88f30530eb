"""The training subprocess starts torch's CUDA allocator with expandable segments unless the user configured
it: from the dashboard (spawn_trainer) and by hand (`python -m trainer train`, `probe`), before torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trainer.jobs.processes import DEFAULT_ALLOCATOR, set_allocator_default, spawn_trainer
from trainer.run.layout import STDOUT_FILE

PRINT_ALLOCATOR = "import os; print('allocator=' + os.environ.get('PYTORCH_CUDA_ALLOC_CONF', ''))"


def _spawned_allocator(tmp_path, monkeypatch, **env: str) -> str:
    for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proc = spawn_trainer([sys.executable, "-c", PRINT_ALLOCATOR], tmp_path, attempt=1, gpu=None)
    assert proc.wait(timeout=60) == 0
    line = [x for x in (tmp_path / STDOUT_FILE).read_text().splitlines() if x.startswith("allocator=")][-1]
    return line.removeprefix("allocator=")


def test_the_scheduler_starts_trainers_with_expandable_segments(tmp_path, monkeypatch):
    assert _spawned_allocator(tmp_path, monkeypatch) == DEFAULT_ALLOCATOR == "expandable_segments:True"


@pytest.mark.parametrize("name", ["PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"])
def test_the_users_allocator_setting_wins(tmp_path, monkeypatch, name):
    mine = "max_split_size_mb:128"
    expected = mine if name == "PYTORCH_CUDA_ALLOC_CONF" else ""
    assert _spawned_allocator(tmp_path, monkeypatch, **{name: mine}) == expected
    env = {name: mine}
    set_allocator_default(env)
    assert env == {name: mine}


def test_train_by_hand_sets_it_before_torch_is_imported(tmp_path):
    # A missing config fails after the setting and before any heavy import: what was set, and was torch loaded?
    script = ("import os, sys, argparse\n"
              "import trainer.cli.train as train\n"
              "assert 'torch' not in sys.modules\n"
              f"code = train.run(argparse.Namespace(config={str(tmp_path / 'missing.yaml')!r}, "
              f"run_dir={str(tmp_path / 'run')!r}))\n"
              "print(code, os.environ.get('PYTORCH_CUDA_ALLOC_CONF'), 'torch' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    code, allocator, torch_loaded = out.stdout.split()[-3:]
    assert (code, allocator, torch_loaded) == ("2", DEFAULT_ALLOCATOR, "False")
