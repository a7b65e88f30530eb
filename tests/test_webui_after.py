"""The Chat and Evaluate & export tabs' handlers called directly, after one real training of the demo model:
a real registry adopting the run directory, the real chat worker process, real `python -m trainer
evaluate|merge|push` subprocesses. (tests/test_browser_after.py checks that the server's own process holds
no torch after a chat.)"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.engine.evaluate import read_evaluations
from trainer.engine.train import run_training
from trainer.jobs.manager import JobManager
from trainer.run.layout import new_run_id
from trainer.templates import chat_template_jinja
from webui.after import SharedChat
from webui.components import INFO, WARNING
from webui.context import Context
from webui.tabs import chat, export, runs
from webui.tabs.chat import holder

pytestmark = pytest.mark.slow  # one real training, then a worker process and trainer subprocesses

TINY = dict(model_name_or_path="demo", dataset="demo", max_samples=48, val_size=8, cutoff_len=64,
            per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=4, learning_rate=0.05,
            warmup_ratio=0.0, lora_rank=8, lora_alpha=16, eval_strategy="no", save_steps=2, logging_steps=1,
            gradient_checkpointing=False, template="chatml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(runs root, run id): a finished demo run the registry adopts from its directory."""
    root = tmp_path_factory.mktemp("after-page") / "runs"
    run_id = new_run_id()
    assert run_training(TrainConfig.from_dict(TINY), root / run_id) == 0
    return root, run_id


@pytest.fixture(scope="module")
def ctx(trained):
    jobs = JobManager(trained[0], autostart=False)
    context = Context(runs_root=trained[0], jobs=jobs)
    try:
        yield context
    finally:
        context.chat.close()
        jobs.close()


def last(replies) -> dict:
    out = {}
    for reply in replies:
        out.update(reply)
    return out


def test_the_run_and_its_weights_are_offered(ctx, trained):
    _, run_id = trained
    offered = chat.run_choices(ctx, {})["chat.run"]
    assert run_id in [value for _, value in offered["choices"]]
    assert offered["value"] == run_id  # a tab opened after a run finds the newest one chosen
    assert export.run_choices(ctx, {"export.run": "gone"})["export.run"]["value"] == run_id
    assert chat.run_choices(ctx, {"chat.run": run_id})["chat.run"]["value"] == run_id  # a pick is kept
    weights = chat.pick_run(ctx, {"chat.run": run_id})["chat.weights"]
    assert [value for _, value in weights["choices"]] == ["adapter", "checkpoint-4", "checkpoint-2"]
    assert weights["value"] == "adapter"
    assert "not set" in export.run_choices(ctx, {})["export.token_note"]


def test_the_adapter_and_checkpoints_carry_the_named_template_training_used(trained):
    root, run_id = trained
    for weights in ("adapter", "checkpoints/checkpoint-2"):
        saved = (root / run_id / weights / "chat_template.jinja").read_text(encoding="utf-8")
        assert saved == chat_template_jinja("chatml"), weights


def test_chat_loads_streams_both_columns_and_unloads(ctx, trained):
    _, run_id = trained
    assert WARNING in last(chat.send(ctx, {"chat.message": "hi", "chat.tuned": [], "chat.compare": True}))
    statuses = [r.get("chat.status") for r in chat.load(ctx, {"chat.run": run_id, "chat.weights": "checkpoint-4"},
                                                        user="alice")]
    assert any("loading the base model" in (s or "") for s in statuses[:-1])  # progress before the end
    assert "checkpoint-4" in statuses[-1] and "loaded by **alice**" in statuses[-1]
    again = last(chat.load(ctx, {"chat.run": run_id, "chat.weights": "checkpoint-4"}, user="bob"))
    assert again[INFO] == "This model is loaded already."

    values = {"chat.message": "What is the capital of Germany?", "chat.tuned": [], "chat.base": [],
              "chat.compare": True, "chat.temperature": 0, "chat.max_new_tokens": 16, "chat.system": "",
              "chat.top_p": 0.9, "chat.repetition_penalty": 1.0}
    replies = list(chat.send(ctx, values))
    assert replies[0]["chat.message"] == ""  # the box empties as the message is sent
    tuned_lengths = [len(r["chat.tuned"][-1]["content"]) for r in replies if "chat.tuned" in r]
    base_lengths = [len(r["chat.base"][-1]["content"]) for r in replies if "chat.base" in r]
    assert len(set(tuned_lengths)) > 2 and len(set(base_lengths)) > 2  # both grew over several chunks
    final = replies[-1]
    assert final["chat.tuned"][-2] == {"role": "user", "content": values["chat.message"]}
    tuned_text, base_text = final["chat.tuned"][-1]["content"], final["chat.base"][-1]["content"]
    assert tuned_text and base_text and tuned_text != base_text
    assert "tuned:" in final["chat.timing"] and "base:" in final["chat.timing"]

    # A second turn carries the history; a bad setting is named, and the message comes back to the box.
    bad = last(chat.send(ctx, {**values, "chat.message": "And France?", "chat.tuned": final["chat.tuned"],
                               "chat.base": final["chat.base"], "chat.temperature": 9}))
    assert "temperature" in bad[WARNING] and bad["chat.message"] == "And France?"
    assert bad["chat.tuned"] == final["chat.tuned"]
    assert ctx.chat.status()["pid"] not in (None, os.getpid())  # the model lives in the worker process

    assert chat.clear(ctx, {}) == {"chat.tuned": [], "chat.base": [], "chat.timing": ""}
    unloaded = chat.unload(ctx, {}, user="alice")
    assert "No model loaded: unloaded by alice" in unloaded["chat.status"]
    assert WARNING in last(chat.send(ctx, values))


