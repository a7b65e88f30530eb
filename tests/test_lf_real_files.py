"""LLaMA-Factory interop held against LLaMA-Factory's own files (tests/fixtures/lf/, see its README): its
example YAMLs import with the right mapping or are refused naming the key and why, every key left behind
is listed, the imports export back to keys and values its argument classes (read from its hparams/*.py)
accept, and every entry of its dataset_info.json maps to a dataset or is refused naming the entry."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lf_reference import convert, dataset_attr, read_like_datasets
from trainer.config import ConfigError, TrainConfig
from trainer.datasets import DataError, load_examples
from trainer.interop.lf_table import lf_keys
from trainer.interop.llamafactory import export_llamafactory, import_llamafactory_dict, import_llamafactory_file
from trainer.interop.presets import load_preset
from trainer.plan.resolve import CPU

ROOT = Path(__file__).resolve().parents[1]
LF = ROOT / "tests" / "fixtures" / "lf"
EXAMPLES = sorted(str(p.relative_to(LF / "examples")) for p in (LF / "examples").rglob("*.yaml"))
# A whole LLaMA-Factory checkout to run every one of its examples through the import (not needed in CI).
CHECKOUT = Path(os.environ["TUNEDECK_LF_CHECKOUT"]) if os.environ.get("TUNEDECK_LF_CHECKOUT") else None
DATASET_INFO = json.loads((LF / "data" / "dataset_info.json").read_text(encoding="utf-8"))

# The examples tunedeck refuses, each with what its message must say (after the file and the key).
REFUSED = {
    "accelerate/fsdp_config.yaml": r": this is an Accelerate launch config \(compute_environment",
    "extras/multi_tokens/tokens_cfg.yaml": r": not a LLaMA-Factory training YAML: it has none of model_name_or_path",
    "extras/nlg_eval/llama3_lora_predict.yaml": r": do_predict: this is a prediction-only LLaMA-Factory config",
    "inference/qwen3.yaml": r": dataset: this is a LLaMA-Factory inference config",
    "merge_lora/qwen3_lora_sft.yaml": r": export_dir: this is a LLaMA-Factory export \(merge\) config",
    "train_lora/qwen3_lora_dpo.yaml": r": stage: stage 'dpo' is not supported",
    "train_lora/qwen3_lora_kto.yaml": r": stage: stage 'kto' is not supported",
    "train_lora/qwen3_lora_reward.yaml": r": stage: stage 'rm' is not supported",
    "train_lora/qwen3vl_lora_sft.yaml": r": dataset: .*dataset_info.json: 'mllm_demo' is multimodal data \(images "
                                        r"column 'images'\)",
    "v1/train_lora/train_lora_sft.yaml": r": model: this is a config of LLaMA-Factory's v1 trainer \(model, ",
}
# Imported examples whose dataset LLaMA-Factory itself cannot resolve here: the export names it.
UNRESOLVED = {"extras/asft/llama2_full_asft.yaml": "no entry in", "train_lora/qwen3_lora_sft_ray.yaml": "REMOTE:"}
# LLaMA-Factory keys the import carries by conversion rather than by rename (lf_table.import_special).
CONVERTED = {"stage", "do_train", "finetuning_type", "lora_target", "template", "quantization_bit",
             "quantization_method", "bf16", "fp16", "pure_bf16", "flash_attn", "disable_gradient_checkpointing",
             "packing", "neat_packing", "warmup_ratio", "warmup_steps", "train_sampling_strategy", "dataset",
             "dataset_dir", "deepspeed"}


# --- LLaMA-Factory's argument classes, read from its files -------------------------------------------

def _dataclass_fields(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            names |= {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    return names


def _enum_values(cls: str) -> set[str]:
    tree = ast.parse((LF / "hparams" / "constants_excerpt.py").read_text(encoding="utf-8"))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    return {s.value.value for s in node.body if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)}


def _argument_names() -> set[str]:
    from transformers import Seq2SeqTrainingArguments

    names = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    for path in (LF / "hparams").glob("*_args.py"):
        names |= _dataclass_fields(path)
    return names


ARGUMENT_NAMES = _argument_names()
TEMPLATES = set((LF / "template_names.txt").read_text(encoding="utf-8").split())


def _refusals_of_llamafactory(data: dict) -> list[str]:
    """What LLaMA-Factory's parser would refuse or misread in an exported YAML."""
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType
    from transformers.training_args import OptimizerNames

    problems = [f"{key}: not an argument of LLaMA-Factory" for key in data if key not in ARGUMENT_NAMES]
    choices = {"quantization_method": _enum_values("QuantizationMethod"),
               "flash_attn": _enum_values("AttentionFunction"),
               "template": TEMPLATES, "stage": {"sft", "pt"}, "finetuning_type": {"lora", "full"},
               "optim": {o.value for o in OptimizerNames}, "lr_scheduler_type": {s.value for s in SchedulerType},
               "eval_strategy": {s.value for s in IntervalStrategy}, "save_strategy": {s.value for s in SaveStrategy}}
    problems += [f"{key}: {data[key]!r} not among {sorted(values)}" for key, values in choices.items()
                 if key in data and data[key] not in values]
    return problems


