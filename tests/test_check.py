"""`python -m trainer check`: exit codes, messages for every kind of bad config, and hand-computed plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def check(capsys, path, *extra):
    code = main(["check", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_rows(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"instruction": f"Say the number {i}.", "input": "", "output": f"{i}"}) + "\n")
    return path


def test_demo_preset_is_valid_and_its_plan_is_printed(capsys):
    code, out, err = check(capsys, ROOT / "presets" / "demo.yaml")
    assert code == 0, err
    assert "valid" in out and "Effective batch" in out and "steps per epoch" in out


def test_hand_computed_plan_1000_rows_micro4_accum8(capsys, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", 1000)
    config = write(tmp_path, f"dataset: {data}\nper_device_train_batch_size: 4\ngradient_accumulation_steps: 8\n"
                             "num_train_epochs: 3\nwarmup_ratio: 0.1\ncutoff_len: 64\n")
    code, out, err = check(capsys, config, "--json")
    assert code == 0, err
    plan = json.loads(out)
    # 1000 rows / (4 x 8 x 1 device) = 31.25 -> 32 optimizer steps per epoch (the last one partial).
    assert plan["effective_batch_size"] == 32
    assert plan["steps_per_epoch"] == 32
    assert plan["total_steps"] == 96 and plan["epochs_effective"] == 3
    assert plan["warmup_steps"] == 10  # ceil(0.1 x 96)
    assert 0 < plan["padding_efficiency"] <= 1
    assert isinstance(plan["warnings"], list) and "memory_estimate_gb" in plan
    assert plan["num_train_samples"] == 1000


def test_max_steps_1000_lasts_32_epochs_said_in_words(capsys, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", 1000)
    config = write(tmp_path, f"dataset: {data}\nper_device_train_batch_size: 4\ngradient_accumulation_steps: 8\n"
                             "max_steps: 1000\ncutoff_len: 64\n")
    code, out, _ = check(capsys, config, "--json")
    plan = json.loads(out)
    assert code == 0 and plan["total_steps"] == 1000 and plan["epochs_effective"] == 32
    assert plan["max_steps_overrides_epochs"] is True
    code, out, _ = check(capsys, config)
    assert code == 0
    assert "max_steps = 1000 overrides num_train_epochs" in out and "32 epochs" in out


@pytest.mark.parametrize("text, field, words", [
    ("learning_rat: 0.0001\n", "learning_rat", "did you mean 'learning_rate'"),
    ("lora_rank: sixteen\n", "lora_rank", "integer"),
    ("lora_dropout: 1.5\n", "lora_dropout", "less than 1"),
    ("finetuning_type: full\nquantization_bit: 4\n", "quantization_bit", "cannot be fully fine-tuned"),
    ("eval_strategy: steps\nval_size: 0\n", "eval_strategy", "no validation split"),
    ("per_device_train_batch_size: 0\n", "per_device_train_batch_size", "greater than or equal to 1"),
])
def test_every_kind_of_bad_config_gets_its_message(capsys, tmp_path, text, field, words):
    code, out, err = check(capsys, write(tmp_path, text))
    assert code == 2
    assert field in err and words in err, err
    assert "Traceback" not in err + out


def test_broken_yaml_names_the_line(capsys, tmp_path):
    code, _, err = check(capsys, write(tmp_path, "model_name_or_path: demo\nlora_rank: [16\ncutoff_len: 64\n"))
    assert code == 2 and "line 3" in err and "invalid YAML" in err


def test_bad_config_as_json_lists_the_fields(capsys, tmp_path):
    code, out, _ = check(capsys, write(tmp_path, "lora_rank: -1\nlearning_rat: 1\n"), "--json")
    report = json.loads(out)
    assert code == 2 and report["valid"] is False
    assert {e["field"] for e in report["errors"]} >= {"learning_rat"}


def test_missing_config_file(capsys, tmp_path):
    code, _, err = check(capsys, tmp_path / "nope.yaml")
    assert code == 2 and "file not found" in err


def test_bad_dataset_row_names_file_and_line(capsys, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', encoding="utf-8")
    code, _, err = check(capsys, write(tmp_path, f"dataset: {data}\n"))
    assert code == 2 and "bad.jsonl" in err and "line 2" in err and "Traceback" not in err


def test_missing_local_paths_are_errors(capsys, tmp_path):
    code, _, err = check(capsys, write(tmp_path, f"dataset: {tmp_path / 'missing.jsonl'}\n"))
    assert code == 2 and "missing.jsonl" in err
    code, _, err = check(capsys, write(tmp_path, f"model_name_or_path: {tmp_path / 'no-model'}\n"))
    assert code == 2 and "does not exist" in err


def test_unreachable_hub_model_and_dataset_are_warnings_with_unknown_numbers(capsys, tmp_path):
    config = write(tmp_path, "model_name_or_path: meta-llama/Llama-3.1-8B\ndataset: tatsu-lab/alpaca\n"
                             "quantization_bit: 4\n")
    code, out, err = check(capsys, config, "--json", "--gpu-gb", "24")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["steps_per_epoch"] is None and plan["total_steps"] is None
    assert "steps_per_epoch" in plan["unknown"] and "padding_efficiency" in plan["unknown"]
    assert any("tatsu-lab/alpaca" in w and "unknown" in w for w in plan["warnings"])
    assert any("meta-llama/Llama-3.1-8B' cannot be loaded from the Hugging Face Hub: offline mode is on" in w
               for w in plan["warnings"])
    assert plan["effective_batch_size"] == 16
    code, out, _ = check(capsys, config)
    assert code == 0 and "unknown" in out and "Warnings" in out


def test_check_does_not_import_torch_without_a_tokenizer(tmp_path):
    config = write(tmp_path, "model_name_or_path: meta-llama/Llama-3.1-8B\ndataset: tatsu-lab/alpaca\n")
    probe = ("import sys; from trainer.__main__ import main; code = main(['check', sys.argv[1], '--json']); "
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", probe, str(config)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "NO-TORCH 0", result.stderr[-2000:]


def test_cli_exit_code_and_no_traceback_in_a_real_subprocess(tmp_path):
    config = write(tmp_path, "lora_alpha: lots\n")
    result = subprocess.run([sys.executable, "-m", "trainer", "check", str(config)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "lora_alpha" in result.stderr and "Traceback" not in result.stderr


def test_a_reader_that_leaves_early_and_a_gpu_size_that_is_no_size(tmp_path):
    config = write(tmp_path, "dataset: demo\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # `check x.yaml | head -1`: the reader is gone before the report is written. Nothing is wrong.
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "check", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "BrokenPipeError" not in err, err
    for size in ("-5", "0", "nan", "inf", "lots"):
        done = subprocess.run([sys.executable, "-m", "trainer", "check", str(config), "--gpu-gb", size], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "--gpu-gb" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_one_validation_row_is_one_row(capsys, tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", 10)
    code, out, err = check(capsys, write(tmp_path, f"dataset: {data}\nval_size: 1\n"))
    assert code == 0, err
    assert "9 training rows, 1 validation row" in out and "1 validation rows" not in out


def test_a_lora_target_the_model_lacks_is_refused_before_the_run(capsys, tmp_path):
    # The run refuses it once the weights have loaded; check builds the layers on the meta device instead.
    config = write(tmp_path, "model_name_or_path: demo\nlora_target: q_proj,v_prj\n")
    code, out, err = check(capsys, config, "--json")
    assert code == 2
    report = json.loads(out)
    assert report["errors"][0]["field"] == "lora_target"
    assert "v_prj (did you mean v_proj?)" in report["errors"][0]["message"]
    assert "q_proj" in report["errors"][0]["message"]  # the model's layers are listed
    fine = write(tmp_path, "model_name_or_path: demo\nlora_target: q_proj,v_proj\n", "fine.yaml")
    assert check(capsys, fine)[0] == 0
    # Full fine-tuning has no targets to judge.
    full = write(tmp_path, "model_name_or_path: demo\nfinetuning_type: full\nlora_target: v_prj\n", "full.yaml")
    assert check(capsys, full)[0] == 0


def test_liger_kernels_on_a_machine_without_a_gpu_are_named(capsys, tmp_path):
    code, out, err = check(capsys, write(tmp_path, "model_name_or_path: demo\nuse_liger_kernel: true\n"))
    assert code == 0, err  # a warning here (the config may be meant for a GPU machine); the queue refuses it
    assert "use_liger_kernel: Liger's fused kernels run on a GPU" in out