def test_a_load_while_training_needs_the_gpu_says_why_and_can_wait(ctx, trained, tmp_path):
    root, run_id = trained
    queued = ctx.jobs.submit(TrainConfig.from_dict(TINY), owner="carol")  # no scheduler: it stays queued
    busy = Context(runs_root=root, jobs=ctx.jobs, chat=SharedChat(ctx.jobs, gpus=["0"]))
    try:
        refused = last(chat.load(busy, {"chat.run": run_id, "chat.weights": "adapter"}))
        assert "needed for training" in refused["chat.notice"] and queued in refused["chat.notice"]
        assert refused["chat.wait_btn"]["visible"] is True
        waiting = chat.load_when_free(busy, {"chat.run": run_id, "chat.weights": "adapter"}, user="dave")
        first = next(waiting)
        assert "Waiting: the GPU is needed for training" in first["chat.status"]
        assert "dave" in chat.tick(busy, {"chat.drawn": ""})["chat.status"]  # others see who waits to load
        second = last(chat.load(busy, {"chat.run": run_id, "chat.weights": "checkpoint-2"}, user="erin"))
        assert second[WARNING].startswith("dave is loading")  # one load at a time, the first one goes on
        waiting.close()
        assert busy.chat.status()["loading"] is None and busy.chat.status()["pid"] is None  # nothing started
    finally:
        busy.chat.close()
        ctx.jobs.abort(queued)
        ctx.jobs.delete(queued)


def test_evaluate_in_a_subprocess_stores_and_shows_the_results(ctx, trained):
    root, run_id = trained
    values = {"export.run": run_id, "export.weights": "adapter", "export.dataset": "", "export.max_rows": 6,
              "export.samples_count": 2}
    replies = list(export.evaluate(ctx, values, user="bob"))  # anyone signed in may evaluate
    progress = [r["export.eval_status"] for r in replies[:-1] if "export.eval_status" in r]
    assert any("measuring the tuned model" in p for p in progress)
    final = replies[-1]
    assert WARNING not in final, final
    stored = read_evaluations(root / run_id)
    assert stored and stored[-1]["weights"] == "adapter" and stored[-1]["rows"] == 6
    assert f"{stored[-1]['eval_loss']:.4g}" in final["export.eval_table"]
    assert f"{stored[-1]['base_eval_loss']:.4g}" in final["export.eval_table"]
    samples = final["export.samples"]
    assert samples["headers"] == ["prompt", "reference", "base answer", "tuned answer"]
    assert len(samples["data"]) == 2 and all(len(row) == 4 for row in samples["data"])
    shown = runs.show_evaluations(ctx, {"runs.picked": [run_id]})["runs.evaluation"]
    assert f"{stored[-1]['perplexity']:.4g}" in shown
    in_chinese = runs.show_evaluations(ctx, {"runs.picked": [run_id]}, lang="zh")["runs.evaluation"]
    assert "困惑度" in in_chinese and "perplexity" not in in_chinese  # the Runs tab's table follows the page
    picked = export.pick_run(ctx, {"export.run": run_id}, user="bob")
    assert "Only its owner" in picked["export.owner_note"] and picked["export.samples"]["data"]

    missing = last(export.evaluate(ctx, {**values, "export.dataset": str(root / "nope.jsonl")}))
    assert "Evaluation failed" in missing["export.eval_status"] and "nope.jsonl" in missing[WARNING]