def test_the_reference_is_read_from_the_files():
    """The names and choices come from LLaMA-Factory's files, not from a list that could drift."""
    assert {"lora_rank", "cutoff_len", "quantization_method", "flash_attn", "pure_bf16", "template"} <= ARGUMENT_NAMES
    assert "group_by_length" not in ARGUMENT_NAMES  # transformers 5 took it out of TrainingArguments
    assert _enum_values("QuantizationMethod") >= {"bnb", "gptq", "awq"} and "bitsandbytes" not in \
        _enum_values("QuantizationMethod")
    assert {"qwen3", "qwen3_nothink", "llama3", "chatml", "default"} <= TEMPLATES
    assert len(EXAMPLES) == 24 and set(REFUSED) | set(UNRESOLVED) <= set(EXAMPLES)


# --- every example -------------------------------------------------------------------------------------

def _same(value, imported) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(imported, float):
        return float(value) == float(imported)
    return value == imported


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_imports_with_its_settings_or_is_refused_by_name(example, tmp_path):
    path = LF / "examples" / example
    source = yaml.safe_load(path.read_text(encoding="utf-8"))
    if example in REFUSED:
        with pytest.raises(ConfigError) as info:
            import_llamafactory_file(path, base_dir=LF)
        message = str(info.value)
        assert message.startswith(str(path)) and re.search(REFUSED[example], message), message
        return
    result = import_llamafactory_file(path, base_dir=LF)
    cfg = result.config
    # Nothing is dropped silently: each key is carried (renamed or converted), listed with why, or unset.
    renamed = {key: name for name, key in lf_keys().items()}
    for key, value in source.items():
        assert key in renamed or key in CONVERTED or key in result.unmapped or value in (None, False), key
    # Renamed keys keep their values (report_to: none is an empty list in tunedeck).
    for key, value in source.items():
        if key in renamed and key != "report_to" and value is not None:
            assert _same(value, getattr(cfg, renamed[key])), (key, value, getattr(cfg, renamed[key]))
    if source.get("report_to") == "none":
        assert cfg.report_to == []
    # Keys the import converts, each as LLaMA-Factory means it.
    assert cfg.model_name_or_path == source["model_name_or_path"]
    assert cfg.precision == ("bf16" if source.get("bf16") or source.get("pure_bf16") else cfg.precision)
    if source.get("pure_bf16"):
        assert "pure bf16" in result.unmapped["pure_bf16"]
    if source.get("lora_target") == "all":
        assert cfg.lora_target == "all-linear"
    if source.get("finetuning_type") in ("freeze", "oft"):
        assert cfg.finetuning_type == "lora" and source["finetuning_type"] in result.unmapped["finetuning_type"]
    if "," in str(source.get("dataset")):
        assert "left out" in result.unmapped["dataset"]
    stage = re.search(r"ds_z([023])", str(source.get("deepspeed")))
    if stage:  # torchrun on every GPU with that ZeRO stage (stage 0 shards nothing: DDP)
        assert cfg.num_processes is None
        assert cfg.distributed_type == {"0": "ddp"}.get(stage.group(1), f"deepspeed_zero{stage.group(1)}")
    if source.get("quantization_method") == "bnb":
        assert cfg.quantization_bit == source["quantization_bit"]
    if source.get("stage") == "pt":
        assert (cfg.dataset_format, cfg.packing) == ("text", True)
    if example in UNRESOLVED:
        assert UNRESOLVED[example] in result.unmapped["dataset_dir"]
        with pytest.raises(ConfigError, match="dataset: dataset file not found"):
            export_llamafactory(cfg, base_dir=LF, dataset_dir=tmp_path, hardware=CPU)
        return
    _exports_as_llamafactory_reads_it(cfg, tmp_path)


