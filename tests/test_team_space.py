"""The Space's shape: the Dockerfile (parsed), the README's Space metadata (YAML), and where runs go."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from webui import space

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def dockerfile_env() -> dict[str, str]:
    """The image's ENV settings (KEY=value pairs; values here hold no spaces or quotes)."""
    env: dict[str, str] = {}
    for kind, args in dockerfile_instructions():
        if kind == "ENV":
            env.update(pair.split("=", 1) for pair in args.split())
    return env


def test_the_images_settings_are_ones_the_code_reads():
    env = dockerfile_env()
    code = "\n".join(p.read_text() for p in [ROOT / "app.py", *(ROOT / "trainer").rglob("*.py"),
                                                *(ROOT / "webui").rglob("*.py")])
    for name in env:
        if name.startswith(("TUNEDECK_", "GRADIO_")):
            assert f'"{name}"' in code, f"the Dockerfile sets {name}, which nothing reads"
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0"


@pytest.mark.slow
def test_the_dockerfiles_command_refuses_without_sign_in_and_serves_with_it(tmp_path):
    """`python app.py` started as the image starts it (its CMD, its ENV; the port moved to a free one)."""
    cmd = json.loads(dict(dockerfile_instructions())["CMD"])
    port = free_port()
    cmd[cmd.index("--port") + 1] = str(port)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SPACE_", "OAUTH_", "SYSTEM"))}
    env.update({k: v for k, v in dockerfile_env().items() if k.startswith(("GRADIO_", "PYTHON"))})
    env.update(PYTHONPATH=str(ROOT), TUNEDECK_RUNS_DIR=str(tmp_path / "runs"), GRADIO_ANALYTICS_ENABLED="False")
    argv = [sys.executable, *cmd[1:]]
    refused = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "refusing to serve on 0.0.0.0 without sign-in" in refused.stderr
    assert "Traceback" not in refused.stderr
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env={**env, "TUNEDECK_AUTH": "alice:alice-pw-1"}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                me = httpx.get(f"http://127.0.0.1:{port}/api/me", auth=("alice", "alice-pw-1"), timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.5)
        assert me.json() == {"name": "alice", "is_admin": False, "sign_in": "password"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
