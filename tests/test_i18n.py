"""The message table: every schema field and every message in both languages, with the same placeholders;
the words the server writes (plan, badges, progress, charts, health, log) follow the page's language."""

from __future__ import annotations

import re
import string

import pytest
from pydantic import ValidationError

from trainer.config import GROUPS, TrainConfig
from trainer.errors import pydantic_errors
from trainer.fieldspecs import field_specs
from trainer.plan.resolve import resolve_plan
from trainer.run.series import RunSeries
from trainer.templates import template_names
from webui import charts, views
from webui.i18n import UI_TEXT, field_message, t, translations
from webui.i18n_fields import FIELD_ZH, GROUP_ZH, HELP_ZH
from webui.tabs.monitor import health_markdown

ENGLISH_WORD = re.compile(r"\b[A-Za-z]{4,}\b")
ENGLISH_SENTENCE = re.compile(r"[A-Za-z][A-Za-z'’]+(?:[ ,]+[A-Za-z][A-Za-z'’]+){2,}")


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_field_group_and_message_has_chinese_with_the_same_placeholders():
    names = {spec.name for spec in field_specs()}
    assert names <= set(FIELD_ZH) and names <= set(HELP_ZH), sorted(names - set(FIELD_ZH) - set(HELP_ZH))
    assert {key for key, _, _ in GROUPS} <= set(GROUP_ZH)
    for key, (en, zh) in UI_TEXT.items():
        assert zh and _placeholders(en) == _placeholders(zh), key
    prefixes = {key.split(".")[0] for key in translations()["en"] if "." in key}
    assert not prefixes & set(UI_TEXT), prefixes & set(UI_TEXT)  # the browser's i18n reads dots as paths
    zh_table = translations()["zh-CN"]
    assert zh_table["help.learning_rate"].startswith("峰值学习率") and "[> 0, ≤ 1]" in zh_table["help.learning_rate"]


def test_the_plan_in_chinese_has_no_english_sentence():
    cfg = TrainConfig(model_name_or_path="demo", dataset="demo")
    plan = resolve_plan(cfg, 324)
    zh = views.plan_markdown(plan, num_samples=324, dataset_note=t("zh", "plan.format", format="alpaca"),
                             hardware_label="CPU", lang="zh", on_gpu=False)
    assert "有效批次" in zh and "可训练参数" in zh or "训练行数" in zh
    words = set(ENGLISH_WORD.findall(zh)) - {"alpaca", "sdpa"}
    assert not words, words
    english = views.plan_markdown(plan, num_samples=324, hardware_label="CPU", on_gpu=False)
    assert "Effective batch" in english and "By GPU size" not in english  # a CPU plan has no per-GPU verdicts


def test_badges_progress_charts_health_and_log_follow_the_language():
    assert ">运行中<" in views.status_badge("running", lang="zh") and ">running<" in views.status_badge("running")
    series = RunSeries()
    assert charts.loss_figure(series, lang="zh").layout.title.text == "损失"
    assert charts.memory_figure(series, lang="zh").layout.xaxis.title.text == "已用时间（秒）"
    series.extend([{"t": 1.0, "type": "log", "step": 1, "loss": 2.0, "learning_rate": 1e-4}])
    assert [tr.name for tr in charts.loss_figure(series, lang="zh").data][0] == "损失（原始）"
    progress = views.progress_html(charts.progress(series), "running", lang="zh")
    assert "第 <span id='td-step'>1</span> / ? 步" in progress and "已用" in progress
    assert "没有警报" in health_markdown(series, "zh") and "no alerts" in health_markdown(series)
    assert "尚无记录" in health_markdown(RunSeries(), "zh")  # a run with no steps is not called healthy
    assert "No training step logged" in health_markdown(RunSeries()) and "finite" not in health_markdown(RunSeries())
    log = views.log_tail_html(["step 1", "finished <ok>"])
    assert log.index("step 1") < log.index("finished &lt;ok&gt;") and "td-log" in log


def test_field_messages_are_mapped_to_chinese_by_pattern():
    assert field_message("zh", "Input should be greater than 0") == "必须大于 0"
    assert field_message("zh", "Input should be greater than 0 (got -1.0)") == "必须大于 0（当前为 -1.0）"
    assert field_message("zh", "a number is required (got 'x')") == "需要一个数字（当前为 'x'）"
    assert field_message("en", "a number is required") == "a number is required"
    # the schema's rules across fields, and the start checks, keep what they name
    combos = [dict(finetuning_type="full", quantization_bit=4), dict(warmup_steps=5, warmup_ratio=0.1),
              dict(eval_strategy="steps", val_size=0), dict(packing=True, group_by_length=True),
              dict(offload_optimizer=True), dict(num_machines=2), dict(load_best_model_at_end=True, eval_strategy="no"),
              dict(max_steps=0), dict(lora_rank=1.5), dict(template="nope"), dict(gpu_ids="0,0"), dict(lora_target=""),
              dict(run_name="hf_" + "a" * 30), dict(num_machines=2, main_process_ip="http://node0"),
              dict(num_machines=2, main_process_ip="10.0.0.1:29500"),
              dict(distributed_type="deepspeed_zero2", offload_optimizer=True, optim="adamw_8bit")]
    for combo in combos:
        with pytest.raises(ValidationError) as refused:
            TrainConfig(**combo)
        messages = [message for _, message in pydantic_errors(refused.value)]
        assert messages, combo
        for message in messages:
            zh = field_message("zh", message)
            names = re.sub(r"\b(?:%s)\b" % "|".join(template_names()), " ", zh)  # the templates' names listed
            assert not ENGLISH_SENTENCE.findall(names), (combo, message, zh)


