"""The demo model: built offline into the cache, atomically, with a chat-ready tokenizer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from trainer.engine import demo


def test_demo_model_is_a_tiny_llama_with_a_chat_ready_tokenizer():
    from transformers import AutoConfig, AutoTokenizer

    path = demo.ensure_demo_model()
    assert demo.resolve_model_path("demo") == str(path)
    assert demo.resolve_model_path("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.num_hidden_layers == demo.NUM_LAYERS
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert config.vocab_size == len(tokenizer) <= demo.VOCAB_SIZE
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