@pytest.mark.skipif(CHECKOUT is None, reason="set TUNEDECK_LF_CHECKOUT to a LLaMA-Factory checkout")
def test_every_example_of_a_checkout_imports_or_is_refused_without_a_traceback(tmp_path):
    counts = {"imported": 0, "refused": 0}
    for path in sorted((CHECKOUT / "examples").rglob("*.yaml")):
        try:
            result = import_llamafactory_file(path, base_dir=CHECKOUT)
        except ConfigError as exc:
            assert str(exc).startswith(str(path)) and len(str(exc)) > len(str(path)) + 20, str(exc)
            counts["refused"] += 1
            continue
        counts["imported"] += 1
        source = yaml.safe_load(path.read_text(encoding="utf-8"))
        renamed = set(lf_keys().values())
        silent = [k for k, v in source.items() if k not in renamed | CONVERTED and k not in result.unmapped
                  and v not in (None, False)]
        assert silent == [], (path, silent)
        try:
            exported = export_llamafactory(result.config, base_dir=CHECKOUT, dataset_dir=tmp_path, hardware=CPU)
        except ConfigError as exc:
            assert "dataset" in str(exc), (path, str(exc))  # a dataset LLaMA-Factory cannot resolve either
            continue
        assert _refusals_of_llamafactory(exported.data) == [], path
    print(counts)


def _exports_as_llamafactory_reads_it(cfg: TrainConfig, dataset_dir: Path) -> None:
    exported = export_llamafactory(cfg, base_dir=LF, dataset_dir=dataset_dir, hardware=CPU)
    assert _refusals_of_llamafactory(exported.data) == []
    assert yaml.safe_load(exported.yaml_text) == exported.data
    entry = exported.dataset_info[exported.dataset_name]
    if "file_name" in entry:  # LLaMA-Factory's converter reads every row with the columns the entry names
        attr = dataset_attr(entry)
        rows = [convert(row, attr) for row in read_like_datasets(Path(entry["file_name"]))]
        # stage pt trains the prompt column's text; sft drops rows without a response.
        assert rows and all(row["_response"] or exported.data["stage"] == "pt" for row in rows)
        assert all(row["_prompt"] for row in rows)


def test_named_examples_carry_what_changes_training():
    sft = import_llamafactory_file(LF / "examples/train_lora/qwen3_lora_sft.yaml", base_dir=LF)
    cfg = sft.config
    assert (cfg.finetuning_type, cfg.lora_rank, cfg.lora_alpha, cfg.template) == ("lora", 8, 16, "chatml")
    assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, cfg.warmup_ratio) == (1, 8, 0.1)
    assert Path(cfg.dataset) == LF / "data" / "identity.json" and cfg.dataset_format == "alpaca"
    qlora = import_llamafactory_file(LF / "examples/train_qlora/qwen3_lora_sft_otfq.yaml", base_dir=LF).config
    assert qlora.quantization_bit == 4
    awq = import_llamafactory_file(LF / "examples/train_qlora/llama3_lora_sft_awq.yaml", base_dir=LF).config
    assert awq.quantization_bit is None and "AWQ" in awq.model_name_or_path  # quantized by its own config
    galore = import_llamafactory_file(LF / "examples/extras/galore/llama3_full_sft.yaml", base_dir=LF)
    assert {"use_galore", "galore_rank", "pure_bf16"} <= set(galore.unmapped)
    preprocess = import_llamafactory_file(LF / "examples/train_lora/qwen3_preprocess.yaml", base_dir=LF)
    assert "tokenized_path" in preprocess.unmapped


