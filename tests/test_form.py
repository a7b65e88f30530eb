"""The generated form and the schema round-trip: every field has a control, values come back the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import GROUPS, ConfigError, TrainConfig
from trainer.fieldspecs import field_specs
from webui.form import (AUTO, EMPTY, FALSE, TRUE, config_to_values, controls, grouped_controls, values_to_config)

ROOT = Path(__file__).resolve().parents[1]


def test_every_schema_field_has_exactly_one_control_in_its_group():
    names = [c.name for c in controls()]
    assert names == list(TrainConfig.model_fields)
    grouped = [c.name for _, _, _, common, advanced in grouped_controls() for c in common + advanced]
    assert sorted(grouped) == sorted(names)
    assert [g[0] for g in grouped_controls()] == [g[0] for g in GROUPS]
    for spec, control in zip(field_specs(), controls()):
        assert control.label == spec.label and control.help == spec.help
        if spec.optional and spec.kind in ("bool", "choice"):
            assert (AUTO if spec.kind == "bool" else EMPTY) in control.choices


def test_defaults_round_trip():
    cfg = TrainConfig()
    assert values_to_config(config_to_values(cfg)) == cfg


def test_presets_round_trip():
    for path in sorted((ROOT / "presets").glob("*.yaml")):
        cfg = TrainConfig.from_yaml(path)
        assert values_to_config(config_to_values(cfg)) == cfg, path.name


def test_non_default_values_round_trip():
    cfg = TrainConfig(
        model_name_or_path="Qwen/Qwen2.5-0.5B", finetuning_type="lora", quantization_bit=4, packing=False,
        group_by_length=True, max_samples=1000, per_device_eval_batch_size=4, lora_target=["q_proj", "v_proj"],
        column_mapping={"question": "instruction", "answer": "output"}, learning_rate=1.5e-5,
        dataset_subset="en", save_total_limit=None, run_name="my run", val_size=0.05, eval_strategy="steps",
        use_liger_kernel=False, resume_from_checkpoint="last", max_steps=120, warmup_ratio=0.0, warmup_steps=5)
    values = config_to_values(cfg)
    assert values["quantization_bit"] == "4" and values["packing"] == FALSE and values["group_by_length"] == TRUE
    assert values["save_total_limit"] == "" and values["use_liger_kernel"] == FALSE
    assert values_to_config(values) == cfg


def test_field_errors_are_named_by_field():
    values = config_to_values(TrainConfig())
    values.update(learning_rate=-1, max_samples="lots", column_mapping="[1, 2]")
    with pytest.raises(ConfigError) as err:
        values_to_config(values)
    by_field = err.value.by_field()
    # every problem at once: the two that cannot be parsed and the one the schema refuses
    assert set(by_field) == {"max_samples", "column_mapping", "learning_rate"}
    assert "number" in by_field["max_samples"] and "greater than 0" in by_field["learning_rate"]
    values.update(max_samples="", column_mapping="")
    with pytest.raises(ConfigError) as err:
        values_to_config(values)
    assert set(err.value.by_field()) == {"learning_rate"}
    values.update(learning_rate=1e-4, finetuning_type="full", quantization_bit="4")
    with pytest.raises(ConfigError) as err:
        values_to_config(values)
    assert "quantization_bit" in err.value.by_field()


def test_the_page_builds_without_importing_torch(tmp_path):
    """`import webui` and building the whole page never import torch (the server starts in seconds)."""
    import subprocess
    import sys

    code = ("import sys, webui; assert 'torch' not in sys.modules, 'import webui imported torch'\n"
            "from webui.page import build\n"
            f"demo = build({str(tmp_path)!r})\n"
            "demo.tunedeck_context.jobs.close()\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes') if m in sys.modules]\n"
            "assert not heavy, f'building the page imported {heavy}'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_plan_panel_words_and_config_diff():
    from trainer.plan.resolve import Hardware, resolve_plan
    from webui.views import config_diff_markdown, plan_markdown

    cfg = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=8, max_steps=50,
                      num_train_epochs=1)
    plan = resolve_plan(cfg, 1000, hw=Hardware(), reference_effective_batch=16, reference_learning_rate=2e-4)
    text = plan_markdown(plan, num_samples=1000, dataset_note="alpaca format", hardware_label="CPU")
    assert "32 = 4 × 8 × 1" in text and "| Steps per epoch | 32 |" in text and "| Total optimizer steps | 50 |" in text
    assert "max_steps = 50 overrides" in text and "1000 (alpaca format)" in text
    assert "moved from 16 to 32" in text  # the learning-rate note against the preset's effective batch
    diff = config_diff_markdown([("a", cfg), ("b", cfg.replace(learning_rate=1e-4)), ("c", None)])
    assert "`learning_rate`" in diff and "0.0002" in diff and "0.0001" in diff and "`max_steps`" not in diff
    assert "two or more" in config_diff_markdown([("a", cfg)])


def test_logins_come_from_the_environment_only(monkeypatch):
    import app
    from webui.auth import AUTH_ENV, logins_from_env

    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert logins_from_env() is None
    monkeypatch.setenv(AUTH_ENV, "alice:pw1, bob:p:w2")
    assert logins_from_env() == [("alice", "pw1"), ("bob", "p:w2")]
    monkeypatch.setenv(AUTH_ENV, "alice")
    with pytest.raises(ValueError, match="user:password"):
        logins_from_env()
    args = app.parse_args(["--port", "7999", "--runs-dir", "/tmp/x", "--share"])
    assert (args.port, args.runs_dir, args.share, args.host) == (7999, "/tmp/x", True, "127.0.0.1")


def test_uploads_are_kept_in_the_users_folder_without_clobbering(tmp_path):
    from webui.tabs.data import save_upload

    src_dir = tmp_path / "gradio-temp"
    src_dir.mkdir()
    kept = tmp_path / "runs" / "uploads" / "alice"
    first = src_dir / "my data (v1).jsonl"
    first.write_text('{"text": "a"}\n')
    saved = save_upload(kept, str(first))
    assert saved == kept / "my_data_v1.jsonl" and saved.read_text() == first.read_text()
    assert save_upload(kept, str(first)) == saved  # the same file again: the same path
    first.write_text('{"text": "b"}\n')  # another file under the same name must not replace the first
    other = save_upload(kept, str(first))
    assert other.name == "my_data_v1-2.jsonl" and saved.read_text() == '{"text": "a"}\n'
    evil = src_dir / "..%2F..%2Fetc.jsonl"
    evil.write_text("{}\n")
    assert save_upload(kept, str(evil)).parent == kept


def test_a_fraction_in_an_integer_field_reaches_the_schema_unrounded_and_is_refused_by_name():
    import gradio as gr

    from webui.tabs.train import render_control

    lora_rank = next(c for c in controls() if c.name == "lora_rank")
    with gr.Blocks():
        number = render_control(lora_rank, 16, gr.I18n())
    assert number.precision is None  # precision=0 would make the browser send 2 for 1.5
    values = config_to_values(TrainConfig())
    values.update(lora_rank=1.5)
    with pytest.raises(ConfigError) as err:
        values_to_config(values)
    assert "whole number" in err.value.by_field()["lora_rank"]
