"""Exports LLaMA-Factory accepts as they are: every key one of its argument names (tests/lf_reference.py),
every value among its choices, and dataset_info.json entries its converters read without error and
with the rows tunedeck trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lf_reference import (REMOVED_IN_TRANSFORMERS_5, check_values, convert, dataset_attr, llamafactory_argument_names,
                          read_like_datasets)
from trainer.config import ConfigError, TrainConfig
from trainer.datasets import load_examples
from trainer.interop.llamafactory import export_llamafactory, import_llamafactory_text
from trainer.interop.presets import load_preset
from trainer.plan.resolve import CPU, Hardware

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))
H100 = Hardware(device="cuda", gpu_name="H100", gpu_total_gb=80, bf16_supported=True)
T4 = Hardware(device="cuda", gpu_name="T4", gpu_total_gb=16, bf16_supported=False)

# Rows shaped like the Hub datasets the presets name (they cannot be downloaded here): the exported entry is
# read against a local copy of that shape.
HUB_SAMPLES = {
    "yahma/alpaca-cleaned": [{"instruction": "Add 2 and 3.", "input": "", "output": "5"},
                             {"instruction": "Translate.", "input": "chat", "output": "cat"}],
    "shibing624/alpaca-zh": [{"instruction": "你好", "input": "", "output": "你好！"}],
    "mlabonne/FineTome-100k": [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
                                "source": "x", "score": 4.5}],
}


def _exported_rows(entry: dict, dataset_dir: Path) -> list[dict]:
    """The entry's rows through LLaMA-Factory's converter; KeyError where it names a missing column."""
    attr = dataset_attr(entry)
    path = Path(entry["file_name"])
    rows = read_like_datasets(path if path.is_absolute() else dataset_dir / path)
    return [convert(row, attr) for row in rows]


def _assert_llamafactory_reads(exported, tmp_path: Path) -> list[dict]:
    data = yaml.safe_load(exported.yaml_text)
    assert data == exported.data
    assert check_values(data) == []
    assert not set(data) & REMOVED_IN_TRANSFORMERS_5
    [(name, entry)] = exported.dataset_info.items()
    assert data["dataset"] == name
    return _exported_rows(entry, tmp_path) if "file_name" in entry else []


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_preset_exports_keys_and_values_llamafactory_accepts(name, tmp_path):
    cfg = load_preset(name).config
    for hardware in (CPU, H100, T4):
        exported = export_llamafactory(cfg, dataset_dir=tmp_path, hardware=hardware)
        _assert_llamafactory_reads(exported, tmp_path)
    if cfg.quantization_bit:
        assert (exported.data["quantization_method"], exported.data["quantization_bit"]) == ("bnb", cfg.quantization_bit)
    [entry] = exported.dataset_info.values()
    if "hf_hub_url" in entry:  # the same entry, read against rows of the Hub dataset's shape
        rows = HUB_SAMPLES[entry["hf_hub_url"]]
        (tmp_path / "sample.json").write_text(json.dumps(rows))
        converted = _exported_rows({**entry, "file_name": "sample.json"}, tmp_path)
    else:
        converted = _exported_rows(entry, tmp_path)
    assert converted and all(row["_prompt"] and row["_response"] for row in converted)


@pytest.mark.parametrize("dataset", ["demo", "demo-chat"])
def test_shipped_datasets_convert_to_the_rows_tunedeck_trains(dataset, tmp_path):
    cfg = TrainConfig.from_dict({"dataset": dataset})
    exported = export_llamafactory(cfg, dataset_dir=tmp_path, hardware=CPU)
    converted = _assert_llamafactory_reads(exported, tmp_path)
    ours = load_examples(cfg).examples
    assert len(converted) == len(ours)
    for row, example in zip(converted, ours):
        theirs = ([{"role": "system", "content": row["_system"]}] if row["_system"] else []) + row["_prompt"] \
            + row["_response"]
        # LLaMA-Factory joins instruction and input with one newline, tunedeck with a blank line.
        assert [(m["role"], m["content"].replace("\n", "")) for m in theirs] == \
            [(m["role"], m["content"].replace("\n", "")) for m in example["messages"]]


def test_sharegpt_rows_without_a_system_column_convert(tmp_path):
    """An exported sharegpt/messages entry names the system column only where the file has one."""
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"conversations": [{"from": "human", "value": f"q{i}"},
                                                          {"from": "gpt", "value": f"a{i}"}]}) + "\n" for i in range(4)))
    exported = export_llamafactory(TrainConfig.from_dict({"dataset": str(chat)}), dataset_dir=tmp_path, hardware=CPU)
    [entry] = exported.dataset_info.values()
    assert "system" not in entry["columns"]
    assert len(_assert_llamafactory_reads(exported, tmp_path)) == 4
    # Some rows with a system prompt: the column exists (None elsewhere) and is named.
    chat.write_text(chat.read_text() + json.dumps({"conversations": [{"from": "human", "value": "q"},
                                                                     {"from": "gpt", "value": "a"}],
                                                   "system": "Be brief."}) + "\n")
    exported = export_llamafactory(TrainConfig.from_dict({"dataset": str(chat)}), dataset_dir=tmp_path, hardware=CPU)
    converted = _assert_llamafactory_reads(exported, tmp_path)
    assert [r["_system"] for r in converted] == [None] * 4 + ["Be brief."]
    # An alpaca file without an input column: no query column named.
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([{"instruction": "q", "output": "a"}]))
    exported = export_llamafactory(TrainConfig.from_dict({"dataset": str(qa)}), dataset_dir=tmp_path, hardware=CPU)
    assert _assert_llamafactory_reads(exported, tmp_path)[0]["_prompt"] == [{"role": "user", "content": "q"}]


def test_precision_auto_is_written_for_the_hardware_and_fp32_for_the_demo(tmp_path):
    gpu_model = TrainConfig.from_dict({"model_name_or_path": "org/m", "dataset": "demo"})
    assert export_llamafactory(gpu_model, dataset_dir=tmp_path, hardware=H100).data.get("bf16") is True
    on_t4 = export_llamafactory(gpu_model, dataset_dir=tmp_path, hardware=T4).data
    assert on_t4.get("fp16") is True and "bf16" not in on_t4
    demo = export_llamafactory(TrainConfig(), dataset_dir=tmp_path, hardware=H100)
    assert "bf16" not in demo.data and "fp16" not in demo.data
    assert any("fp32" in n for n in demo.notes)
    fixed = TrainConfig.from_dict({"model_name_or_path": "org/m", "precision": "fp16"})
    assert export_llamafactory(fixed, dataset_dir=tmp_path, hardware=H100).data["fp16"] is True


def test_group_by_length_is_written_as_transformers_5_sampling_strategy(tmp_path):
    cfg = TrainConfig.from_dict({"model_name_or_path": "org/m", "group_by_length": True, "packing": False})
    exported = export_llamafactory(cfg, dataset_dir=tmp_path, hardware=CPU)
    assert exported.data["train_sampling_strategy"] == "group_by_length"
    assert "group_by_length" not in exported.data
    (tmp_path / "dataset_info.json").write_text(json.dumps(exported.dataset_info))
    assert import_llamafactory_text(exported.yaml_text, "x.yaml", base_dir=tmp_path).config.group_by_length is True
    # A transformers 4 file still imports.
    old = import_llamafactory_text("model_name_or_path: m\ndataset: demo\ngroup_by_length: true\n", "old.yaml")
    assert old.config.group_by_length is True


def test_qlora_exports_bnb_and_imports_both_spellings(tmp_path):
    cfg = TrainConfig.from_dict({"model_name_or_path": "org/m", "quantization_bit": 4})
    assert export_llamafactory(cfg, dataset_dir=tmp_path, hardware=CPU).data["quantization_method"] == "bnb"
    for method in ("bnb", "bitsandbytes"):
        text = f"model_name_or_path: m\ndataset: demo\nquantization_bit: 4\nquantization_method: {method}\n"
        result = import_llamafactory_text(text, "q.yaml")
        assert result.config.quantization_bit == 4 and "quantization_method" not in result.unmapped


def test_pure_bf16_is_listed_and_pt_packs(tmp_path):
    result = import_llamafactory_text("model_name_or_path: m\ndataset: demo\npure_bf16: true\n", "p.yaml")
    assert result.config.precision == "bf16" and "fp32 master weights" in result.unmapped["pure_bf16"]
    text_file = tmp_path / "corpus.jsonl"
    text_file.write_text(json.dumps({"text": "some text"}) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"corpus": {"file_name": "corpus.jsonl",
                                                                       "columns": {"prompt": "text"}}}))
    pt = import_llamafactory_text("model_name_or_path: m\nstage: pt\ndataset: corpus\ndataset_dir: .\n", "pt.yaml",
                                  base_dir=tmp_path)
    assert (pt.config.dataset_format, pt.config.packing) == ("text", True)
    unpacked = import_llamafactory_text("model_name_or_path: m\nstage: pt\ndataset: corpus\ndataset_dir: .\n"
                                        "packing: false\n", "pt.yaml", base_dir=tmp_path)
    assert unpacked.config.packing is False


def test_predict_only_config_gets_its_own_message():
    text = ("model_name_or_path: m\nadapter_name_or_path: saves/lora\nstage: sft\ndo_predict: true\n"
            "finetuning_type: lora\neval_dataset: identity,alpaca_en_demo\ntemplate: llama3\n"
            "predict_with_generate: true\n")
    with pytest.raises(ConfigError, match="prediction-only") as info:
        import_llamafactory_text(text, "predict.yaml")
    assert "dataset: missing" not in str(info.value) and "eval_dataset identity,alpaca_en_demo" in str(info.value)


def test_an_unresolved_dataset_name_is_an_error_in_check(tmp_path):
    import subprocess
    import sys

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text("{}")
    (tmp_path / "lf.yaml").write_text("model_name_or_path: demo\ndataset: nowhere\n")
    result = import_llamafactory_text((tmp_path / "lf.yaml").read_text(), "lf.yaml", base_dir=tmp_path)
    assert "no entry" in result.unmapped["dataset_dir"]
    result.config.save(tmp_path / "imported.yaml")
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", str(tmp_path / "imported.yaml")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nowhere" in proc.stderr and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_a_tool_calling_dataset_goes_both_ways(tmp_path):
    """LLaMA-Factory's glaive_toolcall_en_demo shape: sharegpt turns with function_call/observation, a tools
    column; imported through dataset_info.json, trained, and exported with its tools column."""
    tool = {"name": "get_time", "description": "Time in a city", "parameters": {"type": "object", "properties": {}}}
    rows = [{"conversations": [{"from": "human", "value": f"Time in city {i}?"},
                               {"from": "function_call", "value": json.dumps({"name": "get_time",
                                                                              "arguments": {"city": str(i)}})},
                               {"from": "observation", "value": json.dumps({"time": f"{i}:00"})},
                               {"from": "gpt", "value": f"It is {i}:00."}], "functions": json.dumps([tool])}
            for i in range(4)]
    (tmp_path / "tools.json").write_text(json.dumps(rows))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"toolcall": {
        "file_name": "tools.json", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "tools": "functions"}}}))
    result = import_llamafactory_text("model_name_or_path: m\ndataset: toolcall\ndataset_dir: .\n", "t.yaml",
                                      base_dir=tmp_path)
    assert result.config.column_mapping == {"functions": "tools"} and not result.unmapped
    [first, *_] = load_examples(result.config).train
    assert first["tools"][0]["function"]["name"] == "get_time"
    exported = export_llamafactory(result.config, dataset_dir=tmp_path, hardware=CPU)
    [entry] = exported.dataset_info.values()
    assert entry["columns"] == {"messages": "conversations", "tools": "functions"}
    converted = _assert_llamafactory_reads(exported, tmp_path)
    assert [m["role"] for m in converted[0]["_prompt"]] == ["user", "function", "observation"]
    assert json.loads(converted[0]["_tools"]) == [tool]
    # Tags tunedeck does not read are named at import.
    (tmp_path / "dataset_info.json").write_text(json.dumps({"toolcall": {
        "file_name": "tools.json", "formatting": "sharegpt", "tags": {"function_tag": "tool_call"}}}))
    odd = import_llamafactory_text("model_name_or_path: m\ndataset: toolcall\ndataset_dir: .\n", "t.yaml",
                                   base_dir=tmp_path)
    assert "'tool_call'" in odd.unmapped["dataset_info.tags.function_tag"]
    # OpenAI tool_calls rows: LLaMA-Factory cannot read them, and the export says so.
    openai = tmp_path / "openai.jsonl"
    openai.write_text(json.dumps({"messages": [
        {"role": "user", "content": "t?"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
            "name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "content": "1:00"}, {"role": "assistant", "content": "1:00."}]}) + "\n")
    exported = export_llamafactory(TrainConfig(dataset=str(openai)), dataset_dir=tmp_path, hardware=CPU)
    assert "function_call/observation" in exported.unmapped["dataset_format"]


def test_an_unknown_quantization_method_is_named():
    result = import_llamafactory_text("model_name_or_path: m\ndataset: demo\nquantization_bit: 4\n"
                                      "quantization_method: bitsandbytes4\n", "q.yaml")
    assert result.config.quantization_bit is None
    assert "not one of LLaMA-Factory's methods (bnb, gptq" in result.unmapped["quantization_method"]


def test_every_schema_lf_key_is_a_llamafactory_argument():
    """A field declared with lf='key' is written under that key: it must be one LLaMA-Factory takes."""
    from trainer.interop.lf_table import lf_keys

    assert set(lf_keys().values()) - llamafactory_argument_names() == set()
