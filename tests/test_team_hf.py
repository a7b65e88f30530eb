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
from webui.api_tokens import TOKENS_FILE, TokenNeedsSignIn, TokenStore, hf_token_days
from webui.api import FAILED_SIGN_INS_PER_MINUTE
from webui.auth import User

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
    # Gradio's Space reloader needs the `spaces` package, which a Docker Space lacks: no traceback at start.
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
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


# --- API tokens of Hugging Face users: as good as their owner's last sign-in -----------------------------

def _age(runs: Path, token_id: str, days: float) -> None:
    path = runs / TOKENS_FILE
    records = json.loads(path.read_text())
    records[token_id]["verified_at"] = time.time() - days * 86400
    path.write_text(json.dumps(records))


def test_a_token_lapses_when_its_owner_stops_signing_in_and_the_page_renews_it(space):
    base, log_path = space
    runs = log_path.parent / "runs"
    store = TokenStore(runs)  # the server's own file, as its page writes it when carol makes a token
    carol_id, carol = store.create(User("carol"), "nightly script")
    me = lambda token: httpx.get(base + "/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me(carol).status_code == 200 and me(carol).json()["name"] == "carol"
    # Made with a token, a new token is no younger than it: tokens cannot keep each other alive.
    _age(runs, carol_id, 10)
    made = httpx.post(base + "/api/tokens", json={"label": "second"}, timeout=30,
                      headers={"Authorization": f"Bearer {carol}"})
    assert made.status_code == 201, made.text
    records = json.loads((runs / TOKENS_FILE).read_text())
    assert abs(records[made.json()["id"]]["verified_at"] - records[carol_id]["verified_at"]) < 1

    # Carol has not signed in for 31 days (she may have left the organisation): her tokens are refused,
    # with the reason, and the right secret does not count as a failed sign-in.
    _age(runs, carol_id, 31)
    for _ in range(FAILED_SIGN_INS_PER_MINUTE + 5):
        lapsed = me(carol)
        assert lapsed.status_code == 401 and "has not signed in on the page for over 30 days" in lapsed.text
    # A visit to the page, with a session the organisation check lets in, renews them.
    assert httpx.get(base + "/config", headers=session_cookie("carol", ["acme"]), timeout=30).status_code == 200
    assert me(carol).status_code == 200
    # Someone the organisation check refuses renews nothing.
    mallory_id, mallory = store.create(User("mallory"), "kept from before")
    _age(runs, mallory_id, 31)
    assert httpx.get(base + "/", headers=session_cookie("mallory", ["other-org"]), timeout=30).status_code == 403
    httpx.get(base + "/config", headers=session_cookie("mallory", ["other-org"]), timeout=30)
    assert me(mallory).status_code == 401


def test_token_store_lifetimes(tmp_path):
    store = TokenStore(tmp_path, max_age_days=30)
    token_id, token = store.create(User("dana"))
    assert store.owner_of(token) == "dana"
    _age(tmp_path, token_id, 31)
    with pytest.raises(TokenNeedsSignIn, match="dana, who has not signed in on the page for over 30 days"):
        store.owner_of(token)
    assert store.owner_of(token.replace(token[-4:], "AAAA")) is None  # a wrong secret is just wrong
    store.renew("dana")
    assert store.owner_of(token) == "dana"
    _age(tmp_path, token_id, 31)
    store.renew("dana")  # renewed within the hour already: the file is not rewritten on every request
    with pytest.raises(TokenNeedsSignIn):
        store.owner_of(token)
    # Password logins: a token lives until it is revoked (removing the login removes its tokens).
    assert TokenStore(tmp_path).owner_of(token) == "dana"


@pytest.mark.parametrize("raw,days", [("", 30.0), ("7", 7.0), ("0.5", 0.5)])
def test_the_token_lifetime_comes_from_the_environment(raw, days):
    assert hf_token_days({"TUNEDECK_HF_TOKEN_DAYS": raw}) == days


@pytest.mark.parametrize("raw", ["x", "0", "-1", "nan", "inf", "99999"])
def test_a_wrong_token_lifetime_is_refused_by_name(raw):
    with pytest.raises(ValueError, match="TUNEDECK_HF_TOKEN_DAYS"):
        hf_token_days({"TUNEDECK_HF_TOKEN_DAYS": raw})


def test_a_renewal_that_cannot_write_leaves_the_page_answering(tmp_path):
    store = TokenStore(tmp_path, max_age_days=30)
    token_id, token = store.create(User("erin"))
    _age(tmp_path, token_id, 31)
    good = (tmp_path / TOKENS_FILE).read_text()
    (tmp_path / TOKENS_FILE).write_text("{damaged")  # unreadable: the API refuses every token until it is moved
    store.renew("erin")  # no exception: the page's request goes on
    (tmp_path / TOKENS_FILE).write_text(good)
    store.renew("erin")  # the failed renewal did not count: this one is not held back by the hourly limit
    assert store.owner_of(token) == "erin"


def test_a_space_with_a_wrong_token_lifetime_refuses_to_start_by_name(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SPACE_HOST")}
    env.update({"PYTHONPATH": str(ROOT), "SYSTEM": "spaces", "SPACE_ID": "team/tunedeck", "OAUTH_CLIENT_ID": "client",
                "OAUTH_CLIENT_SECRET": SECRET, "OAUTH_SCOPES": "openid profile",
                "OPENID_PROVIDER_URL": "http://127.0.0.1:9", "TUNEDECK_HF_TOKEN_DAYS": "a month"})
    done = subprocess.run([sys.executable, "app.py", "--runs-dir", str(tmp_path / "runs")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "TUNEDECK_HF_TOKEN_DAYS: expects a number of days, got 'a month'" in done.stderr