def test_an_example_away_from_its_checkout_says_where_dataset_info_was_looked_for(tmp_path, monkeypatch):
    (tmp_path / "up" / "down").mkdir(parents=True)
    copy = tmp_path / "up" / "down" / "qwen3_lora_sft.yaml"
    copy.write_text((LF / "examples/train_lora/qwen3_lora_sft.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = import_llamafactory_file(copy)
    assert "no data/dataset_info.json beside the YAML, above it or in the current folder" in \
        result.unmapped["dataset_dir"]
    (tmp_path / "data").mkdir()  # a checkout's root two folders up, as LLaMA-Factory's examples sit
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"identity": DATASET_INFO["identity"]}))
    monkeypatch.chdir(tmp_path / "up")
    assert Path(import_llamafactory_file(copy).config.dataset) == (tmp_path / "data" / "identity.json").resolve()


def test_real_data_files_through_the_imported_configs():
    """The demo files load as what they are: c4 as plain text, glaive's tool calls as turns, KTO named."""
    pretrain = import_llamafactory_file(LF / "examples/train_lora/qwen3_lora_pretrain.yaml", base_dir=LF).config
    assert load_examples(pretrain.model_copy(update={"val_size": 0.0})).format == "text"
    tools = import_llamafactory_dict({"model_name_or_path": "m", "dataset": "glaive_toolcall_en_demo"}, "t.yaml",
                                     base_dir=LF)
    loaded = load_examples(tools.config)
    assert loaded.format == "sharegpt" and len(loaded.train) + len(loaded.eval) == 2
    # ... and export back as an entry whose tool list and function_call turns LLaMA-Factory's converter reads.
    exported = export_llamafactory(tools.config, base_dir=LF, dataset_dir=LF / "data", hardware=CPU)
    entry = exported.dataset_info[exported.dataset_name]
    assert entry["columns"] == {"messages": "conversations", "tools": "tools"}
    rows = [convert(row, dataset_attr(entry)) for row in read_like_datasets(Path(entry["file_name"]))]
    assert [[t["role"] for t in r["_prompt"] + r["_response"]] for r in rows] == \
        [["user", "function", "observation", "assistant"], ["user", "assistant"]]
    assert all("generate_random_name" in r["_tools"] or "calculate" in r["_tools"] for r in rows)
    kto = import_llamafactory_dict({"model_name_or_path": "m", "dataset": "kto_en_demo"}, "k.yaml", base_dir=LF)
    assert "KTO data" in kto.unmapped["dataset"]
    with pytest.raises(DataError, match="this is KTO data"):
        load_examples(kto.config)
    desirable = load_examples(kto.config.model_copy(update={"kto_desirable_only": True, "val_size": 0.0}))
    assert len(desirable.train) == 1


def test_the_cli_converts_or_refuses_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for example, code in (("train_lora/qwen3_lora_sft.yaml", 0), ("accelerate/fsdp_config.yaml", 2)):
        out = tmp_path / Path(example).name
        proc = subprocess.run([sys.executable, "-m", "trainer", "convert", "--from", "llamafactory",
                               str(LF / "examples" / example), str(out)], capture_output=True, text=True, env=env,
                              cwd=tmp_path)
        assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
        if code:
            assert "error:" in proc.stderr and "Accelerate launch config" in proc.stderr
        else:
            assert "not imported: dataset: tunedeck trains on one dataset" in proc.stderr and out.is_file()
            # dataset_dir: data is LLaMA-Factory's root's data/, two folders above the example, not the cwd's
            assert f"resolved through {LF / 'data' / 'dataset_info.json'}" in proc.stderr


