"""Hugging Face sign-in as a Space runs it: `python app.py` with the variables a Space with `hf_oauth: true`
sets, Gradio's OAuth routes and session, and sessions signed the way Gradio signs them (no call to
huggingface.co: a visitor's session cookie is made here with the Space's secret)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner

from test_team_api import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
SECRET = "space-oauth-secret"


def session_cookie(name: str, orgs: list[str]) -> dict[str, str]:
    session = {"oauth_info": {"access_token": "x", "expires_at": int(time.time()) + 3600, "userinfo": {
        "preferred_username": name, "name": name, "profile": "", "picture": "",
        "orgs": [{"preferred_username": org} for org in orgs]}}}
    signer = TimestampSigner(hashlib.sha256((SECRET + "-v4").encode()).hexdigest())
    value = signer.sign(base64.b64encode(json.dumps(session).encode())).decode()
    return {"Cookie": f"session={value}"}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    runs = tmp_path_factory.mktemp("space") / "runs"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SPACE_HOST")}
    env.update({"PYTHONPATH": str(ROOT), "SYSTEM": "spaces", "SPACE_ID": "team/tunedeck", "OAUTH_CLIENT_ID": "client",
                "OAUTH_CLIENT_SECRET": SECRET, "OAUTH_SCOPES": "openid profile",
                "OPENID_PROVIDER_URL": "http://127.0.0.1:9", "TUNEDECK_HF_ORGS": "acme", "TUNEDECK_ADMINS": "alice",
                "GRADIO_ANALYTICS_ENABLED": "False"})
    log_path = runs.parent / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--runs-dir", str(runs)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            pytest.fail("the server exited:\n" + log_path.read_text()[-3000:])
        try:
            return httpx.get(f"{base}/api/me", timeout=5).status_code == 401
        except httpx.HTTPError:
            return False

    wait_for(up, "the Space's server to answer")
    yield base, log_path
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_visitors_sign_in_with_hugging_face_and_only_the_team_gets_in(space):
    base, log_path = space
    assert "sign-in with Hugging Face (members of acme only)" in log_path.read_text()
    visitor = httpx.get(base + "/?run=x", timeout=30)
    assert visitor.status_code in (302, 307)
    assert visitor.headers["location"].startswith("/login/huggingface?_target_url=%2F%3Frun%3Dx")
    assert httpx.get(base + "/config", timeout=30).status_code == 401  # the page's own endpoints too

    alice = session_cookie("alice", ["acme"])
    page = httpx.get(base + "/", headers=alice, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert httpx.get(base + "/config", headers=alice, timeout=30).json()["username"] == "alice"

    outsider = session_cookie("mallory", ["other-org"])
    refused = httpx.get(base + "/", headers=outsider, timeout=30)
    assert refused.status_code == 403 and "not a member of acme" in refused.text and "/logout" in refused.text
    assert httpx.get(base + "/config", headers=outsider, timeout=30).status_code == 401
    # The API does not take the browser's session (no cross-site requests riding on a cookie): tokens only.
    assert httpx.get(base + "/api/runs", headers=alice, timeout=30).status_code == 401
