"""Input safety without a server: YAML bombs, deep nesting, duplicate keys and oversize files are refused
everywhere YAML is read (presets, imports, `check`, `convert`), each with a message and fast; token-shaped
values are refused at the field and never echoed back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.interop.llamafactory import import_llamafactory_text
from trainer.interop.presets import preset_from_bytes
from trainer.textio import MAX_YAML_BYTES, parse_yaml, read_text_file

ROOT = Path(__file__).resolve().parents[1]
HF_TOKEN_LIKE = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f"

ALIAS_BOMB = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))
DEEP = "model_name_or_path: " + "[" * 100_000 + "]" * 100_000 + "\n"


@pytest.mark.parametrize("text, expected", [
    (ALIAS_BOMB, "anchors and aliases"),
    ("x: 1\ny: *nowhere\n", "alias"),
    (DEEP, "nested too deeply"),
    ("".join("  " * i + f"k{i}:\n" for i in range(80)), "nested too deeply"),
    ("learning_rate: 1e-4\nseed: 3\nlearning_rate: 2e-4\n", "duplicate key 'learning_rate' (first on line 1)"),
    ("a: 1\n" * 10 + "x: " + "y" * MAX_YAML_BYTES, "too large"),
])
def test_every_yaml_reader_refuses_bombs_with_a_message_naming_the_line(text, expected):
    started = time.monotonic()
    for read in (lambda: parse_yaml(text, "f.yaml"), lambda: TrainConfig.from_yaml_text(text, "f.yaml"),
                 lambda: preset_from_bytes(text.encode(), "f.yaml"), lambda: import_llamafactory_text(text, "f.yaml")):
        with pytest.raises(ConfigError) as err:
            read()
        assert expected in str(err.value) and "f.yaml" in str(err.value)
    assert time.monotonic() - started < 10


def test_duplicate_key_names_the_line_of_the_second():
    with pytest.raises(ConfigError) as err:
        parse_yaml("seed: 1\nlr: 2\nseed: 3\n")
    assert "line 3" in str(err.value) and "'seed'" in str(err.value)


def test_a_device_or_fifo_is_refused_before_a_byte_is_read(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        read_text_file("/dev/zero", "YAML file")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (MAX_YAML_BYTES + 10))
    with pytest.raises(ConfigError, match="too large"):
        read_text_file(big, "YAML file")


def test_a_boolean_is_refused_for_an_integer_field():
    with pytest.raises(ConfigError, match="per_device_train_batch_size: expects a number"):
        TrainConfig.from_yaml_text("per_device_train_batch_size: true\n")


@pytest.mark.parametrize("field, value", [
    ("run_name", f"my run {HF_TOKEN_LIKE}"),
    ("dataset", "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0"),
    ("model_name_or_path", "ghp_" + "a" * 36),
    ("template", "AKIA" + "ABCDEFGHIJKLMNOP"),
    ("column_mapping", {"instruction": HF_TOKEN_LIKE}),
])
def test_a_token_in_any_text_field_is_refused_at_the_field_and_not_echoed(field, value):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({field: value})
    assert err.value.by_field().get(field, "").startswith("looks like")
    assert HF_TOKEN_LIKE not in str(err.value) and "A1b2C3d4" not in str(err.value)


def test_ordinary_names_are_not_mistaken_for_tokens():
    cfg = TrainConfig.from_dict({"run_name": "task-sketch hf_demo ask-me", "dataset": "data/mask-fill.jsonl"})
    assert cfg.run_name == "task-sketch hf_demo ask-me"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("text, expected", [
    (ALIAS_BOMB, "anchors and aliases"),
    (DEEP, "nested too deeply"),
    (None, "too large"),  # 50 MB
    ("learning_rate: 1e-4\nlearning_rate: 2e-4\n", "duplicate key"),
    ("resume_from_checkpoint: /nonexistent/checkpoint-9\n", "resume_from_checkpoint: no checkpoint directory"),
])
def test_check_and_convert_exit_2_within_seconds_without_a_traceback(tmp_path, text, expected):
    path = tmp_path / "in.yaml"
    if text is None:
        with open(path, "w") as fh:
            for _ in range(50):
                fh.write(("k: " + "v" * 1_048_570 + "\n"))
    else:
        path.write_text(text)
    started = time.monotonic()
    for args in (["check", str(path)], ["convert", "--from", "llamafactory", str(path), str(tmp_path / "o.yaml")],
                 ["convert", "--to", "llamafactory", str(path), str(tmp_path / "o2.yaml")]):
        if args[0] == "convert" and "resume_from" in (text or ""):
            continue
        done = _cli(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - started < 30


def test_a_fifo_as_config_or_dataset_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    config = tmp_path / "c.yaml"
    config.write_text(f"model_name_or_path: demo\ndataset: {fifo}\n")
    for args in (["check", str(config)], ["convert", "--to", "llamafactory", str(config), str(tmp_path / "o.yaml")]):
        done = _cli(*args, cwd=tmp_path)  # the old code waited here until the 60 s timeout
        assert done.returncode == 2 and "not a regular file" in done.stderr and str(fifo) in done.stderr, done.stderr
    fifo_config = tmp_path / "config.yaml"
    os.mkfifo(fifo_config)
    done = _cli("check", str(fifo_config), cwd=tmp_path)
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr


@pytest.mark.parametrize("make", ["jsonl line", "json array", "csv cell"])
def test_json_nested_past_the_recursion_limit_is_a_row_error_naming_the_line(tmp_path, make):
    from trainer.datasets import DataError, load_examples

    deep = "[" * 5000 + "]" * 5000
    good = '{"instruction": "a", "input": "", "output": "b"}'
    if make == "jsonl line":
        path = tmp_path / "d.jsonl"
        path.write_text(good + "\n" + '{"instruction": "a", "output": "b", "x": ' + deep + "}\n" + good + "\n")
        where = "line 2"
    elif make == "json array":
        path = tmp_path / "d.json"
        path.write_text("[" + good + ", " + deep + "]")
        where = "nested too deeply"
    else:
        path = tmp_path / "d.csv"
        path.write_text('messages\n"' + deep + '"\n')
        where = "row"
    with pytest.raises(DataError) as refused:
        load_examples(TrainConfig(dataset=str(path)))
    assert "nested too deeply" in str(refused.value) and where in str(refused.value), str(refused.value)


def test_a_write_that_cannot_happen_names_the_file_asked_for(tmp_path):
    from trainer.textio import write_text_atomic

    with pytest.raises(IsADirectoryError) as refused:
        write_text_atomic(tmp_path, "x")
    assert refused.value.filename == str(tmp_path)
    with pytest.raises(OSError) as refused:
        write_text_atomic("/proc/tunedeck-nowhere.yaml", "x")  # a file system that takes no new files
    assert refused.value.filename == "/proc/tunedeck-nowhere.yaml"


# --- events, the registry, a full disk --------------------------------------------------------------

def test_an_oversize_event_line_is_skipped_and_said_with_bounded_reads(tmp_path):
    from trainer.run.events import MAX_EVENT_LINE_BYTES, MAX_READ_BYTES, EventReader, append_event, read_events

    append_event(tmp_path, "log", step=1, loss=1.0)
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b'{"type":"log","junk":"' + b"x" * (3 * MAX_READ_BYTES) + b'"}\n')
    append_event(tmp_path, "log", step=2, loss=0.5)
    reader = EventReader.for_run(tmp_path)
    polls, events = 0, []
    while True:
        before = reader.offset
        events += reader.read_new()
        polls += 1
        assert reader.offset - before <= MAX_READ_BYTES and len(reader._partial) <= MAX_EVENT_LINE_BYTES
        if reader.offset == before:
            break
    assert polls >= 4
    assert [e.get("step") for e in events if e["type"] == "log"] == [1, 2]
    said = [e for e in events if e["type"] == "message"]
    assert len(said) == 1 and "skipped" in said[0]["text"] and said[0]["level"] == "warning"
    assert [e.get("step") for e in read_events(tmp_path) if e["type"] == "log"] == [1, 2]


def test_a_damaged_or_full_registry_is_a_message_that_says_what_to_do(tmp_path):
    import sqlite3

    from trainer.jobs.manager import JobManager
    from trainer.jobs.registry import RegistryError, registry_problem

    jm = JobManager(tmp_path, autostart=False)
    try:
        jm.submit(TrainConfig())
        db = tmp_path / "runs.db"
        data = db.read_bytes()
        db.write_bytes(data[:100] + b"\0" * 50 + data[150:4096])  # a truncated, overwritten file
        for wal in tmp_path.glob("runs.db-*"):
            wal.unlink()
        with pytest.raises(RegistryError, match="damaged.*move the file away"):
            jm.list_runs()
    finally:
        jm.close()
    full = sqlite3.OperationalError("database or disk is full")
    assert "is full: free some space" in registry_problem(full, tmp_path / "runs.db")
    assert registry_problem(sqlite3.OperationalError("database is locked"), tmp_path / "runs.db") is None


def test_a_full_disk_during_training_is_classified_with_advice():
    import errno

    from trainer.engine.telemetry import classify_failure, failure_kind

    exc = OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/checkpoint-9/model.safetensors")
    assert failure_kind(exc) == "disk_full"
    try:
        try:
            raise exc
        except OSError as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as wrapped:
        assert failure_kind(wrapped) == "disk_full"
    reason, advice = classify_failure(exc, TrainConfig())
    assert reason.startswith("The disk is full") and "checkpoint-9" in reason
    assert any("save_total_limit" in a for a in advice) and any("Resume" in a for a in advice)


# --- uploads -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, expected", [
    ("tokenization_evil.py", b"import os\n", "only .jsonl, .json, .csv, .parquet"),
    ("data.parquet", b"not parquet at all", "not a Parquet file"),
    ("data.jsonl", b'{"a": 1}\x00\x00', "binary file"),
])
def test_an_upload_of_the_wrong_type_is_refused_before_it_is_kept(tmp_path, name, content, expected):
    from webui.tabs.data import save_upload

    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(ValueError, match=expected):
        save_upload(tmp_path / "kept", str(src))
    assert not (tmp_path / "kept").exists() or not any((tmp_path / "kept").iterdir())


def test_upload_names_keep_their_suffix():
    from webui.tabs.data import safe_upload_name

    assert safe_upload_name("..jsonl") == "upload.jsonl"
    long = safe_upload_name("x" * 300 + ".parquet")
    assert long.endswith(".parquet") and len(long) == 100
    assert safe_upload_name("../../etc/My Data (1).CSV") == "My_Data_1.csv"


# --- the access policy ------------------------------------------------------------------------------

SHARED_ENV = {"TUNEDECK_AUTH": "alice:pw1,bob:pw2", "TUNEDECK_ADMINS": "alice"}


def test_a_single_user_page_reads_any_path_and_only_warns_about_remote_code(tmp_path):
    from trainer.access import REMOTE_CODE_WARNING, access_from_env

    access = access_from_env(None, tmp_path, environ={})
    assert not access.shared and access.admin
    assert access.check_config(TrainConfig(dataset="/etc/hosts.jsonl", trust_remote_code=True)) == [REMOTE_CODE_WARNING]


def test_a_shared_server_limits_paths_to_allowed_folders_and_own_uploads(tmp_path):
    from trainer.access import access_from_env, user_uploads_dir

    team = tmp_path / "team"
    team.mkdir()
    (team / "link.jsonl").symlink_to("/etc/passwd")
    bob = access_from_env("bob", tmp_path / "runs", environ={**SHARED_ENV, "TUNEDECK_ALLOWED_PATHS": str(team)})
    ok = [str(team / "a.jsonl"), str(user_uploads_dir(tmp_path / "runs", "bob") / "x.csv"), "demo",
          "Qwen/Qwen2.5-0.5B", "last"]
    for value in ok:
        bob.check_path(value, "dataset")
    refused = [str(team / "link.jsonl"), str(team / ".." / "secret.json"), "/etc/passwd", "~/.ssh/id_rsa",
               str(user_uploads_dir(tmp_path / "runs", "alice") / "x.csv"), "../up.jsonl", "/"]
    for value in refused:
        with pytest.raises(ConfigError, match="is not allowed on this shared server") as err:
            bob.check_path(value, "dataset")
        assert err.value.errors[0][0] == "dataset"
    with pytest.raises(ConfigError) as err:
        bob.check_config(TrainConfig(model_name_or_path="/opt/models/x", dataset="/etc/x.csv", trust_remote_code=True))
    assert set(err.value.by_field()) == {"model_name_or_path", "dataset", "trust_remote_code"}
    alice = access_from_env("alice", tmp_path / "runs", environ=SHARED_ENV)
    assert alice.admin and alice.check_remote_code(True)


def test_a_hostile_dataset_is_refused_by_the_worker_not_read(tmp_path):
    from trainer.jobs.sandbox import SandboxError, run_job

    for dataset, expected in (("/dev/zero", "not a regular file"),):
        with pytest.raises(SandboxError, match=expected):
            run_job("facts", {"config": TrainConfig(dataset=dataset).to_dict()}, timeout_s=60)
