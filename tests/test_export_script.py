"""The exported plain script (transformers + peft + trl, no tunedeck) reproduces a run: it trains the demo
preset to completion in a real subprocess, and its data pipeline and SFTConfig match tunedeck's own."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.interop.export_script import export_script, write_script
from trainer.interop.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_demo_script_trains_to_completion_without_tunedeck(tmp_path):
    cfg = load_preset("demo").config.replace(resume_from_checkpoint="last")
    script = write_script(cfg, tmp_path / "train_plain.py")
    tree = ast.parse(script.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "trainer" not in imported and "webui" not in imported
    assert {"transformers", "peft", "trl", "datasets", "torch"} <= imported
    # Run it where tunedeck cannot be imported: a bare folder, no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), "--output-dir", str(tmp_path / "out"), "--max-steps", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["r"] == cfg.lora_rank and adapter_config["lora_alpha"] == cfg.lora_alpha
    state = json.loads(next((tmp_path / "out" / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == 3
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)
    # resume_from_checkpoint: last continues from the newest checkpoint, as tunedeck's runs do.
    proc = subprocess.run([sys.executable, str(script), "--output-dir", str(tmp_path / "out"), "--max-steps", "4"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((tmp_path / "out" / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]
    trained_now = (proc.stdout + proc.stderr).count("'loss':")  # one log line per step trained in this process
    assert trained_now == 1, proc.stdout[-3000:]


@pytest.fixture(scope="module")
def demo_tokenizer():
    from trainer.engine.demo import ensure_demo_model
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ensure_demo_model()))


def _tunedeck_rows(cfg: TrainConfig, tokenizer):
    from trainer.datasets import load_examples, tokenize_examples

    loaded = load_examples(cfg)
    return loaded, tokenize_examples(loaded.train, tokenizer, cfg), tokenize_examples(loaded.eval, tokenizer, cfg)


@pytest.mark.parametrize("case", ["demo", "named-template-sharegpt", "text-prompt-loss", "rewriting-template",
                                  "csv-semicolons", "wrapped-json"])
def test_script_data_pipeline_matches_tunedeck(case, tmp_path, demo_tokenizer):
    cfg = load_preset("demo").config
    tokenizer = demo_tokenizer
    if case == "rewriting-template":
        # A template whose first line depends on the whole conversation: rendering prefixes does not find the
        # answers, so both sides fall back to locating them by their text.
        import copy

        tokenizer = copy.deepcopy(demo_tokenizer)
        tokenizer.chat_template = "{{ 'Turns: ' ~ (messages | length) ~ '\\n' }}" + demo_tokenizer.chat_template
    if case == "named-template-sharegpt":
        data = tmp_path / "chat.jsonl"
        data.write_text("".join(json.dumps(
            {"dialog": [{"from": "human", "value": f"Say {i} " * (i % 7 + 1)}, {"from": "gpt", "value": f"{i}!"},
                        {"from": "human", "value": "Again"}, {"from": "gpt", "value": f"{i} again " * (i % 5 + 1)}],
             "system": "You repeat."}) + "\n" for i in range(40)))
        cfg = cfg.replace(dataset=str(data), template="llama3", column_mapping={"dialog": "conversations"},
                          cutoff_len=200, val_size=5)
    elif case == "csv-semicolons":  # a spreadsheet's export
        data = tmp_path / "sheet.csv"
        data.write_text("question;answer;system\n" + "".join(f"What is {i}*2?;{2 * i};Be exact.\n" for i in range(20)))
        cfg = cfg.replace(dataset=str(data), column_mapping={"question": "instruction", "answer": "output"},
                          template="alpaca", val_size=3)
    elif case == "wrapped-json":
        data = tmp_path / "wrapped.json"
        data.write_text(json.dumps({"data": [{"prompt": f"Name {i}", "completion": f"Item {i}"} for i in range(20)]}))
        cfg = cfg.replace(dataset=str(data), template="chatml", val_size=0, eval_strategy="no")
    elif case == "text-prompt-loss":
        data = tmp_path / "text.json"
        data.write_text(json.dumps([{"text": f"Document {i}: " + "words " * (i % 9)} for i in range(30)]))
        cfg = cfg.replace(dataset=str(data), dataset_format="text", val_size=0.2, max_samples=25)
    module = _module(write_script(cfg, tmp_path / "plain.py"), f"plain_{case.replace('-', '_')}")
    train_examples, eval_examples = module.load_examples()
    loaded, train_rows, eval_rows = _tunedeck_rows(cfg, tokenizer)
    assert [dict(e) for e in loaded.train] == train_examples and [dict(e) for e in loaded.eval] == eval_examples
    assert module.tokenize_all(train_examples, tokenizer) == [dict(r) for r in train_rows]
    assert module.tokenize_all(eval_examples, tokenizer) == [dict(r) for r in eval_rows]
    assert any(0 in r["completion_mask"] for r in train_rows) == (case != "text-prompt-loss")


def test_script_sft_config_matches_the_trainer(tmp_path):
    """The script's SFTConfig is tunedeck's (trainer/engine/sft_args.py: sft_config_kwargs), value for value."""
    from trainer.plan.hardware import detect
    from trainer.plan.resolve import resolve_plan
    from trainer.engine.sft_args import sft_config_kwargs

    for name in ("demo", "open-llama-7b-v2-qlora", "unsloth-style-qlora"):
        cfg = load_preset(name).config.replace(precision="auto", attn_implementation="auto")
        module = _module(write_script(cfg, tmp_path / f"{name}.py"), f"plain_cfg_{name.replace('-', '_')}")
        hw = detect()
        plan = resolve_plan(cfg, 100, hw=hw)
        runtime = module.resolve_runtime()
        assert (runtime["precision"], runtime["attention"], runtime["packing"], runtime["group_by_length"],
                runtime["liger"]) == (plan.precision, plan.attn_implementation, plan.packing, plan.group_by_length,
                                      plan.use_liger_kernel)
        theirs = sft_config_kwargs(cfg, tmp_path / "run", plan, hw)
        ours = module.sft_config(runtime, tmp_path / "run", cfg.max_steps).to_dict()
        # Where the outputs and logs go is the harness's business, not the training's.
        skip = {"output_dir", "run_name", "report_to", "disable_tqdm", "include_num_input_tokens_seen"}
        for key, value in theirs.items():
            if key in skip:
                continue
            mine = ours[key]
            if hasattr(mine, "value"):  # enums (schedulers, strategies, optimizers)
                mine = mine.value
            assert mine == value or str(mine) == str(value), (name, key, mine, value)


def test_script_for_a_hub_model_and_full_fine_tuning(tmp_path):
    text = export_script(load_preset("qwen2.5-0.5b-full-sft-24gb").config)
    compile(text, "plain.py", "exec")
    assert "MODEL = 'Qwen/Qwen2.5-0.5B'" in text and "'finetuning_type': 'full'" in text
    assert "NAMED_TEMPLATE = _chatml" in text and "hf_" not in text.replace("hf_hub", "")
