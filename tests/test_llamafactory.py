"""LLaMA-Factory interop: training YAMLs in their documented format (examples/train_lora, train_qlora,
train_full; data/dataset_info.json) import with every unmapped key reported, export back, and the
`convert` command's results pass `check`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.config import ConfigError, TrainConfig
from trainer.datasets import load_examples
from trainer.interop.lf_datasets import merge_dataset_info
from trainer.interop.llamafactory import (export_llamafactory, import_llamafactory_file, import_llamafactory_text,
                                          to_llamafactory_yaml)
from trainer.interop.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))

# As in LLaMA-Factory's examples/train_lora/llama3_lora_sft.yaml (dataset names ours).
LORA_SFT = """\
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: qa_alpaca,chat_sharegpt
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null

### eval
val_size: 0.1
per_device_eval_batch_size: 1
eval_strategy: steps
eval_steps: 500
"""

# As in examples/train_qlora/llama3_lora_sft_otfq.yaml.
QLORA_4BIT = """\
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
quantization_bit: 4
quantization_method: bitsandbytes  # choices: [bitsandbytes (4/8), hqq (2/3/4/5/6/8), eetq (8)]
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_target: q_proj,v_proj
lora_rank: 16
lora_alpha: 32
lora_dropout: 0.05

### dataset
dataset: chat_sharegpt
template: llama3
cutoff_len: 1024
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/llama3-8b/qlora/sft
logging_steps: 10
save_steps: 100
plot_loss: true
overwrite_output_dir: true

### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
learning_rate: 2.0e-4
num_train_epochs: 2.0
lr_scheduler_type: cosine
warmup_ratio: 0.05
fp16: true
optim: paged_adamw_8bit
flash_attn: fa2
"""

# As in examples/train_full/llama3_full_sft.yaml.
FULL_SFT = """\
### model
model_name_or_path: Qwen/Qwen2.5-0.5B
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: full
deepspeed: examples/deepspeed/ds_z3_config.json  # choices: [ds_z0_config.json, ds_z2_config.json, ds_z3_config.json]

