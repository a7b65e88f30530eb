"""Token lengths from a bounded sample: `check`, the Data tab's report and the plan count every row by
loading and tokenize only a sample, and say so with its size. Real parts: the demo tokenizer, real files,
the real `check` code path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from trainer.cli.check import check_config, format_report
from trainer.config import TrainConfig
from trainer.datasets import inspect_dataset, load_examples, tokenize_examples, tokenize_sample
from trainer.datasets import sample as sample_module


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from trainer.engine.demo import ensure_demo_model

    return AutoTokenizer.from_pretrained(ensure_demo_model())


def alpaca_file(path: Path, rows: int, long_every: int = 0) -> Path:
    lines = []
    for i in range(rows):
        words = " ".join(["word"] * (3 + i % 17))
        answer = " ".join(["word"] * (3 + i % 17 + (80 if long_every and i % long_every == 0 else 0)))
        lines.append(json.dumps({"instruction": f"Repeat ({i})", "input": words, "output": answer}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_sample_is_bounded_seeded_in_file_order_and_tokenized_exactly(tmp_path, demo_tokenizer):
    cfg = TrainConfig(dataset=str(alpaca_file(tmp_path / "a.jsonl", 300)), val_size=0, cutoff_len=64)
    loaded = load_examples(cfg)
    sample = tokenize_sample(loaded.train, demo_tokenizer, cfg, limit=40)
    picked = sample_module.sample_rows(loaded.train, 40, cfg.seed)
    assert [ex.row for ex in picked] == sorted(ex.row for ex in picked) and len({ex.row for ex in picked}) == 40
    assert [ex.row for ex in sample_module.sample_rows(loaded.train, 40, cfg.seed)] == [ex.row for ex in picked]
    assert [ex.row for ex in sample_module.sample_rows(loaded.train, 40, cfg.seed + 1)] != [ex.row for ex in picked]
    fresh = tokenize_examples(picked, demo_tokenizer, cfg)
    assert sample.tokenized == list(fresh) and sample.tokenized.full_lengths == fresh.full_lengths
    assert (sample.total, sample.sampled, sample.train_rows, sample.estimated) == (300, 40, 300, False)
    assert sample.is_sample and sample.note == "In a sample of 40 of 300 rows: "
    # A split no bigger than the limit is tokenized whole: exact figures.
    whole = tokenize_sample(loaded.train[:30], demo_tokenizer, cfg, limit=40)
    assert not whole.is_sample and whole.note == "" and whole.sampled == 30


def test_text_rows_split_in_the_sample_estimate_the_training_rows(tmp_path, demo_tokenizer):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": "one two three four " * (2 + i % 5 * 10)}) + "\n" for i in range(200)),
                    encoding="utf-8")
    cfg = TrainConfig(dataset=str(path), val_size=0, cutoff_len=32)
    loaded = load_examples(cfg)
    exact = len(tokenize_examples(loaded.train, demo_tokenizer, cfg))
    sample = tokenize_sample(loaded.train, demo_tokenizer, cfg, limit=50)
    assert sample.estimated and sample.train_rows == round(200 * len(sample.tokenized) / 50)
    assert abs(sample.train_rows - exact) <= 0.25 * exact  # an estimate, close to the real count


def test_check_counts_every_row_and_measures_a_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_module, "SAMPLE_ROWS", 60)
    path = alpaca_file(tmp_path / "big.jsonl", 500, long_every=10)
    cfg = TrainConfig(model_name_or_path="demo", dataset=str(path), val_size=0, cutoff_len=64,
                      per_device_train_batch_size=4, gradient_accumulation_steps=2, packing=False)
    report = check_config(cfg)
    stats = report["length_stats"]
    assert (stats["sampled_rows"], stats["rows_in_split"], stats["count"]) == (60, 500, 60)
    # Steps come from the exact row count, not from the sample.
    assert report["dataset"]["train_rows"] == 500 and report["dataset"]["sampled_rows"] == 60
    assert report["steps_per_epoch"] == math.ceil(math.ceil(500 / 4) / 2)
    truncation = [w for w in report["warnings"] if "longer than cutoff_len" in w]
    assert truncation and all(w.startswith("In a sample of 60 of 500 rows: ") for w in truncation)
    assert "row length in tokens (a sample of 60 of 500 rows)" in format_report(report, cfg)

    # Packing: the packed sequences of the sample are scaled to the whole split.
    packed = check_config(cfg.replace(packing=True))
    sequences = packed["num_train_samples"]
    per_sequence = packed["rows_per_packed_sequence"]
    assert sequences == pytest.approx(500 / per_sequence, rel=0.05) and sequences > 60 / per_sequence


def test_a_row_without_loss_in_the_sample_is_named_with_its_line(tmp_path, monkeypatch):
    from trainer.cli.check import _Invalid

    monkeypatch.setattr(sample_module, "SAMPLE_ROWS", 50)
    path = tmp_path / "bad.jsonl"
    rows = [{"instruction": f"q{i}", "output": "a"} for i in range(100)]
    rows = [{"instruction": " ".join(["apple"] * 80), "output": "ok"} if i % 2 else r for i, r in enumerate(rows)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = TrainConfig(model_name_or_path="demo", dataset=str(path), val_size=0, cutoff_len=32)
    with pytest.raises(_Invalid) as info:
        check_config(cfg)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "rows sampled (of 100) have no token that carries loss" in message
    assert "\n  line 2: no token carries loss" in message or "\n  line 4: no token carries loss" in message
    # The Data tab's report: the same rows, never raising, the whole split counted.
    report = inspect_dataset(cfg, None)
    assert report.error is None and report.train_rows == 100
    from trainer.engine.model import load_tokenizer

    report = inspect_dataset(cfg, load_tokenizer(cfg))
    assert "rows sampled (of 100)" in report.error and report.sample.sampled == 50
    assert report.to_dict()["sampled_rows"] == 50 and report.stats["rows_in_split"] == 100
