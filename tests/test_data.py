"""Datasets end to end on real files: every format, every broken kind with its exact message and line,
skip_invalid_rows, loss masks (answers only, train_on_prompt, multi-turn), templates, preview."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.datasets import (
    DataError,
    load_examples,
    preview_rows,
    render_segments,
    resolve_source,
    split_examples,
    tokenize_example,
    tokenize_examples,
)
from trainer.templates import NAMED_TEMPLATES, chat_template_jinja, template_names

ROOT = Path(__file__).resolve().parents[1]

# A ChatML template with an answer span marked, like the demo model's.
CHATML_JINJA = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
    "{{ m['content'] + '<|im_end|>' }}{{ '\\n' }}{% else %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [line for line in (ROOT / "data" / "demo.jsonl").read_text(encoding="utf-8").splitlines()]
    texts += ["User: Assistant: system user assistant"] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer with no chat template (named templates apply), built offline."""
    return _build_tokenizer()


@pytest.fixture(scope="module")
def chat_tokenizer(tokenizer):
    """The same tokenizer with its own (jinja) chat template."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHATML_JINJA
    return tok


def cfg(path, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(path), **kw)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def refused(config: TrainConfig, base_dir=None) -> str:
    with pytest.raises(DataError) as info:
        load_examples(config, base_dir)
    return str(info.value)


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 plus 2?"},
    {"role": "assistant", "content": "2 plus 2 is 4."},
    {"role": "user", "content": "And 3 plus 3?"},
    {"role": "assistant", "content": "3 plus 3 is 6."},
]


# --- the demo dataset ---------------------------------------------------------------------------

def test_demo_dataset_is_generated_deterministically_and_loads_clean():
    out = subprocess.run([sys.executable, str(ROOT / "data" / "make_demo.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    data = load_examples(TrainConfig(dataset="demo", val_size=0.1))
    assert data.format == "alpaca"
    assert data.source == str(ROOT / "data" / "demo.jsonl")
    assert (len(data.train), len(data.eval)) == (324, 36)
    assert data.issues == [] and data.skipped == 0
    first = data.train[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert first[0]["content"].startswith("Reverse the order of these words.\n\n")
    # The same seed draws the same validation rows; another seed other rows.
    again = load_examples(TrainConfig(dataset="demo", val_size=0.1))
    other = load_examples(TrainConfig(dataset="demo", val_size=0.1, seed=7))
    assert [e.row for e in again.eval] == [e.row for e in data.eval]
    assert [e.row for e in other.eval] != [e.row for e in data.eval]


def test_demo_dataset_fits_the_demo_preset_with_the_demo_tokenizer():
    demo = pytest.importorskip("trainer.engine.demo")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo.ensure_demo_model())
    config = TrainConfig.from_yaml(ROOT / "presets" / "demo.yaml")
    data = load_examples(config)
    rows = tokenize_examples(data.train, tok, config, data)
    assert len(rows) == len(data.train) and rows.warnings == [] and data.skipped == 0
    lengths = rows.full_lengths
    assert min(lengths) >= 10 and max(lengths) <= config.cutoff_len and max(lengths) > 4 * min(lengths)
    # Answers only: the loss tokens decode to the answer and the end-of-turn marker.
    answer = data.train[0]["messages"][-1]["content"]
    loss_ids = [t for t, m in zip(rows[0]["input_ids"], rows[0]["completion_mask"]) if m]
    assert tok.decode(loss_ids).strip() == answer + "<|im_end|>"


# --- every format, from files -------------------------------------------------------------------

def test_alpaca_jsonl_with_system_and_history(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Add.", "input": "1 2", "output": "3", "system": "You add.",
         "history": [["Add 0 0", "0"]]},
        {"instruction": "Say hi", "output": "hi"},
    ])
    data = load_examples(cfg(path))
    assert data.format == "alpaca"
    assert data.train[0]["messages"] == [
        {"role": "system", "content": "You add."},
        {"role": "user", "content": "Add 0 0"}, {"role": "assistant", "content": "0"},
        {"role": "user", "content": "Add.\n\n1 2"}, {"role": "assistant", "content": "3"}]
    assert data.train[1]["messages"] == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]
    assert [e.where for e in data.train] == ["line 1", "line 2"]


def test_sharegpt_multi_turn_json_array(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "What is 2 plus 2?"},
                           {"from": "gpt", "value": "2 plus 2 is 4."}, {"from": "human", "value": "And 3 plus 3?"},
                           {"from": "gpt", "value": "3 plus 3 is 6."}]},
    ], indent=2), encoding="utf-8")
    data = load_examples(cfg(path))
    assert data.format == "sharegpt"
    assert data.train[0]["messages"] == CONVERSATION
    assert data.train[0].where == "row 1"


def test_messages_jsonl_and_csv_and_parquet(tmp_path):
    jsonl = write_jsonl(tmp_path / "m.jsonl", [{"messages": CONVERSATION}])
    assert load_examples(cfg(jsonl)).train[0]["messages"] == CONVERSATION

    import csv

    csv_path = tmp_path / "m.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["messages", "note"])
        writer.writerow([json.dumps(CONVERSATION), "x"])
    data = load_examples(cfg(csv_path))
    assert data.format == "messages" and data.train[0]["messages"] == CONVERSATION

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}]), parquet)
    data = load_examples(cfg(parquet))
    assert data.format == "messages"
    assert [len(e["messages"]) for e in data.train] == [5, 2]
    assert data.train[1].where == "row 2"


def test_prompt_completion_csv_text_parquet_and_wrapped_json(tmp_path):
    csv_path = tmp_path / "pc.csv"
    csv_path.write_text('prompt,completion\n"Capital of Peru?","Lima"\n"Two, three?","five"\n', encoding="utf-8")
    data = load_examples(cfg(csv_path))
    assert data.format == "prompt_completion"
    assert data.train[1]["messages"] == [{"role": "user", "content": "Two, three?"},
                                         {"role": "assistant", "content": "five"}]

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "one document"}, {"text": "another"}]), parquet)
    data = load_examples(cfg(parquet))
    assert data.format == "text" and data.train == [{"text": "one document"}, {"text": "another"}]

    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"data": [{"text": "a"}, {"text": "b"}]}), encoding="utf-8")
    assert len(load_examples(cfg(wrapped)).train) == 2


def test_relative_path_resolves_against_base_dir_and_column_mapping(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", [{"question": "Capital of Peru?", "answer": "Lima"}])
    config = cfg("qa.jsonl", column_mapping={"question": "prompt", "answer": "completion"})
    data = load_examples(config, base_dir=tmp_path)
    assert data.source == str(tmp_path / "qa.jsonl") and data.format == "prompt_completion"
    assert data.train[0]["messages"][1] == {"role": "assistant", "content": "Lima"}
    message = refused(cfg("qa.jsonl", column_mapping={"q": "prompt"}), tmp_path)
    assert message == (f"{tmp_path / 'qa.jsonl'}: column_mapping names column 'q', which is not in the dataset "
                       "(its columns: answer, question)")
    # Without a mapping the format cannot be told, and the message says what would be understood.
    message = refused(cfg("qa.jsonl"), tmp_path)
    assert message.startswith(f"{tmp_path / 'qa.jsonl'}: cannot tell the dataset format from its columns "
                              "(answer, question): expected instruction/output (alpaca)")


def test_format_override(tmp_path):
    # Both text and prompt/completion columns: auto picks prompt_completion, the setting forces text.
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p", "completion": "c", "text": "whole"}])
    assert load_examples(cfg(path)).format == "prompt_completion"
    forced = load_examples(cfg(path, dataset_format="text"))
    assert forced.format == "text" and forced.train == [{"text": "whole"}]
    message = refused(cfg(path, dataset_format="alpaca"))
    assert message.splitlines()[1:] == [
        "  line 1: missing field 'instruction'",
        "The rows have the columns completion, prompt, text, but the alpaca format needs 'instruction': rename one "
        "with column_mapping, e.g. {prompt: instruction}, or set dataset_format"]


# --- broken files: exact messages and line numbers ----------------------------------------------

def test_missing_file_directory_and_unsupported_type(tmp_path):
    assert refused(cfg(tmp_path / "nope.jsonl")) == f"dataset file not found: {tmp_path / 'nope.jsonl'}"
    assert refused(cfg("data/nope.csv"), tmp_path) == f"dataset file not found: {tmp_path / 'data' / 'nope.csv'}"
    # LLaMA-Factory's `dataset: a,b` is no Hub id; a file whose name holds a comma is still that file.
    assert "names several datasets" in refused(cfg("demo,demo-chat"))
    write_jsonl(tmp_path / "a,b.jsonl", [{"text": "t"}])
    assert load_examples(cfg(tmp_path / "a,b.jsonl")).train == [{"text": "t"}]
    folder = tmp_path / "repo"
    folder.mkdir()
    assert refused(cfg(folder)) == f"{folder}: is a directory with no .jsonl, .json, .csv or .parquet file in it"
    # A downloaded dataset repository: its one data file, or the one named after the split.
    (folder / "data").mkdir()
    write_jsonl(folder / "data" / "train.jsonl", [{"text": "t"}])
    assert load_examples(cfg(folder)).source == str(folder / "data" / "train.jsonl")
    write_jsonl(folder / "data" / "test.jsonl", [{"text": "e"}])
    assert load_examples(cfg(folder)).source == str(folder / "data" / "train.jsonl")
    assert load_examples(cfg(folder, dataset_split="test")).train == [{"text": "e"}]
    write_jsonl(folder / "train2.jsonl", [{"text": "t"}])
    assert refused(cfg(folder)) == (f"{folder}: is a directory with several data files (data/train.jsonl, "
                                    "train2.jsonl): name one of them")
    odd = tmp_path / "rows.txt"
    odd.write_text("hello\n", encoding="utf-8")
    assert refused(cfg(odd)) == f"{odd}: unsupported file type '.txt': use .jsonl, .json, .csv or .parquet"


def test_hub_dataset_offline_is_a_clear_message():
    assert resolve_source("someone/some-dataset") == ("hub", "someone/some-dataset")
    message = refused(TrainConfig(dataset="someone/some-dataset"))
    assert message.startswith("dataset 'someone/some-dataset' cannot be loaded from the Hugging Face Hub: offline "
                              "mode is on (HF_HUB_OFFLINE")
    assert "not in the local cache. Download it on a connected machine and give the local path" in message


def test_non_utf8_and_empty_files(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert refused(cfg(path)) == (f"{path}: not UTF-8 text (line 2, column 14: byte 0xe9): save the file "
                                 "as UTF-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert refused(cfg(empty)) == f"{empty}: the dataset is empty: no rows"
    empty_array = tmp_path / "empty.json"
    empty_array.write_text("[]", encoding="utf-8")
    assert refused(cfg(empty_array)) == f"{empty_array}: the dataset is empty: no rows"


def test_a_compressed_file_is_named_as_one(tmp_path):
    import gzip
    import zipfile

    packed = tmp_path / "train.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.write('{"text": "a"}\n')
    assert refused(cfg(packed)) == (f"{packed}: is a gzip-compressed file: decompress it first and give the .jsonl, "
                                    ".json, .csv or .parquet file inside")
    zipped = tmp_path / "train.jsonl"  # the name says JSONL; the bytes say zip
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("train.jsonl", '{"text": "a"}\n')
    assert refused(cfg(zipped)).startswith(f"{zipped}: is a zip file: decompress it first")


def test_sharegpt_roles_in_a_messages_list_get_a_hint(tmp_path):
    path = tmp_path / "mixed.jsonl"
    row = {"messages": [{"role": "human", "content": "hi"}, {"role": "gpt", "content": "hello"}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert "unknown role 'human' (expected one of: system, user, assistant, tool; ShareGPT's 'human' is 'user' " \
           "here)" in refused(cfg(path))


def test_broken_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": "b"\n]\n', encoding="utf-8")
    assert refused(cfg(path)) == f"{path}: invalid JSON at line 4, column 1: Expecting ',' delimiter"


def test_each_broken_row_kind_with_its_line(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [
        good,                                                                          # 1
        '{"messages": [{"role": "user", "content": "hi"}',                             # 2 broken JSON
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "c"}]},                          # 3 two user turns
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}]},                               # 4 ends with user
        {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},  # 5 unknown role
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]},  # 6 empty
        {"conversation": []},                                                          # 7 missing field
        [1, 2],                                                                        # 8 not an object
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]},  # 9 starts wrong
        {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                      {"role": "assistant", "content": "b"}]},                          # 10 system not first
        {"messages": []},                                                              # 11 empty list
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    message = refused(cfg(path, dataset_format="messages"))
    assert message == "\n".join([
        f"{path}: 10 of 11 rows are invalid (fix them, or set skip_invalid_rows to train without them):",
        "  line 2: invalid JSON: Expecting ',' delimiter (column 48)",
        "  line 3: turn 2: two user turns in a row",
        "  line 4: turn 3: the conversation ends with a user turn; it must end with an assistant answer",
        "  line 5: turn 2: unknown role 'bot' (expected one of: system, user, assistant, tool)",
        "  line 6: turn 2: empty content",
        "  line 7: missing field 'messages'",
        "  line 8: expected a JSON object, got a list",
        "  line 9: turn 1: the conversation must start with a user turn, not assistant",
        "  line 10: turn 2: a system turn must be the first turn",
        "  line 11: field 'messages' is empty",
    ])
    # With the setting on, the one good row trains and the ten are counted and listed.
    data = load_examples(cfg(path, dataset_format="messages", skip_invalid_rows=True))
    assert len(data.train) == 1 and data.skipped == 10
    assert [(i.row, i.kind) for i in data.errors] == [(n, "line") for n in range(2, 12)]


def test_sharegpt_and_alpaca_field_problems(tmp_path):
    path = write_jsonl(tmp_path / "sg.jsonl", [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt"}]},
    ])
    assert refused(cfg(path)).splitlines()[1:] == [
        "  line 2: turn 2: unknown role 'robot' (expected one of: human, user, gpt, assistant, model, system, function_call, observation, tool)",
        "  line 3: turn 2: missing 'value'",
    ]
    path = write_jsonl(tmp_path / "al.jsonl", [
        {"instruction": "a", "output": "b"},
        {"instruction": "a", "output": ""},
        {"instruction": "", "input": "", "output": "b"},
        {"instruction": "a"},
        {"instruction": "a", "output": ["b"]},
        {"instruction": "a", "output": "b", "history": [["only one"]]},
        {"instruction": "a", "output": None},
    ])
    assert refused(cfg(path)).splitlines()[1:] == [
        "  line 2: field 'output' is empty",
        "  line 3: field 'instruction' is empty",
        "  line 4: missing field 'output'",
        "  line 5: field 'output' must be text, got a list",
        "  line 6: history pair 1 must be [instruction, answer], both non-empty text",
        "  line 7: field 'output' is empty",
    ]


def test_csv_rows_are_numbered_without_the_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("instruction,output\nq1,a1\nq2,\nq3,a3,extra\n", encoding="utf-8")
    assert refused(cfg(path)).splitlines() == [
        f"{path}: 2 of 3 rows are invalid (fix them, or set skip_invalid_rows to train without them):",
        "  row 2: field 'output' is empty",
        "  row 3: 1 more cell than the header has columns",
    ]


def test_csv_with_a_column_named_twice_is_refused(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("instruction,output,output\nq1,a1,b1\n", encoding="utf-8")
    assert refused(cfg(path)) == f"{path}: line 1: the header names column 'output' twice: rename one of them"


def test_all_invalid_is_refused_even_with_skip(tmp_path):
    path = write_jsonl(tmp_path / "all.jsonl", [{"text": ""}, "not json"])
    message = refused(cfg(path, skip_invalid_rows=True, dataset_format="text"))
    assert message.splitlines() == [
        f"{path}: no usable rows: all 2 rows are invalid:",
        "  line 1: field 'text' is empty",
        "  line 2: invalid JSON: Expecting value (column 1)",
    ]


def test_duplicates_are_warnings_with_row_numbers(tmp_path):
    row = {"instruction": "a", "output": "b"}
    path = write_jsonl(tmp_path / "dup.jsonl", [row, {"instruction": "c", "output": "d"}, row, row])
    data = load_examples(cfg(path))
    assert len(data.train) == 4 and data.skipped == 0
    assert data.warnings == ["line 3: duplicate of line 1", "line 4: duplicate of line 1"]


def test_duplicates_compare_whole_conversations_and_texts(tmp_path):
    same_prompt = [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "c"},
                   {"instruction": "a", "output": "b", "system": "s"}, {"instruction": "a", "output": "b"}]
    data = load_examples(cfg(write_jsonl(tmp_path / "chat.jsonl", same_prompt)))
    assert data.warnings == ["line 4: duplicate of line 1"]
    texts = write_jsonl(tmp_path / "text.jsonl", [{"text": "x"}, {"text": "y"}, {"text": "x"}])
    assert load_examples(cfg(texts)).warnings == ["line 3: duplicate of line 1"]


def test_json_lines_end_at_newlines_only(tmp_path):
    # JSON allows U+2028, U+2029 and U+0085 unescaped inside a string: they do not end a line.
    path = tmp_path / "separators.jsonl"
    path.write_text('{"instruction": "a\u2028b", "output": "c\u2029d\x85e"}\r\n{"instruction": "x", "output": "y"}\n',
                    encoding="utf-8")
    data = load_examples(cfg(path))
    assert data.issues == [] and [ex.row for ex in data.train] == [1, 2]
    assert data.train[0]["messages"][1]["content"] == "c\u2029d\x85e"


def test_a_few_bad_rows_refused_then_skipped_and_counted(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    rows[4] = {"instruction": "q4"}
    rows[11] = "{oops"
    path = write_jsonl(tmp_path / "few.jsonl", rows)
    message = refused(cfg(path))
    assert message.splitlines()[0] == (f"{path}: 2 of 20 rows are invalid (fix them, or set skip_invalid_rows to "
                                       "train without them):")
    data = load_examples(cfg(path, skip_invalid_rows=True, val_size=3))
    assert data.skipped == 2 and (len(data.train), len(data.eval)) == (15, 3)
    assert [str(i) for i in data.errors] == ["line 5: missing field 'output'",
                                             "line 12: invalid JSON: Expecting property name enclosed in double "
                                             "quotes (column 2)"]


def test_limits_max_samples_and_validation_split(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"text": f"row {i}"} for i in range(10)])
    assert len(load_examples(cfg(path, max_samples=4)).train) == 4
    data = load_examples(cfg(path, val_size=0.25))
    data = load_examples(cfg(path, val_size=0.25))
    assert (len(data.train), len(data.eval)) == (7, 3)  # ceil(10 * 0.25), as datasets' train_test_split
    data = load_examples(cfg(path, val_size=4, max_samples=6))
    assert (len(data.train), len(data.eval)) == (2, 4)
    assert sorted(e.row for e in data.train + data.eval) == [1, 2, 3, 4, 5, 6]
    assert refused(cfg(path, val_size=10)) == (f"{path}: val_size 10 holds out 10 of 10 rows and leaves no "
                                               "training rows: lower val_size")
    assert split_examples(list(range(5)), 0, 42) == ([0, 1, 2, 3, 4], [])


# --- templates and loss masks -------------------------------------------------------------------

def _loss_text(tok, row) -> str:
    return tok.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if m])


def _runs(mask) -> int:
    """How many separate stretches of 1s the mask has."""
    return sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))


def test_answers_only_by_default_and_all_tokens_with_train_on_prompt(tokenizer):
    example = {"messages": CONVERSATION[1:3]}
    config = TrainConfig(template="plain")
    [row] = tokenize_examples([example], tokenizer, config)
    assert len(row["input_ids"]) == len(row["completion_mask"])
    assert _loss_text(tokenizer, row) == " 2 plus 2 is 4.</s>"
    assert tokenizer.decode(row["input_ids"]) == "<s>User: What is 2 plus 2?\nAssistant: 2 plus 2 is 4.</s>"
    [row] = tokenize_examples([example], tokenizer, config.replace(train_on_prompt=True))
    assert all(row["completion_mask"])


def test_multi_turn_every_answer_carries_loss(tokenizer, chat_tokenizer):
    example = {"messages": CONVERSATION}
    for tok, config, answers in [
        (tokenizer, TrainConfig(template="plain"), " 2 plus 2 is 4.</s> 3 plus 3 is 6.</s>"),
        (tokenizer, TrainConfig(template="chatml"), "2 plus 2 is 4.<|im_end|>\n3 plus 3 is 6.<|im_end|>\n"),
        (tokenizer, TrainConfig(template="llama3"), "2 plus 2 is 4.<|eot_id|>3 plus 3 is 6.<|eot_id|>"),
        # The tokenizer's own jinja template (auto), answers found by rendering prefixes.
        (chat_tokenizer, TrainConfig(), "2 plus 2 is 4.<|im_end|>\n3 plus 3 is 6.<|im_end|>\n"),
    ]:
        [row] = tokenize_examples([example], tok, config)
        assert _loss_text(tok, row) == answers, config.template
        assert _runs(row["completion_mask"]) == 2, config.template
        assert row["completion_mask"][0] == 0


def test_text_rows_train_on_every_token(tokenizer):
    [row] = tokenize_examples([{"text": "red cat blue"}], tokenizer, TrainConfig())
    assert tokenizer.decode(row["input_ids"]) == "<s>red cat blue</s>" and all(row["completion_mask"])


def test_auto_uses_the_tokenizers_template_or_the_plain_fallback(tokenizer, chat_tokenizer):
    example = {"messages": CONVERSATION[1:3]}
    own = "".join(t for t, _ in render_segments(example, chat_tokenizer, TrainConfig()))
    assert own == chat_tokenizer.apply_chat_template(CONVERSATION[1:3], tokenize=False)
    fallback = "".join(t for t, _ in render_segments(example, tokenizer, TrainConfig()))
    assert fallback == "<s>User: What is 2 plus 2?\nAssistant: 2 plus 2 is 4.</s>"
    # A named template overrides the tokenizer's own.
    named = "".join(t for t, _ in render_segments(example, chat_tokenizer, TrainConfig(template="alpaca")))
    assert named.endswith("### Instruction:\nWhat is 2 plus 2?\n\n### Response:\n2 plus 2 is 4.</s>\n\n")


def test_named_templates_match_their_jinja_twins(tokenizer):
    """The jinja saved with a trained model renders what training rendered, generation prompt included."""
    tok = copy.deepcopy(tokenizer)
    conversations = [CONVERSATION, CONVERSATION[1:], CONVERSATION[1:3]]
    for name in NAMED_TEMPLATES:
        config = TrainConfig(template=name)
        for messages in conversations:
            tok.chat_template = chat_template_jinja(name)
            rendered = tok.apply_chat_template(messages, tokenize=False)
            segments = render_segments({"messages": messages}, tokenizer, config)
            assert rendered == "".join(t for t, _ in segments), name
            # The generation prompt is the training text right up to the last answer.
            prompt = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            answer_start = sum(len(t) for t, _ in segments[:max(i for i, (_, a) in enumerate(segments) if a)])
            assert prompt == "".join(t for t, _ in segments)[:answer_start], name


def test_unknown_and_broken_templates(tokenizer, chat_tokenizer):
    assert template_names()[:2] == ["auto", "chatml"]
    known = "use one of auto, chatml, qwen, qwen3, llama3, llama2, mistral, gemma, alpaca, vicuna, plain"
    with pytest.raises(ConfigError) as config_info:
        TrainConfig.from_dict({"template": "nope"})
    assert config_info.value.by_field() == {"template": f"unknown chat template 'nope': {known} (got 'nope')"}
    # A config that skipped validation still gets the message from the data module.
    unchecked = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "template": "nope"})
    with pytest.raises(DataError) as info:
        tokenize_examples([{"messages": CONVERSATION}], tokenizer, unchecked)
    assert str(info.value) == f"template: unknown chat template 'nope': {known}"
    broken = copy.deepcopy(chat_tokenizer)
    broken.chat_template = "{% for m in messages %}{{ raise_exception('roles must alternate') }}{% endfor %}"
    example = load_examples(TrainConfig(dataset="demo", max_samples=1)).train[0]
    with pytest.raises(DataError) as info:
        tokenize_examples([example], broken, TrainConfig())
    assert str(info.value).startswith("bad chat template: the tokenizer's chat template failed to render a "
                                      f"conversation ({ROOT / 'data' / 'demo.jsonl'}: line 1): roles must alternate")


def test_truncation_is_a_warning_and_no_loss_left_is_an_error(tmp_path, tokenizer):
    long_prompt = " ".join(["apple"] * 60)
    path = write_jsonl(tmp_path / "long.jsonl", [
        {"instruction": "Say hi", "output": "hi"},
        {"instruction": "Reverse", "input": "red cat", "output": " ".join(["blue"] * 40)},
        {"instruction": long_prompt, "output": "ok"},
    ])
    config = cfg(path, cutoff_len=32, template="plain")
    data = load_examples(config)
    with pytest.raises(DataError) as info:
        tokenize_examples(data.train, tokenizer, config, data)
    full = [len(tokenize_examples([e], tokenizer, config.replace(cutoff_len=1000))[0]["input_ids"])
            for e in data.train]
    assert str(info.value).splitlines() == [
        f"{path}: 1 of 3 rows have no token that carries loss (fix them, or set skip_invalid_rows to train "
        "without them):",
        f"  line 3: no token carries loss: the answer starts after cutoff_len 32 (the row has {full[2]} tokens): "
        "raise cutoff_len or shorten the prompt"]
    config = config.replace(skip_invalid_rows=True)
    data = load_examples(config)
    rows = tokenize_examples(data.train, tokenizer, config, data)
    assert len(rows) == 2 and data.skipped == 1 and [i.row for i in data.errors] == [3]
    assert all(len(r["input_ids"]) <= 32 for r in rows)
    # Truncation counts the rows that train; the dropped row is an error of its own.
    assert rows.warnings == [f"1 of 2 rows are longer than cutoff_len 32: {full[1] - 32} tokens are cut (line 2)"]
    assert rows.full_lengths == [full[0], full[1]]


# --- preview -------------------------------------------------------------------------------------

def test_preview_segments_show_exactly_what_trains(tokenizer, chat_tokenizer):
    data = load_examples(TrainConfig(dataset="demo", max_samples=25))
    for tok in (tokenizer, chat_tokenizer):
        config = TrainConfig(cutoff_len=40)
        page = preview_rows(data.train, tok, config, page=3, page_size=10)
        assert (page["page"], page["pages"], page["total"], len(page["rows"])) == (3, 3, 25, 5)
        for example, row in zip(data.train[20:], page["rows"]):
            tokenized = tokenize_example(example, tok, config)
            text = "".join(t for t, _ in row["segments"]) + row["cut_text"]
            assert text == "".join(t for t, _ in render_segments(example, tok, config))
            assert row["where"] == example.where and row["num_tokens"] == min(40, row["full_length"])
            assert row["truncated"] == (row["full_length"] > 40) == bool(row["cut_text"])
            loss_text = "".join(t for t, loss in row["segments"] if loss)
            assert row["loss_tokens"] == sum(tokenized.completion_mask)
            if not row["truncated"]:
                assert loss_text.strip().startswith(example["messages"][-1]["content"])
    assert preview_rows(data.train, tokenizer, TrainConfig(), page=99)["page"] == 3


# --- report and the Data tab's pure views --------------------------------------------------------

def test_inspect_dataset_reports_without_raising(tmp_path, tokenizer):
    from trainer.datasets import inspect_dataset

    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"instruction": "Say hi", "output": "hi"}, {"instruction": "Say hi", "output": "hi"},
        "{broken", {"instruction": "Count: red cat", "output": "There are 2 words."}])
    report = inspect_dataset(cfg(path), tokenizer)
    assert report.error.splitlines()[1] == "  line 3: invalid JSON: Expecting property name enclosed in double " \
                                           "quotes (column 2)"
    # The usable rows are still measured and previewed next to the problem.
    assert len(report.tokenized) == 3 and len(report.lengths) == 3 and report.stats["count"] == 3
    assert report.warnings[0] == "line 2: duplicate of line 1"
    summary = report.to_dict()
    assert (summary["format"], summary["train_rows"], summary["skipped"]) == ("alpaca", 3, 1)
    assert "histogram" not in summary["stats"]
    ok = inspect_dataset(cfg(path, skip_invalid_rows=True), tokenizer)
    assert ok.error is None and ok.loaded.skipped == 1
    missing = inspect_dataset(cfg(tmp_path / "none.jsonl"), tokenizer)
    assert missing.error == f"dataset file not found: {tmp_path / 'none.jsonl'}" and missing.loaded is None


def test_preview_html_and_histogram_figure(tokenizer):
    from trainer.datasets import length_stats
    from webui.data_view import histogram_figure, preview_html

    example = {"messages": [{"role": "user", "content": "<b>bold</b>?"}, {"role": "assistant", "content": "a & b"}]}
    config = TrainConfig(template="plain")
    page = preview_rows([example], tokenizer, config)
    out = preview_html(page)
    assert "<span class='td-loss'> a &amp; b&lt;/s&gt;</span>" in out
    assert "<span class='td-masked'>&lt;s&gt;User: &lt;b&gt;bold&lt;/b&gt;?\nAssistant:</span>" in out
    assert "<b>bold</b>" not in out
    cut = preview_html(preview_rows([example], tokenizer, config.replace(cutoff_len=8, train_on_prompt=True)))
    assert "class='td-cut'" in cut and "cut from" in cut

    stats = length_stats([10, 20, 30, 300], TrainConfig(cutoff_len=256))
    fig = histogram_figure(stats)
    assert sum(fig.data[0].y) == 4
    lines = [s for s in fig.layout.shapes]
    assert lines[0].x0 == 256 and lines[1].x0 == stats["suggested_cutoff_len"] == 304
    assert "cutoff_len 256" in fig.layout.annotations[0].text
    assert len(histogram_figure(None).data) == 0


def test_dataset_view_for_the_demo_and_for_a_broken_upload(tmp_path):
    pytest.importorskip("trainer.engine.demo")
    from webui.data_view import dataset_view

    config = TrainConfig.from_yaml(ROOT / "presets" / "demo.yaml")
    view = dataset_view(config, page=2)
    assert view.summary_markdown.startswith(f"**{ROOT / 'data' / 'demo.jsonl'}** — alpaca format, 324 training rows")
    assert len(view.lengths) == 324 and "td-loss" in view.rows_html and "Page 2 of 65" in view.rows_html
    assert view.histogram.layout.shapes[0].x0 == 256
    path = write_jsonl(tmp_path / "up.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "a"},
                                               {"instruction": "c", "output": "d"}, {"instruction": "e", "output": "f"}])
    view = dataset_view(config.replace(dataset=str(path)))
    assert "A run would be refused" in view.summary_markdown and "line 2: missing field 'output'" in view.summary_markdown
    assert view.rows_html.count("class='td-row'") == 2  # three usable rows, one held out for validation


def test_new_user_edge_cases(tmp_path):
    # Columns named differently in every row: the refusal says what to map.
    path = write_jsonl(tmp_path / "resp.jsonl", [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(3)])
    assert refused(cfg(path)).splitlines()[-1] == (
        "The rows have the columns instruction, response, but the alpaca format needs 'output': rename one with "
        "column_mapping, e.g. {response: output}, or set dataset_format")
    # One example in a .json file holding just {"messages": [...]} is one row, not a list of rows.
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"messages": CONVERSATION}), encoding="utf-8")
    assert load_examples(cfg(single)).train[0]["messages"] == CONVERSATION
    # JSON lines saved as .json, with a byte-order mark and Windows line ends.
    lines = tmp_path / "lines.json"
    lines.write_bytes(b"\xef\xbb\xbf" + b'{"text": "a"}\r\n{"text": "b"}\r\n')
    assert load_examples(cfg(lines)).train == [{"text": "a"}, {"text": "b"}]
    # A JSON array saved as .jsonl is read as the array it is (rows numbered as array rows).
    array = tmp_path / "array.jsonl"
    array.write_text(json.dumps([{"text": "a"}, {"text": ""}], indent=2), encoding="utf-8")
    assert refused(cfg(array)).splitlines()[1] == "  row 2: field 'text' is empty"
    # A spreadsheet's semicolon-separated CSV; numbers in a JSON answer are text.
    semi = tmp_path / "semi.csv"
    semi.write_text("instruction;output\nWhat is 2 plus 2?;4\n", encoding="utf-8")
    assert load_examples(cfg(semi)).train[0]["messages"][1] == {"role": "assistant", "content": "4"}
    numbers = write_jsonl(tmp_path / "num.jsonl", [{"prompt": "2+2", "completion": 4}])
    assert load_examples(cfg(numbers)).train[0]["messages"][1]["content"] == "4"
    # OpenAI content parts are joined; a tool result without a call before it is named.
    parts = write_jsonl(tmp_path / "parts.jsonl", [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                      {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "{}"}]}])
    data = load_examples(cfg(parts, skip_invalid_rows=True))
    assert data.train[0]["messages"][0]["content"] == "hi there"
    assert str(data.errors[0]) == ("line 2: turn 2: a tool result must follow an assistant turn that calls a tool "
                                   "(function_call / tool_calls)")


def test_real_training_skips_bad_rows_only_when_allowed(tmp_path):
    """A few bad rows: the run is refused (exit 2) with skip off, trains with the count in its events with skip on."""
    train = pytest.importorskip("trainer.engine.train")
    rows = [{"instruction": f"What is {i} plus 1?", "output": f"{i} plus 1 is {i + 1}."} for i in range(24)]
    rows.insert(5, {"instruction": "What is 1 plus 1?"})
    rows.insert(17, '{"instruction": "broken"')
    path = write_jsonl(tmp_path / "few_bad.jsonl", rows)
    config = TrainConfig(dataset=str(path), cutoff_len=64, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                         max_steps=2, save_strategy="no", learning_rate=1e-3, gradient_checkpointing=False)

    def events(run_dir: Path) -> list[dict]:
        return [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]

    refused_dir = tmp_path / "refused"
    assert train.run_training(config, refused_dir) == 2
    status = [e for e in events(refused_dir) if e["type"] == "status"][-1]
    assert status["status"] == "failed"
    assert "2 of 26 rows are invalid" in status["reason"] and "line 6: missing field 'output'" in status["reason"]

    skipped_dir = tmp_path / "skipped"
    assert train.run_training(config.replace(skip_invalid_rows=True), skipped_dir) == 0
    log = events(skipped_dir)
    plan = next(e for e in log if e["type"] == "plan")
    assert (plan["dataset"]["skipped"], plan["dataset"]["train_rows"]) == (2, 24)
    assert any(e["type"] == "message" and "2 invalid rows were skipped" in e.get("text", "") for e in log)
    assert log[-1]["type"] == "status" and log[-1]["status"] == "finished"


def test_template_to_save_with_the_trained_model(tokenizer, chat_tokenizer):
    from trainer.datasets import chat_template_for_saving

    assert chat_template_for_saving(chat_tokenizer, TrainConfig()) is None
    assert chat_template_for_saving(tokenizer, TrainConfig()) == chat_template_jinja("plain")
    assert chat_template_for_saving(chat_tokenizer, TrainConfig(template="llama3")) == chat_template_jinja("llama3")


def test_report_says_truncation_once_with_rows_and_cure(tokenizer):
    from trainer.datasets import inspect_dataset

    config = TrainConfig(dataset="demo", cutoff_len=40, template="plain", per_device_train_batch_size=1)
    report = inspect_dataset(config, tokenizer)
    stats = report.stats
    truncation = [w for w in report.warnings if "cutoff_len 40" in w]
    assert len(truncation) == 1
    assert truncation[0].startswith(f"{stats['truncated_rows']} of {stats['count']} rows are longer than cutoff_len "
                                    f"40: {stats['tokens_cut']} tokens are cut (line ")
    assert truncation[0].endswith(f"). cutoff_len {stats['suggested_cutoff_len']} keeps 99% of the rows whole.")


def test_long_text_rows_are_split_not_cut(tmp_path, tokenizer):
    from webui.data_view import preview_html

    words = " ".join(["red cat blue dog"] * 30)
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "short one"}, {"text": words}])
    config = cfg(path, cutoff_len=16)
    data = load_examples(config)
    rows = tokenize_examples(data.train, tokenizer, config)
    [whole] = tokenize_examples([{"text": words}], tokenizer, config.replace(cutoff_len=100000))
    # Every token of the long document trains, in consecutive rows of at most 16 tokens.
    ids = whole["input_ids"]
    tail = len(ids) % 16
    kept = ids if tail != 1 else ids[:-1]  # a 1-token tail teaches nothing and is left out
    assert [t for r in rows[1:] for t in r["input_ids"]] == kept
    assert all(len(r["input_ids"]) <= 16 and all(r["completion_mask"]) for r in rows)
    assert rows.warnings == [f"1 of 2 text rows are longer than cutoff_len 16 and were split into rows of at most "
                             f"16 tokens (line 2): {len(rows)} training rows in all"]
    page = preview_rows(data.train, tokenizer, config)
    assert page["rows"][1]["split_rows"] == -(-len(whole["input_ids"]) // 16) and not page["rows"][1]["truncated"]
    assert "class='td-split'" in preview_html(page) and "split into" in preview_html(page)


def test_dataset_view_reuses_its_report_until_the_file_changes(tmp_path):
    pytest.importorskip("trainer.engine.demo")
    import os

    from webui.data_view import dataset_view

    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(12)])
    config = TrainConfig.from_yaml(ROOT / "presets" / "demo.yaml").replace(dataset=str(path))
    first, second = dataset_view(config, page=1), dataset_view(config, page=2)
    assert second.report is first.report and "Page 2 of 2 (10 training rows)" in second.rows_html
    write_jsonl(path, [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)])
    os.utime(path, ns=(1, 1))  # a new version of the file, even within the same clock tick
    assert len(dataset_view(config).lengths) == 18


# A default system prompt when the conversation has none (as Qwen2.5's template does).
DEFAULT_SYSTEM_JINJA = (
    "{% if messages[0]['role'] == 'system' %}{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{% endif %}"
    "{% for m in messages %}{% if not (m['role'] == 'system' and loop.first) %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Reasoning stripped from every answer but the last (as Qwen3's template does): prefixes no longer match.
STRIP_THINKING_JINJA = (
    "{% for m in messages %}{% set content = m['content'] %}"
    "{% if m['role'] == 'assistant' and not loop.last %}{% set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{% endif %}{{ '<|im_start|>' + m['role'] + '\\n' + content + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def test_real_world_template_shapes(chat_tokenizer):
    tok = copy.deepcopy(chat_tokenizer)
    tok.chat_template = DEFAULT_SYSTEM_JINJA
    [row] = tokenize_examples([{"messages": CONVERSATION[1:]}], tok, TrainConfig())
    assert _loss_text(tok, row) == "2 plus 2 is 4.<|im_end|>\n3 plus 3 is 6.<|im_end|>\n"
    assert tok.decode(row["input_ids"]).startswith("<|im_start|>system\nYou are helpful.")

    tok.chat_template = STRIP_THINKING_JINJA
    # The answer repeats the prompt's words: it must be found after the prompt, not inside it.
    messages = [{"role": "user", "content": "Say: 4"}, {"role": "assistant", "content": "<think>easy</think>\n4"},
                {"role": "user", "content": "Say: 6"}, {"role": "assistant", "content": "<think>ok</think>\n6"}]
    [row] = tokenize_examples([{"messages": messages}], tok, TrainConfig())
    # Each answer and its end-of-turn marker (the reasoning of the last one kept, as the template keeps it).
    assert _loss_text(tok, row) == "4<|im_end|><think>ok</think>\n6<|im_end|>"
    assert _runs(row["completion_mask"]) == 2


def test_shipped_multi_turn_demo_trains_every_answer():
    from trainer.datasets import shipped_datasets

    assert [name for name, _ in shipped_datasets()] == ["demo", "demo-chat"]
    data = load_examples(TrainConfig(dataset="demo-chat"))
    assert data.format == "messages" and len(data.train) == 120 and data.issues == []
    turns = [sum(m["role"] == "assistant" for m in ex["messages"]) for ex in data.train]
    assert set(turns) == {1, 2, 3} and any(ex["messages"][0]["role"] == "system" for ex in data.train)
    tok = _build_tokenizer()
    config = TrainConfig(template="plain", cutoff_len=1024)
    for example, row in zip(data.train[:20], tokenize_examples(data.train[:20], tok, config)):
        answers = [m["content"] for m in example["messages"] if m["role"] == "assistant"]
        assert _runs(row["completion_mask"]) == len(answers)
        assert _loss_text(tok, row) == "".join(f" {a}</s>" for a in answers)


def test_datasets_package_imports_without_torch_and_its_modules_form_no_cycle():
    """The web server imports trainer.datasets, so it must not pull in torch; inside the package the
    modules import each other in one direction and never through the package's own __init__."""
    import ast

    probe = ("import sys, trainer.datasets as d; missing = [n for n in d.__all__ if not hasattr(d, n)]; "
             "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'trl', 'gradio') if m in sys.modules); "
             "print(missing, heavy)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"

    package = ROOT / "trainer" / "datasets"
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        assert len(text.splitlines()) <= 500, f"{path.name} is over 500 lines"
        imports = {node.module for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)}
        assert "trainer.datasets" not in imports, f"{path.name} imports the package's __init__"
        graph[path.stem] = {m.rsplit(".", 1)[1] for m in imports if m and m.startswith("trainer.datasets.")}
    assert set(graph) >= {"issues", "sources", "rows", "load", "render", "tokenize", "stats", "report"}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join(path + (name,))}"
        if name not in done:
            for dependency in graph[name]:
                visit(dependency, path + (name,))
            done.add(name)

    for name in graph:
        visit(name, ())
