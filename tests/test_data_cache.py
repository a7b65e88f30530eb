"""The tokenized-dataset cache: the rows datasets.map writes equal a fresh tokenize_examples row for row,
a second run of the same data reuses them (and says so in its events), and anything that changes the
result misses. Real parts: the demo model's tokenizer, real files, real worker processes, a real run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.datasets import DataError, load_examples, tokenize_cached, tokenize_examples
from trainer.datasets import cache as cache_module
from trainer.run.events import read_events

ROWS = [
    {"instruction": "Say hi", "output": "hi"},
    {"instruction": "Reverse", "input": "red cat", "output": " ".join(["blue"] * 40)},
    {"instruction": " ".join(["apple"] * 60), "output": "ok"},  # no answer token left at cutoff_len 32
    {"instruction": "Count to three", "output": "one two three", "system": "Be brief."},
]


class Events:
    """Collects what tokenize_cached emits, as the run's EventWriter would write it."""

    def __init__(self):
        self.items = []

    def emit(self, type, **data):
        self.items.append({"type": type, **data})

    @property
    def texts(self):
        return [e["text"] for e in self.items]


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from trainer.engine.demo import ensure_demo_model

    return AutoTokenizer.from_pretrained(ensure_demo_model())


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def assert_same_rows(cached, fresh):
    assert len(cached) == len(fresh)
    assert cached.dataset["input_ids"] == [r["input_ids"] for r in fresh]
    assert cached.dataset["completion_mask"] == [r["completion_mask"] for r in fresh]
    assert cached.lengths == [len(r["input_ids"]) for r in fresh]
    assert cached.warnings == fresh.warnings
    assert cached.dropped == fresh.dropped


@pytest.mark.parametrize("template", ["auto", "chatml"])
def test_cached_rows_equal_a_fresh_tokenization_row_for_row(tmp_path, demo_tokenizer, template):
    rows = ROWS * 30  # several chunks and map batches
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    cfg = TrainConfig(dataset=str(path), cutoff_len=32, template=template, skip_invalid_rows=True, val_size=0)
    fresh_loaded, cached_loaded = load_examples(cfg), load_examples(cfg)
    fresh = tokenize_examples(fresh_loaded.train, demo_tokenizer, cfg, fresh_loaded)
    events = Events()
    cached = tokenize_cached(cached_loaded.train, demo_tokenizer, cfg, cached_loaded, runs_root=tmp_path,
                             events=events, chunk_rows=50)
    assert not cached.cache_hit and Path(cached.path).parent == tmp_path / ".cache" / "tokenized"
    assert_same_rows(cached, fresh)
    assert len(fresh.dropped) == 30 and fresh.warnings  # the case really has dropped and truncated rows
    assert (cached_loaded.skipped, cached_loaded.issues) == (fresh_loaded.skipped, fresh_loaded.issues)
    assert events.texts[0].startswith("tokenized dataset cache: miss (train): tokenizing 120 rows")
    progress = [e["progress"] for e in events.items if "progress" in e]
    assert [(p["done"], p["total"]) for p in progress] == [(50, 120), (100, 120), (120, 120)]
    assert "tokenizing 100 / 120 rows" in events.texts

    again_loaded, again_events = load_examples(cfg), Events()
    again = tokenize_cached(again_loaded.train, demo_tokenizer, cfg, again_loaded, runs_root=tmp_path,
                            events=again_events)
    assert again.cache_hit and again.path == cached.path
    assert_same_rows(again, fresh)
    assert again_loaded.skipped == fresh_loaded.skipped and again_loaded.issues == fresh_loaded.issues
    assert [e.get("cache") for e in again_events.items] == ["hit"]
    assert again_events.texts[0].startswith("tokenized dataset cache: hit (train, 90 rows")


def test_text_rows_split_and_worker_processes_give_the_same_rows(tmp_path, demo_tokenizer, monkeypatch):
    words = "the quick brown fox jumps over the lazy dog and runs far away "
    rows = [{"text": words * (1 + i % 7)} for i in range(80)]
    path = write_jsonl(tmp_path / "text.jsonl", rows)
    cfg = TrainConfig(dataset=str(path), cutoff_len=24, val_size=0)
    loaded = load_examples(cfg)
    fresh = tokenize_examples(loaded.train, demo_tokenizer, cfg)
    # Two worker processes even for a few rows (the real threshold is tens of thousands of rows).
    monkeypatch.setattr(cache_module, "PROCESS_MIN_ROWS", 20)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cache_module.worker_processes(len(loaded.train)) == 2
    cached = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)
    assert_same_rows(cached, fresh)
    assert len(fresh) > len(rows) and "were split into rows" in fresh.warnings[0]


def test_what_changes_the_result_misses_and_the_rest_hits(tmp_path, demo_tokenizer):
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS[:2] + ROWS[3:])
    base = TrainConfig(dataset=str(path), cutoff_len=64, val_size=0)

    def cached(cfg):
        loaded = load_examples(cfg)
        return tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)

    first = cached(base)
    assert not first.cache_hit
    # Packing, batch size and learning rate do not change the tokenized rows.
    assert cached(base.replace(packing=True, per_device_train_batch_size=2, learning_rate=1e-3)).cache_hit
    for changed in (base.replace(cutoff_len=40), base.replace(train_on_prompt=True), base.replace(template="chatml"),
                    base.replace(max_samples=2)):
        assert not cached(changed).cache_hit
    # The file rewritten (new size and mtime) is another dataset.
    write_jsonl(path, ROWS[:2])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    rewritten = cached(base)
    assert not rewritten.cache_hit and len(rewritten) == 2
    # Another tokenizer (a special token added) is another result.
    other = demo_tokenizer.__class__.from_pretrained(demo_tokenizer.name_or_path)
    other.add_special_tokens({"additional_special_tokens": ["<extra>"]})
    loaded = load_examples(base)
    assert not tokenize_cached(loaded.train, other, base, loaded, runs_root=tmp_path).cache_hit


