"""A shared server under attack by a signed-in user: a real `python app.py` with two logins, driven through
the page's own endpoints by the Gradio client (crafted values included).

Each attack is refused with a message, runs nothing and reads nothing it should not, and while it is
handled the server keeps answering another user within a second.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from browser_util import Server, free_port, wait_for

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")

HF_TOKEN = "hf_" + "Zq8WmX2vR4tY6uI8oP0aS2dF4gH6jK8lZx"  # set in the server's environment: must leak nowhere
TYPED_TOKEN = "hf_" + "Tt1Yy2Uu3Ii4Oo5Pp6Aa7Ss8Dd9Ff0Gg1H"  # typed into a field by bob


class Page:
    """One signed-in user's view of the page: call a listener by the elem_id of its trigger."""

    def __init__(self, url: str, user: str, password: str):
        self.client = gradio_client.Client(url, auth=(user, password), verbose=False)
        config = self.client.config
        self.components = {c["id"]: c for c in config["components"]}
        self.dependencies = config["dependencies"]
        self.responses: list[str] = []

    def _elem(self, component_id: int) -> str | None:
        return self.components.get(component_id, {}).get("props", {}).get("elem_id")

    def call(self, trigger: str, event: str, **values) -> dict:
        """Run the listener of `event` on #trigger with its inputs' initial values, some replaced by
        `values` (keyed by elem_id, with `field_` for `field-` and `_` for `-` elsewhere); returns its
        outputs by elem_id."""
        index, dep = next((i, d) for i, d in enumerate(self.dependencies)
                          if any(self._elem(t[0]) == trigger and t[1] == event for t in d["targets"]))
        wanted = {(f"field-{k[6:]}" if k.startswith("field_") else k.replace("_", "-")): v for k, v in values.items()}
        args = []
        for cid in dep["inputs"]:
            if self.components[cid]["type"] == "state":  # the client fills these in itself
                continue
            elem = self._elem(cid) or ""
            args.append(wanted.pop(elem) if elem in wanted else self.components[cid]["props"].get("value"))
        assert not wanted, f"not inputs of {trigger}.{event}: {sorted(wanted)}"
        result = self.client.predict(*args, fn_index=index)
        result = result if isinstance(result, (list, tuple)) else [result]
        self.responses.append(repr(result))
        return {self._elem(cid) or str(cid): value for cid, value in zip(dep["outputs"], result)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("shared")
    allowed = base / "team-data"
    allowed.mkdir()
    env = {"TUNEDECK_AUTH": "alice:pw1,bob:pw2", "TUNEDECK_ADMINS": "alice", "TUNEDECK_ALLOWED_PATHS": str(allowed),
           "HF_TOKEN": HF_TOKEN, "TUNEDECK_WORKER_MEMORY_GB": "2", "TUNEDECK_WORKER_TIMEOUT_S": "90"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        srv = Server(base / "runs", free_port(), base / "server.log")
        srv.start()
    srv.allowed, srv.base = allowed, base
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bob(server):
    return Page(server.url, "bob", "pw2")


@pytest.fixture(scope="module")
def alice(server):
    return Page(server.url, "alice", "pw1")


class Responsiveness:
    """While an attack runs: alice's trivial requests, timed; the slowest must stay under a second."""

    def __init__(self, page: Page):
        self.page, self.times, self._stop = page, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.page.call("field-dataset", "change", field_dataset="demo")
            self.times.append(time.monotonic() - started)
            time.sleep(0.2)

    def __enter__(self) -> "Responsiveness":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert self.times, "no request answered while the attack ran"
        assert max(self.times) < 1.0, f"the server answered slowly during the attack: {max(self.times):.2f} s"


def test_remote_code_in_an_upload_runs_nowhere_for_a_non_admin(server, bob, alice, tmp_path):
    marker = server.base / "remote-code-ran"
    model = tmp_path / "evil-model"
    model.mkdir()
    (model / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (model / "config.json").write_text('{"model_type": "evil", "auto_map": {"AutoTokenizer": '
                                       '["tokenization_evil.EvilTokenizer", null]}}')
    (model / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", '
                                                 'null]}, "tokenizer_class": "EvilTokenizer"}')
    # The upload route takes the .py, but no listener accepts it (and the Data tab's own check refuses it too:
    # tests/test_input_safety.py).
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid file type"):
        bob.call("dataset-upload", "upload", dataset_upload=gradio_client.handle_file(str(model / "tokenization_evil.py")))
    for where in (str(model), str(server.allowed)):
        with Responsiveness(alice):
            shown = bob.call("dataset-preview-btn", "click", model_input=where, field_trust_remote_code=True,
                             field_dataset="demo")
        summary = shown["dataset-summary"]
        assert "trust_remote_code" in summary and "only an admin" in summary
        started = bob.call("start-btn", "click", model_input=where, field_trust_remote_code=True, field_dataset="demo")
        assert "only an admin" in repr(started)
    time.sleep(1)
    assert not marker.exists()


def test_paths_outside_the_allowed_folders_are_refused_and_reveal_nothing(server, bob, alice, tmp_path):
    secret = tmp_path / "creds.json"
    secret.write_text('[{"user": "root", "password": "hunter2"}]')
    refusals = {}
    for path in (str(secret), str(tmp_path / "missing.csv"), "/etc", "/", "/dev/zero", str(server.allowed / ".." / "x.json")):
        with Responsiveness(alice):
            summary = bob.call("dataset-preview-btn", "click", field_dataset=path)["dataset-summary"]
        assert "is not allowed on this shared server" in summary, summary
        assert "hunter2" not in summary and "password" not in summary and "not found" not in summary
        refusals[path] = summary.replace(path, "PATH")
    assert len(set(refusals.values())) == 1  # the same words whether the file exists or not
    # The model field does not tell which directories exist either.
    said = [str(bob.call("start-btn", "click", model_input=p)["td-errors"]).replace(p, "P")
            for p in ("/etc", "/no/such/dir")]
    assert "not allowed" in said[0] and said[0] == said[1]


def test_uploads_are_per_user_and_keep_their_suffix(server, bob, alice, tmp_path):
    data = tmp_path / ("q" * 150 + ".jsonl")
    data.write_text('{"instruction": "hi", "output": "there"}\n' * 4)
    saved = alice.call("dataset-upload", "upload", dataset_upload=gradio_client.handle_file(str(data)))
    path = Path(saved["field-dataset"])
    assert path.parent == server.runs_dir / "uploads" / "alice" and path.suffix == ".jsonl" and len(path.name) <= 100
    assert path.read_text().count("instruction") == 4
    upload_cache = Path(os.environ.get("GRADIO_TEMP_DIR") or "/tmp/gradio")
    assert not list(upload_cache.rglob(data.name[:40] + "*")), "the upload stayed in Gradio's cache"
    shown = alice.call("dataset-preview-btn", "click", field_dataset=str(path))["dataset-summary"]
    assert "training rows" in shown
    theirs = bob.call("dataset-preview-btn", "click", field_dataset=str(path))["dataset-summary"]
    assert "not allowed" in theirs and "instruction" not in theirs
    dots = tmp_path / "..jsonl"
    dots.write_text('{"instruction": "a", "output": "b"}\n')
    assert alice.call("dataset-upload", "upload", dataset_upload=gradio_client.handle_file(str(dots)))[
        "field-dataset"].endswith("/upload.jsonl")


def test_a_parquet_bomb_stops_in_the_worker_and_the_server_keeps_answering(server, bob, alice):
    pa = pytest.importorskip("pyarrow")
    import numpy as np
    import pyarrow.parquet as pq

    rows = 3_000_000
    bomb = server.allowed / "bomb.parquet"
    one = lambda text: pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([text]))
    pq.write_table(pa.table({"instruction": one("x" * 2500), "output": one("y")}), bomb)
    assert bomb.stat().st_size < 2_000_000
    with Responsiveness(alice):
        summary = bob.call("dataset-preview-btn", "click", field_dataset=str(bomb))["dataset-summary"]
        plan = bob.call("field-dataset", "input", field_dataset=str(bomb))
    assert "memory limit" in summary or "stopped after" in summary, summary
    assert "memory limit" in repr(plan) or "stopped after" in repr(plan)


def test_yaml_bombs_in_preset_uploads_and_imports_are_refused_fast(server, bob, alice, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)))
    deep = tmp_path / "deep.yaml"
    deep.write_text("learning_rate: " + "[" * 100_000 + "]" * 100_000 + "\n")
    for path in (bomb, deep):
        for trigger in ("presets-upload", "presets-import-lf"):
            with Responsiveness(alice):
                started = time.monotonic()
                reply = bob.call(trigger, "upload", **{trigger.replace("-", "_"): gradio_client.handle_file(str(path))})
            assert time.monotonic() - started < 10
            assert "aliases" in repr(reply) or "nested too deeply" in repr(reply), reply