# --- every dataset_info.json entry --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DATASET_INFO))
def test_each_dataset_info_entry_maps_or_is_refused_by_name(name):
    entry = DATASET_INFO[name]
    columns = entry.get("columns", {})
    data = {"model_name_or_path": "m", "dataset": name, "dataset_dir": "data"}
    media = [role for role in ("images", "videos", "audios") if columns.get(role)]
    if entry.get("ranking") or media:
        why = "a preference \\(ranking\\) dataset" if entry.get("ranking") else "multimodal data"
        with pytest.raises(ConfigError, match=f"dataset: .*dataset_info.json: '{re.escape(name)}' is {why}"):
            import_llamafactory_dict(data, "x.yaml", base_dir=LF)
        return
    result = import_llamafactory_dict(data, "x.yaml", base_dir=LF)
    cfg = result.config
    if entry.get("file_name"):
        assert Path(cfg.dataset) == LF / "data" / entry["file_name"]
        if entry["file_name"].endswith(".txt"):  # LLaMA-Factory reads text files; tunedeck says to convert them
            assert "tunedeck reads .jsonl" in result.unmapped["dataset"]
    else:
        assert cfg.dataset == (entry.get("hf_hub_url") or entry.get("ms_hub_url"))
        if not entry.get("hf_hub_url"):
            assert "ModelScope" in result.unmapped["dataset"]
    if "kto_tag" in columns:
        assert "KTO data" in result.unmapped["dataset"]
    formatting = entry.get("formatting", "alpaca")
    if formatting == "sharegpt":
        openai = entry.get("tags", {}).get("role_tag") == "role"
        assert cfg.dataset_format == ("messages" if openai else "sharegpt")
        messages = columns.get("messages", "conversations")
        if messages != ("messages" if openai else "conversations"):
            assert cfg.column_mapping[messages] == cfg.dataset_format.replace("sharegpt", "conversations")
    elif set(columns) == {"prompt"}:  # a pre-training corpus
        assert cfg.dataset_format == "text" and any("plain text" in n for n in result.notes)
    else:
        assert cfg.dataset_format == "alpaca"
        ours = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
        for role, column in columns.items():
            if role in ours and column != ours[role]:
                assert cfg.column_mapping[column] == ours[role], (role, column)
    for key in ("folder",):
        if entry.get(key):
            assert f"dataset_info.{key}" in result.unmapped


# --- tunedeck's own presets ----------------------------------------------------------------------------

@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "presets").glob("*.yaml")))
def test_each_builtin_preset_exports_what_llamafactory_parses(preset, tmp_path):
    cfg = load_preset(preset).config
    exported = export_llamafactory(cfg, dataset_dir=tmp_path, hardware=CPU)
    assert _refusals_of_llamafactory(exported.data) == []
    if cfg.quantization_bit:
        assert exported.data["quantization_method"] == "bnb"


def test_every_named_template_exports_as_one_of_llamafactorys(tmp_path):
    from trainer.templates import NAMED_TEMPLATES

    for name in sorted(NAMED_TEMPLATES):
        cfg = TrainConfig.from_dict({"dataset": str(LF / "data" / "identity.json"), "template": name})
        exported = export_llamafactory(cfg, dataset_dir=tmp_path, hardware=CPU)
        assert exported.data["template"] in TEMPLATES, name
        # and imports back as the same template
        back = import_llamafactory_dict({"model_name_or_path": "m", "dataset": str(LF / "data" / "identity.json"),
                                         "template": exported.data["template"]}, "t.yaml", base_dir=tmp_path)
        assert back.config.template == name, (name, back.unmapped)
        if name == "plain":  # LLaMA-Factory's 'default' is the nearest, not the same: said so
            assert any("differs in its words" in n for n in back.notes)
