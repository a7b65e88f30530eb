"""Shared test setup: offline, a project-local cache for the demo model, the repo root on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Nothing may reach the Hub from a test; the demo model is built once into a cache every test shares.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TUNEDECK_CACHE", str(ROOT / ".cache" / "tunedeck"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def ctx(tmp_path):
    """The page's context on a fresh runs root, without a scheduler: submitted runs stay queued."""
    from trainer.jobs.manager import JobManager
    from webui.context import Context

    jobs = JobManager(tmp_path / "runs", autostart=False)
    try:
        yield Context(runs_root=tmp_path / "runs", jobs=jobs)
    finally:
        jobs.close()
