"""Sign-in sources, hashed passwords, roles and the open-server guard: pure functions, the real
`python -m webui.auth` command and `python app.py` as subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webui import space
from webui import auth
from webui.auth import LOCAL, LOCAL_USER, User, can_modify, can_reorder_queue, can_view, require_modify

ROOT = Path(__file__).resolve().parents[1]


def test_passwords_are_kept_only_as_salted_scrypt_hashes():
    encoded = auth.hash_secret("correct horse")
    assert encoded.startswith("scrypt$") and "correct horse" not in encoded
    assert encoded != auth.hash_secret("correct horse")  # salted
    assert auth.verify_secret("correct horse", encoded)
    assert not auth.verify_secret("correct horsf", encoded)
    for broken in ["", "plain", "scrypt$1$2", "md5$1$1$1$AA==$AA==", "scrypt$16384$8$1$!!$!!"]:
        assert not auth.verify_secret("x", broken)


def test_accounts_from_the_environment_and_a_users_file(tmp_path):
    users = tmp_path / "users.txt"
    auth.write_user(users, "carol", "carol-password")
    assert oct(users.stat().st_mode & 0o777) == "0o600" and "carol-password" not in users.read_text()
    sign_in = auth.sign_in_from_env({"TUNEDECK_AUTH": "alice:pw:1, bob:pw2", "TUNEDECK_USERS_FILE": str(users),
                                     "TUNEDECK_ADMINS": "carol"})
    assert sign_in.mode == auth.PASSWORD and sign_in.accounts.names == ["alice", "bob", "carol"]
    assert sign_in.accounts.check_password("alice", "pw:1") == User("alice")
    assert sign_in.accounts.check_password("carol", "carol-password") == User("carol", is_admin=True)
    assert sign_in.accounts.check_password("alice", "pw:2") is None
    assert sign_in.accounts.check_password("dave", "pw2") is None
    assert sign_in.accounts.check_password("alice", "x" * 5000) is None
    assert asyncio.run(sign_in.accounts.gradio_auth("bob", "pw2"))  # the page's sign-in form, awaited by Gradio
    assert not asyncio.run(sign_in.accounts.gradio_auth("bob", "pw1"))

    assert auth.sign_in_from_env({}).mode == auth.OPEN
    assert "OPEN" in auth.sign_in_from_env({}).describe()
    for env, words in [({"TUNEDECK_AUTH": "alice"}, "user:password"), ({"TUNEDECK_AUTH": "local:pw"}, "reserved"),
                       ({"TUNEDECK_AUTH": "../x:pw"}, "user name"), ({"TUNEDECK_USERS_FILE": str(tmp_path / "no")},
                                                                     "cannot read"),
                       ({"TUNEDECK_HF_ORGS": "acme"}, "hf_oauth"), ({"TUNEDECK_ADMINS": "a b"}, "TUNEDECK_ADMINS")]:
        with pytest.raises(ValueError, match=words):
            auth.sign_in_from_env(env)
    (tmp_path / "plain.txt").write_text("alice:secret\n")
    with pytest.raises(ValueError, match="plain.txt:1"):
        auth.read_users_file(tmp_path / "plain.txt")


def test_add_user_reads_the_password_from_stdin_never_argv(tmp_path):
    users = tmp_path / "users.txt"
    command = [sys.executable, "-m", "webui.auth", "add-user", "alice", "--file", str(users)]
    done = subprocess.run(command, input="a-long-password\n", capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "a-long-password" not in done.stdout + users.read_text()
    assert auth.Accounts(auth.read_users_file(users)).check_password("alice", "a-long-password")
    short = subprocess.run(command, input="short\n", capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert short.returncode == 2 and "8 characters" in short.stderr
    bad = subprocess.run([*command[:4], "../evil", "--file", str(users)], input="a-long-password\n",
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "user name" in bad.stderr
    assert subprocess.run([*command[:3], "remove-user", "alice", "--file", str(users)], capture_output=True,
                          cwd=ROOT, timeout=60).returncode == 0
    assert auth.read_users_file(users) == {}


def test_roles_owner_or_admin_modify_everyone_views():
    alice, bob, root = User("alice"), User("bob"), User("root", is_admin=True)
    assert can_view(bob, "alice") and not can_view(None, "alice")
    assert can_modify(alice, "alice") and not can_modify(bob, "alice") and can_modify(root, "alice")
    # Runs made before logins were turned on belong to `local`: only admins act on them.
    assert not can_modify(alice, LOCAL) and can_modify(root, LOCAL)
    assert can_modify(LOCAL_USER, "alice")  # an open page's operator
    assert can_reorder_queue(root) and not can_reorder_queue(alice)
    with pytest.raises(PermissionError, match="belongs to 'alice'.*you are 'bob'"):
        require_modify(bob, "alice", "rename", "preset")
    require_modify(root, "alice", "delete")


def test_the_user_behind_a_page_request(monkeypatch, tmp_path):
    class Request:
        def __init__(self, username):
            self.username = username

    monkeypatch.setenv("TUNEDECK_ADMINS", "root")
    assert auth.user_of(Request("root")) == User("root", is_admin=True)
    assert auth.user_of(Request("bob")) == User("bob")
    assert auth.user_of(Request(None)) == LOCAL_USER and auth.open_notice(LOCAL_USER)
    assert auth.open_notice(User("bob")) is None
    signed = auth.sign_in_from_env({"TUNEDECK_AUTH": "bob:pw"})
    with pytest.raises(PermissionError, match="sign in"):
        auth.user_of(Request(None), signed)
    assert auth.upload_dir(tmp_path, User("bob")) == tmp_path / "uploads" / "bob"
    with pytest.raises(ValueError):
        auth.upload_dir(tmp_path, User("../alice"))


def test_hugging_face_sessions_and_organisations():
    def session(name, orgs=(), expires=None):
        return {"oauth_info": {"expires_at": expires or time.time() + 60, "userinfo": {
            "preferred_username": name, "orgs": [{"preferred_username": org} for org in orgs]}}}

    assert auth.hf_user_from_session(session("alice"), frozenset()) == ("alice", None)
    assert auth.hf_user_from_session({}, frozenset()) == (None, "not signed in")
    assert auth.hf_user_from_session(session("alice", expires=1), frozenset())[1] == "the sign-in expired"
    assert auth.hf_user_from_session(session("alice", ["acme"]), frozenset({"acme"})) == ("alice", None)
    name, why = auth.hf_user_from_session(session("mallory", ["other"]), frozenset({"acme"}))
    assert name is None and "not a member of acme" in why
    assert auth.hf_user_from_session(session("../x"), frozenset())[0] is None
    env = {"SYSTEM": "spaces", "SPACE_ID": "team/tunedeck", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "s",
           "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "https://huggingface.co", "TUNEDECK_HF_ORGS": "acme"}
    sign_in = auth.sign_in_from_env(env)
    assert sign_in.mode == auth.HUGGING_FACE and sign_in.hf_orgs == {"acme"} and "acme" in sign_in.describe()
    with pytest.raises(ValueError, match="TUNEDECK_HF_ORGS"):  # a Space without hf_oauth: no silent open page
        auth.sign_in_from_env({k: v for k, v in env.items() if k != "OAUTH_CLIENT_ID"})


def test_a_shared_server_keeps_team_members_to_their_own_files(tmp_path):
    from trainer.config import TrainConfig

    runs = tmp_path / "runs"
    bob, root = User("bob"), User("root", is_admin=True)
    mine = auth.upload_dir(runs, bob)
    mine.mkdir(parents=True)
    (mine / "data.jsonl").write_text("{}\n")
    theirs = auth.upload_dir(runs, User("alice"))
    theirs.mkdir(parents=True)
    (theirs / "secret.jsonl").write_text("{}\n")
    ok = [TrainConfig(), TrainConfig(dataset=str(mine / "data.jsonl")), TrainConfig(model_name_or_path="org/model")]
    for cfg in ok:
        assert auth.config_refusal(bob, cfg, runs) is None
    for cfg, words in [(TrainConfig(trust_remote_code=True), "trust_remote_code"),
                       (TrainConfig(dataset="/etc/passwd"), "dataset"),
                       (TrainConfig(dataset=str(theirs / "secret.jsonl")), "not allowed on this shared server"),
                       (TrainConfig(dataset=str(mine / ".." / "alice" / "secret.jsonl")), "dataset"),
                       (TrainConfig(model_name_or_path="~/models/x"), "model_name_or_path")]:
        assert words in (auth.config_refusal(bob, cfg, runs) or ""), cfg
        assert auth.config_refusal(root, cfg, runs) is None  # an admin's call


@pytest.mark.parametrize("flags", [["--host", "0.0.0.0"], ["--share"], ["--host", "192.168.1.20"]])
def test_an_open_server_refuses_to_listen_beyond_this_machine(flags, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SPACE_ID")}
    done = subprocess.run([sys.executable, "app.py", *flags, "--runs-dir", str(tmp_path / "runs")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--allow-open" in done.stderr and "without sign-in" in done.stderr
    assert not (tmp_path / "runs").exists()  # refused before touching anything
    assert space.is_loopback("127.0.0.1") and space.is_loopback("::1") and space.is_loopback("localhost")
    assert not space.is_loopback("0.0.0.0") and not space.is_loopback("example.org")


def test_an_open_server_says_so_and_its_api_answers_only_loopback_names(tmp_path):
    import httpx

    from test_team_api import free_port, wait_for

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SPACE_ID")}
    env.update({"PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"})
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--runs-dir", str(tmp_path / "runs")],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(base + "/api/me", timeout=5)
            except httpx.HTTPError:
                return None

        me = wait_for(up, "the open server to answer")
        assert me.json() == {"name": "local", "is_admin": True, "sign_in": "open"}
        assert "OPEN to anyone who reaches it" in log_path.read_text()
        rebound = httpx.get(base + "/api/runs", headers={"Host": f"evil.example:{port}"}, timeout=10)
        assert rebound.status_code == 403 and "localhost" in rebound.json()["detail"]
        assert httpx.get(f"http://localhost:{port}/api/runs", timeout=10).json() == []
        # A page's event stream for a session the server does not hold (a reload, a restart, or made up): the
        # client is told, and the log gets one line, not Gradio's traceback.
        told = ""
        try:
            with httpx.stream("GET", base + "/gradio_api/queue/data", params={"session_hash": "no-such-session"},
                              timeout=10) as stream:
                for chunk in stream.iter_text():
                    told += chunk
        except httpx.RemoteProtocolError:
            pass  # Gradio ends the stream by raising once it has told the client: the chunked body stays open
        assert "session_not_found" in told
        from webui.server_log import LOST_SESSION_LINE
        wait_for(lambda: LOST_SESSION_LINE in log_path.read_text(), "the lost session's line in the log")
        assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