def test_the_adapter_zip_downloads(ctx, trained):
    _, run_id = trained
    reply = export.make_zip(ctx, {"export.run": run_id, "export.weights": "checkpoint-2"})
    path = Path(reply["export.zip_file"])
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert any(name.endswith("/adapter_config.json") for name in names)
    assert not any("optimizer" in name for name in names)
    assert WARNING in export.make_zip(ctx, {"export.run": "", "export.weights": None})


def test_merge_is_for_the_owner_and_writes_a_model_into_the_run(ctx, trained):
    root, run_id = trained
    values = {"export.run": run_id, "export.weights": "adapter", "export.gguf": False}
    refused = last(export.merge(ctx, values, user="mallory"))
    assert "only its owner or an admin may merge" in refused[WARNING]
    no_gguf = last(export.merge(ctx, {**values, "export.gguf": True}))
    assert "TUNEDECK_LLAMA_CPP" in no_gguf[WARNING]
    replies = list(export.merge(ctx, values, user="local"))
    final = replies[-1]
    merged = root / run_id / export.MERGED_DIR / "adapter"
    assert str(merged) in final["export.merge_status"], final
    assert (merged / "config.json").is_file() and list(merged.glob("model*.safetensors"))
    again = last(export.merge(ctx, values))
    assert "Already merged" in again["export.merge_status"]


def test_publish_dry_run_and_a_push_without_token_or_network(ctx, trained, monkeypatch):
    root, run_id = trained
    values = {"export.run": run_id, "export.weights": "adapter", "export.repo_id": "someone/tiny-demo",
              "export.push_what": "adapter", "export.private": True, "export.commit_message": "first"}
    assert "belongs to 'local'" in export.dry_run(ctx, values, user="mallory")[WARNING]
    assert "repo_id" in export.dry_run(ctx, {**values, "export.repo_id": "not a repo"})[WARNING]
    dry = export.dry_run(ctx, values)
    assert "## How to load it" in dry["export.card"] and "PeftModel" in dry["export.card"]
    assert run_id in dry["export.card"] and "adapter_model.safetensors" in dry["export.files"]
    before = sorted(p.relative_to(root / run_id) for p in (root / run_id).rglob("*"))

    monkeypatch.delenv("HF_TOKEN", raising=False)
    no_token = last(export.push(ctx, values))
    assert "HF_TOKEN" in no_token[WARNING] and "nothing was pushed" in no_token["export.push_status"]
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")  # the subprocess inherits it; HF_HUB_OFFLINE is set
    offline = last(export.push(ctx, values))
    assert "Push failed" in offline["export.push_status"] and "no network" in offline[WARNING]
    assert "hf_not_a_real_token" not in str(offline)
    assert sorted(p.relative_to(root / run_id) for p in (root / run_id).rglob("*")) == before


