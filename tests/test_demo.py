"""The demo model: built offline into the cache, atomically, with a chat-ready tokenizer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from trainer.engine import demo


def test_demo_model_is_a_tiny_llama_with_a_chat_ready_tokenizer():
    from transformers import AutoConfig, AutoTokenizer

    path = demo.ensure_demo_model()
    assert demo.resolve_model_path("demo") == str(path)
    assert demo.resolve_model_path("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.num_hidden_layers == demo.NUM_LAYERS
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert len(tokenizer) <= config.vocab_size == demo.VOCAB_SIZE  # padded: the plan knows the shape unbuilt
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": "What is the capital of Italy?"},
                {"role": "assistant", "content": "The capital of Italy is Rome."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == ("<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n"
                    "<|im_start|>assistant\nThe capital of Italy is Rome.<|im_end|>\n")
    # The template marks the answer, so assistant-only loss works with transformers' own masks.
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
    answer = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tokenizer.decode(answer) == "The capital of Italy is Rome.<|im_end|>"
    # Trained on the demo dataset's text: its words are single tokens, not letters.
    assert len(tokenizer("The capital of Italy is Rome.")["input_ids"]) <= 8


def test_concurrent_builds_into_a_fresh_cache_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "PRETRAIN_STEPS", 3)  # atomicity is under test here, not the model's quality
    results: list[Path] = []
    errors: list[BaseException] = []

    def build():
        try:
            results.append(demo.ensure_demo_model())
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    built = results[0]
    assert built.parent == tmp_path / "cache"
    assert (built / "config.json").is_file() and (built / "tokenizer.json").is_file()
    # No temporary directory is left behind, whoever won the rename.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [built.name]
    # Built once, later calls return at once without rebuilding.
    stamp = (built / "config.json").stat().st_mtime_ns
    assert demo.ensure_demo_model() == built and (built / "config.json").stat().st_mtime_ns == stamp


def test_cache_name_follows_the_training_text(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_CACHE", str(tmp_path / "cache"))
    shipped = demo.demo_model_dir()
    assert f"-v{demo.BUILDER_VERSION}-" in shipped.name
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n", encoding="utf-8")
    monkeypatch.setattr(demo, "DEMO_DATASET", other)
    assert demo.demo_model_dir() != shipped  # a changed dataset builds a new model, not a stale one


@pytest.mark.slow
def test_the_demo_preset_visibly_learns(tmp_path, repo_root):
    """The shipped demo, run for real: what a new user sees on the Monitor tab.

    The loss falls clearly (the first logged loss is at least 1.5x the final smoothed loss, as the page
    smooths it), no logged loss climbs above the first one (no warm-up spike), and the eval loss falls
    with it. A property of the shipped model, dataset and preset, not a timing."""
    from trainer.config import TrainConfig
    from trainer.engine.train import run_training
    from trainer.run.events import read_events
    from trainer.run.series import ema

    cfg = TrainConfig.from_yaml(repo_root / "presets" / "demo.yaml")
    assert run_training(cfg, tmp_path / "run") == 0
    events = read_events(tmp_path / "run")
    loss = [e["loss"] for e in events if e["type"] == "log"]
    eval_loss = [e["eval_loss"] for e in events if e["type"] == "eval"]
    final_smoothed = ema(loss, 0.6)[-1]
    curve = f"loss {[round(v, 2) for v in loss]}, eval {[round(v, 2) for v in eval_loss]}"
    assert loss[0] >= 1.5 * final_smoothed, curve
    assert max(loss[1:]) < loss[0], f"a loss above the first one (a warm-up spike): {curve}"
    assert len(eval_loss) >= 4 and eval_loss[-1] < 0.85 * eval_loss[0], curve
    assert all(later <= earlier * 1.01 for earlier, later in zip(eval_loss, eval_loss[1:])), curve
    # One count of the trainable parameters: the plan (before the model is loaded) and the trainer agree.
    plan = next(e for e in events if e["type"] == "plan")["plan"]
    counted = next(e for e in events if e.get("trainable_parameters"))
    assert (plan["trainable_parameters"], plan["total_parameters"]) == \
        (counted["trainable_parameters"], counted["total_parameters"])


def test_the_first_run_says_it_is_building_the_demo_model(tmp_path, monkeypatch):
    """Building takes half a minute on the first run: the run says so before, for the page to show."""
    from trainer.config import TrainConfig
    from trainer.engine.train import run_training
    from trainer.run.events import read_events

    monkeypatch.setenv("TUNEDECK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "PRETRAIN_STEPS", 3)  # the message is under test, not the model's quality
    assert demo.needs_build("demo") and not demo.needs_build("Qwen/Qwen2.5-0.5B")
    cfg = TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo", "max_samples": 16, "val_size": 0,
                                 "cutoff_len": 256, "per_device_train_batch_size": 4, "max_steps": 1,
                                 "save_strategy": "no", "gradient_checkpointing": False})
    assert run_training(cfg, tmp_path / "first") == 0
    said = [e for e in read_events(tmp_path / "first") if e.get("phase") == "building_demo_model"]
    assert len(said) == 1 and "first run only" in said[0]["text"]
    assert not demo.needs_build("demo")
    assert run_training(cfg, tmp_path / "second") == 0  # built now: nothing to say
    assert not [e for e in read_events(tmp_path / "second") if e.get("phase") == "building_demo_model"]
