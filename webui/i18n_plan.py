"""The run plan's sentences (trainer/plan/resolve.py writes them in English, with their numbers) and the
trainer's notes to the page (its "message" events) in Chinese, matched by pattern so the numbers carry
over. A sentence without a pattern here stays in English: the
page still shows it rather than hide a warning."""

from __future__ import annotations

import re

PLAN_PATTERNS_ZH: list[tuple[str, str]] = [
    (r"Effective batch = (?P<m>\S+) \(micro-batch\) × (?P<a>\S+) \(accumulation\) × (?P<d>\S+) \(devices?\) = "
     r"(?P<e>\S+) rows per optimizer step\.", "有效批次 = {m}（微批次）× {a}（累积）× {d}（设备）= 每个优化器步 {e} 行。"),
    (r"(?P<n>\S+) epochs × (?P<s>\S+) steps per epoch = (?P<t>\S+) optimizer steps \(max_steps not set\)\.",
     "{n} 轮 × 每轮 {s} 步 = {t} 个优化器步（未设置 max_steps）。"),
    (r"max_steps = (?P<m>\S+) overrides num_train_epochs = (?P<n>\S+): the run lasts \S+ steps ≈ (?P<e>\S+) epochs "
     r"\((?P<s>\S+) samples of (?P<r>\S+)\), instead of \S+ epochs \((?P<b>\S+) steps\)\.",
     "max_steps = {m} 优先于 num_train_epochs = {n}：运行 {m} 步 ≈ {e} 轮（{r} 行中的 {s} 个样本），而不是 {n} 轮（{b} 步）。"),
    (r"max_steps = (?P<m>\S+) overrides num_train_epochs\.", "max_steps = {m} 优先于 num_train_epochs。"),
    (r"The effective batch moved from (?P<a>\S+) to (?P<b>\S+) \(× (?P<r>\S+)\): consider a learning rate of about "
     r"(?P<lr>\S+) \(square-root scaling from (?P<ref>\S+); linear scaling would give (?P<lin>\S+)\)\.",
     "有效批次从 {a} 变为 {b}（× {r}）：建议学习率约 {lr}（从 {ref} 按平方根缩放；线性缩放为 {lin}）。"),
    (r"Padding waste: only (?P<p>\S+) of the tokens processed are real at micro-batch (?P<m>\S+)\..*",
     "填充浪费：微批次 {m} 时处理的 token 中只有 {p} 是真实的。请开启打包或按长度分组；在此之前加大批次没有用。"),
    (r"The training split is empty: there is nothing to train on\.", "训练集为空：没有可训练的数据。"),
    (r"The effective batch \((?P<e>\S+)\) is larger than the dataset \((?P<r>\S+) rows\).*",
     "有效批次（{e}）大于数据集（{r} 行）：每个优化器步最多看到整个数据集一次。"),
    (r"max_steps makes the run last (?P<e>\S+) epochs, not the (?P<n>\S+) set in num_train_epochs.*",
     "max_steps 使运行持续 {e} 轮，而不是 num_train_epochs 设置的 {n} 轮；固定 max_steps 时加大批次会让运行更长，而不是更短。"),
    (r"Only (?P<n>\S+) optimizer steps: the loss curve will say little.*",
     "只有 {n} 个优化器步：损失曲线说明不了什么。请用更小的有效批次或更多轮数。"),
    (r"precision bf16 was chosen but this GPU does not support bf16: use fp16\.",
     "选择了 bf16 精度，但这块 GPU 不支持 bf16：请用 fp16。"),
    (r"precision (?P<p>\S+) on a CPU is slow or unsupported; auto picks fp32 there\.",
     "在 CPU 上使用 {p} 精度很慢或不受支持；auto 会选择 fp32。"),
    (r"(?P<b>\S+)-bit quantization on a CPU works but is slow; QLoRA is meant for a GPU\.",
     "在 CPU 上进行 {b} 位量化可以运行但很慢；QLoRA 是为 GPU 设计的。"),
    (r"lora_alpha / lora_rank = (?P<v>\S+): the usual range is 0\.5 to 2 \(alpha 16-32 with rank 16-32\)\.",
     "lora_alpha / lora_rank = {v}：常用范围是 0.5 到 2（alpha 16-32，秩 16-32）。"),
    (r"learning_rate (?P<lr>\S+) is high for full fine-tuning \(1e-5\.\.5e-5 is typical\)\.",
     "learning_rate {lr} 对全量微调来说偏高（常用 1e-5..5e-5）。"),
    (r"learning_rate (?P<lr>\S+) is low for LoRA \(1e-4\.\.3e-4 is typical\)\.",
     "learning_rate {lr} 对 LoRA 来说偏低（常用 1e-4..3e-4）。"),
    (r"learning_rate (?P<lr>\S+) is far too high: the loss will diverge to NaN within a few steps "
     r"\(1e-4\.\.3e-4 is typical for LoRA\)\.", "learning_rate {lr} 太高了：几步之内损失就会发散为 NaN（LoRA 常用 1e-4..3e-4）。"),
    (r"learning_rate (?P<lr>\S+) is far too high: the loss will diverge to NaN within a few steps "
     r"\(1e-5\.\.5e-5 is typical for full fine-tuning\)\.",
     "learning_rate {lr} 太高了：几步之内损失就会发散为 NaN（全量微调常用 1e-5..5e-5）。"),
    (r"learning_rate (?P<lr>\S+) is very high for LoRA \(1e-4\.\.3e-4 is typical\): expect spikes or a NaN loss\.",
     "learning_rate {lr} 对 LoRA 来说很高（常用 1e-4..3e-4）：损失可能出现尖峰或 NaN。"),
    (r"weight_decay (?P<w>\S+) pulls the weights to zero faster than they learn \(0-0\.1 is typical\)\.",
     "weight_decay {w} 把权重拉向零的速度快于学习速度（常用 0-0.1）。"),
    (r"lora_dropout (?P<d>\S+) drops most of the adapter's input \(0-0\.1 is typical\)\.",
     "lora_dropout {d} 丢弃了适配器大部分输入（常用 0-0.1）。"),
    (r"Warmup takes (?P<w>\S+) of the (?P<t>\S+) steps: most of the run trains at a reduced learning rate "
     r"\(warmup_ratio 0\.03-0\.1 is typical\)\.",
     "预热占 {t} 步中的 {w} 步：大部分训练都在较低的学习率下进行（常用 warmup_ratio 0.03-0.1）。"),
    (r"(?P<n>\S+) invalid rows? (?:was|were) skipped \(skip_invalid_rows is on\)\.", "已跳过 {n} 个无效行（skip_invalid_rows 已开启）。"),
    (r"No validation split \(val_size 0\): you will not see whether the model overfits\.",
     "没有验证集（val_size 0）：你将看不到模型是否过拟合。"),
    (r"save_strategy is 'no': an interrupted run cannot be resumed\.", "save_strategy 为 'no'：中断的运行无法继续。"),
    # the trainer's notes (trainer/engine/train.py, trainer/datasets/cache.py)
    (r"tokenized dataset cache: hit \((?P<split>\w+), (?P<rows>\S+) rows, (?P<path>.+)\)",
     "分词数据集缓存：命中（{split}，{rows} 行，{path}）"),
    (r"tokenized dataset cache: miss \((?P<split>\w+)\): tokenizing (?P<rows>\S+) rows with (?P<n>\d+) process(?:es)?",
     "分词数据集缓存：未命中（{split}）：用 {n} 个进程对 {rows} 行分词"),
    (r"tokenizing (?P<done>\S+) / (?P<total>\S+) rows", "正在分词 {done} / {total} 行"),
    (r"(?P<t>\S+) trainable parameters of (?P<n>\S+) \((?P<p>\S+)\)", "可训练参数 {t}，共 {n} 个参数（{p}）"),
    (r"Resumed from (?P<c>\S+): the run continues from step (?P<s>\S+)\.", "从 {c} 继续：运行从第 {s} 步接着进行。"),
    (r"offload_activations is ignored on a CPU: the activations are in RAM already\.",
     "在 CPU 上忽略 offload_activations：激活本来就在内存中。"),
    (r"resume_from_checkpoint is 'last' but this run has no checkpoint yet: training starts from the beginning\.",
     "resume_from_checkpoint 为 'last'，但本运行还没有检查点：从头开始训练。"),
]
_COMPILED = [(re.compile(pattern, re.DOTALL), template) for pattern, template in PLAN_PATTERNS_ZH]


def plan_sentence_zh(sentence: str) -> str:
    """One plan sentence in Chinese, its numbers kept; unchanged when no pattern matches."""
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(sentence.strip())
        if match:
            return template.format(**match.groupdict())
    return sentence
