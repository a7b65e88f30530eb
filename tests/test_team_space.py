"""The Space's shape: the Dockerfile (parsed), the README's Space metadata (YAML), and where runs go."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from webui import space

ROOT = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            joined.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def test_the_dockerfile_builds_a_cuda_image_run_by_a_non_root_user_with_runs_on_a_volume():
    steps = dockerfile_instructions()
    kinds = [kind for kind, _ in steps]
    base = dict(steps)["FROM"]
    assert base.startswith("nvidia/cuda:") and "runtime" in base  # CUDA libraries for a CUDA PyTorch
    assert any(kind == "ARG" and "whl/cu" in args for kind, args in steps)  # the CUDA build of PyTorch
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any("--uid 1000" in args for kind, args in steps if kind == "RUN")  # Spaces run as uid 1000
    assert kinds.index("USER") < kinds.index("CMD")
    assert json.loads(dict(steps)["VOLUME"]) == ["/data"]
    assert dict(steps)["EXPOSE"] == "7860"
    cmd = json.loads(dict(steps)["CMD"])
    assert cmd[:2] == ["python", "app.py"] and cmd[cmd.index("--port") + 1] == "7860"
    assert "TUNEDECK_RUNS_DIR" not in (ROOT / "Dockerfile").read_text()  # runs go to /data, found at start
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "*.db"} <= set(ignored)


def test_the_readme_carries_the_docker_space_metadata_and_keeps_its_content():
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert meta["sdk"] == "docker" and meta["app_port"] == 7860
    assert meta["hf_oauth"] is True and {"openid", "profile"} <= set(meta["hf_oauth_scopes"])
    assert body.lstrip().startswith("# tunedeck")
    for words in ["Duplicate the Space", "hardware", "persistent storage", "secrets", "/api/runs"]:
        assert words in body


def test_runs_go_to_persistent_storage_when_there_is_one(tmp_path):
    storage = tmp_path / "data"
    assert space.default_runs_dir({}, storage) == "runs"
    storage.mkdir()
    assert space.default_runs_dir({}, storage) == str(storage / "runs")
    assert space.default_runs_dir({"TUNEDECK_RUNS_DIR": "/elsewhere"}, storage) == "/elsewhere"
    # On a Space, runs off a mounted /data vanish on a restart: the page is told so.
    assert space.storage_warning("runs", {}, storage) is None  # a machine's own disk keeps them
    assert "restart" in space.storage_warning("runs", {"SPACE_ID": "team/tunedeck"}, storage)
    assert "restart" in space.storage_warning(str(storage / "runs"), {"SPACE_ID": "team/tunedeck"}, storage)
