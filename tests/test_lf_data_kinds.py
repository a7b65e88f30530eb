"""Data that is not SFT data is named (KTO, preference, multimodal) by loading and by `check`; KTO trains on
its desirable rows only when asked; LLaMA-Factory v1 text parts are read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.datasets import DataError, load_examples

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _refused(path: Path, **kw) -> str:
    with pytest.raises(DataError) as info:
        load_examples(TrainConfig(dataset=str(path), **kw))
    return str(info.value)


def _kto_rows() -> list[dict]:
    """LLaMA-Factory's kto_en_demo shape: sharegpt messages and a boolean label, half undesirable."""
    return [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"{'Good' if i % 2 == 0 else 'Rude'} answer {i}."}],
             "label": i % 2 == 0} for i in range(6)]


def test_kto_data_is_refused_or_trained_on_its_desirable_rows(tmp_path):
    path = _write(tmp_path / "kto.jsonl", _kto_rows())
    message = _refused(path)
    assert "this is KTO data" in message and "'label'" in message and "3 desirable, 3 undesirable" in message
    assert "kto_desirable_only" in message and str(path) in message
    data = load_examples(TrainConfig(dataset=str(path), kto_desirable_only=True))
    answers = [ex["messages"][-1]["content"] for ex in data.train]
    assert answers == ["Good answer 0.", "Good answer 2.", "Good answer 4."]
    assert [ex.row for ex in data.train] == [1, 3, 5]  # line numbers stay the file's
    # kto_tag (LLaMA-Factory's column name) in alpaca rows; a label column of words is not KTO.
    tagged = _write(tmp_path / "tag.jsonl", [{"instruction": "q", "output": "a", "kto_tag": False}])
    assert "'kto_tag'" in _refused(tagged)
    assert "no row has kto_tag: true" in _refused(tagged, kto_desirable_only=True)
    words = _write(tmp_path / "words.jsonl", [{"instruction": "q", "output": "a", "label": "sports"}])
    assert len(load_examples(TrainConfig(dataset=str(words))).train) == 1
    classes = _write(tmp_path / "classes.jsonl", [{"instruction": "q", "output": "a", "label": i} for i in (0, 1)])
    assert len(load_examples(TrainConfig(dataset=str(classes))).train) == 2


def test_kto_data_in_csv_spells_its_tags_as_words(tmp_path):
    # A CSV cell is text: the KTO mark arrives as 'true'/'FALSE', never as a boolean.
    path = tmp_path / "kto.csv"
    path.write_text("instruction,output,label\nq1,good,true\nq2,rude,FALSE\nq3,fine, True \n", encoding="utf-8")
    message = _refused(path)
    assert "this is KTO data" in message and "2 desirable, 1 undesirable" in message
    data = load_examples(TrainConfig(dataset=str(path), kto_desirable_only=True))
    assert [ex.row for ex in data.train] == [1, 3]
    assert all("label" not in ex for ex in data.train)


@pytest.mark.parametrize("row", [
    {"instruction": "q", "input": "", "chosen": "good", "rejected": "bad"},
    {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "good"},
     "rejected": {"from": "gpt", "value": "bad"}},
    {"prompt": "q", "chosen": "good", "rejected": "bad"},
    {"chosen_messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
     "rejected_messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]},
], ids=["alpaca", "sharegpt", "prompt", "messages"])
def test_preference_data_is_named(row, tmp_path):
    message = _refused(_write(tmp_path / "pref.jsonl", [row]))
    assert "this is preference data" in message and "DPO" in message
    assert "a user turn" not in message and "cannot tell" not in message


def test_preference_data_trains_its_chosen_answers_when_mapped(tmp_path):
    path = _write(tmp_path / "pref.jsonl", [{"instruction": "q", "chosen": "good", "rejected": "bad"}])
    assert "column_mapping {chosen: output}" in _refused(path)
    data = load_examples(TrainConfig(dataset=str(path), column_mapping={"chosen": "output"}))
    assert data.train[0]["messages"][-1]["content"] == "good"


@pytest.mark.parametrize("row, found", [
    ({"messages": [{"role": "user", "content": "<image>What is this?"}, {"role": "assistant", "content": "A cat."}],
      "images": ["cat.jpg"]}, "a 'images' column, <image> placeholders"),
    ({"instruction": "Describe <video>", "output": "A dog runs."}, "<video> placeholders"),
    ({"conversations": [{"from": "human", "value": "Transcribe."}, {"from": "gpt", "value": "Hello."}],
      "audios": ["a.wav"]}, "a 'audios' column"),
], ids=["images", "video-placeholder", "audios"])
def test_multimodal_data_is_named(row, found, tmp_path):
    message = _refused(_write(tmp_path / "mm.jsonl", [row]))
    assert "this is multimodal data" in message and found in message and "literal text" in message


def test_an_empty_images_column_is_text_data(tmp_path):
    path = _write(tmp_path / "t.jsonl", [{"instruction": "q", "output": "a", "images": []}])
    assert len(load_examples(TrainConfig(dataset=str(path))).train) == 1


def test_llamafactory_v1_text_parts_are_read_and_media_parts_named(tmp_path):
    v1 = {"messages": [{"role": "user", "content": [{"type": "text", "value": "What is "},
                                                    {"type": "text", "value": "2+2?"}]},
                       {"role": "assistant", "content": [{"type": "text", "value": "4"}]}]}
    data = load_examples(TrainConfig(dataset=str(_write(tmp_path / "v1.jsonl", [v1]))))
    assert data.train[0]["messages"] == [{"role": "user", "content": "What is 2+2?"},
                                         {"role": "assistant", "content": "4"}]
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}},
                                                       {"type": "text", "text": "What?"}]},
                          {"role": "assistant", "content": "A cat."}]}
    assert "a image_url part: multimodal rows are not supported" in _refused(_write(tmp_path / "i.jsonl", [image]))


def test_check_names_kto_data_with_the_fix(tmp_path):
    path = _write(tmp_path / "kto.jsonl", _kto_rows())
    config = tmp_path / "kto.yaml"
    config.write_text(f"model_name_or_path: demo\ndataset: {path}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 2 and "this is KTO data" in proc.stderr and "Traceback" not in proc.stderr
    config.write_text(f"model_name_or_path: demo\ndataset: {path}\nkto_desirable_only: true\n")
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
