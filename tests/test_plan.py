"""plan.py against hand-computed cases."""

from __future__ import annotations

import pytest

from trainer.config import TrainConfig
from trainer.plan.resolve import (Hardware, pack_best_fit_decreasing, packing_factor, padding_efficiency,
                          resolve_plan)


def test_issue_example_1000_samples_micro_4_accum_8():
    cfg = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=8, num_train_epochs=3)
    plan = resolve_plan(cfg, 1000)
    assert plan.effective_batch_size == 32
    assert plan.steps_per_epoch == 32  # 250 micro-batches / 8 = 31.25: the last partial step counts
    assert plan.total_steps == 96
    assert plan.warmup_steps == 3  # ceil(0.03 * 96)
    assert plan.epochs_effective == 3 and not plan.max_steps_overrides_epochs


def test_max_steps_overrides_epochs_in_words_and_numbers():
    cfg = TrainConfig(per_device_train_batch_size=4, gradient_accumulation_steps=8, max_steps=1000)
    plan = resolve_plan(cfg, 1000)
    assert plan.total_steps == 1000 and plan.max_steps_overrides_epochs
    assert plan.epochs_effective == 32
    text = " ".join(plan.summary)
    assert "max_steps = 1000 overrides num_train_epochs = 3" in text and "32 epochs" in text
    assert any("longer, not shorter" in w for w in plan.warnings)


def test_devices_multiply_the_effective_batch():
    four_gpus = Hardware(device="cuda", num_devices=4, bf16_supported=True)
    for processes in (4, "auto"):  # auto: every visible GPU
        cfg = TrainConfig.from_dict(dict(per_device_train_batch_size=2, gradient_accumulation_steps=4,
                                         num_train_epochs=1, num_processes=processes))
        plan = resolve_plan(cfg, 100, hw=four_gpus)
        assert plan.effective_batch_size == 32 and plan.num_devices == 4
        assert plan.steps_per_epoch == 4  # 100 rows / (2*4) = 13 micro-batches per device; / 4 = 3.25 -> 4
        assert plan.precision == "bf16"
    # One process (the default) trains on one of the four GPUs: the others do not count.
    one = resolve_plan(TrainConfig(per_device_train_batch_size=2, gradient_accumulation_steps=4), 100, hw=four_gpus)
    assert one.effective_batch_size == 8 and one.num_devices == 1
    # Machines multiply too.
    cfg = TrainConfig(per_device_train_batch_size=2, gradient_accumulation_steps=4, num_processes=4, num_machines=2,
                      main_process_ip="10.0.0.1")
    plan = resolve_plan(cfg, 100, hw=four_gpus)
    assert plan.effective_batch_size == 64 and plan.num_devices == 8
    assert "× 4 (devices) × 2 (machines) = 64" in plan.summary[0]


def test_unknown_dataset_size_leaves_step_numbers_unknown():
    plan = resolve_plan(TrainConfig(), None)
    assert plan.steps_per_epoch is None and plan.total_steps is None and plan.warmup_steps is None


def test_learning_rate_note_when_the_effective_batch_moves():
    cfg = TrainConfig(per_device_train_batch_size=8, gradient_accumulation_steps=8, learning_rate=1e-4)
    plan = resolve_plan(cfg, 1000, reference_effective_batch=16, reference_learning_rate=1e-4)
    assert plan.extra["suggested_learning_rate"] == pytest.approx(2e-4)  # sqrt(64/16) = 2
    assert any("moved from 16 to 64" in s for s in plan.summary)


def test_auto_precision_and_packing_follow_the_hardware():
    cfg = TrainConfig()
    cpu = resolve_plan(cfg, 10)
    assert (cpu.precision, cpu.packing, cpu.group_by_length, cpu.attn_implementation) == ("fp32", False, True, "sdpa")
    gpu = resolve_plan(cfg, 10, hw=Hardware(device="cuda", bf16_supported=True, flash_attention=True))
    assert (gpu.precision, gpu.packing, gpu.group_by_length) == ("bf16", True, False)
    assert resolve_plan(TrainConfig(packing=False), 10, hw=Hardware(device="cuda", flash_attention=True)).packing is False


