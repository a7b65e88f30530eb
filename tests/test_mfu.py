"""MFU: FLOPs per token held against torch's own FLOP counter, the plan's expected tokens/s against the
benchmark it comes from, the live MFU of the event summary, and the page's words for it."""

from __future__ import annotations

import html
import math
import random

import pytest

from trainer.config import TrainConfig
from trainer.plan.catalog import GPU_CHOICES, GPU_MODELS, gpu_model, shape_from_config
from trainer.plan.memory import lora_parameter_count
from trainer.plan.mfu import MFU_REASONS, live_mfu, mfu, reference_mfu, training_flops_per_token
from trainer.plan.resolve import CPU, Hardware, resolve_plan
from trainer.run.series import RunSeries

H100 = Hardware(device="cuda", gpu_name="NVIDIA H100 80GB HBM3", gpu_total_gb=79.2, bf16_supported=True)


def _benchmark_lengths(n: int = 4000) -> list[int]:
    """benchmarks/gpu_llama8b.py's varied lengths: log-uniform 64..2048."""
    rng = random.Random(0)
    return [int(round(math.exp(rng.uniform(math.log(64), math.log(2048))))) for _ in range(n)]


def _counted_flops_per_token(lora: bool) -> tuple[float, float]:
    """(FLOPs per token torch counts for one forward + backward of a small random Llama, our formula's)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                         attn_implementation="eager")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    trainable = 0
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch, seq = 2, 96
    ids = torch.randint(0, 512, (batch, seq))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    shape = shape_from_config(config.to_dict(), "tiny", "config.json")
    if lora:
        assert trainable == lora_parameter_count(shape, 8)
    formula = training_flops_per_token(shape, finetuning_type="lora" if lora else "full",
                                       trainable_parameters=trainable, mean_row_tokens=seq)
    # The input embedding is a lookup, not a matmul: N counts it (as the benchmarks do), torch does not.
    embedding = (6 if not lora else 4) * config.vocab_size * config.hidden_size
    return counter.get_total_flops() / (batch * seq), formula - embedding


def test_full_fine_tuning_flops_match_torchs_count():
    counted, formula = _counted_flops_per_token(lora=False)
    assert counted == pytest.approx(formula, rel=0.01)


def test_lora_flops_match_torchs_count():
    # LoRA skips the frozen weights' gradients (4·N, not 6·N); the first layer also skips the gradient of its
    # input (nothing below it learns), a few percent on this 2-layer model and nothing on a real one.
    counted, formula = _counted_flops_per_token(lora=True)
    assert counted == pytest.approx(formula, rel=0.05)
    assert counted < formula


def test_reference_mfu_follows_the_benchmark():
    # benchmarks/README.md under the 4·N convention: 9.9% padded, 10.8% packed on SDPA, 20.4% no padding;
    # the module's formula adds attention and the adapters, so slightly more.
    assert 0.099 < reference_mfu("padded") < 0.11
    assert 0.108 < reference_mfu("packed_sdpa") < 0.12
    assert 0.204 < reference_mfu("no_padding") < 0.24


def test_plan_on_an_h100_expects_the_benchmarks_tokens_per_second():
    cfg = TrainConfig(model_name_or_path="meta-llama/Llama-3.1-8B", quantization_bit=4, cutoff_len=2048,
                      per_device_train_batch_size=8, packing=False, group_by_length=True)
    d = resolve_plan(cfg, 4000, hw=H100, token_lengths=_benchmark_lengths()).to_dict()
    assert d["gpu_model"] == "H100 SXM" and d["gpu_peak_tflops"] == 989
    assert d["expected_tokens_per_second"] == pytest.approx(3032, rel=0.03)
    assert mfu(d["expected_tokens_per_second"], d["flops_per_token"], 989) == pytest.approx(d["expected_mfu"], rel=1e-3)
    assert "mfu_reason" not in d


def test_plan_for_a_picked_size_gives_each_models_rate_and_the_cpu_none():
    cfg = TrainConfig(model_name_or_path="meta-llama/Llama-3.1-8B", quantization_bit=4)
    picked = resolve_plan(cfg, 1000, hw=CPU, gpu_memory_gb=80).to_dict()
    rates = picked["expected_tokens_per_second_by_gpu"]
    assert set(rates) == {"A100", "H100 SXM"} and rates["H100 SXM"] / rates["A100"] == pytest.approx(989 / 312, rel=0.01)
    on_cpu = resolve_plan(cfg, 1000, hw=CPU).to_dict()
    assert on_cpu["mfu_reason"] == "cpu" and "expected_mfu" not in on_cpu and on_cpu["flops_per_token"] > 0
    unknown = resolve_plan(TrainConfig(model_name_or_path="/nowhere/model"), 10, hw=H100).to_dict()
    assert unknown["mfu_reason"] == "unknown_model" and "flops_per_token" not in unknown


@pytest.mark.parametrize("name, model", [("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
                                         ("NVIDIA A100-SXM4-40GB", "A100"), ("NVIDIA L40S", "L40S"),
                                         ("NVIDIA L4", "L4"), ("Tesla T4", "T4"), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
                                         ("NVIDIA GeForce RTX 3090", "RTX 3090"), ("NVIDIA A10G", "A10G"),
                                         ("NVIDIA H200", "H200"), ("Some Future GPU", None)])
def test_gpu_names_the_driver_reports(name, model):
    found = gpu_model(name)
    assert (found.name if found else None) == model


def test_every_gpu_size_names_models_with_a_peak():
    known = {m.name for m in GPU_MODELS}
    for choice in GPU_CHOICES:
        assert choice.models and set(choice.models) <= known, choice


def _events(plan: dict, rates: list[float]) -> list[dict]:
    out = [{"type": "plan", "t": 0.0, "plan": plan}, {"type": "status", "t": 0.5, "status": "running"}]
    out += [{"type": "log", "t": 1.0 + i, "step": 10 * (i + 1), "loss": 1.0, "tokens_per_second": r}
            for i, r in enumerate(rates)]
    return out


def test_series_measures_mfu_live_from_the_plan():
    cfg = TrainConfig(model_name_or_path="meta-llama/Llama-3.1-8B", quantization_bit=4)
    plan = resolve_plan(cfg, 1000, hw=H100, token_lengths=_benchmark_lengths(500)).to_dict()
    series = RunSeries()
    series.extend(_events(plan, [3000.0, 6000.0]))
    assert [s for s, _ in series.mfu] == [10, 20]
    assert series.mfu[1][1] == pytest.approx(2 * series.mfu[0][1])
    assert series.mfu[0][1] == pytest.approx(3000 * plan["flops_per_token"] / 989e12)
    assert series.decimated("mfu")[0] == [10, 20]


def test_series_on_a_cpu_has_no_mfu():
    plan = resolve_plan(TrainConfig(model_name_or_path="demo"), 100, hw=CPU).to_dict()
    series = RunSeries()
    series.extend(_events(plan, [1500.0]))
    assert series.mfu == [] and live_mfu(plan, 1500.0) is None
    assert plan["mfu_reason"] in MFU_REASONS


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_monitor_and_plan_panel_show_mfu_in_both_languages(lang):
    from webui import charts, views

    cfg = TrainConfig(model_name_or_path="meta-llama/Llama-3.1-8B", quantization_bit=4)
    plan = resolve_plan(cfg, 1000, hw=H100, token_lengths=_benchmark_lengths(500))
    series = RunSeries()
    series.extend(_events(plan.to_dict(), [3000.0, 3100.0, 2900.0]))
    note = charts.mfu_note(series, lang)
    assert f"{series.mfu[0][1]:.1%}" in note and "989" in note and f"{plan.to_dict()['expected_mfu']:.1%}" in note
    figure = charts.throughput_figure(series, lang=lang)
    assert any(note == a.text for a in figure.layout.annotations)
    panel = views.plan_markdown(plan, num_samples=1000, lang=lang)
    expected = plan.to_dict()["expected_tokens_per_second"]
    assert f"{float(f'{expected:.3g}'):,.0f}" in panel and "H100 SXM" in panel

    cpu_plan = resolve_plan(TrainConfig(model_name_or_path="demo"), 100, hw=CPU)
    cpu_series = RunSeries()
    cpu_series.extend(_events(cpu_plan.to_dict(), [1500.0]))
    cpu_note = charts.mfu_note(cpu_series, lang)
    assert cpu_note and "%" not in cpu_note and "CPU" in cpu_note
    assert html.escape(cpu_note) in views.plan_markdown(cpu_plan, num_samples=100, lang=lang, on_gpu=False)
