"""Every place a signed-in non-admin can name a path on a shared server, tried as an attacker would: the
page's handlers (the form's plan and Start, the Data preview, evaluate's dataset, the LLaMA-Factory and
plain-script exports, the LLaMA-Factory import's dataset_dir) and the HTTP API (Basic and an API token).

For each: a path outside the allowed folders is refused by the field's name, nothing of the file comes
back, and the answer is the same whether the path exists or not. A bare `org/name` is a Hub id whatever
the server's disk holds, so it tells nothing either.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from trainer.config import TrainConfig
from webui.components import INFO, WARNING
from webui.form import config_to_values
from webui.i18n_plan import message_zh

SECRET = "hunter2-do-not-show"
SHARED_ENV = {"TUNEDECK_AUTH": "alice:pw1,bob:pw2", "TUNEDECK_ADMINS": "alice"}


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """A shared server's environment; outside the allowed folder, a folder of secrets that exists (with a
    data file, a model folder, a checkpoint and a LLaMA-Factory dataset_info.json) beside one that does not."""
    team = tmp_path / "team"
    team.mkdir()
    for key, value in {**SHARED_ENV, "TUNEDECK_ALLOWED_PATHS": str(team)}.items():
        monkeypatch.setenv(key, value)
    for name in ("TUNEDECK_USERS_FILE", "SPACE_ID", "SYSTEM"):
        monkeypatch.delenv(name, raising=False)
    secret = tmp_path / "secret"
    (secret / "model").mkdir(parents=True)
    (secret / "model" / "config.json").write_text(json.dumps({"model_type": "llama", "note": SECRET}))
    (secret / "checkpoint-5").mkdir()
    (secret / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (secret / "creds.jsonl").write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    (secret / "creds.csv").write_text(f"{SECRET},password\nroot,{SECRET}\n")
    (secret / "dataset_info.json").write_text(json.dumps({"creds": {"file_name": "creds.jsonl"}}))
    # "absent" is as long as "secret": a message cut at a length stays comparable
    return {"team": team, "there": secret, "missing": tmp_path / "absent", "tmp": tmp_path}


def _text(reply: Any) -> str:
    """Everything a reply carries, as text (a generator's replies joined)."""
    if hasattr(reply, "__next__"):
        reply = list(reply)
    return repr(reply)


def form(**changes: Any) -> dict[str, Any]:
    values = config_to_values(TrainConfig())
    values.update(changes)
    return {"train.plan_hw": "local", "train.preset_ref": {}, "train.shown": {}, **values}


# --- the page: (where, field named in the refusal, how to try a value) -------------------------------

def _page_places(ctx) -> list[tuple[str, str, Callable[[str], str]]]:
    from webui.tabs import data, export, presets, train

    def lf_import(value: str) -> str:
        path = Path(ctx.runs_root).parent / "lf.yaml"
        path.write_text(yaml.safe_dump({"model_name_or_path": "demo", "stage": "sft", "do_train": True,
                                        "finetuning_type": "lora", "dataset": "creds", "dataset_dir": value}))
        return _text(presets.import_llamafactory(ctx, {"presets.import_lf": str(path)}, user="bob"))

    places = []
    for field, file in (("model_name_or_path", "model"), ("dataset", "creds.jsonl"),
                        ("resume_from_checkpoint", "checkpoint-5")):
        places += [
            (f"plan: {field}", field, file,
             lambda p, f=field: _text(train.refresh_plan(ctx, form(**{f: p}), user="bob"))),
            (f"start: {field}", field, file,
             lambda p, f=field: _text(train.start(ctx, form(**{f: p}), user="bob"))),
        ]
    places += [
        ("data preview: dataset", "dataset", "creds.jsonl",
         lambda p: _text(data.preview(ctx, form(dataset=p), user="bob"))),
        ("data preview: model", "model_name_or_path", "model",
         lambda p: _text(data.preview(ctx, form(model_name_or_path=p), user="bob"))),
        ("evaluate: dataset", "eval dataset", "creds.jsonl",
         lambda p: _text(export.evaluate(ctx, {"export.run": "20260101-000000-abcdef", "export.dataset": p},
                                         user="bob"))),
        ("LLaMA-Factory export: dataset", "dataset", "creds.csv",
         lambda p: _text(presets.export_llamafactory(ctx, form(dataset=p), user="bob"))),
        ("plain script export: dataset", "dataset", "creds.csv",
         lambda p: _text(presets.export_plain_script(ctx, form(dataset=p), user="bob"))),
        ("LLaMA-Factory import: dataset_dir", "dataset_dir", "", lf_import),
    ]
    return places


def _same_either_way(try_value: Callable[[str], str], there: Path, missing: Path, name: str) -> tuple[str, str]:
    existing, absent = str(there / name) if name else str(there), str(missing / name) if name else str(missing)
    a, b = try_value(existing), try_value(absent)
    return a.replace(existing, "PATH"), b.replace(absent, "PATH")


def test_every_page_field_refuses_a_path_outside_the_allowed_folders_the_same_whether_it_exists(ctx, disk):
    checked = []
    for where, field, name, try_value in _page_places(ctx):
        a, b = _same_either_way(try_value, disk["there"], disk["missing"], name)
        assert "is not allowed on this shared server" in a, (where, a)
        assert field in a, (where, a)
        assert SECRET not in a and "password" not in a, where
        assert a == b, f"{where}: the answer tells whether the path exists:\n{a}\n{b}"
        checked.append(where)
    assert len(checked) == 12


def test_the_same_fields_take_a_file_in_the_allowed_folder(ctx, disk):
    """The table above is not refusing everything: the allowed folder's file passes each check."""
    ok = disk["team"] / "rows.jsonl"
    ok.write_text('{"instruction": "hi", "output": "there"}\n' * 3)
    from webui.tabs import presets, train

    assert "not allowed" not in _text(train.refresh_plan(ctx, form(dataset=str(ok)), user="bob"))
    exported = presets.export_llamafactory(ctx, form(dataset=str(ok)), user="bob")
    assert "alpaca" in Path(exported["presets.download_file"]).read_text()  # its format, read by the data worker
    (disk["team"] / "dataset_info.json").write_text(json.dumps({"rows": {"file_name": "rows.jsonl"}}))
    path = disk["tmp"] / "lf.yaml"
    path.write_text(yaml.safe_dump({"model_name_or_path": "demo", "stage": "sft", "finetuning_type": "lora",
                                    "dataset": "rows", "dataset_dir": str(disk["team"])}))
    imported = presets.import_llamafactory(ctx, {"presets.import_lf": str(path)}, user="bob")
    assert imported["dataset"] == str(ok)
    # alice is an admin: she names any file of the server
    assert "not allowed" not in _text(train.refresh_plan(ctx, form(dataset=str(disk["there"] / "creds.jsonl")),
                                                         user="alice"))


def test_a_relative_lf_dataset_dir_counts_from_the_users_uploads_never_the_servers_folder(ctx, disk, monkeypatch):
    from webui.tabs import presets

    monkeypatch.chdir(disk["there"].parent)  # `secret/dataset_info.json` exists relative to the server's folder
    path = disk["tmp"] / "lf.yaml"
    replies = []
    for value in ("secret", "absent", "../../secret"):
        path.write_text(yaml.safe_dump({"model_name_or_path": "demo", "stage": "sft", "finetuning_type": "lora",
                                        "dataset": "creds", "dataset_dir": value}))
        reply = _text(presets.import_llamafactory(ctx, {"presets.import_lf": str(path)}, user="bob"))
        assert SECRET not in reply and str(disk["there"] / "creds.jsonl") not in reply
        replies.append(reply.replace(value, "V"))
    assert replies[0] == replies[1]  # "secret" exists here, "absent" does not: the same answer
    assert "not allowed" in replies[2]


# --- a bare org/name: always a Hub id on a shared server ---------------------------------------------

def test_a_bare_org_name_is_a_hub_id_whether_or_not_such_a_folder_exists(ctx, disk, monkeypatch):
    from webui.tabs import data, presets, train

    monkeypatch.chdir(disk["tmp"])
    (disk["tmp"] / "secret" / "sub").mkdir()
    (disk["tmp"] / "secret" / "sub" / "train.jsonl").write_text(
        json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    def script(f: str, p: str) -> str:
        reply = presets.export_plain_script(ctx, form(**{f: p}), user="bob")
        return Path(reply["presets.download_file"]).read_text() if "presets.download_file" in reply else _text(reply)

    tries = {
        "plan": lambda f, p: _text(train.refresh_plan(ctx, form(**{f: p}), user="bob")),
        "preview": lambda f, p: _text(data.preview(ctx, form(**{f: p}), user="bob")),
        "plain script": script,
    }
    for field in ("model_name_or_path", "dataset"):
        for where, try_value in tries.items():
            # the same last part: a run's default name is made from it
            answers = [try_value(field, name).replace(name, "NAME") for name in ("secret/model", "absent/model")]
            assert SECRET not in answers[0], (field, where)
            assert answers[0] == answers[1], f"{where} {field}: 'secret/model' exists and the answer says so"
    for name in ("secret", "secret/model", "secret/sub"):  # the model loader and the data sources agree
        from trainer.datasets.sources import resolve_source
        from trainer.engine.model import looks_like_local_path

        assert resolve_source(name) == ("hub", name) and not looks_like_local_path(name)


def test_the_hub_rule_is_for_shared_servers_only(tmp_path, monkeypatch):
    from trainer.datasets.sources import resolve_source
    from trainer.local_names import hub_id_only, hub_id_shaped

    for key in ("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SYSTEM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "rows.jsonl").write_text('{"text": "a"}\n')
    assert resolve_source("org")[0] == "file"  # a single-user page reads the folder it names
    assert hub_id_shaped("Qwen/Qwen2.5-0.5B") and not hub_id_only("Qwen/Qwen2.5-0.5B")
    assert not any(hub_id_shaped(n) for n in ("a/b/c", "x.jsonl", "../x", "/etc", "~/x", ".", "a/..", "a\\b"))


def test_the_data_sources_answer_a_shadowed_hub_id_as_a_missing_one(disk, monkeypatch):
    """Should a Hub-shaped name reach the loader while a folder of that name sits in its working
    directory, `datasets` would read the folder: the loader answers as for a Hub id that is not there."""
    from trainer.datasets import DataError
    from trainer.datasets.sources import read_records

    monkeypatch.chdir(disk["tmp"])
    answers = []
    for name in ("secret", "nothing-here"):
        with pytest.raises(DataError) as err:
            read_records("hub", name, TrainConfig(dataset=name))
        answers.append(str(err.value).replace(name, "NAME"))
    assert answers[0] == answers[1] and SECRET not in answers[0]


# --- the HTTP API -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api(ctx, disk):
    """The API routes of the server (webui.api) served by uvicorn on a loopback port."""
    import uvicorn

    from webui.api import server_extension
    from webui.auth import sign_in_from_env

    sign_in = sign_in_from_env()
    app = server_extension(ctx.jobs, sign_in, ctx.tokens)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    token = ctx.tokens.create(sign_in.accounts.user("bob"), "script")[1]
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True
    thread.join(timeout=10)


def test_the_api_refuses_the_same_paths_by_field_and_reveals_nothing(api, disk, ctx):
    url, token = api
    base = {"model_name_or_path": "demo", "dataset": "demo", "max_steps": 1}
    for auth in ({"auth": ("bob", "pw2")}, {"headers": {"Authorization": f"Bearer {token}"}}):
        for field, name in (("model_name_or_path", "model"), ("dataset", "creds.jsonl"),
                            ("resume_from_checkpoint", "checkpoint-5")):
            answers = []
            for folder in (disk["there"], disk["missing"]):
                value = str(folder / name)
                reply = httpx.post(f"{url}/api/runs", content=yaml.safe_dump({**base, field: value}), timeout=30,
                                   **auth)
                assert reply.status_code == 403, reply.text
                assert field in reply.text and "not allowed" in reply.text and SECRET not in reply.text
                answers.append(reply.text.replace(value, "PATH"))
            assert answers[0] == answers[1], field
        for name in ("secret/model", "secret/absent"):  # a bare org/name: a Hub id, queued like any
            reply = httpx.post(f"{url}/api/runs", content=yaml.safe_dump({**base, "model_name_or_path": name}),
                               timeout=30, **auth)
            assert reply.status_code == 201, reply.text
    assert not [i for i in ctx.jobs.list_runs() if str(disk["there"]) in json.dumps(i.to_dict())]
    ok = httpx.post(f"{url}/api/runs", content=yaml.safe_dump(base), auth=("bob", "pw2"), timeout=30)
    assert ok.status_code == 201  # the refusals above were not the API refusing everything


def test_a_folder_as_the_dataset_is_searched_in_a_bounded_walk(tmp_path, monkeypatch):
    """`/` as an admin's dataset: the data worker stops at a number of entries instead of walking the
    whole file system (and a file that vanishes meanwhile, as /proc's do, is no traceback)."""
    from trainer.datasets import DataError
    from trainer.datasets import sources

    for key in ("TUNEDECK_AUTH", "TUNEDECK_USERS_FILE", "SYSTEM"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sources, "MAX_FOLDER_ENTRIES", 50)
    (tmp_path / "repo" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "data" / "train.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "repo" / ".git").mkdir()
    for i in range(100):  # hidden folders are not searched, nor counted
        (tmp_path / "repo" / ".git" / f"obj{i}").write_text("x")
    assert sources.resolve_source(str(tmp_path / "repo")) == ("file", str(tmp_path / "repo" / "data" / "train.jsonl"))
    for i in range(60):
        (tmp_path / "repo" / f"notes{i}.txt").write_text("x")
    with pytest.raises(DataError, match="too many files to search"):
        sources.resolve_source(str(tmp_path / "repo"))


def test_the_api_refuses_a_token_shaped_api_token_label(api):
    url, token = api
    reply = httpx.post(f"{url}/api/tokens", json={"label": f"copy of {token}"}, auth=("bob", "pw2"), timeout=30)
    assert reply.status_code == 400 and "tunedeck API token" in reply.text and token not in reply.text
    assert httpx.post(f"{url}/api/tokens", json={"label": "ci"}, auth=("bob", "pw2"), timeout=30).status_code == 201


def test_run_and_weights_choices_take_names_not_paths(ctx, disk):
    """Chat's, evaluate's, merge's and export's run and weights choices are a run id and a weights name of
    that run: a path in their place (crafted past the dropdown) is refused the same whether it exists."""
    from webui.tabs import chat, export

    run_id = ctx.jobs.submit(TrainConfig(max_steps=1), owner="bob")
    tries = {
        "chat: run": lambda p: _text(chat.pick_run(ctx, {"chat.run": p})),
        "chat load: run": lambda p: _text(chat.load(ctx, {"chat.run": p, "chat.weights": None}, user="bob")),
        "export: run": lambda p: _text(export.pick_run(ctx, {"export.run": p}, user="bob")),
        "zip: weights": lambda p: _text(export.make_zip(ctx, {"export.run": run_id, "export.weights": p})),
        "merge: weights": lambda p: _text(export.merge(ctx, {"export.run": run_id, "export.weights": p},
                                                       user="bob")),
        "publish dry run: weights": lambda p: _text(export.dry_run(
            ctx, {"export.run": run_id, "export.weights": p, "export.repo_id": "bob/x"}, user="bob")),
        "evaluate: weights": lambda p: _text(export.evaluate(ctx, {"export.run": run_id, "export.weights": p},
                                                             user="bob")),
    }
    for where, try_value in tries.items():
        for name in ("checkpoint-5", "model"):
            answers = [try_value(str(folder / name)).replace(str(folder / name), "P")
                       for folder in (disk["there"], disk["missing"])]
            assert SECRET not in answers[0] and "trainer_state" not in answers[0], where
            assert answers[0] == answers[1], f"{where}: {answers}"
            said = ("not a run id", "no run", "no usable weights", "has no adapter", "'choices': []")
            assert any(words in answers[0] for words in said), (where, answers[0])


def test_the_exports_read_the_dataset_in_the_data_worker_not_the_server(ctx, disk):
    """The LLaMA-Factory export reads the dataset file for its format and columns: a FIFO named like a data
    file in the allowed folder would hold a server thread forever, a 2 GB upload would take gigabytes of the
    server's memory. The data worker refuses what is not a regular file before reading it."""
    import os

    from webui.tabs import presets

    fifo = disk["team"] / "pipe.jsonl"
    os.mkfifo(fifo)
    replies: list = []
    for export in (presets.export_llamafactory, presets.export_plain_script):
        worker = threading.Thread(target=lambda e=export: replies.append(e(ctx, form(dataset=str(fifo)), user="bob")),
                                  daemon=True)
        worker.start()
        worker.join(120)  # a guard against a hang, not a measurement
        assert not worker.is_alive(), "the export is stuck reading a FIFO"
    assert all("not a regular file" in r.get(WARNING, "") for r in replies), replies


def test_imported_configs_read_no_file_they_name(ctx, disk):
    """A preset or a LLaMA-Factory YAML naming server files (the model, the dataset, a DeepSpeed config, an
    adapter to start from) loads into the form without reading any of them: the answer is the same whether
    they exist; the form's own checks then refuse the paths outside the allowed folders by name."""
    from webui.tabs import presets, train

    answers = []
    for folder in (disk["there"], disk["missing"]):
        lf = disk["tmp"] / "lf.yaml"
        lf.write_text(yaml.safe_dump({
            "model_name_or_path": str(folder / "model"), "stage": "sft", "finetuning_type": "lora",
            "dataset": "creds", "dataset_dir": "ONLINE", "deepspeed": str(folder / "creds.jsonl"),
            "adapter_name_or_path": str(folder / "checkpoint-5")}))
        imported = presets.import_llamafactory(ctx, {"presets.import_lf": str(lf)}, user="bob")
        preset = disk["tmp"] / "preset.yaml"
        preset.write_text(yaml.safe_dump({"model_name_or_path": str(folder / "model"),
                                          "dataset": str(folder / "creds.jsonl")}))
        uploaded = presets.upload_preset(ctx, {"presets.upload": str(preset)})
        plan = train.refresh_plan(ctx, form(model_name_or_path=uploaded["model_name_or_path"],
                                            dataset=uploaded["dataset"]), user="bob")
        text = _text([imported, uploaded, plan])
        assert SECRET not in text and "not allowed" in text
        answers.append(text.replace(str(folder), "F"))
    assert answers[0] == answers[1]


def test_an_lf_dataset_name_climbing_out_of_an_allowed_dataset_dir_tells_nothing(ctx, disk):
    from webui.tabs import presets

    answers = []
    for folder in (disk["there"], disk["missing"]):
        lf = disk["tmp"] / "lf.yaml"
        climb = "../" * 8 + str(folder / "creds.jsonl").lstrip("/")
        lf.write_text(yaml.safe_dump({"model_name_or_path": "demo", "stage": "sft", "finetuning_type": "lora",
                                      "dataset": climb, "dataset_dir": str(disk["team"])}))
        text = _text(presets.import_llamafactory(ctx, {"presets.import_lf": str(lf)}, user="bob"))
        assert SECRET not in text and "not allowed" in text, text
        answers.append(text.replace(str(folder), "F").replace(climb, "C"))
    assert answers[0] == answers[1], answers


def test_a_new_run_may_start_from_a_checkpoint_of_the_users_own_runs_only(disk, tmp_path):
    from trainer.access import signed_in_access
    from trainer.config import ConfigError
    from trainer.jobs.manager import JobManager

    runs = tmp_path / "runs"
    with JobManager(runs, autostart=False) as jobs:
        mine = jobs.submit(TrainConfig(), owner="bob")
        theirs = jobs.submit(TrainConfig(), owner="carol")
    for run_id in (mine, theirs):
        (runs / run_id / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    bob = signed_in_access("bob", False, runs)

    def refusal(value: str) -> str:
        try:
            bob.check_config(TrainConfig(resume_from_checkpoint=value))
        except ConfigError as exc:
            return str(exc)
        return ""

    assert refusal(str(runs / mine / "checkpoints" / "checkpoint-4")) == ""
    assert refusal("last") == ""
    for value in (str(runs / theirs / "checkpoints" / "checkpoint-4"),  # another user's run
                  str(runs / mine / "checkpoints" / ".." / ".." / theirs / "checkpoints" / "checkpoint-4"),
                  str(runs / mine / "config.yaml"),  # a run of theirs, but not a checkpoint
                  str(runs / "20990101-000000-abcdef" / "checkpoints" / "checkpoint-1"),  # no such run
                  str(disk["there"] / "checkpoint-5")):
        message = refusal(value)
        assert "resume_from_checkpoint" in message and "a checkpoint of one of your runs" in message, value
        assert "此共享服务器上不允许使用路径" in message_zh(message)  # the Chinese page says it too
    # A symlink in the user's uploads to another user's checkpoint resolves to where it points.
    uploads = runs / "uploads" / "bob"
    uploads.mkdir(parents=True)
    (uploads / "link").symlink_to(runs / theirs / "checkpoints" / "checkpoint-4")
    assert "is not allowed on this shared server" in refusal(str(uploads / "link"))