### dataset
dataset: chat_openai
template: qwen
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/qwen/full/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 2
learning_rate: 1.0e-5
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
max_steps: 200
"""


@pytest.fixture
def lf_dir(tmp_path: Path) -> Path:
    """A LLaMA-Factory checkout's layout: train YAMLs beside data/ with its dataset_info.json."""
    data = tmp_path / "data"
    data.mkdir()
    info = {
        "qa_alpaca": {"file_name": "qa.json",
                      "columns": {"prompt": "question", "query": "input", "response": "answer", "system": "sys"}},
        "chat_sharegpt": {"file_name": "chat.jsonl", "formatting": "sharegpt",
                          "columns": {"messages": "conversations", "system": "system"}},
        "chat_openai": {"file_name": "openai.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant", "system_tag": "system"}},
        "hub_alpaca": {"hf_hub_url": "llamafactory/alpaca_en", "subset": "main", "split": "train"},
        "prefs": {"file_name": "qa.json", "ranking": True,
                  "columns": {"prompt": "question", "chosen": "answer", "rejected": "input"}},
    }
    (data / "dataset_info.json").write_text(json.dumps(info, indent=2))
    (data / "qa.json").write_text(json.dumps(
        [{"question": f"What is {i} plus {i}?", "input": "", "answer": f"{2 * i}", "sys": "Be brief."}
         for i in range(30)]))
    (data / "chat.jsonl").write_text("".join(json.dumps(
        {"conversations": [{"from": "human", "value": f"Say {i}"}, {"from": "gpt", "value": f"{i}"},
                           {"from": "human", "value": "Again"}, {"from": "gpt", "value": f"{i} again"}],
         "system": "You repeat numbers."}) + "\n" for i in range(30)))
    (data / "openai.json").write_text(json.dumps(
        [{"messages": [{"role": "system", "content": "Count."}, {"role": "user", "content": f"After {i}?"},
                       {"role": "assistant", "content": f"{i + 1}"}]} for i in range(30)]))
    for name, text in (("lora.yaml", LORA_SFT), ("qlora.yaml", QLORA_4BIT), ("full.yaml", FULL_SFT)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_lora_sft_example_imports_with_every_unmapped_key_explained(lf_dir):
    result = import_llamafactory_file(lf_dir / "lora.yaml")
    cfg = result.config
    assert (cfg.model_name_or_path, cfg.trust_remote_code, cfg.finetuning_type, cfg.lora_rank, cfg.lora_target,
            cfg.template, cfg.cutoff_len, cfg.max_samples, cfg.per_device_train_batch_size,
            cfg.gradient_accumulation_steps, cfg.learning_rate, cfg.num_train_epochs, cfg.lr_scheduler_type,
            cfg.warmup_ratio, cfg.precision, cfg.val_size, cfg.per_device_eval_batch_size, cfg.eval_strategy,
            cfg.eval_steps, cfg.save_steps, cfg.logging_steps, cfg.resume_from_checkpoint) == (
        "meta-llama/Meta-Llama-3-8B-Instruct", True, "lora", 8, "all-linear", "llama3", 2048, 1000, 1, 8, 1e-4, 3.0,
        "cosine", 0.1, "bf16", 0.1, 1, "steps", 500, 500, 10, None)
    # Left out of the file: LLaMA-Factory's defaults, not tunedeck's (alpha = 2 x rank, no dropout).
    assert (cfg.lora_alpha, cfg.lora_dropout, cfg.gradient_checkpointing, cfg.packing) == (16, 0.0, True, False)
    # The dataset came through dataset_info.json: the file, the alpaca format and its renamed columns.
    assert cfg.dataset == str((lf_dir / "data" / "qa.json").resolve())
    assert cfg.dataset_format == "alpaca"
    assert cfg.column_mapping == {"question": "instruction", "answer": "output", "sys": "system"}
    loaded = load_examples(cfg)
    first = (loaded.train + loaded.eval)[0]["messages"]
    assert first[0] == {"role": "system", "content": "Be brief."} and first[-1]["role"] == "assistant"
    # Every key that did not map is reported, with why; unset options (report_to: none) lose nothing.
    assert set(result.unmapped) == {"dataset", "overwrite_cache", "preprocessing_num_workers", "dataloader_num_workers",
                                    "output_dir", "plot_loss", "overwrite_output_dir", "ddp_timeout"}
    assert "run directory" in result.unmapped["output_dir"]
    assert "chat_sharegpt" in result.unmapped["dataset"]
    assert all(why for why in result.unmapped.values())


def test_qlora_4bit_example_imports(lf_dir):
    result = import_llamafactory_file(lf_dir / "qlora.yaml")
    cfg = result.config
    assert (cfg.quantization_bit, cfg.quantization_type, cfg.double_quantization, cfg.method_label) == \
        (4, "nf4", True, "qlora-4bit")
    assert (cfg.lora_target, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout) == (["q_proj", "v_proj"], 16, 32, 0.05)
    # fa2 is a request LLaMA-Factory falls back from (SDPA, with a warning): tunedeck's auto does the same.
    assert (cfg.precision, cfg.optim, cfg.attn_implementation) == ("fp16", "paged_adamw_8bit", "auto")
    assert any("flash_attn fa2" in n and "SDPA" in n for n in result.notes)
    assert cfg.dataset_format == "sharegpt" and cfg.column_mapping == {}
    assert "quantization_method" not in result.unmapped and "quantization_bit" not in result.unmapped
    loaded = load_examples(cfg)
    assert [m["role"] for m in loaded.train[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_full_sft_example_imports(lf_dir):
    result = import_llamafactory_file(lf_dir / "full.yaml")
    cfg = result.config
    assert (cfg.finetuning_type, cfg.learning_rate, cfg.max_steps, cfg.quantization_bit, cfg.template) == \
        ("full", 1e-5, 200, None, "qwen")  # Qwen's default system prompt on rows without one, as LLaMA-Factory
    assert cfg.dataset_format == "messages"  # sharegpt with OpenAI role/content tags
    # LLaMA-Factory's ds_z3_config.json, launched with torchrun on every GPU: the same here.
    assert (cfg.distributed_type, cfg.num_processes) == ("deepspeed_zero3", None) and "deepspeed" not in result.unmapped
    assert len(load_examples(cfg).train) == 30


@pytest.mark.parametrize("name", ["lora.yaml", "qlora.yaml", "full.yaml"])
def test_import_export_import_gives_the_same_config(lf_dir, tmp_path, name):
    first = import_llamafactory_file(lf_dir / name).config
    out_dir = tmp_path / "exported"
    out_dir.mkdir()
    exported = export_llamafactory(first, dataset_dir=out_dir)
    (out_dir / "dataset_info.json").write_text(json.dumps(exported.dataset_info))
    (out_dir / "train.yaml").write_text(exported.yaml_text)
    data = yaml.safe_load(exported.yaml_text)
    for key in ("model_name_or_path", "stage", "do_train", "finetuning_type", "dataset", "dataset_dir", "cutoff_len",
                "output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate"):
        assert key in data, key
    assert data["stage"] == "sft" and data["do_train"] is True
    second = import_llamafactory_file(out_dir / "train.yaml")
    assert second.config.to_dict() == first.to_dict()
    assert set(second.unmapped) <= {"output_dir", "plot_loss", "overwrite_output_dir", "report_to", "ddp_timeout",
                                    "metric_for_best_model"}


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_preset_exports_to_llamafactory_and_back(name, tmp_path):
    cfg = load_preset(name).config
    exported = export_llamafactory(cfg, dataset_dir=tmp_path)
    (tmp_path / "dataset_info.json").write_text(json.dumps(exported.dataset_info))
    back = import_llamafactory_text(exported.yaml_text, "exported.yaml", base_dir=tmp_path).config
    # What LLaMA-Factory has no word for comes back as its default; `auto` choices come back resolved.
    lossy = {"offload_activations", "skip_invalid_rows", "lora_bias", "early_stopping_patience",
             "early_stopping_threshold", "oom_recovery", "dataset", "dataset_format", "packing", "group_by_length",
             "precision", "use_liger_kernel", "resume_from_checkpoint", "per_device_eval_batch_size", "column_mapping",
             "dataset_split", "dataset_subset"}
    if cfg.finetuning_type == "full":  # LoRA settings mean nothing there and are not exported
        lossy |= {k for k in TrainConfig.model_fields if k.startswith("lora_")}
    expected = {k: v for k, v in cfg.to_dict().items() if k not in lossy}
    got = {k: v for k, v in back.to_dict().items() if k not in lossy}
    assert got == expected
    assert (back.packing or False) == (cfg.packing or False)
    if cfg.precision != "auto":
        assert back.precision == cfg.precision
    for key in exported.unmapped:
        assert key in TrainConfig.model_fields and key in lossy


def test_single_file_export_carries_its_dataset_entry():
    text = to_llamafactory_yaml(load_preset("chatglm3-6b-lora-24gb").config)
    data = yaml.safe_load(text)
    assert data["model_name_or_path"] == "THUDM/chatglm3-6b" and data["fp16"] is True
    assert data["lora_target"] == "query_key_value" and data["max_samples"] == 100000
    assert '"hf_hub_url": "shibing624/alpaca-zh"' in text


def test_hub_entries_odd_values_and_unsupported_stages(lf_dir):
    text = ("model_name_or_path: m/x\nstage: sft\nfinetuning_type: freeze\ndataset: hub_alpaca\ndataset_dir: data\n"
            "quantization_bit: 3\nquantization_method: hqq\nflash_attn: disabled\nlr_scheduler_type: warmup_stable_decay\n"
            "use_unsloth: true\nneat_packing: true\nhf_hub_token: hf_secret_value_1234567890\n")
    result = import_llamafactory_text(text, "odd.yaml", base_dir=lf_dir)
    cfg = result.config
    assert (cfg.dataset, cfg.dataset_subset, cfg.dataset_split) == ("llamafactory/alpaca_en", "main", "train")
    assert (cfg.finetuning_type, cfg.quantization_bit, cfg.attn_implementation, cfg.packing) == \
        ("lora", None, "eager", True)
    assert cfg.lr_scheduler_type == TrainConfig().lr_scheduler_type
    for key in ("finetuning_type", "quantization_bit", "quantization_method", "lr_scheduler_type", "use_unsloth",
                "hf_hub_token"):
        assert key in result.unmapped, key
    assert "environment" in result.unmapped["hf_hub_token"]
    with pytest.raises(ConfigError, match="stage 'dpo'"):
        import_llamafactory_text("model_name_or_path: m\nstage: dpo\ndataset: prefs\n", "dpo.yaml", base_dir=lf_dir)
    with pytest.raises(ConfigError, match="model_name_or_path"):
        import_llamafactory_text("stage: sft\ndataset: x\n", "nomodel.yaml")
    with pytest.raises(ConfigError, match="'prefs' is a preference \\(ranking\\) dataset"):
        import_llamafactory_text("model_name_or_path: m\ndataset: prefs\n", "p.yaml", base_dir=lf_dir)
    missing = import_llamafactory_text("model_name_or_path: m\ndataset: nowhere\n", "n.yaml", base_dir=lf_dir)
    assert "no entry" in missing.unmapped["dataset_dir"]


def test_broken_dataset_info_is_named(lf_dir):
    (lf_dir / "data" / "dataset_info.json").write_text('{"qa_alpaca": {"file_name": "qa.json",}\n')
    with pytest.raises(ConfigError, match=r"dataset_info.json: invalid JSON at line 1"):
        import_llamafactory_file(lf_dir / "lora.yaml")
    with pytest.raises(ConfigError, match="invalid JSON"):
        merge_dataset_info(lf_dir / "data" / "dataset_info.json", {})


def test_switches_read_as_written_and_a_misshapen_entry_names_its_key(lf_dir):
    base = "model_name_or_path: m\nstage: sft\ndataset: qa_alpaca\ndataset_dir: data\n"
    off = import_llamafactory_text(base + 'packing: "false"\nbf16: "false"\ngroup_by_length: "no"\n'
                                   'disable_gradient_checkpointing: "off"\n', "off.yaml", base_dir=lf_dir)
    assert (off.config.packing, off.config.group_by_length, off.config.gradient_checkpointing) == (False, False, True)
    assert off.config.precision != "bf16" and not off.unmapped
    on = import_llamafactory_text(base + "packing: 'yes'\nbf16: 'true'\n", "on.yaml", base_dir=lf_dir)
    assert (on.config.packing, on.config.precision) == (True, "bf16")
    odd = import_llamafactory_text(base + "packing: maybe\nbf16: [true]\n", "odd.yaml", base_dir=lf_dir)
    assert not odd.config.packing and odd.config.precision != "bf16"
    assert "not true or false" in odd.unmapped["packing"] and "not true or false" in odd.unmapped["bf16"]

    info_path = lf_dir / "data" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    for key, value in (("columns", ["prompt"]), ("columns", "prompt"), ("columns", {"prompt": {"a": 1}}),
                       ("tags", "x")):
        info["qa_alpaca"] = {"file_name": "qa.json", key: value}
        info_path.write_text(json.dumps(info))
        with pytest.raises(ConfigError, match=rf"dataset_info.json: the entry for 'qa_alpaca': \"{key}\" must be"):
            import_llamafactory_text(base, "t.yaml", base_dir=lf_dir)
    # A null name: the role is unused, as LLaMA-Factory reads it.
    info["qa_alpaca"] = {"file_name": "qa.json", "columns": {"prompt": "question", "query": None, "response": "answer"}}
    info_path.write_text(json.dumps(info))
    assert import_llamafactory_text(base, "t.yaml", base_dir=lf_dir).config.dataset.endswith("qa.json")


@pytest.mark.parametrize("name, expected", [
    ("examples/deepspeed/ds_z3_config.json", ("deepspeed_zero3", False, False)),
    ("examples/deepspeed/ds_z2_offload_config.json", ("deepspeed_zero2", True, False)),
    ("ds_z3_offload_config.json", ("deepspeed_zero3", True, True)),
    ("examples/deepspeed/ds_z0_config.json", ("ddp", False, False)),
    ("/secret/creds.json", None),  # no stage in the name: said, and never opened
    ("ds_z1_config.json", None),
])
def test_deepspeed_files_import_as_the_distributed_type(lf_dir, name, expected):
    text = (f"model_name_or_path: m/x\nstage: sft\ndataset: qa_alpaca\ndataset_dir: data\nfinetuning_type: lora\n"
            f"deepspeed: {name}\n")
    result = import_llamafactory_text(text, "ds.yaml", base_dir=lf_dir)
    cfg = result.config
    if expected is None:
        assert "cannot tell its ZeRO stage" in result.unmapped["deepspeed"]
        assert (cfg.distributed_type, cfg.num_processes) == ("ddp", 1)
        return
    assert (cfg.distributed_type, cfg.offload_optimizer, cfg.offload_params) == expected
    assert cfg.num_processes is None and "deepspeed" not in result.unmapped  # every GPU, as torchrun
    if cfg.distributed_type != "ddp":  # exported as the stage's file; the offload is said to be lost
        exported = export_llamafactory(cfg, base_dir=lf_dir)
        assert f"deepspeed: examples/deepspeed/ds_z{cfg.distributed_type[-1]}_config.json" in exported.yaml_text
        assert "distributed_type" not in exported.unmapped
        assert ("offload_optimizer" in exported.unmapped) == cfg.offload_optimizer


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_convert_command_both_ways_and_its_exit_codes(lf_dir, tmp_path):
    imported = tmp_path / "imported.yaml"
    proc = _cli("convert", "--from", "llamafactory", str(lf_dir / "qlora.yaml"), str(imported))
    assert proc.returncode == 0, proc.stderr
    assert "not imported: output_dir" in proc.stderr and "Traceback" not in proc.stderr
    assert load_preset(imported).config == import_llamafactory_file(lf_dir / "qlora.yaml").config
    check = _cli("check", str(imported))
    assert check.returncode == 0, check.stdout + check.stderr

    exported = tmp_path / "lf" / "train.yaml"
    proc = _cli("convert", "--to", "llamafactory", str(imported), str(exported))
    assert proc.returncode == 0, proc.stderr
    info = json.loads((exported.parent / "dataset_info.json").read_text())
    assert yaml.safe_load(exported.read_text())["dataset"] in info
    assert import_llamafactory_file(exported).config == load_preset(imported).config

    (tmp_path / "broken.yaml").write_text("model_name_or_path: x\nlora_target: [q_proj,\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    for args, needle in [
        (("--from", "llamafactory", str(tmp_path / "missing.yaml")), "file not found"),
        (("--from", "llamafactory", str(tmp_path / "broken.yaml")), "line 3"),
        (("--from", "llamafactory", str(tmp_path / "list.yaml")), "not a LLaMA-Factory training YAML"),
        (("--to", "llamafactory", str(tmp_path / "broken.yaml")), "line 3"),
        (("--to", "llamafactory", str(lf_dir / "lora.yaml")), "LLaMA-Factory"),  # a LF file is not a preset
    ]:
        proc = _cli("convert", *args, str(tmp_path / "out.yaml"))
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize("text", [
    "model_name_or_path: m\ndataset: 5\n",
    "model_name_or_path: m\ndataset: x\nquantization_bit: four\nlora_rank: abc\n",
    "model_name_or_path: m\ndataset: x\nlora_target: 5\nfinetuning_type: 7\nflash_attn: [1]\n",
    "model_name_or_path: m\ndataset: x\nlearning_rate: abc\ncutoff_len: -5\nbf16: true\nfp16: true\n",
    "model_name_or_path: m\ndataset: x\nval_size: 0.1\neval_strategy: epoch\nload_best_model_at_end: true\n",
    "model_name_or_path: [1]\ndataset: x\n",
    "model_name_or_path: m\ndataset: x\n1: 2\nnull: 3\ndataset_dir: 5\n",
])
def test_odd_values_give_a_config_or_a_clear_error(text):
    try:
        result = import_llamafactory_text(text, "odd.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("odd.yaml: ")
    else:
        assert isinstance(result.config, TrainConfig) and result.unmapped