def test_only_who_loaded_the_chat_model_or_an_admin_replaces_or_unloads_it(ctx, trained, monkeypatch):
    monkeypatch.setenv("TUNEDECK_ADMINS", "root")
    _, run_id = trained
    pick = {"chat.run": run_id, "chat.weights": "checkpoint-2"}
    assert "loaded by **alice**" in last(chat.load(ctx, pick, user="alice"))["chat.status"]
    pid = ctx.chat.status()["pid"]

    refused = last(chat.load(ctx, {**pick, "chat.weights": "adapter"}, user="bob"))
    assert "only alice or an admin may replace it" in refused[WARNING]
    assert "**alice** loaded" in refused["chat.notice"] and refused["chat.wait_btn"]["visible"] is True
    assert "loaded by **alice**" in refused["chat.status"]  # the status line says what is loaded, not bob's attempt
    assert ctx.chat.status()["loaded"]["name"] == "checkpoint-2" and ctx.chat.status()["pid"] == pid  # untouched
    assert last(chat.load(ctx, pick, user="bob"))[INFO] == "This model is loaded already."  # using is not replacing
    kept = chat.unload(ctx, {}, user="bob")
    assert "only alice or an admin may unload it" in kept[WARNING] and ctx.chat.status()["loaded"]
    zh = last(chat.load(ctx, {**pick, "chat.weights": "adapter"}, user="bob", lang="zh"))
    assert "只有 alice 或管理员可以替换或卸载它" in zh["chat.notice"] and "only" not in zh[WARNING]

    # Bob waits: his load goes on by itself once alice unloads hers.
    waiting = chat.load_when_free(ctx, {**pick, "chat.weights": "adapter"}, user="bob")
    assert "alice holds" in next(waiting)["chat.notice"]
    assert "unloaded by alice" in chat.unload(ctx, {}, user="alice")["chat.status"]
    assert "loaded by **bob**" in last(waiting)["chat.status"] and ctx.chat.status()["loaded"]["name"] == "adapter"

    # Stop is for the reply's own user (or an admin).
    values = {"chat.message": "Tell me about Paris.", "chat.tuned": [], "chat.base": [], "chat.compare": False,
              "chat.temperature": 0, "chat.max_new_tokens": 32, "chat.system": "", "chat.top_p": 0.9,
              "chat.repetition_penalty": 1.0}
    sending = chat.send(ctx, values, user="bob")
    next(sending), next(sending)  # the empty columns, then the first chunk: bob's reply is being generated
    assert "only bob or an admin may stop it" in chat.stop(ctx, {}, user="alice")[WARNING]
    assert chat.stop(ctx, {}, user="root") == {}
    assert "tuned:" in last(sending)["chat.timing"] and ctx.chat.generating_by is None

    # An admin replaces bob's model and unloads it; the status says who did.
    assert "loaded by **root**" in last(chat.load(ctx, pick, user="root"))["chat.status"]
    assert "only root or an admin may unload it" in chat.unload(ctx, {}, user="bob")[WARNING]
    assert "unloaded by root" in chat.unload(ctx, {}, user="root")["chat.status"]
    assert holder(ctx, "carol") is None  # free again: anyone may load


def test_the_after_training_messages_in_chinese(ctx, trained, monkeypatch):
    _, run_id = trained
    picked = export.pick_run(ctx, {"export.run": run_id}, user="bob", lang="zh")
    assert "只有其所有者或管理员可以合并或发布它" in picked["export.owner_note"] and "已完成" in picked["export.owner_note"]
    assert picked["export.samples"]["headers"] == ["提示", "参考答案", "基座模型回答", "微调模型回答"]
    assert [label for label, _ in picked["export.weights"]["choices"]][:2] == ["最终适配器 / 模型", "checkpoint-4（第 4 步）"]
    refused = last(export.merge(ctx, {"export.run": run_id, "export.weights": "adapter"}, user="mallory", lang="zh"))
    assert "只有其所有者或管理员可以合并它" in refused[WARNING]
    monkeypatch.delenv("HF_TOKEN", raising=False)
    values = {"export.run": run_id, "export.weights": "adapter", "export.repo_id": "someone/tiny-demo",
              "export.push_what": "adapter"}
    assert "试运行" in export.dry_run(ctx, values, lang="zh")["export.push_status"]
    assert "不是 Hub 仓库 ID" in export.dry_run(ctx, {**values, "export.repo_id": "not a repo"}, lang="zh")[WARNING]
    assert "没有 Hugging Face 令牌" in last(export.push(ctx, values, lang="zh"))[WARNING]
    assert last(chat.send(ctx, {"chat.message": " "}, lang="zh"))[WARNING] == "请先输入消息。"
    assert "请先选择一个运行" in last(chat.load(ctx, {}, lang="zh"))[WARNING]


def test_a_load_that_fails_says_why_and_the_server_goes_on(trained, tmp_path):
    import shutil

    root, run_id = trained
    copy = tmp_path / "runs" / run_id
    shutil.copytree(root / run_id, copy, ignore=shutil.ignore_patterns("merged"))
    config = copy / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("model_name_or_path: demo",
                                                                 f"model_name_or_path: {tmp_path / 'gone'}"),
                      encoding="utf-8")
    jobs = JobManager(tmp_path / "runs", autostart=False)
    broken = Context(runs_root=tmp_path / "runs", jobs=jobs, chat=SharedChat(jobs))
    try:
        failed = last(chat.load(broken, {"chat.run": run_id, "chat.weights": "adapter"}, user="alice"))
        assert "Loading failed" in failed["chat.notice"] and str(tmp_path / "gone") in failed[WARNING], failed
        assert "No model loaded" in failed["chat.status"] and broken.chat.status()["loading"] is None
    finally:
        broken.chat.close()
        jobs.close()
