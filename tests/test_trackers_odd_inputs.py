"""Trackers and the hub choice with the inputs a new user types: report_to in every spelling, odd project names,
tags and Space ids, missing packages and credentials, offline mode, malformed hub settings. Each works or gets a
message naming the field, through the schema, `check`, the page's Start and the trainer's own pre-flight."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer import hub
from trainer.config import ConfigError, TrainConfig
from trainer.datasets import DataError, load_examples
from trainer.trackers import tracker_environment, tracker_problems

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("WANDB_API_KEY", "WANDB_MODE", "SWANLAB_API_KEY", "SWANLAB_MODE", "HF_TOKEN", "MLFLOW_TRACKING_URI",
            "USE_MODELSCOPE_HUB", "HF_ENDPOINT", "MODELSCOPE_DOMAIN")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean tracker/hub environment, offline (as the tests run), with `fake(*names)` making packages importable:
    the checks only ask whether a package imports."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.setenv(name, "1")

    def fake(*names):
        for name in names:
            (tmp_path / "pkgs" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "pkgs" / name / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))

    monkeypatch.fake = fake
    return monkeypatch


def online(env):
    for name in hub.OFFLINE_VARIABLES:
        env.delenv(name)


@pytest.mark.parametrize("given,expected", [
    (None, []), ("", []), ("none", []), ("NONE", []), (["none"], []), ("tensorboard", ["tensorboard"]),
    ("TensorBoard", ["tensorboard"]), (["Trackio", " tensorboard "], ["trackio", "tensorboard"]),
    ("tensorboard,tensorboard", ["tensorboard"]), (["trackio", "TRACKIO"], ["trackio"]),
    ("tensorboard trackio", ["tensorboard", "trackio"]), ("wandb;mlflow", ["wandb", "mlflow"]),
    ("none, trackio", ["trackio"]), ("tensorboard, , trackio", ["tensorboard", "trackio"]),
])
def test_report_to_in_every_spelling_is_the_same_list_of_trackers_each_once(given, expected):
    assert TrainConfig.from_dict({"report_to": given}).report_to == expected


@pytest.mark.parametrize("given", ["all", "neptune", ["tensorboard", "comet"], "[tensorboard]", 5, {"a": 1}])
def test_an_unknown_tracker_is_refused_at_report_to_with_the_choices(given):
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"report_to": given})
    assert "report_to" in str(caught.value)


@pytest.mark.parametrize("project,shown", [("team/a", "'/'"), ("a:b?c", "':' '?'"), ("50%", "'%'"),
                                           ("back\\slash", "'\\'"), ("line\nbreak", "control character"),
                                           ("nul\x00", "control character"), ("hash#", "'#'")])
def test_a_project_name_trackers_refuse_is_named_at_tracker_project(project, shown, env):
    problems = tracker_problems(TrainConfig(report_to=["tensorboard"], tracker_project=project))
    assert [field for field, _ in problems] == ["tracker_project"] and shown in problems[0][1]


def test_ordinary_odd_names_pass_and_a_secret_is_refused_by_the_schema(env):
    for project in ("team a", "Команда", "实验-1", "v1.2_(rerun)", "  "):
        assert tracker_problems(TrainConfig(report_to=["tensorboard", "trackio"], tracker_project=project)) == []
    for field in ("tracker_project", "tracker_tags", "run_name"):
        with pytest.raises(ConfigError, match=field):
            TrainConfig.from_dict({field: "hf_abcdefghijklmnopqrstuvwxyzABCD1234"})


def test_tags_are_split_once_each_and_a_comma_inside_a_tag_is_named(env):
    env.fake("mlflow")
    cfg = TrainConfig.from_dict({"report_to": ["mlflow"], "tracker_tags": " a, b ,a,,None"})
    assert cfg.tracker_tags == ["a", "b"]
    assert tracker_problems(cfg) == []
    problems = tracker_problems(TrainConfig(report_to=["mlflow"], tracker_tags=["a,b"]))
    assert [f for f, _ in problems] == ["tracker_tags"] and "'a,b'" in problems[0][1]
    env.fake("wandb")
    env.setenv("WANDB_MODE", "offline")
    long = TrainConfig(report_to=["wandb"], tracker_tags=["x" * 65], tracker_project="p" * 129)
    assert sorted(f for f, _ in tracker_problems(long)) == ["tracker_project", "tracker_tags"]


@pytest.mark.parametrize("space,report_to,words", [
    ("team/metrics", ["tensorboard"], "trackio is not in report_to"),
    ("metrics", ["trackio"], "not a Space id"), ("a/b/c", ["trackio"], "not a Space id"),
    ("https://huggingface.co/spaces/team/metrics", ["trackio"], "not a URL"), (" ", ["trackio"], "not a Space id"),
    ("team/metrics", ["trackio"], "offline mode is on"),
])
def test_a_trackio_space_that_cannot_be_used_is_named_at_trackio_space_id(space, report_to, words, env):
    problems = tracker_problems(TrainConfig(report_to=report_to, trackio_space_id=space))
    assert [f for f, _ in problems] == ["trackio_space_id"] and words in problems[0][1]


def test_a_blank_space_without_trackio_is_no_space(env):
    assert tracker_problems(TrainConfig(report_to=["tensorboard"], trackio_space_id="  ")) == []


@pytest.mark.parametrize("name,install", [("wandb", "tunedeck[wandb]"), ("mlflow", "tunedeck[mlflow]"),
                                          ("swanlab", "tunedeck[swanlab]")])
def test_absent_tracker_packages_say_how_to_install_them(name, install, env):
    env.setitem(sys.modules, name, None)
    (field, message), = tracker_problems(TrainConfig(report_to=[name, "tensorboard"]))
    assert field == "report_to" and f"pip install '{install}'" in message


def test_offline_mode_logs_wandb_and_swanlab_on_this_machine_and_refuses_an_online_setting(env, tmp_path):
    env.fake("wandb", "swanlab", "mlflow")
    cfg = TrainConfig(report_to=["wandb", "swanlab"])
    assert tracker_problems(cfg) == []  # no credentials needed: nothing goes over the network
    set_for_run = tracker_environment(cfg, tmp_path)
    assert set_for_run["WANDB_MODE"] == "offline" and set_for_run["SWANLAB_MODE"] == "offline"
    env.setenv("WANDB_MODE", "online")
    (field, message), = tracker_problems(cfg)
    assert field == "report_to" and "WANDB_MODE=offline" in message and "offline mode is on" in message
    assert "WANDB_MODE" not in tracker_environment(cfg, tmp_path)  # the user's own setting is never overridden
    env.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    (field, message), = tracker_problems(TrainConfig(report_to=["mlflow"]))
    assert "MLFLOW_TRACKING_URI" in message
    online(env)
    env.delenv("WANDB_MODE")
    problems = tracker_problems(cfg)
    assert [m.split(" needs ")[1].split()[0] for _, m in problems] == ["WANDB_API_KEY", "SWANLAB_API_KEY"]
    assert "WANDB_MODE" not in tracker_environment(cfg, tmp_path)


@pytest.mark.parametrize("value,chosen", [("1", "modelscope"), ("true", "modelscope"), (" Yes ", "modelscope"),
                                          ("0", "huggingface"), ("false", "huggingface"), ("", "huggingface"),
                                          ("garbage", "huggingface")])
def test_use_modelscope_hub_values(value, chosen, env):
    env.setenv("USE_MODELSCOPE_HUB", value)
    assert hub.chosen_hub("auto") == chosen
    assert hub.chosen_hub("huggingface") == "huggingface"  # the config's choice wins over the variable
    noted = any("USE_MODELSCOPE_HUB" in note for note in hub.setting_notes(chosen))
    assert noted == (value == "garbage")


def test_the_catalog_ids_per_hub(env):
    assert hub.hub_model_id("meta-llama/Llama-3.1-8B", "modelscope") == "LLM-Research/Meta-Llama-3.1-8B"
    assert hub.hub_model_id("someone/not-in-the-catalog", "modelscope") == "someone/not-in-the-catalog"
    assert hub.hub_model_id("meta-llama/Llama-3.1-8B", "huggingface") == "meta-llama/Llama-3.1-8B"


@pytest.mark.parametrize("url,words", [("hf-mirror.com", "not an http(s) URL"), ("ftp://mirror", "not an http(s)"),
                                       ("http://127.0.0.1:99999", "Port out of range"),
                                       ("http://[::1", "not a valid URL"), ("https://a b", "not an http(s) URL")])
def test_a_malformed_hf_endpoint_gets_a_message_at_once_not_an_exception(url, words, env):
    online(env)
    env.setenv("HF_ENDPOINT", url)
    started = time.monotonic()
    assert hub.reachable("huggingface") is False
    with pytest.raises(DataError) as caught:
        load_examples(TrainConfig(dataset="someone/some-dataset"))
    assert "HF_ENDPOINT" in str(caught.value) and words in str(caught.value)
    assert time.monotonic() - started < 30  # no library retries behind it (a bound for a stuck call, not a speed)


def test_check_start_and_the_trainer_refuse_a_bad_tracker_setting_at_its_field(env, tmp_path, capsys):
    from webui.components import WARNING
    from webui.form import config_to_values
    from webui.tabs import train
    from trainer.engine.train import run_training
    from trainer.jobs.manager import JobManager
    from webui.context import Context

    cfg = TrainConfig(report_to=["TensorBoard"], tracker_project="team:a", max_samples=8)
    config = tmp_path / "config.yaml"
    cfg.save(config)
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2 and "tracker_project" in proc.stderr and "':'" in proc.stderr, proc.stderr

    jobs = JobManager(tmp_path / "runs", autostart=False)
    try:
        ctx = Context(runs_root=tmp_path / "runs", jobs=jobs)
        refused = train.start(ctx, {"train.shown": {}, **config_to_values(cfg)})
        assert "Not started" in refused[WARNING] and "tracker_project" in str(refused)
        assert refused["tracker_project"]["elem_classes"] == ["td-field-error"] and jobs.list_runs() == []
    finally:
        jobs.close()

    capsys.readouterr()
    assert run_training(cfg, tmp_path / "run") != 0  # before the model or the data is loaded
    said = capsys.readouterr().err
    assert "tracker_project: 'team:a' has ':'" in said and "loading" not in said


def test_a_malformed_hf_endpoint_stops_the_model_load_with_its_name(env):
    from trainer.engine.model import ModelNotFoundError, model_source

    online(env)
    env.setenv("HF_ENDPOINT", "hf-mirror.com")
    with pytest.raises(ModelNotFoundError) as caught:
        model_source(TrainConfig(model_name_or_path="someone/some-model"))
    assert "someone/some-model" in str(caught.value) and "HF_ENDPOINT='hf-mirror.com'" in str(caught.value)
    env.setenv("HF_HUB_OFFLINE", "1")  # offline, the endpoint is never used: the cache is read as before
    assert model_source(TrainConfig(model_name_or_path="someone/some-model")) == "someone/some-model"


@pytest.mark.skipif(__import__("importlib").util.find_spec("modelscope") is not None, reason="modelscope installed")
def test_check_refuses_modelscope_without_its_package(tmp_path):
    config = tmp_path / "config.yaml"
    TrainConfig(model_name_or_path="Qwen/Qwen2.5-0.5B-Instruct", model_hub="modelscope").save(config)
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2 and "model" in proc.stderr and "pip install 'tunedeck[modelscope]'" in proc.stderr, \
        proc.stderr
