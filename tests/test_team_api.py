"""The team's server for real: `python app.py` on a loopback port with two users and an admin, driven
through the HTTP API with httpx, the trainer as real subprocesses on the demo model, runs.db in tmp_path."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 240
SECRET = "hf_" + "aZ3" * 12  # the shape of a Hugging Face token, pasted where a name goes
ALICE, BOB, ADMIN = ("alice", "alice-pw-1"), ("bob", "bob-pw-22"), ("root", "root-pw-333")

SMALL = dict(model_name_or_path="demo", dataset="demo", cutoff_len=64, max_samples=64, val_size=0,
             per_device_train_batch_size=2, gradient_accumulation_steps=1, max_steps=2, learning_rate=3e-3,
             lr_scheduler_type="constant", warmup_ratio=0, save_steps=1000, logging_steps=1,
             gradient_checkpointing=False, lora_rank=4, lora_alpha=8)


def config_yaml(**changes) -> str:
    return yaml.safe_dump({**SMALL, **changes})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("team") / "runs"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNEDECK_AUTH": ",".join(":".join(p) for p in (ALICE, BOB, ADMIN)),
           "TUNEDECK_ADMINS": "root", "TUNEDECK_MAX_QUEUED": "2", "GRADIO_ANALYTICS_ENABLED": "False"}
    for name in ("TUNEDECK_USERS_FILE", "SPACE_ID", "OAUTH_CLIENT_ID", "TUNEDECK_RUNS_DIR"):
        env.pop(name, None)
    log = open(runs.parent / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--runs-dir", str(runs)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            pytest.fail("the server exited:\n" + (runs.parent / "server.log").read_text()[-3000:])
        try:
            return httpx.get(f"{base}/api/me", auth=ALICE, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, "the server to answer")
    yield base, runs
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()
    with sqlite3.connect(runs / "runs.db") as conn:  # no trainer outlives the test
        pids = [row[0] for row in conn.execute("SELECT pid FROM runs WHERE status = 'running' AND pid IS NOT NULL")]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def api(base: str, method: str, path: str, auth=None, **kwargs) -> httpx.Response:
    return httpx.request(method, base + path, auth=auth, timeout=30, **kwargs)


def test_no_credentials_or_a_wrong_password_gets_401_and_nothing(server):
    base, runs = server
    before = api(base, "GET", "/api/runs", ALICE).json()
    for method, path in [("GET", "/api/runs"), ("POST", "/api/runs"), ("GET", "/api/queue"),
                         ("POST", "/api/tokens"), ("DELETE", "/api/runs/20260101-000000-abcdef")]:
        response = api(base, method, path, content=config_yaml() if method == "POST" else None)
        assert response.status_code == 401, (method, path, response.text)
        assert "sign in" in response.json()["detail"] and "Basic" in response.headers["www-authenticate"]
    assert api(base, "POST", "/api/runs", ("alice", "wrong"), content=config_yaml()).status_code == 401
    assert api(base, "GET", "/api/runs", ("nobody", "alice-pw-1")).status_code == 401
    assert api(base, "GET", "/api/runs", headers={"Authorization": "Bearer tdk_000000000000_" + "x" * 30}
               ).status_code == 401
    assert api(base, "GET", "/api/runs", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert api(base, "GET", "/api/runs", ALICE).json() == before  # nothing was queued by the refused calls
    assert api(base, "GET", "/api/me", ADMIN).json() == {"name": "root", "is_admin": True, "sign_in": "password"}
    page = httpx.get(base + "/config", timeout=30)
    assert page.status_code == 401  # the page's own endpoints want the sign-in too


def test_owners_admins_and_the_fair_queue(server):
    base, runs = server
    long_run = api(base, "POST", "/api/runs?name=alice%20long", ALICE, content=config_yaml(max_steps=3000))
    assert long_run.status_code == 201, long_run.text
    first = long_run.json()["id"]
    assert long_run.json()["owner"] == "alice" and "run_dir" not in long_run.json()
    wait_for(lambda: api(base, "GET", f"/api/runs/{first}", BOB).json()["status"] == "running", "alice's run")

    second = api(base, "POST", "/api/runs", BOB, content=config_yaml()).json()["id"]
    third = api(base, "POST", "/api/runs", BOB, content=config_yaml()).json()["id"]
    capped = api(base, "POST", "/api/runs", BOB, content=config_yaml())
    assert capped.status_code == 429 and "2 runs waiting" in capped.json()["detail"]  # TUNEDECK_MAX_QUEUED=2
    queue = api(base, "GET", "/api/queue", BOB).json()
    assert [e["run_id"] for e in queue["running"]] == [first]
    assert [(e["run_id"], e["position"], e["ahead"]) for e in queue["waiting"]] == [
        (second, 1, []), (third, 2, [second])]
    assert api(base, "GET", f"/api/runs/{second}", ALICE).json()["queue"]["position"] == 1  # everyone sees it

    # bob sees alice's run but may not act on it; nor on the queue's order
    assert api(base, "GET", f"/api/runs/{first}", BOB).status_code == 200
    for method, path in [("POST", f"/api/runs/{first}/abort"), ("POST", f"/api/runs/{first}/resume"),
                         ("DELETE", f"/api/runs/{first}")]:
        refused = api(base, method, path, BOB)
        assert refused.status_code == 403 and "belongs to 'alice'" in refused.json()["detail"], refused.text
    assert api(base, "POST", f"/api/queue/{third}/move", BOB, json={"position": 1}).status_code == 403
    assert api(base, "POST", f"/api/queue/{second}/cancel", ALICE).status_code == 403
    assert api(base, "GET", f"/api/runs/{first}", ALICE).json()["status"] == "running"

    moved = api(base, "POST", f"/api/queue/{third}/move", ADMIN, json={"position": 1})
    assert moved.status_code == 200 and [e["run_id"] for e in moved.json()["waiting"]] == [third, second]
    assert api(base, "DELETE", f"/api/runs/{third}", ALICE).status_code == 403  # not hers, queued or not
    waiting = api(base, "DELETE", f"/api/runs/{third}", BOB)
    assert waiting.status_code == 409 and f"POST /api/queue/{third}/cancel" in waiting.json()["detail"]
    cancelled = api(base, "POST", f"/api/queue/{third}/cancel", BOB)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "aborted"
    again = api(base, "POST", f"/api/queue/{third}/cancel", BOB)
    assert again.status_code == 409 and "not waiting" in again.json()["detail"]
    assert api(base, "GET", f"/api/runs/{second}", BOB).json()["queue"]["position"] == 1

    aborted = api(base, "POST", f"/api/runs/{first}/abort", ALICE)
    assert aborted.status_code == 200, aborted.text
    done = wait_for(lambda: (lambda r: r if r["status"] in ("finished", "failed") else None)(
        api(base, "GET", f"/api/runs/{second}", BOB).json()), "bob's run to start by itself and end")
    assert done["status"] == "finished", done
    assert api(base, "GET", f"/api/runs/{first}", ALICE).json()["status"] == "aborted"
    assert done["started_at"] >= api(base, "GET", f"/api/runs/{first}", ALICE).json()["finished_at"] - 1

    events = api(base, "GET", f"/api/runs/{second}/events?offset=0", ALICE).json()
    assert events["events"][0]["type"] == "status" and events["next_offset"] == events["size"]
    assert any(e["type"] == "log" for e in events["events"])
    tail = api(base, "GET", f"/api/runs/{second}/events?offset={events['next_offset']}", ALICE).json()
    assert tail["events"] == [] and tail["more"] is False

    assert api(base, "DELETE", f"/api/runs/{second}", ALICE).status_code == 403
    assert api(base, "DELETE", f"/api/runs/{second}", BOB).status_code == 200
    assert api(base, "DELETE", f"/api/runs/{first}", ADMIN).status_code == 200  # an admin may act on anyone's
    assert api(base, "GET", f"/api/runs/{first}", ALICE).status_code == 404


def test_failed_sign_ins_slow_down_that_login_only(server):
    """Behind a Space's proxy the team shares one address: a script with a dead token, or a guesser at one
    login, gets 429 after 20 failures a minute, while everyone else from that address still signs in."""
    base, runs = server
    for _ in range(20):
        assert api(base, "GET", "/api/me", ("mallory", "guess")).status_code == 401
    slowed = api(base, "GET", "/api/me", ("mallory", "guess"))
    assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) >= 1
    assert "too many failed sign-ins" in slowed.json()["detail"]
    assert api(base, "GET", "/api/me", ("mallory", "another guess")).status_code == 429  # the login, not the password
    assert api(base, "GET", "/api/me", ALICE).json()["name"] == "alice"
    assert api(base, "GET", "/api/me", ("bob", "wrong")).status_code == 401  # another login: still its own tries


def test_api_tokens_are_personal_and_revocable(server):
    base, runs = server
    made = api(base, "POST", "/api/tokens", ALICE, json={"label": "nightly script"})
    assert made.status_code == 201
    token = made.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api(base, "GET", "/api/me", headers=bearer).json()["name"] == "alice"
    # On a private Space, Authorization carries the Hugging Face token for the proxy; ours has its own header.
    behind_proxy = {"Authorization": "Bearer hf_" + "q" * 34, "X-Tunedeck-Token": token}
    assert api(base, "GET", "/api/me", headers=behind_proxy).json()["name"] == "alice"
    wrong = api(base, "GET", "/api/me", headers={**behind_proxy, "X-Tunedeck-Token": token[:-2] + "zz"})
    assert wrong.status_code == 401 and "hf_" not in wrong.text
    stored = (runs / "api_tokens.json").read_text()
    assert token.split("_", 2)[2] not in stored and "scrypt$" in stored  # the secret part: only its hash is kept
    assert oct((runs / "api_tokens.json").stat().st_mode & 0o777) == "0o600"
    listed = api(base, "GET", "/api/tokens", ALICE).json()
    assert [t["label"] for t in listed] == ["nightly script"] and "hash" not in listed[0]
    assert api(base, "GET", "/api/tokens", BOB).json() == []
    assert api(base, "DELETE", f"/api/tokens/{made.json()['id']}", BOB).status_code == 403
    assert api(base, "DELETE", f"/api/tokens/{made.json()['id']}", ALICE).status_code == 200
    assert api(base, "GET", "/api/me", headers=bearer).status_code == 401
    assert api(base, "GET", "/api/me", headers=behind_proxy).status_code == 401  # revoked in either header


def test_crafted_requests_get_a_clear_4xx_and_the_server_keeps_answering(server):
    base, runs = server
    for bad_id in ["..%2Fx", "..%2F..%2Fetc%2Fpasswd", "20260101-000000-zzzzzz", "%00", "x" * 300]:
        response = api(base, "GET", f"/api/runs/{bad_id}", ALICE)
        assert response.status_code == 404 and "run" in response.json()["detail"], (bad_id, response.text)
        assert api(base, "POST", f"/api/runs/{bad_id}/abort", ALICE).status_code == 404
    huge = api(base, "POST", "/api/runs", ALICE, content=b"a: " + b"x" * (2 * 1024 * 1024))
    assert huge.status_code == 413 and "KB" in huge.json()["detail"]
    for body, expected in [("model_name_or_path: [unclosed", "request body"), ("- a\n- b\n", "mapping"),
                           ("lerning_rate: 0.1\n", "learning_rate"), ("learning_rate: fast\n", "learning_rate"),
                           ("", "empty")]:
        response = api(base, "POST", "/api/runs", ALICE, content=body)
        assert response.status_code == 422, (body, response.text)
        assert expected in response.text, (body, response.text)
    laughs = ["x0: &x0 [" + ", ".join(["lol"] * 9) + "]"]
    laughs += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = "preset:\n" + "\n".join("  " + line for line in laughs) + "\ncolumn_mapping: {q: *x8}\n"
    started = time.monotonic()
    refused = api(base, "POST", "/api/runs", ALICE, content=bomb)
    assert refused.status_code == 422 and "aliases" in refused.json()["detail"]
    assert time.monotonic() - started < 20  # refused before the expansion costs minutes of CPU
    deep = api(base, "POST", "/api/runs", ALICE, content="lora_target: " + "[" * 50_000 + "]" * 50_000)
    assert deep.status_code == 422 and "nested too deeply" in deep.json()["detail"]
    field_errors = api(base, "POST", "/api/runs", ALICE, content="learning_rate: fast\n").json()["errors"]
    assert field_errors[0]["field"] == "learning_rate"
    for changes, field in [({"max_steps": True}, "max_steps"), ({"lora_rank": 1.5}, "lora_rank"),
                           ({"bogus_field": 3}, "bogus_field"), ({"run_name": SECRET}, "run_name")]:
        response = api(base, "POST", "/api/runs", BOB, content=config_yaml(**changes))
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field, response.text
    named = api(base, "POST", f"/api/runs?name={SECRET}", BOB, content=config_yaml())
    assert named.status_code == 422 and named.json()["errors"][0]["field"] == "run_name"
    assert SECRET not in api(base, "GET", "/api/runs", ALICE).text  # nothing of bob's secret is kept or shown
    assert api(base, "POST", "/api/runs", ALICE, content=b"\xff\xfe bad").status_code == 400
    for refused_config, words in [(config_yaml(trust_remote_code=True), "only an admin"),
                                  (config_yaml(dataset="/etc/passwd"), "not allowed on this shared server")]:
        response = api(base, "POST", "/api/runs", BOB, content=refused_config)
        assert response.status_code == 403 and words in response.json()["detail"]
    assert api(base, "POST", "/api/tokens", ALICE, content=b"{" * 10_000).status_code == 413
    assert api(base, "GET", "/api/runs?status=sleeping", ALICE).status_code == 400
    run_id = api(base, "POST", "/api/runs", ALICE, content=config_yaml()).json()["id"]
    for query, status in [("offset=-1", 422), ("offset=abc", 422), ("offset=1e3", 422), ("offset=99999999999", 400)]:
        response = api(base, "GET", f"/api/runs/{run_id}/events?{query}", ALICE)
        assert response.status_code == status and response.json()["detail"].startswith("offset"), (query, response.text)
    too_long = api(base, "POST", "/api/runs?name=" + "n" * 201, ALICE, content=config_yaml())
    assert too_long.status_code == 422 and too_long.json()["errors"] == [
        {"field": "name", "message": "at most 200 characters (got 201)"}]
    for label in [{"a": 1}, ["x"], 3]:
        response = api(base, "POST", "/api/tokens", BOB, json={"label": label})
        assert response.status_code == 400 and response.json()["detail"].startswith("label: expects text")
    assert api(base, "GET", "/api/tokens", BOB).json() == []  # no token was made from a wrong type
    for body in [b"not json", b"[1]", b'{"position": 0}', b'{"position": "1"}']:
        response = api(base, "POST", f"/api/queue/{run_id}/move", ADMIN, content=body)
        assert response.status_code in (400, 409) and response.json()["detail"], (body, response.text)
    cross_site = api(base, "POST", f"/api/runs/{run_id}/abort", ALICE, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403 and "cross-site" in cross_site.json()["detail"]
    assert api(base, "GET", "/api/me", ALICE).status_code == 200  # still answering
    wait_for(lambda: api(base, "GET", f"/api/runs/{run_id}", ALICE).json()["status"] in ("finished", "failed"),
             "the last run to end")

    # A long history comes in pages of whole lines: a script that follows next_offset while `more` reads every
    # event once, whatever the page size cuts.
    events_file = runs / run_id / "events.jsonl"
    with open(events_file, "a", encoding="utf-8") as fh:
        for step in range(3000):
            fh.write('{"type": "log", "step": %d, "loss": 1.5, "note": "%s"}\n' % (step, "x" * 100))
    lines = len(events_file.read_text(encoding="utf-8").splitlines())
    offset, seen, pages = 0, [], 0
    while True:
        page = api(base, "GET", f"/api/runs/{run_id}/events?offset={offset}", BOB).json()
        seen += page["events"]
        offset, pages = page["next_offset"], pages + 1
        if not page["more"]:
            break
    assert pages >= 2 and len(seen) == lines and offset == events_file.stat().st_size
    assert [e["step"] for e in seen if e.get("note")] == list(range(3000))