def test_no_loss_rows_stop_the_run_from_the_cache_too_and_nothing_half_written_is_left(tmp_path, demo_tokenizer):
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    cfg = TrainConfig(dataset=str(path), cutoff_len=32, val_size=0)
    loaded = load_examples(cfg)
    with pytest.raises(DataError) as fresh_error:
        tokenize_examples(loaded.train, demo_tokenizer, cfg)
    with pytest.raises(DataError) as cached_error:
        tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)
    assert str(cached_error.value) == str(fresh_error.value) and "line 3: no token carries loss" in str(
        cached_error.value)
    assert list((tmp_path / ".cache" / "tokenized").iterdir()) == []


def test_an_abort_between_chunks_stops_tokenizing_and_caches_nothing(tmp_path, demo_tokenizer):
    from trainer.datasets import TokenizingStopped

    path = write_jsonl(tmp_path / "rows.jsonl", [ROWS[0], ROWS[1], ROWS[3]] * 40)
    cfg = TrainConfig(dataset=str(path), cutoff_len=64, val_size=0)
    loaded = load_examples(cfg)
    asked = []

    def should_stop():  # the abort arrives while the second chunk is tokenized
        asked.append(len(asked))
        return len(asked) >= 2

    events = Events()
    with pytest.raises(TokenizingStopped, match="100 of 120 rows tokenized"):
        tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path, events=events, chunk_rows=50,
                        should_stop=should_stop)
    assert len(asked) == 2 and "tokenizing 100 / 120 rows" in events.texts
    assert list((tmp_path / ".cache" / "tokenized").iterdir()) == []  # nothing half-written is left
    # Not asked to stop: the same rows tokenize whole (and are cached).
    whole = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path, chunk_rows=50,
                            should_stop=lambda: False)
    assert len(whole) == 120 and not whole.cache_hit


def test_old_entries_are_evicted_beyond_the_limit(tmp_path, demo_tokenizer, monkeypatch):
    monkeypatch.setattr(cache_module, "KEEP_ENTRIES", 2)
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS[:2])
    entries = []
    for cutoff in (40, 48, 56):
        cfg = TrainConfig(dataset=str(path), cutoff_len=cutoff, val_size=0)
        loaded = load_examples(cfg)
        entries.append(tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path).path)
        os.utime(entries[-1], (cutoff, cutoff))  # an order the filesystem's clock cannot blur
    assert sorted((tmp_path / ".cache" / "tokenized").iterdir()) == sorted(entries[1:])


def test_cache_root_without_a_runs_root_is_under_tunedeck_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_CACHE", str(tmp_path / "c"))
    assert cache_module.cache_root() == tmp_path / "c" / "tokenized"
    assert cache_module.cache_root(tmp_path / "runs") == tmp_path / "runs" / ".cache" / "tokenized"


@pytest.mark.slow
def test_a_second_run_of_the_same_data_starts_from_the_cache(tmp_path):
    from trainer.engine.train import run_training

    cfg = TrainConfig.from_dict(dict(model_name_or_path="demo", dataset="demo", max_samples=40, val_size=8,
                                     cutoff_len=64, per_device_train_batch_size=4, max_steps=1, eval_strategy="no",
                                     save_strategy="no", logging_steps=1, gradient_checkpointing=False))
    runs = tmp_path / "runs"
    assert run_training(cfg, runs / "first") == 0
    assert run_training(cfg, runs / "second") == 0

    def cache_messages(run):
        return [(e["cache"], e["split"]) for e in read_events(runs / run) if e["type"] == "message" and "cache" in e]

    assert cache_messages("first") == [("miss", "train"), ("miss", "eval")]
    assert cache_messages("second") == [("hit", "train"), ("hit", "eval")]
    plans = [next(e for e in read_events(runs / run) if e["type"] == "plan") for run in ("first", "second")]
    assert plans[0]["plan"] == plans[1]["plan"] and plans[0]["dataset"]["train_rows"] == 32


def test_a_rank_waits_for_the_rows_another_rank_tokenizes(tmp_path, demo_tokenizer):
    import threading

    from trainer.datasets import TokenizingStopped

    path = write_jsonl(tmp_path / "rows.jsonl", [ROWS[0], ROWS[1], ROWS[3]] * 20)
    cfg = TrainConfig(dataset=str(path), cutoff_len=64, val_size=0)
    loaded = load_examples(cfg)
    got = {}

    def follower():
        got["rows"] = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path,
                                      made_by_another=True)

    waiting = threading.Thread(target=follower, daemon=True)  # a failed test must not hang the suite
    waiting.start()
    waiting.join(timeout=2)
    assert waiting.is_alive()  # nothing cached yet: it waits rather than tokenize the rows a second time
    first = tokenize_cached(loaded.train, demo_tokenizer, cfg, loaded, runs_root=tmp_path)
    waiting.join(timeout=30)
    assert not waiting.is_alive() and got["rows"].cache_hit and not first.cache_hit
    assert got["rows"].dataset["input_ids"] == first.dataset["input_ids"]
    # Asked to stop while waiting (the first rank failed, and the launcher stops the others): it stops.
    other = TrainConfig(dataset=str(path), cutoff_len=48, val_size=0)
    with pytest.raises(TokenizingStopped, match="waiting for the first rank's rows"):
        tokenize_cached(loaded.train, demo_tokenizer, other, loaded, runs_root=tmp_path, made_by_another=True,
                        should_stop=lambda: True)
