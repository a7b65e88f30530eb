"""Experiment trackers and the hub choice: the demo logs to TensorBoard and Trackio offline, every tracker's
missing package or credential gets a message naming it and the fix, and Hub ids resolve per hub without a
network."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from trainer import hub
from trainer.config import TrainConfig
from trainer.datasets import DataError, load_examples
from trainer.engine.model import ModelNotFoundError, model_source
from trainer.engine.sft_args import static_sft_kwargs
from trainer.run.events import read_events
from trainer.run.layout import TENSORBOARD_DIR, TRACKERS_FILE
from trainer.trackers import TRACKERS, tracker_environment, tracker_links, tracker_problems

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = ("WANDB_API_KEY", "WANDB_MODE", "SWANLAB_API_KEY", "SWANLAB_MODE", "HF_TOKEN")


@pytest.fixture
def clean_env(monkeypatch):
    for name in CREDENTIALS + ("USE_MODELSCOPE_HUB", "HF_ENDPOINT", "MODELSCOPE_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def online(clean_env):
    """The offline variables cleared (the tests run offline): W&B and SwanLab then need credentials."""
    for name in hub.OFFLINE_VARIABLES:
        clean_env.delenv(name, raising=False)
    return clean_env


@pytest.fixture
def importable(tmp_path, monkeypatch):
    """Make the named packages importable (an empty package each): the checks ask only whether it imports."""
    def make(*names: str) -> None:
        for name in names:
            (tmp_path / "pkgs" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "pkgs" / name / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return make


# --- the schema reaches the trainer ------------------------------------------------------------------

def test_report_to_and_project_reach_sftconfig_and_the_form_text_is_a_list():
    cfg = TrainConfig.from_dict({"report_to": "tensorboard, trackio", "tracker_project": "team-a",
                                 "tracker_tags": "lora, demo"})
    assert cfg.report_to == ["tensorboard", "trackio"] and cfg.tracker_tags == ["lora", "demo"]
    kwargs = static_sft_kwargs(cfg)
    assert kwargs["report_to"] == ["tensorboard", "trackio"] and kwargs["project"] == "team-a"
    assert static_sft_kwargs(TrainConfig(report_to=[]))["report_to"] == "none"
    assert TrainConfig.from_dict({"report_to": "none"}).report_to == []
    with pytest.raises(ValueError, match="report_to"):
        TrainConfig.from_dict({"report_to": ["neptune"]})


def test_the_environment_carries_project_and_tags_but_never_overrides_the_users(online, tmp_path):
    clean_env = online
    cfg = TrainConfig(report_to=["wandb", "mlflow", "swanlab"], tracker_project="p1", tracker_tags=["a", "b"])
    clean_env.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    clean_env.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = tracker_environment(cfg, tmp_path)
    assert env["WANDB_PROJECT"] == "p1" and env["WANDB_TAGS"] == "a,b" and env["WANDB_DIR"] == str(tmp_path)
    assert json.loads(env["MLFLOW_TAGS"]) == {"a": "", "b": ""} and "MLFLOW_EXPERIMENT_NAME" not in env
    assert env["SWANLAB_PROJECT"] == "p1"
    assert not any(key in env for key in CREDENTIALS), "credentials come from the user's environment only"
    # Without a tracking server MLflow logs beside the runs (its default is the process's working folder).
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path.resolve().parent / "mlruns").as_uri()
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert "MLFLOW_TRACKING_URI" not in tracker_environment(cfg, tmp_path)


# --- missing packages and credentials ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_a_missing_tracker_package_names_the_tracker_and_the_install(name, clean_env):
    clean_env.setitem(sys.modules, TRACKERS[name].module, None)  # how Python marks a module unimportable
    problems = tracker_problems(TrainConfig(report_to=[name]))
    assert len(problems) == 1
    field, message = problems[0]
    assert field == "report_to" and TRACKERS[name].title in message and f"remove {name}" in message
    expected = f"pip install 'tunedeck[{name}]'" if TRACKERS[name].extra else "pip install tensorboard"
    assert expected in message


@pytest.mark.parametrize("name,variable,local", [("wandb", "WANDB_API_KEY", ("WANDB_MODE", "offline")),
                                                 ("swanlab", "SWANLAB_API_KEY", ("SWANLAB_MODE", "local"))])
def test_a_missing_credential_names_the_variable_and_the_local_mode(name, variable, local, online, importable):
    clean_env = online
    importable(name)
    cfg = TrainConfig(report_to=[name])
    (field, message), = tracker_problems(cfg)
    assert field == "report_to" and variable in message and f"{local[0]}={local[1]}" in message
    clean_env.setenv(variable, "secret-from-the-environment")
    assert tracker_problems(cfg) == []
    clean_env.delenv(variable)
    clean_env.setenv(*local)
    assert tracker_problems(cfg) == []


def test_trackers_without_credentials_pass_and_a_trackio_space_needs_a_token_online(clean_env, importable):
    importable("mlflow")
    assert tracker_problems(TrainConfig(report_to=["tensorboard", "trackio", "mlflow"])) == []
    on_space = TrainConfig(report_to=["trackio"], trackio_space_id="team/metrics")
    (field, message), = tracker_problems(on_space)  # the tests run offline
    assert field == "trackio_space_id" and "offline" in message
    clean_env.setenv("HF_HUB_OFFLINE", "0")
    clean_env.setenv("HF_DATASETS_OFFLINE", "0")
    clean_env.setenv("TRANSFORMERS_OFFLINE", "0")
    (field, message), = tracker_problems(on_space)
    assert field == "trackio_space_id" and "HF_TOKEN" in message
    clean_env.setenv("HF_TOKEN", "hf_x")
    assert tracker_problems(on_space) == []


def test_check_refuses_a_run_whose_tracker_is_missing_before_it_starts(tmp_path):
    config = tmp_path / "config.yaml"
    TrainConfig(report_to=["tensorboard", "wandb"], max_samples=16).save(config)
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], cwd=ROOT, capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "invalid trackers" in proc.stderr and "Weights & Biases (wandb)" in proc.stderr
    assert "pip install 'tunedeck[wandb]'" in proc.stderr and "Traceback" not in proc.stderr


def test_links_show_the_tensorboard_and_trackio_commands_and_a_recorded_run_url(tmp_path):
    cfg = TrainConfig(report_to=["tensorboard", "trackio", "wandb"], tracker_project="team-a")
    links = dict(tracker_links(cfg, tmp_path))
    assert links["TensorBoard"] == f"tensorboard --logdir {tmp_path / TENSORBOARD_DIR}"
    assert links["Trackio"] == "trackio show --project team-a"
    assert "once training starts" in links["Weights & Biases"]
    (tmp_path / TRACKERS_FILE).write_text(json.dumps({"wandb": "https://wandb.ai/me/team-a/runs/abc"}))
    assert dict(tracker_links(cfg, tmp_path))["Weights & Biases"] == "https://wandb.ai/me/team-a/runs/abc"


# --- the hub choice ----------------------------------------------------------------------------------

def test_hub_ids_resolve_per_hub_without_a_network(clean_env):
    assert hub.chosen_hub() == "huggingface" and hub.hub_label("huggingface") == "the Hugging Face Hub"
    assert hub.hub_model_id("meta-llama/Llama-3.1-8B-Instruct", "huggingface") == "meta-llama/Llama-3.1-8B-Instruct"
    assert hub.hub_model_id("meta-llama/Llama-3.1-8B-Instruct", "modelscope") == \
        "LLM-Research/Meta-Llama-3.1-8B-Instruct"
    assert hub.hub_model_id("THUDM/chatglm3-6b", "modelscope") == "ZhipuAI/chatglm3-6b"
    assert hub.hub_model_id("Qwen/Qwen2.5-7B-Instruct", "modelscope") == "Qwen/Qwen2.5-7B-Instruct"
    assert hub.hub_model_id("someone/unknown-model", "modelscope") == "someone/unknown-model"
    assert hub.model_page("Qwen/Qwen2.5-0.5B", "modelscope") == "https://www.modelscope.cn/models/Qwen/Qwen2.5-0.5B"
    clean_env.setenv("USE_MODELSCOPE_HUB", "1")
    assert hub.chosen_hub() == "modelscope" and hub.chosen_hub("huggingface") == "huggingface"
    clean_env.delenv("USE_MODELSCOPE_HUB")
    clean_env.setenv("HF_ENDPOINT", "https://hf-mirror.com/")
    assert hub.endpoint("huggingface") == "https://hf-mirror.com"
    assert hub.hub_label("huggingface") == "the Hugging Face mirror https://hf-mirror.com"
    assert hub.model_page("Qwen/Qwen2.5-0.5B", "huggingface") == "https://hf-mirror.com/Qwen/Qwen2.5-0.5B"
    from trainer.plan.catalog import catalog_shape
    assert catalog_shape("LLM-Research/Meta-Llama-3.1-8B").name == "meta-llama/Llama-3.1-8B"


def test_modelscope_without_its_package_says_what_to_install(clean_env):
    clean_env.setitem(sys.modules, "modelscope", None)
    with pytest.raises(ModelNotFoundError, match=r"tunedeck\[modelscope\]"):
        model_source(TrainConfig(model_name_or_path="Qwen/Qwen2.5-0.5B", model_hub="modelscope"))
    clean_env.setenv("USE_MODELSCOPE_HUB", "1")
    with pytest.raises(ModelNotFoundError, match=r"tunedeck\[modelscope\]"):
        model_source(TrainConfig(model_name_or_path="Qwen/Qwen2.5-0.5B"))
    assert model_source(TrainConfig(model_name_or_path="Qwen/Qwen2.5-0.5B", model_hub="huggingface")) == \
        "Qwen/Qwen2.5-0.5B"


@pytest.mark.parametrize("offline", [True, False])
def test_an_unreachable_hub_dataset_fails_at_once_with_a_clear_message(offline, clean_env):
    for name in hub.OFFLINE_VARIABLES:
        clean_env.setenv(name, "1" if offline else "0")
    clean_env.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(DataError) as caught:
        load_examples(TrainConfig(dataset="someone/some-dataset"))
    message = str(caught.value)
    assert "dataset 'someone/some-dataset'" in message and "the Hugging Face mirror http://127.0.0.1:9" in message
    assert ("offline mode is on" if offline else "cannot be reached") in message


def test_check_answers_on_an_unreachable_hub_dataset_with_a_warning(tmp_path):
    config = tmp_path / "config.yaml"
    TrainConfig(dataset="someone/some-dataset").save(config)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0",
           "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(config), "--json"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["valid"], proc.stderr
    assert any("someone/some-dataset" in w and "cannot be reached" in w for w in report["warnings"])
    assert "total_steps" in report["unknown"]


# --- for real: the demo logs to TensorBoard and Trackio ----------------------------------------------

@pytest.mark.slow
def test_the_demo_logs_its_loss_to_tensorboard_and_to_trackios_local_store(tmp_path):
    config, run_dir, store = tmp_path / "config.yaml", tmp_path / "run", tmp_path / "trackio"
    TrainConfig.from_dict(dict(max_samples=24, val_size=0, eval_strategy="no", save_strategy="no", max_steps=3,
                               cutoff_len=64, per_device_train_batch_size=4, gradient_checkpointing=False,
                               report_to=["tensorboard", "trackio"], tracker_project="tunedeck-test",
                               run_name="trackio-demo")).save(config)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKIO_DIR": str(store)}
    proc = subprocess.run([sys.executable, "-m", "trainer", "train", str(config), "--run-dir", str(run_dir)],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list((run_dir / TENSORBOARD_DIR).rglob("events.out.tfevents.*")), "no TensorBoard event file"
    ours = [e["loss"] for e in read_events(run_dir) if e["type"] == "log" and e.get("loss") is not None]
    # Trackio keeps one SQLite file per project in TRACKIO_DIR, a metrics row per logged step.
    with sqlite3.connect(store / "tunedeck-test.db") as db:
        rows = db.execute("SELECT run_name, step, metrics FROM metrics ORDER BY step").fetchall()
    logged = [(name, step, json.loads(metrics)) for name, step, metrics in rows]
    losses = [m["train/loss"] for _, _, m in logged if "train/loss" in m]
    assert {name for name, _, _ in logged} == {"trackio-demo"}
    assert len(losses) == len(ours) == 3 and losses == pytest.approx(ours, rel=1e-4)


# --- the page --------------------------------------------------------------------------------------



def test_start_refuses_a_missing_tracker_at_its_field_and_the_monitor_lists_the_trackers(ctx, clean_env):
    from webui.components import WARNING
    from webui.form import config_to_values
    from webui.tabs import monitor, train

    values = config_to_values(TrainConfig(report_to=["tensorboard", "wandb"]))
    refused = train.start(ctx, {"train.shown": {}, **values})
    assert "Not started" in refused[WARNING] and "tunedeck[wandb]" in refused["train.errors"]["value"]
    assert refused["report_to"]["elem_classes"] == ["td-field-error"] and ctx.jobs.list_runs() == []

    values = config_to_values(TrainConfig(report_to=["tensorboard", "trackio"], tracker_project="team-a"))
    run_id = train.start(ctx, {"train.shown": {}, **values})["monitor.run_select"]["value"]
    shown = monitor.tick(ctx, {"monitor.run_select": run_id, "monitor.drawn": {}})["monitor.trackers"]
    run_dir = ctx.jobs.get(run_id).run_dir
    assert f"`tensorboard --logdir {run_dir / TENSORBOARD_DIR}`" in shown
    assert "`trackio show --project team-a`" in shown
    zh = monitor.tick(ctx, {"monitor.run_select": run_id, "monitor.drawn": {}}, lang="zh")["monitor.trackers"]
    assert "实验跟踪器" in zh