def test_secrets_appear_in_no_file_and_no_response(server, bob, alice):
    refused = bob.call("start-btn", "click", field_run_name=f"my run {TYPED_TOKEN}")
    assert "looks like a Hugging Face token" in repr(refused) and TYPED_TOKEN not in repr(refused)
    alice.call("start-btn", "click", field_run_name="secrets check")
    db = server.runs_dir / "runs.db"

    def finished():
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT status FROM runs WHERE name = 'secrets check' AND status IN "
                                "('finished', 'failed')").fetchone()
    assert wait_for(finished, 300, "the demo run to finish")[0] == "finished"
    for page in (alice, bob):
        page.call("field-dataset", "change", field_dataset="demo")
        page.responses.append(page.client.view_api(print_info=False, return_format="str") or "")
    files = [p for p in server.runs_dir.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files) and any("tfevents" in p.name for p in files)
    for path in files:
        data = path.read_bytes()
        assert HF_TOKEN.encode() not in data and TYPED_TOKEN.encode() not in data, path
    for page in (alice, bob):
        assert not any(HF_TOKEN in r or TYPED_TOKEN in r for r in page.responses)
    assert HF_TOKEN not in server.log_text()


def test_a_crafted_file_value_naming_a_server_path_is_refused(server, bob, tmp_path):
    """Gradio's File inputs take only files from its own upload folder: a request that puts a server path
    in the value itself (not an upload) reads nothing, whether the file exists or not."""
    import httpx

    secret = tmp_path / "creds.yaml"
    secret.write_text("learning_rate: 0.5\nrun_name: hunter2-secret\n")
    http = httpx.Client(base_url=server.url, timeout=60)
    assert http.post("login", data={"username": "bob", "password": "pw2"}).status_code == 200
    answers = []
    for trigger in ("presets-upload", "presets-import-lf", "dataset-upload"):
        index = next(i for i, d in enumerate(bob.dependencies)
                     if any(bob._elem(t[0]) == trigger and t[1] == "upload" for t in d["targets"]))
        for path in (secret, tmp_path / "absent.yaml"):
            data = [{"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
                    if bob._elem(cid) == trigger else None for cid in bob.dependencies[index]["inputs"]]
            reply = http.post("gradio_api/run/predict", json={"data": data, "fn_index": index,
                                                               "session_hash": "crafted01"})
            assert "hunter2" not in reply.text and "0.5" not in reply.text, reply.text
            assert reply.status_code >= 400 or '"error"' in reply.text, reply.text
            answers.append(reply.text.replace(str(path), "P").replace(path.name, "N"))
    assert answers[0] == answers[1] and answers[2] == answers[3] and answers[4] == answers[5]
    # The same request with a file that went through the upload route is served: the refusals above are
    # the path's, not the request's.
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instruction": "hi", "output": "there"}\n')
    with open(rows, "rb") as fh:
        uploaded = http.post("gradio_api/upload", files={"files": (rows.name, fh)}).json()[0]
    data = [{"path": uploaded, "orig_name": rows.name, "meta": {"_type": "gradio.FileData"}}
            if bob._elem(cid) == "dataset-upload" else None for cid in bob.dependencies[index]["inputs"]]
    reply = http.post("gradio_api/run/predict", json={"data": data, "fn_index": index, "session_hash": "crafted01"})
    assert reply.status_code == 200 and "uploads/bob/rows.jsonl" in reply.text, reply.text
