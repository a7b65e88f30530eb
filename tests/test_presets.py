"""Presets: built-in recipes load, validate and round-trip; user presets are saved safely (names that
cannot escape the folder, no secrets), unknown keys are named and only loaded when allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.interop import presets
from trainer.config import ConfigError, TrainConfig
from trainer.plan.resolve import Hardware
from trainer.interop.presets import (PresetError, UnknownKeysError, delete_user_preset, list_presets, load_named_preset,
                             load_preset, preset_from_bytes, preset_to_yaml, rename_user_preset, save_user_preset,
                             validate_name)

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = sorted(p.stem for p in (ROOT / "presets").glob("*.yaml"))
SECRET = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"


def test_the_recipes_the_issue_asks_for_are_built_in():
    by_name = {p.name: p for p in list_presets(ROOT / "no-runs-here")}
    assert set(by_name) == set(BUILTINS) and all(p.builtin for p in by_name.values())
    configs = {name: load_preset(name).config for name in BUILTINS}
    assert configs["demo"].model_name_or_path == "demo"
    llama = load_preset("llama3.1-8b-qlora-80gb")
    assert (llama.config.model_name_or_path, llama.config.quantization_bit, llama.config.cutoff_len,
            llama.config.group_by_length, llama.config.optim, llama.config.learning_rate,
            llama.config.gradient_accumulation_steps) == ("meta-llama/Llama-3.1-8B", 4, 2048, True, "adamw_8bit",
                                                          2e-5, 36)
    assert llama.meta["micro_batch"] == "auto" and llama.meta["gpu_gb"] == 80
    glm = configs["chatglm3-6b-lora-24gb"]
    assert (glm.learning_rate, glm.num_train_epochs, glm.max_grad_norm, glm.max_samples, glm.per_device_train_batch_size,
            glm.gradient_accumulation_steps, glm.precision, glm.cutoff_len, glm.val_size, glm.lr_scheduler_type) == \
        (5e-5, 3, 1.0, 100000, 8, 2, "fp16", 1024, 0.1, "cosine")
    ol = configs["open-llama-7b-v2-qlora"]
    assert (ol.max_steps, ol.optim, ol.precision, ol.eval_strategy, ol.save_strategy, ol.save_total_limit,
            ol.load_best_model_at_end, ol.per_device_train_batch_size * ol.gradient_accumulation_steps) == \
        (-1, "paged_adamw_8bit", "fp16", "epoch", "epoch", 2, True, 128)
    full = [configs[n] for n in BUILTINS if n.startswith("qwen2.5-0.5b-full")]
    assert sorted((c.per_device_train_batch_size, c.gradient_accumulation_steps) for c in full) == \
        [(4, 6), (6, 4), (6, 4)]
    assert all(c.finetuning_type == "full" and c.cutoff_len == 2048 and c.learning_rate == 3e-5 for c in full)
    un = configs["unsloth-style-qlora"]
    assert (un.lora_rank, un.lora_alpha, un.lora_bias, un.packing, un.gradient_checkpointing,
            un.offload_activations, un.quantization_bit) == (32, 16, "none", True, True, True, 4)
    assert set(un.lora_target) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for name in BUILTINS:
        meta = load_preset(name).meta
        assert meta["title"].strip() and len(meta["description"].split()) >= 15, name


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_preset_round_trips_and_passes_check(name, tmp_path, capsys):
    from trainer.__main__ import main

    meta, cfg, ignored = load_preset(name)
    assert ignored == {}
    saved = save_user_preset(f"copy of {name}", cfg, tmp_path, title=meta["title"], description=meta["description"])
    again = load_named_preset(saved.name, runs_root=tmp_path)
    assert again.config == cfg and again.config.to_dict() == cfg.to_dict()
    assert again.meta["title"] == meta["title"]
    text = preset_to_yaml(cfg, title="t")
    assert preset_from_bytes(text.encode()).config == cfg
    # `check` runs offline: an unreachable Hub model or dataset is a warning, never a failure.
    assert main(["check", str(ROOT / "presets" / f"{name}.yaml")]) == 0, capsys.readouterr()


def test_check_subprocess_on_a_builtin_preset():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "trainer", "check", "presets/unsloth-style-qlora.yaml"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_tight_memory_variants_need_less_memory_for_the_same_batch():
    from trainer.plan.resolve import resolve_plan

    card = Hardware(device="cuda", gpu_total_gb=24, bf16_supported=True)
    plans = {name: resolve_plan(load_preset(name).config, hw=card, gpu_memory_gb=24)
             for name in ("qwen2.5-0.5b-full-sft-24gb", "qwen2.5-0.5b-full-sft-24gb-tight-6x4",
                          "qwen2.5-0.5b-full-sft-24gb-tight-4x6")}
    base = plans.pop("qwen2.5-0.5b-full-sft-24gb")
    assert base.memory_estimate_gb < 24 and base.to_dict()["memory_verdict"] == "fits"
    for name, plan in plans.items():
        assert plan.effective_batch_size == base.effective_batch_size == 24, name
        assert plan.memory_estimate_gb < base.memory_estimate_gb, name


def test_auto_micro_batch_comes_from_the_memory_planner():
    meta, cfg, _ = load_preset("llama3.1-8b-qlora-80gb")
    on_80 = presets.resolve_auto_micro_batch(meta, cfg)  # the preset's gpu_gb
    on_24 = presets.resolve_auto_micro_batch(meta, cfg, Hardware(device="cuda", gpu_total_gb=24, bf16_supported=True))
    assert on_80.per_device_train_batch_size > on_24.per_device_train_batch_size >= 1
    assert on_80.gradient_accumulation_steps == on_24.gradient_accumulation_steps == 36
    demo_meta, demo_cfg, _ = load_preset("demo")
    assert presets.resolve_auto_micro_batch(demo_meta, demo_cfg) is demo_cfg


@pytest.mark.parametrize("bad", ["../x", "../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "x\x00y", "", "   ",
                                 "..", ".hidden", "demo", "DEMO", "con", "name?", "x" * 81])
def test_unsafe_or_reserved_names_are_rejected(bad, tmp_path):
    cfg = TrainConfig()
    with pytest.raises(PresetError) as err:
        save_user_preset(bad, cfg, tmp_path)
    assert err.value.errors[0][0] == "name" and err.value.errors[0][1]
    with pytest.raises(PresetError):
        validate_name(bad)
    # Nothing was written anywhere under (or beside) the runs root.
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    assert not (tmp_path.parent / "x.yaml").exists()


def test_traversal_through_rename_delete_and_load_is_rejected(tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("model_name_or_path: demo\n")
    root = tmp_path / "runs"
    save_user_preset("mine", TrainConfig(), root)
    for call in (lambda: rename_user_preset("mine", "../outside", root),
                 lambda: rename_user_preset("../outside", "x", root),
                 lambda: delete_user_preset("../outside", root),
                 lambda: delete_user_preset(str(outside), root),
                 lambda: load_named_preset("../outside", runs_root=root)):
        with pytest.raises(PresetError):
            call()
    assert outside.exists() and (root / "presets" / "mine.yaml").exists()


def test_user_preset_lifecycle(tmp_path):
    cfg = TrainConfig(learning_rate=1e-4, lora_rank=8, lora_alpha=16)
    saved = save_user_preset("  My recipe (v2) ", cfg, tmp_path, description="for tests")
    assert saved.name == "My recipe (v2)" and saved.path == tmp_path / "presets" / "My recipe (v2).yaml"
    with pytest.raises(PresetError, match="already exists"):
        save_user_preset("My recipe (v2)", cfg, tmp_path)
    save_user_preset("My recipe (v2)", cfg.replace(lora_rank=4, lora_alpha=8), tmp_path, overwrite=True)
    assert load_named_preset("My recipe (v2)", runs_root=tmp_path).config.lora_rank == 4
    new_path = rename_user_preset("My recipe (v2)", "renamed", tmp_path)
    names = [p.name for p in list_presets(tmp_path)]
    assert "renamed" in names and "My recipe (v2)" not in names and new_path.exists()
    assert load_preset("renamed", runs_root=tmp_path).meta["title"] == "renamed"
    with pytest.raises(PresetError, match="read-only"):
        delete_user_preset("demo", tmp_path)
    with pytest.raises(PresetError, match="read-only"):
        rename_user_preset("demo", "mine", tmp_path)
    delete_user_preset("renamed", tmp_path)
    assert not new_path.exists()
    with pytest.raises(PresetError, match="no preset named 'renamed'"):
        load_named_preset("renamed", runs_root=tmp_path)


def test_a_broken_user_file_is_listed_with_its_error(tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "broken.yaml").write_text("learning_rate: [1,\n")
    (folder / "demo.yaml").write_text("learning_rate: 0.5\n")  # copied in by hand over a built-in's name
    shadowed = [p for p in list_presets(tmp_path) if p.name == "demo" and not p.builtin][0]
    assert "built-in" in shadowed.error
    assert load_named_preset("demo", runs_root=tmp_path).config.learning_rate != 0.5
    broken = [p for p in list_presets(tmp_path) if p.name == "broken"][0]
    assert broken.error and "line" in broken.error and not broken.builtin
    with pytest.raises(ConfigError, match="line 2"):
        load_named_preset("broken", runs_root=tmp_path)


def test_secrets_are_stripped_on_load_and_never_saved(tmp_path):
    text = (f"preset:\n  title: shared recipe\n  api_key: sk-{'x' * 24}\n"
            f"model_name_or_path: demo\nhf_token: {SECRET}\nwandb_api_key: abc\npassword: hunter2\n"
            f"run_name: {SECRET}\nlearning_rate: 0.001\n")
    meta, cfg, ignored = preset_from_bytes(text.encode(), "shared.yaml")
    assert {"hf_token", "wandb_api_key", "password", "run_name", "preset.api_key"} <= set(ignored)
    assert all("secret" in why for why in ignored.values())
    assert cfg.learning_rate == 0.001 and cfg.run_name is None and "api_key" not in meta
    # A form that held secrets (a dict of values): the file written never contains one.
    form = {**cfg.to_dict(), "run_name": f"run-{SECRET}"}
    saved = save_user_preset("shared", form, tmp_path, description=f"token {SECRET}", meta={"hf_token": SECRET})
    written = saved.path.read_text()
    assert "hf_" not in written and "hunter2" not in written
    assert {"run_name", "preset.description", "preset.hf_token"} <= set(saved.stripped)
    assert yaml.safe_load(written)["learning_rate"] == 0.001
    assert "hf_" not in preset_to_yaml({**cfg.to_dict(), "hf_token": SECRET})


def test_unknown_keys_are_named_and_loaded_only_when_allowed(tmp_path):
    text = "model_name_or_path: demo\nlerning_rate: 0.1\nfancy_new_option: 3\nlora_rank: 8\nlora_alpha: 16\n"
    with pytest.raises(UnknownKeysError) as err:
        preset_from_bytes(text.encode(), "old.yaml")
    message = str(err.value)
    assert "lerning_rate" in message and "did you mean 'learning_rate'" in message and "fancy_new_option" in message
    assert set(err.value.unknown) == {"lerning_rate", "fancy_new_option"}
    meta, cfg, ignored = preset_from_bytes(text.encode(), "old.yaml", allow_unknown=True)
    assert cfg.lora_rank == 8 and cfg.learning_rate == TrainConfig().learning_rate
    assert set(ignored) == {"lerning_rate", "fancy_new_option"}
    # The same through a file in the user folder, by name.
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "old.yaml").write_text(text)
    with pytest.raises(UnknownKeysError):
        load_preset("old", runs_root=tmp_path)
    assert load_preset("old", allow_unknown=True, runs_root=tmp_path).config.lora_rank == 8
    # Names other tools use point at ours.
    with pytest.raises(UnknownKeysError, match="max_seq_length: did you mean 'cutoff_len'"):
        preset_from_bytes(b"max_seq_length: 512\n")
    # A LLaMA-Factory file uploaded as a preset gets pointed at the importer.
    with pytest.raises(UnknownKeysError, match="LLaMA-Factory"):
        preset_from_bytes(b"model_name_or_path: x\nstage: sft\ndo_train: true\noutput_dir: saves/x\n")


@pytest.mark.parametrize("data, expected", [
    (b"learning_rate: 0.1\nlora_rank: [1,\n", "line 3"),
    (b"- a\n- b\n", "not a mapping"),
    (b"", "empty"),
    (b"\xff\xfe\x00l\x00r", "binary"),
    (b"caf\xe9: 1\n", "not UTF-8"),
    (b"just text\n", "not a mapping"),
    (b"learning_rate: -1\n", "learning_rate"),
    (b"preset: 3\nlearning_rate: 0.1\n", "preset"),
    (b"a: &x [1, 2]\nb: [*x, *x]\n", "aliases"),
    (b"a: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b"# " + b"x" * 1_000_001, "too large"),
])
def test_broken_uploads_get_a_clear_message(data, expected):
    with pytest.raises(ConfigError) as err:
        preset_from_bytes(data, "upload.yaml")
    assert expected in str(err.value) and "upload.yaml" in str(err.value)