def test_auto_attention_takes_the_fastest_flash_attention_installed():
    gpu = dict(device="cuda", bf16_supported=True)
    cases = [(Hardware(**gpu), "sdpa"), (Hardware(**gpu, hub_attention_kernel="kernels-community/flash-attn2"),
                                        "kernels-community/flash-attn2"),
             (Hardware(**gpu, flash_attention=True, hub_attention_kernel="kernels-community/flash-attn2"),
              "flash_attention_2"),
             (Hardware(**gpu, flash_attention=True, flash_attention_3=True), "flash_attention_3"),
             (Hardware(flash_attention=True, flash_attention_3=True), "sdpa")]  # a CPU
    for hw, attention in cases:
        plan = resolve_plan(TrainConfig(), 10, hw=hw)
        assert plan.attn_implementation == attention, hw
        assert plan.packing is (hw.device == "cuda")  # every one of them keeps packed rows apart
    forced = resolve_plan(TrainConfig(attn_implementation="sdpa"), 10, hw=cases[3][0])
    assert forced.attn_implementation == "sdpa"


def test_auto_packs_padding_free_on_a_gpu_with_sdpa_too():
    sdpa = resolve_plan(TrainConfig(), 10, hw=Hardware(device="cuda", bf16_supported=True)).to_dict()
    assert (sdpa["attn_implementation"], sdpa["packing"], sdpa["group_by_length"]) == ("sdpa", True, False)
    assert sdpa["batching_reason"] == "gpu_padding_free" and "sdpa" in sdpa["batching_note"]
    eager = resolve_plan(TrainConfig(attn_implementation="eager"), 10, hw=Hardware(device="cuda")).to_dict()
    assert (eager["packing"], eager["group_by_length"], eager["batching_reason"]) == (False, True,
                                                                                     "attention_not_padding_free")
    cpu = resolve_plan(TrainConfig(), 10).to_dict()
    assert (cpu["packing"], cpu["batching_reason"]) == (False, "cpu_grouped")
    assert resolve_plan(TrainConfig(packing=False), 10, hw=Hardware(device="cuda")).to_dict()["batching_reason"] == "set"


def test_padding_efficiency_hand_computed():
    # Micro-batch 2 over [1, 3] and [2, 2] in this order: real 8, padded 3*2 + 2*2 = 10.
    assert padding_efficiency([4, 4, 4, 4], 2) == 1.0
    assert padding_efficiency([1, 3, 1, 3], 2, "group_by_length") == pytest.approx(1.0)
    assert padding_efficiency([10, 10], 2, cutoff_len=5) == 1.0
    assert padding_efficiency([1, 3, 1, 3], 2, "packing") == 1.0
    lengths = [1, 3]
    assert padding_efficiency(lengths, 2) == pytest.approx(4 / 6)


def test_packing_best_fit_decreasing_and_factor():
    assert packing_factor(768, 3840) == 5
    assert packing_factor(5000, 3840) == 1
    bins = pack_best_fit_decreasing([700, 300, 500, 200, 100], 1000)
    # 700 | 500 | 300 fills 700 exactly | 200 and 100 join 500.
    assert sorted(sorted(b) for b in bins) == [[100, 200, 500], [300, 700]]


def test_packing_counts_packed_sequences_as_samples():
    cfg = TrainConfig(packing=True, cutoff_len=1000, per_device_train_batch_size=1, gradient_accumulation_steps=1,
                      num_train_epochs=1)
    plan = resolve_plan(cfg, 5, token_lengths=[700, 300, 500, 200, 100])
    assert plan.num_train_samples == 2 and plan.steps_per_epoch == 2 and plan.padding_efficiency == 1.0


@pytest.mark.parametrize("changes, words", [
    ({"learning_rate": 1.0}, "learning_rate 1 is far too high"),
    ({"learning_rate": 0.05}, "learning_rate 0.05 is very high for LoRA"),
    ({"learning_rate": 1e-3, "finetuning_type": "full"}, "is high for full fine-tuning"),
    ({"weight_decay": 2.0}, "weight_decay 2 pulls the weights"),
    ({"lora_dropout": 0.7}, "lora_dropout 0.7 drops most"),
    ({"warmup_ratio": 0.8}, "Warmup takes 80 of the 100 steps"),
])
def test_absurd_values_get_a_plan_warning(changes, words):
    cfg = TrainConfig(per_device_train_batch_size=1, gradient_accumulation_steps=1, num_train_epochs=1, **changes)
    warnings = resolve_plan(cfg, 100).warnings
    assert any(words in w for w in warnings), warnings


def test_the_shipped_demo_gets_no_learning_rate_warning(repo_root):
    cfg = TrainConfig.from_yaml(repo_root / "presets" / "demo.yaml")
    assert not [w for w in resolve_plan(cfg, 324).warnings if "learning_rate" in w]
