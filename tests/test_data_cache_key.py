"""The tokenized-data cache's key, field by field: every field of the schema is classified, a change of a field
that changes the tokenized rows changes the key and a change of any other field does not; the dataset file's
content, size and mtime count; an entry cut short on disk is tokenized again instead of crashing the run."""

from __future__ import annotations

import json
import os
import shutil
import typing
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.datasets import load_examples, tokenize_cached, tokenize_examples
from trainer.datasets import cache as cache_module
from trainer.datasets.cache import KEY_FIELDS, fingerprint

# Fields that reach the key another way: the dataset file (or a Hub dataset's rows) through the source stamp,
# the model and how it is loaded through the tokenizer stamp.
VIA_STAMPS = {"dataset", "model_hub", "model_name_or_path", "trust_remote_code"}
SEED_WITH_VAL = {"seed"}  # in the key only while val_size holds rows out
ROWS = [{"instruction": "Say hi", "output": "hi"}, {"instruction": "Count", "output": "one two three"},
        {"instruction": "Name a colour", "output": "blue"}, {"instruction": "Add", "input": "1+1", "output": "2"}]


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from trainer.engine.demo import ensure_demo_model

    return AutoTokenizer.from_pretrained(ensure_demo_model())


def other_value(name: str, default):
    """A value of the field's type that differs from the default (validation is skipped: the key only reads it)."""
    annotation = TrainConfig.model_fields[name].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    literal = next((a for a in [annotation, *args] if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        return next(v for v in typing.get_args(literal) if v != default) if len(typing.get_args(literal)) > 1 \
            else f"{default}-other"
    if isinstance(default, bool) or bool in args or annotation is bool:
        return not default
    if isinstance(default, dict):
        return {"question": "instruction"}
    if isinstance(default, list):
        inner = typing.get_args(annotation)[0] if typing.get_args(annotation) else str
        choices = typing.get_args(inner) if typing.get_origin(inner) is typing.Literal else ()
        return [c for c in choices if c not in default][:1] or ["other"]
    if isinstance(default, float) or float in args or annotation is float:
        return (default or 0.0) + 0.25
    if isinstance(default, int) or int in args or annotation is int:
        return (default or 0) + 3
    return f"{default}-other" if default is not None else "other"


def key(cfg, examples, tokenizer, loaded):
    return fingerprint(examples, tokenizer, cfg, loaded, "train")


def test_every_schema_field_changes_the_key_exactly_when_it_changes_the_tokenized_rows(tmp_path, demo_tokenizer):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    base = TrainConfig(dataset=str(path), cutoff_len=64, val_size=0)
    loaded = load_examples(base)
    fields = set(TrainConfig.model_fields)
    unclassified = fields - set(KEY_FIELDS) - VIA_STAMPS - SEED_WITH_VAL - NOT_IN_KEY
    assert not unclassified, f"classify these new fields for the tokenized-data cache key: {sorted(unclassified)}"
    assert not (set(KEY_FIELDS) & NOT_IN_KEY) and set(KEY_FIELDS) <= fields
    reference = key(base, loaded.train, demo_tokenizer, loaded)
    changed, unchanged = [], []
    for name in sorted(set(KEY_FIELDS) | NOT_IN_KEY):
        value = other_value(name, getattr(base, name))
        assert value != getattr(base, name), name
        other = key(base.model_copy(update={name: value}), loaded.train, demo_tokenizer, loaded)
        (changed if other != reference else unchanged).append(name)
    assert sorted(changed) == sorted(KEY_FIELDS)
    assert sorted(unchanged) == sorted(NOT_IN_KEY)
    # The seed draws the validation rows: it counts only while val_size holds some out.
    assert key(base.model_copy(update={"seed": 7}), loaded.train, demo_tokenizer, loaded) == reference
    held_out = base.model_copy(update={"val_size": 0.25})
    assert key(held_out, loaded.train, demo_tokenizer, loaded) != key(
        held_out.model_copy(update={"seed": 7}), loaded.train, demo_tokenizer, loaded)


def test_the_dataset_file_content_size_and_mtime_each_change_the_key(tmp_path, demo_tokenizer):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    cfg = TrainConfig(dataset=str(path), cutoff_len=64, val_size=0)
    loaded = load_examples(cfg)
    seen = {key(cfg, loaded.train, demo_tokenizer, loaded)}
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: the same bytes, a new mtime
    seen.add(key(cfg, loaded.train, demo_tokenizer, loaded))
    # Same size, one letter changed, the old mtime set back: only the content (ctime, inode) differs.
    text = path.read_text(encoding="utf-8").replace("blue", "bleu")
    before = path.stat()
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    seen.add(key(cfg, loaded.train, demo_tokenizer, loaded))
    with path.open("a", encoding="utf-8") as handle:  # a row appended: a new size
        handle.write(json.dumps(ROWS[0]) + "\n")
    seen.add(key(cfg, loaded.train, demo_tokenizer, loaded))
    assert len(seen) == 4
    # A run name, a learning rate and the output place are not the data.
    same = cfg.model_copy(update={"run_name": "other", "learning_rate": 0.1, "resume_from_checkpoint": "x"})
    assert key(same, loaded.train, demo_tokenizer, loaded) in seen


@pytest.mark.parametrize("damage", ["meta_missing", "meta_garbage", "meta_wrong_rows", "arrow_truncated",
                                    "arrow_deleted", "data_dir_missing", "entry_is_a_file", "staging_left"])
def test_a_damaged_cache_entry_is_tokenized_again(tmp_path, demo_tokenizer, damage):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 20), encoding="utf-8")
    cfg = TrainConfig(dataset=str(path), cutoff_len=64, val_size=0)
    loaded = load_examples(cfg)
    fresh = tokenize_examples(loaded.train, demo_tokenizer, cfg)
    first = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)
    entry = Path(first.path)
    del first
    meta = entry / cache_module.META_FILE
    arrows = sorted((entry / "data").glob("*.arrow"))
    assert arrows
    if damage == "meta_missing":
        meta.unlink()
    elif damage == "meta_garbage":
        meta.write_text('{"rows": ', encoding="utf-8")
    elif damage == "meta_wrong_rows":
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "rows": 5}), encoding="utf-8")
    elif damage == "arrow_truncated":
        with arrows[-1].open("r+b") as handle:
            handle.truncate(arrows[-1].stat().st_size // 2)
    elif damage == "arrow_deleted":
        arrows[-1].unlink()
    elif damage == "data_dir_missing":
        shutil.rmtree(entry / "data")
    elif damage == "entry_is_a_file":
        shutil.rmtree(entry)
        entry.write_text("not a cache entry")
    else:  # a run killed while writing: its staging folder stays beside a missing entry
        shutil.rmtree(entry)
        (entry.parent / f".{entry.name}.999.1" / "work").mkdir(parents=True)
        (entry.parent / f".{entry.name}.999.1" / "work" / "chunk-00000.arrow").write_bytes(b"\x00" * 10)
    again = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)
    assert not again.cache_hit and Path(again.path) == entry
    assert again.dataset["input_ids"] == [r["input_ids"] for r in fresh]
    third = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)
    assert third.cache_hit and len(third) == len(fresh)


NOT_IN_KEY = {
    # how the model is built and trained: the same tokenized rows feed every one of these
    "attn_implementation", "finetuning_type", "quantization_bit", "packing", "group_by_length",
    "per_device_train_batch_size", "gradient_accumulation_steps", "per_device_eval_batch_size", "num_train_epochs",
    "max_steps", "learning_rate", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "weight_decay",
    "max_grad_norm", "optim", "neftune_noise_alpha", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
    "lora_bias", "use_rslora", "use_dora", "quantization_type", "double_quantization", "gradient_checkpointing",
    "offload_activations", "precision", "use_liger_kernel", "oom_recovery",
    # evaluation, saving, logging, names and places
    "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit", "load_best_model_at_end",
    "early_stopping_patience", "early_stopping_threshold", "resume_from_checkpoint", "run_name", "logging_steps",
    "report_to", "tracker_project", "tracker_tags", "trackio_space_id",
    # devices and machines
    "num_processes", "gpu_ids", "distributed_type", "offload_optimizer", "offload_params", "num_machines",
    "machine_rank", "main_process_ip", "main_process_port",
}