def test_this_machines_launch_refusals_in_chinese():
    from trainer.engine.distributed import machine_problems

    refused = machine_problems(TrainConfig(num_processes=64, machine_rank=1, num_machines=2,
                                           main_process_ip="node0"), gpus=[])
    refused += machine_problems(TrainConfig(distributed_type="fsdp", use_liger_kernel=True), gpus=[])
    refused += [("distributed_type", "deepspeed_zero3 needs the deepspeed package, which is not installed here: pip "
                 "install deepspeed (or use fsdp, which ships with PyTorch)"),
                ("use_liger_kernel", "use_liger_kernel needs the liger-kernel package, which is not installed here: "
                 "pip install liger-kernel, or leave it empty (auto: on where installed)")]
    assert {field for field, _ in refused} >= {"num_processes", "machine_rank", "distributed_type", "use_liger_kernel"}
    for _, message in refused:
        zh = field_message("zh", message)
        assert zh != message
        words = re.sub(r"pip install [\w-]+", " ", zh)  # a command stays a command
        assert not ENGLISH_SENTENCE.findall(words), (message, zh)


def test_the_plans_warnings_in_chinese_keep_their_numbers():
    configs = [TrainConfig(finetuning_type="full", learning_rate=1e-3, save_strategy="no", val_size=0, max_steps=500),
               TrainConfig(learning_rate=1e-6, lora_rank=64, lora_alpha=8, per_device_train_batch_size=64),
               TrainConfig(num_train_epochs=1, per_device_train_batch_size=64)]
    for cfg in configs:
        plan = resolve_plan(cfg, 100, reference_effective_batch=4, reference_learning_rate=2e-4)
        zh = views.plan_markdown(plan, num_samples=100, lang="zh", on_gpu=False)
        # Left: the schema's and the config's own names (code), and the format's name.
        words = set(ENGLISH_WORD.findall(zh)) - {"max_steps", "num_train_epochs", "learning_rate", "lora_alpha",
                                                 "lora_rank", "save_strategy", "val_size", "sdpa", "LoRA", "alpha"}
        assert not words, (words, zh)
    assert "1e-06" in views.plan_markdown(resolve_plan(configs[1], 100), num_samples=100, lang="zh")
    sharded = TrainConfig(distributed_type="fsdp", offload_optimizer=True)
    zh = views.plan_markdown(resolve_plan(sharded, 100), num_samples=100, lang="zh", on_gpu=False)
    assert "通过 accelerate 启动" in zh and "卸载到 CPU 内存" in zh and not ENGLISH_SENTENCE.findall(zh), zh


def test_the_trainers_notes_in_chinese():
    series = RunSeries()
    text = "69,632 trainable parameters of 609,920 (11.42%)"
    series.extend([{"t": 1.0, "type": "message", "level": "info", "text": text}])
    assert "可训练参数 69,632，共 609,920 个参数（11.42%）" in views.run_summary_markdown(None, series, "zh")


def test_the_data_tabs_summary_table_histogram_and_rows_follow_the_language():
    from webui.data_view import histogram_figure, preview_html, summary_markdown

    stats = {"count": 40, "rows_in_split": 100, "sampled_rows": 40, "min": 3, "p50": 20, "p90": 40, "p99": 60,
             "max": 70, "cutoff_len": 64, "truncated_rows": 1, "truncated_share": 0.025, "tokens_cut": 6,
             "micro_batch": 4, "padding_waste_plain": 0.4, "padding_waste_grouped": 0.1, "padding_waste_packed": 0.01,
             "rows_per_packed_sequence": 2.5, "packed_sequences": 16, "packing_factor": 2, "suggested_cutoff_len": 64,
             "histogram": {"edges": [0, 32, 64], "counts": [30, 10], "width": 32}}
    answer = {"loaded": {"source": "data/demo.jsonl", "format": "alpaca", "skipped": 2, "train_rows": 1,
                         "eval_rows": 8, "errors": [f"line {i}: bad" for i in range(25)]},
              "error": None, "warnings": ["w"], "stats": stats}
    zh, en = summary_markdown(answer, "zh"), summary_markdown(answer)
    assert "1 个训练行" in zh and "8 个验证行" in zh and "跳过的行" in zh and "……还有 5 个" in zh and "（100 行中的样本）" in zh
    assert "1 training row," in en and "8 validation rows" in en and "… and 5 more" in en
    assert "training" not in zh and "Padding waste" not in zh and "Tokens per row" not in zh
    figure = histogram_figure(stats, "zh")
    assert figure.layout.title.text.startswith("分词后的行长度") and figure.layout.xaxis.title.text == "每行 token 数"
    page = {"rows": [{"where": "line 1", "num_tokens": 9, "loss_tokens": 4, "segments": [("q", False), ("a", True)],
                      "truncated": True, "full_length": 80, "cut_text": "rest"}], "page": 1, "pages": 2, "total": 7}
    html_zh = preview_html(page, "zh")
    assert "第 1 行 · 9 个 token" in html_zh and "line 1" in preview_html(page)
    assert "第 1 / 2 页（共 7 个训练行）" in html_zh and "计入损失" in html_zh and "carry loss" not in html_zh


def test_a_csv_header_and_a_lora_target_refusal_in_chinese(tmp_path):
    from trainer.datasets import DataError, load_examples

    path = tmp_path / "twice.csv"
    path.write_text("instruction,output,output\nq,a,b\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_examples(TrainConfig(dataset=str(path)))
    targets = ("Invalid config: lora_target: no layer of this model is named v_prj (did you mean v_proj?). Its "
               "linear layers are: down_proj, q_proj, v_proj (or use all-linear).")
    for message in (str(info.value), targets):
        zh = field_message("zh", message)
        assert zh != message and not ENGLISH_SENTENCE.findall(zh), (message, zh)
    assert "v_proj" in field_message("zh", targets)
