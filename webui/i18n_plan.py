"""The run plan's sentences (trainer/plan/resolve.py writes them in English, with their numbers), the
trainer's notes to the page (its "message" events) and the refusals the page passes on from the trainer,
the job manager, the token store and the roles check (dataset and model problems, "not yours", "already
finished") in Chinese, matched by pattern so the numbers, names and paths carry over. Those messages stay
English at their source because the CLI and the HTTP API answer in English. A sentence without a pattern
here stays in English: the page still shows it rather than hide a warning or a refusal."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# A template is a format string, or a function of the matched values for a sentence with optional parts.
PLAN_PATTERNS_ZH: list[tuple[str, Any]] = [
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
    (r"Memory estimate unknown: '(?P<m>.+)' is neither in the model catalog nor a local directory with a "
     r"config\.json\.", "显存无法估计：“{m}”既不在模型目录中，也不是含 config.json 的本地目录。"),
    (r"Memory: about (?P<gb>\S+) GB at micro-batch (?P<m>\S+) × (?P<t>\S+) tokens on a (?P<g>\S+) GB GPU: "
     r"(?P<v>[^.]+)\. Use micro-batch (?P<n>\S+) with gradient accumulation (?P<a>\S+) \(the same effective batch\)\.",
     "显存：微批次 {m} × {t} token 时约 {gb} GB，{g} GB 的 GPU：{v}。请用微批次 {n}、梯度累积 {a}（有效批次不变）。"),
    (r"Memory: about (?P<gb>\S+) GB at micro-batch (?P<m>\S+) × (?P<t>\S+) tokens on a (?P<g>\S+) GB GPU: "
     r"(?P<v>[^.]+)\. Use micro-batch (?P<n>\S+) with gradient accumulation (?P<a>\S+) \(effective batch (?P<e>\S+), "
     r"was (?P<w>\S+)\)\.", "显存：微批次 {m} × {t} token 时约 {gb} GB，{g} GB 的 GPU：{v}。请用微批次 {n}、梯度累积 {a}"
                               "（有效批次 {e}，原为 {w}）。"),
    (r"Memory: about (?P<gb>\S+) GB at micro-batch (?P<m>\S+) × (?P<t>\S+) tokens on a (?P<g>\S+) GB GPU: "
     r"(?P<v>[^.]+)\. Even micro-batch 1 does not fit: .*", "显存：微批次 {m} × {t} token 时约 {gb} GB，{g} GB 的 GPU：{v}。"
     "即使微批次 1 也放不下：请对基座做 4 位量化、开启梯度检查点、缩短 cutoff_len 或换更大的 GPU。"),
    (r"Launched through accelerate: (?P<n>\d+) process(?:es)? per machine(?: on (?P<m>\d+) machines)?; (?P<how>.+?)"
     r"(?:; (?P<off>.+) offloaded to CPU RAM)?\. The memory estimate is per device\.", lambda v: (
         f"通过 accelerate 启动：每台机器 {v['n']} 个进程" + (f"，共 {v['m']} 台机器" if v["m"] else "") + "；"
         + LAUNCH_ZH.get(v["how"], v["how"])
         + (f"；{'和'.join(OFFLOAD_ZH.get(w, w) for w in v['off'].split(' and '))}卸载到 CPU 内存" if v["off"] else "")
         + "。显存估计按每个设备计算。")),
    (r"(?P<p>\d+) processes per machine but (?P<g>\d+) GPUs? here: one process per GPU\.",
     "每台机器 {p} 个进程，但这里只有 {g} 块 GPU：每块 GPU 一个进程。"),
    # the length advice (trainer/datasets/stats.py), in the plan and on the Data tab
    (r"(?P<t>[\d,]+) of (?P<n>[\d,]+) rows \((?P<s>\S+)\) are longer than cutoff_len (?P<c>\d+): (?P<k>[\d,]+) tokens are "
     r"cut\. cutoff_len (?P<g>\d+) keeps 99% of the rows whole\.",
     "{n} 行中有 {t} 行（{s}）超过 cutoff_len {c}：截掉 {k} 个 token。cutoff_len {g} 能让 99% 的行保持完整。"),
    (r"Lengths vary \(median (?P<p>\d+), p90 (?P<q>\d+), longest (?P<x>\d+) tokens\): at micro-batch (?P<m>\d+), "
     r"(?P<w>\S+) of the tokens processed are padding even grouped by length\. Turn on packing \(no padding, about "
     r"(?P<r>\S+) rows per (?P<c>\d+)-token sequence\)\.",
     "长度差异大（中位数 {p}，p90 {q}，最长 {x} 个 token）：微批次 {m} 时，即使按长度分组，处理的 token 中仍有 {w} 是填充。"
     "请开启打包（无填充，每个 {c} token 的序列约 {r} 行）。"),
    (r"Lengths vary \(median (?P<p>\d+), p90 (?P<q>\d+), longest (?P<x>\d+) tokens\): at micro-batch (?P<m>\d+), "
     r"(?P<w>\S+) of the tokens processed with plain batches are padding\. Turn on group_by_length \((?P<g>\S+) "
     r"padding\) or packing \(no padding, about (?P<r>\S+) rows per (?P<c>\d+)-token sequence\)\.",
     "长度差异大（中位数 {p}，p90 {q}，最长 {x} 个 token）：微批次 {m} 时，普通批次处理的 token 中有 {w} 是填充。"
     "请开启 group_by_length（填充 {g}）或打包（无填充，每个 {c} token 的序列约 {r} 行）。"),
    (r"duplicate of line (?P<n>\d+)", "与第 {n} 行重复"),
    # the trainer's notes (trainer/engine/train.py, trainer/datasets/cache.py)
    (r"tokenized dataset cache: hit \((?P<split>\w+), (?P<rows>\S+) rows, (?P<path>.+)\)",
     "分词数据集缓存：命中（{split}，{rows} 行，{path}）"),
    (r"tokenized dataset cache: miss \((?P<split>\w+)\): tokenizing (?P<rows>\S+) rows with (?P<n>\d+) process(?:es)?",
     "分词数据集缓存：未命中（{split}）：用 {n} 个进程对 {rows} 行分词"),
    (r"tokenizing (?P<done>\S+) / (?P<total>\S+) rows", "正在分词 {done} / {total} 行"),
    (r"Building the demo model \(first run only, about half a minute\)…", "正在构建演示模型（仅首次运行，约半分钟）……"),
    (r"(?P<n>[\d,]+) of (?P<t>[\d,]+) rows are longer than cutoff_len (?P<c>\d+): (?P<k>[\d,]+) tokens are cut "
     r"\((?P<w>.+)\)", lambda v: f"{v['t']} 行中有 {v['n']} 行超过 cutoff_len {v['c']}：截掉 {v['k']} 个 token（{_places(v['w'])}）"),
    (r"(?P<n>[\d,]+) of (?P<t>[\d,]+) text rows are longer than cutoff_len (?P<c>\d+) and were split into rows of at "
     r"most (?P=c) tokens \((?P<w>.+)\): (?P<r>[\d,]+) training rows in all", lambda v: (
         f"{v['t']} 个文本行中有 {v['n']} 行超过 cutoff_len {v['c']}，已切分为最多 {v['c']} token 的行"
         f"（{_places(v['w'])}）：共 {v['r']} 个训练行")),
    (r"\.\.\. and (?P<n>[\d,]+) more dataset warnings", "……还有 {n} 条数据集警告"),
    (r"(?P<t>\S+) trainable parameters of (?P<n>\S+) \((?P<p>\S+)\)", "可训练参数 {t}，共 {n} 个参数（{p}）"),
    (r"Resumed from (?P<c>\S+): the run continues from step (?P<s>\S+)\.", "从 {c} 继续：运行从第 {s} 步接着进行。"),
    (r"offload_activations is ignored on a CPU: the activations are in RAM already\.",
     "在 CPU 上忽略 offload_activations：激活本来就在内存中。"),
    (r"resume_from_checkpoint is 'last' but this run has no checkpoint yet: training starts from the beginning\.",
     "resume_from_checkpoint 为 'last'，但本运行还没有检查点：从头开始训练。"),
]
_COMPILED = [(re.compile(pattern, re.DOTALL), template) for pattern, template in PLAN_PATTERNS_ZH]

LAUNCH_ZH = {"DDP: each device holds the whole model": "DDP：每个设备持有完整的模型",
             "FSDP: weights, gradients and optimizer state sharded over the devices": "FSDP：权重、梯度和优化器状态分片到各设备",
             "DeepSpeed ZeRO-2: gradients and optimizer state sharded": "DeepSpeed ZeRO-2：梯度和优化器状态分片",
             "DeepSpeed ZeRO-3: weights, gradients and optimizer state sharded": "DeepSpeed ZeRO-3：权重、梯度和优化器状态分片"}
OFFLOAD_ZH = {"optimizer": "优化器状态", "weights": "权重"}
SECRET_ZH = {"a Hugging Face token (hf_...)": " Hugging Face 令牌（hf_...）", "an OpenAI-style API key (sk-...)":
             " OpenAI 风格的 API 密钥（sk-...）", "a GitHub token": " GitHub 令牌", "an AWS access key id": " AWS 访问密钥 ID",
             "a Slack token": " Slack 令牌", "a GitLab token": " GitLab 令牌", "a bearer token": " Bearer 令牌"}
VERDICT_ZH = {"fits": "放得下", "tight": "偏紧", "will not fit": "放不下"}
# Words that fill the refusals' sentences: a run's status, what is refused, the thing it is refused on.
STATUS_ZH = {"queued": "排队中", "running": "运行中", "finished": "已完成", "aborted": "已中止", "failed": "失败",
             "interrupted": "已中断"}
ACTION_ZH = {"abort": "中止", "resume": "继续", "cancel": "取消", "delete": "删除", "rename": "重命名",
             "overwrite": "覆盖", "edit": "修改", "change": "修改", "revoke": "撤销"}
THING_ZH = {"run": "运行", "preset": "预设", "token": "令牌"}

MESSAGE_PATTERNS_ZH: list[tuple[str, str]] = [
    # a failed run's reason wraps the refusal it met: that one is said in Chinese too ("inner")
    (r"Dataset problem: (?P<inner>.+)", "数据集问题：{inner}"),
    (r"Not found: (?P<inner>.+)", "找不到：{inner}"),
    (r"Invalid config: (?P<inner>.+)", "配置无效：{inner}"),
    # the dataset and the model, as Start's checks and the plan name them (trainer/datasets, trainer/engine/model.py)
    (r"dataset file not found: (?P<p>.+)", "找不到数据集文件：{p}"),
    (r"(?P<p>.+): invalid JSON at line (?P<l>\d+), column (?P<c>\d+): (?P<m>.+)", "{p}：第 {l} 行第 {c} 列不是有效的 JSON：{m}"),
    (r"line (?P<l>\d+): invalid JSON: (?P<m>.+) \(column (?P<c>\d+)\)", "第 {l} 行：不是有效的 JSON：{m}（第 {c} 列）"),
    (r"(?P<p>.+): (?P<n>[\d,]+) of (?P<t>[\d,]+) rows are invalid \(fix them, or set skip_invalid_rows to train "
     r"without them\):(?P<rest>.*)", "{p}：{t} 行中有 {n} 行无效（请修正，或开启 skip_invalid_rows 跳过它们）：{rest}"),
    (r"(?P<p>.+): no usable rows: all (?P<t>[\d,]+) rows are invalid:(?P<rest>.*)", "{p}：没有可用的行：全部 {t} 行都无效：{rest}"),
    (r"\.\.\. and (?P<n>[\d,]+) more", "……还有 {n} 个"),
    (r"(?P<p>.+): line 1: the header names column '(?P<n>.+)' twice: rename one of them",
     "{p}：第 1 行：表头中列“{n}”出现了两次：请重命名其中一列"),
    (r"no layer of this model is named (?P<n>.+)\. Its linear layers are: (?P<l>.+) \(or use all-linear\)\.",
     lambda v: "这个模型没有名为 " + re.sub(r"\(did you mean (\S+)\?\)", r"（是否想写 \1？）", v["n"])
     + f" 的层。它的线性层有：{v['l']}（或使用 all-linear）。"),
    (r"missing field '(?P<n>.+)'", "缺少字段“{n}”"),
    (r"field '(?P<n>.+)' is empty", "字段“{n}”为空"),
    (r"field '(?P<n>.+)' must be text, got (?P<k>.+)", "字段“{n}”必须是文本，实际是 {k}"),
    (r"field '(?P<n>.+)' must be a list of turns, got (?P<k>.+)", "字段“{n}”必须是对话轮次的列表，实际是 {k}"),
    (r"turn (?P<n>\d+): empty content", "第 {n} 轮：内容为空"),
    (r"turn (?P<n>\d+): two (?P<r>\w+) turns in a row", "第 {n} 轮：连续两个 {r} 轮次"),
    (r"(?P<f>[\w-]+) format", "{f} 格式"),
    (r"(?P<f>[\w-]+) format, (?P<n>[\d,]+) invalid rows skipped", "{f} 格式，已跳过 {n} 个无效行"),
    (r"a Hub dataset: the row count is known once it is loaded", "Hub 数据集：加载后才知道行数"),
    (r"the validation split is empty: raise val_size or set eval_strategy no",
     "验证集为空：请调大 val_size，或把 eval_strategy 设为 no"),
    (r"model '(?P<n>.+)' not found: the directory (?P<p>.+) does not exist\.", "找不到模型“{n}”：目录 {p} 不存在。"),
    (r"model '(?P<n>.+)' is a file: point model_name_or_path at the directory that holds config\.json\.",
     "模型“{n}”是一个文件：请让 model_name_or_path 指向包含 config.json 的目录。"),
    (r"model '(?P<n>.+)': the directory has no config\.json, so it is not a saved model \(an adapter directory "
     r"needs its base model here instead\)\.", "模型“{n}”：该目录没有 config.json，不是保存的模型（适配器目录请在这里填它的基座模型）。"),
    (r"(?P<t>.+) \((?P<n>\w+)\) is not installed here: (?P<i>.+), or remove (?P=n) from report_to",
     "{t}（{n}）未安装在本机：{i}，或从 report_to 中移除 {n}"),
    (r"(?P<t>.+) \((?P<n>\w+)\) needs (?P<v>\S+) in the environment \((?P<h>.+)\) before tunedeck starts, or "
     r"(?P<l>\S+) to log on this machine only", "{t}（{n}）需要在 tunedeck 启动前在环境中设置 {v}（{h}），或设置 {l} 只在本机记录"),
    # the schema's rules across fields (trainer/config_rules.py), shown under the field they name
    (r"expects a whole number; it is not rounded: type (?P<a>\S+) or (?P<b>\S+)", "需要整数，不会自动取整：请填 {a} 或 {b}"),
    (r"expects a whole number", "需要整数"),
    (r"expects a number, not true/false", "需要数字，而不是 true/false"),
    (r"bf16 and fp16 are both true: pick one precision", "bf16 和 fp16 同时为 true：只能选一种精度"),
    (r"name at least one layer, or use all-linear", "请至少填写一个层名，或使用 all-linear"),
    (r"'(?P<g>.+)' is not a GPU number: list them as 0,1,\.\.\.", "“{g}”不是 GPU 编号：请写成 0,1,..."),
    (r"a GPU is listed twice", "有 GPU 被列出了两次"),
    (r"unknown chat template '(?P<n>.+)': use one of (?P<l>.+)", "未知的对话模板“{n}”：请从以下选择：{l}"),
    (r"a validation size of 1 or more is a row count and must be a whole number", "验证集大小为 1 或更大时表示行数，必须是整数"),
    (r"looks like (?P<k>.+): a token or key is never stored with a run; it comes from the environment \(HF_TOKEN\) or "
     r"your login\. Remove it from this field", lambda v: (
         f"看起来像{SECRET_ZH.get(v['k'], v['k'])}：令牌或密钥从不随运行保存，它来自环境变量（HF_TOKEN）或你的登录。"
         "请从此字段中删除")),
    (r"0 steps would train nothing: use -1 to train by epochs, or a positive number", "0 步什么也不会训练：用 -1 按轮数训练，或填正数"),
    (r"a quantized base cannot be fully fine-tuned: use finetuning_type lora \(QLoRA\) or leave quantization_bit empty",
     "量化的基座不能全量微调：请用 finetuning_type lora（QLoRA），或让 quantization_bit 留空"),
    (r"DoRA and rsLoRA are LoRA options; they do nothing with finetuning_type full",
     "DoRA 和 rsLoRA 是 LoRA 的选项；finetuning_type 为 full 时不起作用"),
    (r"DoRA is not supported on an 8-bit base; use 4-bit or 16-bit", "8 位基座不支持 DoRA；请用 4 位或 16 位"),
    (r"set warmup_steps or warmup_ratio, not both \(set the other to 0\)", "warmup_steps 和 warmup_ratio 只设一个（另一个设为 0）"),
    (r"eval_strategy is '(?P<e>\w+)' but val_size is 0: there is no validation split to evaluate on",
     "eval_strategy 为 '{e}'，但 val_size 为 0：没有可评估的验证集"),
    (r"needs an evaluation: set eval_strategy and val_size", "需要评估：请设置 eval_strategy 和 val_size"),
    (r"load_best_model_at_end needs save_strategy equal to eval_strategy \('(?P<e>\w+)'\)",
     "load_best_model_at_end 要求 save_strategy 与 eval_strategy（'{e}'）相同"),
    (r"load_best_model_at_end needs save_steps \((?P<s>\d+)\) to be a multiple of eval_steps \((?P<e>\d+)\)",
     "load_best_model_at_end 要求 save_steps（{s}）是 eval_steps（{e}）的整数倍"),
    (r"early stopping watches the eval loss: set eval_strategy and val_size", "早停依据评估损失：请设置 eval_strategy 和 val_size"),
    (r"packed rows all have the same length: turn off packing or group_by_length",
     "打包后的行长度都相同：请关闭 packing 或 group_by_length"),
    (r"(?P<n>\d+) GPUs? listed \((?P<g>[^)]+)\) for num_processes (?P<p>\d+): list one GPU per process, or empty "
     r"num_processes to use every listed GPU", "列出了 {n} 块 GPU（{g}），但 num_processes 为 {p}：每个进程列一块 GPU，或清空 "
     "num_processes 以使用所有列出的 GPU"),
    (r"only sharded weights can be offloaded: distributed_type '(?P<d>\w+)' keeps whole weights on each device; use "
     r"deepspeed_zero3 or fsdp, or turn offload_params off", "只有分片的权重才能卸载：distributed_type '{d}' 在每个设备上保存"
     "完整权重；请用 deepspeed_zero3 或 fsdp，或关闭 offload_params"),
    (r"DDP cannot offload the optimizer: use distributed_type deepspeed_zero2, deepspeed_zero3 or fsdp, or turn "
     r"offload_optimizer off", "DDP 不能卸载优化器：请用 distributed_type deepspeed_zero2、deepspeed_zero3 或 fsdp，或关闭 "
     "offload_optimizer"),
    (r"(?P<d>\w+) cannot shard 8-bit \(LLM\.int8\) weights: use quantization_bit 4 \(QLoRA\), leave it empty, or use "
     r"ddp / deepspeed_zero2", "{d} 无法分片 8 位（LLM.int8）权重：请用 quantization_bit 4（QLoRA）、留空，或用 ddp / "
     "deepspeed_zero2"),
    (r"num_machines is (?P<n>\d+): give the address of machine 0, which the other machines connect to",
     "num_machines 为 {n}：请填写 0 号机器的地址，其他机器会连接它"),
    (r"machine_rank (?P<r>\d+) with num_machines (?P<n>\d+): the machines are numbered 0 to (?P<m>\d+)",
     "machine_rank {r}，而 num_machines 为 {n}：机器编号为 0 到 {m}"),
    (r"not a host name or IP address: give only the address of machine 0, e\.g\. 10\.0\.0\.1 or node001 \(no "
     r"scheme, path or spaces\)", "不是主机名或 IP 地址：只填写 0 号机器的地址，例如 10.0.0.1 或 node001（不要协议、路径或空格）"),
    (r"the port goes in main_process_port: give only the address here", "端口请填在 main_process_port：这里只填写地址"),
    (r"(?P<o>\S+) \(bitsandbytes\) steps on the GPU only, and the offloaded optimizer steps on the CPU: use "
     r"adamw_torch, or turn the offload off", "{o}（bitsandbytes）只能在 GPU 上更新，而卸载后的优化器在 CPU 上更新：请用 "
     "adamw_torch，或关闭卸载"),
    (r"(?P<n>\d+) CPU processes but this machine has no GPU and (?P<c>\d+) CPU cores: at most (?P<m>\d+) here",
     "{n} 个 CPU 进程，但这台机器没有 GPU，只有 {c} 个 CPU 核心：这里最多 {m} 个"),
    (r"(?P<d>\S+) needs the deepspeed package, which is not installed here: pip install deepspeed \(or use fsdp, "
     r"which ships with PyTorch\)", "{d} 需要 deepspeed 包，但这里没有安装：请 pip install deepspeed（或改用 PyTorch "
     "自带的 fsdp）"),
    (r"(?P<d>\S+) shards the model over GPUs and this machine has none: use ddp \(several CPU processes\) here",
     "{d} 把模型分片到多块 GPU 上，而这台机器没有 GPU：这里请用 ddp（多个 CPU 进程）"),
    (r"Liger's fused kernels run on a GPU and this machine has none: turn use_liger_kernel off, or leave it empty "
     r"\(auto\)", "Liger 融合内核只能在 GPU 上运行，而这台机器没有 GPU：请关闭 use_liger_kernel，或留空（自动）"),
    (r"use_liger_kernel needs the liger-kernel package, which is not installed here: pip install liger-kernel, or "
     r"leave it empty \(auto: on where installed\)", "use_liger_kernel 需要 liger-kernel 包，但这里没有安装：请 pip "
     "install liger-kernel，或留空（自动：已安装时开启）"),
    (r"a run started here is machine 0 of the run, not machine (?P<r>\d+): set machine_rank 0 here and start the "
     r"other machines with their line from python -m trainer launch-commands", "在这里启动的运行是 0 号机器，而不是 {r} "
     "号：请在这里把 machine_rank 设为 0，其他机器用 python -m trainer launch-commands 给出的命令启动"),
    # the roles check (webui/auth.py) and the token store (webui/api_tokens.py)
    (r"this (?P<w>\w+) belongs to '(?P<o>.*)': only its owner or an admin may (?P<a>\w+) it \(you are '(?P<u>.*)'\)",
     "这个{w}属于“{o}”：只有它的所有者或管理员可以{a}它（你是“{u}”）"),
    (r"only an admin may reorder the queue \(you are '(?P<u>.*)'\)", "只有管理员可以调整队列顺序（你是“{u}”）"),
    (r"sign in first", "请先登录"),
    (r"'(?P<u>.*)' already has (?P<n>\d+) API tokens: revoke one first", "“{u}”已有 {n} 个 API 令牌：请先撤销一个"),
    (r"no API token '(?P<i>.*)'", "没有 API 令牌“{i}”"),
    (r"only its owner or an admin may revoke an API token", "只有令牌的所有者或管理员可以撤销它"),
    (r"(?P<p>.+) is unreadable \((?P<e>.+)\); move it away \(every token is then revoked\)",
     "{p} 无法读取（{e}）；请把它移走（所有令牌随之作废）"),
    # the job manager (trainer/jobs/manager.py) and the Monitor's queue buttons
    (r"run (?P<r>\S+) is already (?P<s>\w+); there is nothing to abort", "运行 {r} 已是“{s}”状态：没有可中止的"),
    (r"run (?P<r>\S+) is (?P<s>\w+): only an aborted, interrupted or failed run can be resumed",
     "运行 {r} 处于“{s}”状态：只有已中止、已中断或失败的运行才能继续"),
    (r"run (?P<r>\S+) saved no checkpoint before it stopped, so there is nothing to resume from; start it again as "
     r"a new run \(lower save_steps to checkpoint more often\)",
     "运行 {r} 停止前没有保存检查点，无从继续；请作为新运行重新开始（调小 save_steps 以更频繁地保存检查点）"),
    (r"run (?P<r>\S+) is (?P<s>\w+): abort it first, then delete it", "运行 {r} 处于“{s}”状态：请先中止，再删除"),
    (r"run (?P<r>\S+) is (?P<s>\w+), not waiting in the queue: abort it to stop it",
     "运行 {r} 处于“{s}”状态，不在队列中：要停止它请点“中止”"),
    (r"run (?P<r>\S+) is (?P<s>\w+), not waiting in the queue: there is nothing to cancel",
     "运行 {r} 处于“{s}”状态，不在队列中：没有可取消的"),
    (r"run (?P<r>\S+) is (?P<s>\w+): only a queued run can be moved in the queue",
     "运行 {r} 处于“{s}”状态：只有排队中的运行才能在队列中移动"),
    (r"run (?P<r>\S+) is not waiting in the queue: only a queued run can be moved",
     "运行 {r} 不在队列中：只有排队中的运行才能移动"),
    (r"no run '?(?P<r>[^'\s]+)'?", "没有运行 {r}"),
    # the access policy of a shared server (trainer/access.py)
    (r"the path '(?P<p>.+)' is not allowed on this shared server: use a file you uploaded, or one in the folders "
     r"the admin allows \(TUNEDECK_ALLOWED_PATHS\)",
     "此共享服务器上不允许使用路径 '{p}'：请使用你上传的文件，或管理员允许的文件夹（TUNEDECK_ALLOWED_PATHS）中的文件"),
    (r"the path '(?P<p>.+)' is not allowed on this shared server: use a checkpoint of one of your runs, a file you "
     r"uploaded, or one in the folders the admin allows \(TUNEDECK_ALLOWED_PATHS\)",
     "此共享服务器上不允许使用路径 '{p}'：请使用你自己某次运行的检查点、你上传的文件，或管理员允许的文件夹"
     "（TUNEDECK_ALLOWED_PATHS）中的文件"),
    # why a run ended (trainer/engine/train.py, trainer/jobs/scheduler.py, trainer/jobs/manager.py)
    (r"stopped by the user \(abort requested\) at step (?P<n>\d+); checkpoint (?P<c>\S+) saved, resume to continue",
     "用户已中止（请求中止），停在第 {n} 步；已保存检查点 {c}，点“继续训练”可接着训练"),
    (r"stopped by the user \(abort requested\) at step (?P<n>\d+)", "用户已中止（请求中止），停在第 {n} 步"),
    (r"stopped by the user \(abort requested\) before the first step", "用户已中止（请求中止），在第一步之前"),
    (r"stopped by the user \(abort requested\) while tokenizing \((?P<d>[\d,]+) of (?P<t>[\d,]+) rows tokenized\)",
     "用户已中止（请求中止），在分词时（已分词 {d} / {t} 行）"),
    (r"stopped by (?P<sig>SIGTERM|Ctrl-C) at step (?P<n>\d+); checkpoint (?P<c>\S+) saved, resume to continue",
     "收到 {sig}，停在第 {n} 步；已保存检查点 {c}，点“继续训练”可接着训练"),
    (r"stopped by (?P<sig>SIGTERM|Ctrl-C) at step (?P<n>\d+)", "收到 {sig}，停在第 {n} 步"),
    (r"stopped by (?P<sig>SIGTERM|Ctrl-C) before the first step", "收到 {sig}，在第一步之前停止"),
    (r"stopped by (?P<sig>SIGTERM|Ctrl-C) while tokenizing \((?P<d>[\d,]+) of (?P<t>[\d,]+) rows tokenized\)",
     "收到 {sig}，在分词时停止（已分词 {d} / {t} 行）"),
    (r"aborted before it started", "开始前已中止"),
    (r"cancelled while queued", "排队时已取消"),
    (r"aborted on request", "已按请求中止"),
    (r"aborted on request; the trainer ended by (?P<sig>\S+) before reporting", "已按请求中止；训练进程在报告前被 {sig} 结束"),
    (r"interrupted by a second Ctrl-C \(no checkpoint saved\)", "被第二次 Ctrl-C 中断（未保存检查点）"),
    (r"the trainer was killed by (?P<sig>\S+); resume it to continue from its last checkpoint",
     "训练进程被 {sig} 结束；点“继续训练”从最近的检查点接着训练"),
    (r"the trainer was killed by (?P<sig>\S+); it saved no checkpoint, so start it again",
     "训练进程被 {sig} 结束；它没有保存检查点，请重新开始"),
    (r"the trainer process \(pid (?P<pid>\d+)\) is gone without reporting an end — the server or machine restarted, "
     r"or it was killed; resume it to continue from its last checkpoint",
     "训练进程（pid {pid}）未报告结束就消失了——服务器或机器重启了，或进程被结束；点“继续训练”从最近的检查点接着训练"),
    (r"the trainer process \(pid (?P<pid>\d+)\) is gone without reporting an end — the server or machine restarted, "
     r"or it was killed; it saved no checkpoint, so start it again",
     "训练进程（pid {pid}）未报告结束就消失了——服务器或机器重启了，或进程被结束；它没有保存检查点，请重新开始"),
    (r"could not start the trainer: (?P<e>.+)", "无法启动训练进程：{e}"),
    # why a run failed and what to change (trainer/engine/telemetry.py)
    (r"Out of memory: the (?P<w>GPU|device) ran out of memory during training \((?P<e>.+)\)\.",
     "显存不足：训练期间 {w} 内存耗尽（{e}）。"),
    (r"(?:Halve the micro-batch and double the accumulation|Lower the micro-batch and raise the accumulation by the "
     r"same factor): per_device_train_batch_size (?P<m>\d+) → (?P<n>\d+) and gradient_accumulation_steps (?P<a>\d+) → "
     r"(?P<b>\d+), keeping the effective batch at (?P<e>\d+) per device\.",
     "减小微批次并按同样倍数增大梯度累积：per_device_train_batch_size {m} → {n}，gradient_accumulation_steps {a} → {b}，"
     "每个设备的有效批次保持 {e}。"),
    (r"Shorten the rows: cutoff_len (?P<a>\d+) → (?P<b>\d+) \(activation memory grows with the row length\)\.",
     "缩短行长：cutoff_len {a} → {b}（激活内存随行长增长）。"),
    (r"Turn on gradient_checkpointing: activations are recomputed instead of stored \(much less memory, about 30% "
     r"slower\)\.", "开启 gradient_checkpointing：激活重新计算而不是保存（内存少得多，约慢 30%）。"),
    (r"Turn on offload_activations to keep the saved activations in CPU RAM\.", "开启 offload_activations，把保存的激活放到 CPU 内存。"),
    (r"Use finetuning_type lora \(with quantization_bit 4 for QLoRA\): full fine-tuning keeps gradients and optimizer "
     r"state for every weight\.", "改用 finetuning_type lora（配合 quantization_bit 4 即 QLoRA）：全量微调要为每个权重保存梯度和优化器状态。"),
    (r"Load the base model in 4 bits: quantization_bit 4 \(QLoRA\) stores the frozen weights in about a quarter of "
     r"the memory\.", "以 4 位加载基座模型：quantization_bit 4（QLoRA）存放冻结权重只需约四分之一的内存。"),
    (r"Use optim paged_adamw_8bit: the optimizer state takes a quarter of the memory\.",
     "改用 optim paged_adamw_8bit：优化器状态只占四分之一的内存。"),
    (r"The model itself does not fit this GPU: pick a smaller model or a larger GPU\.", "模型本身放不进这块 GPU：请换更小的模型或更大的 GPU。"),
    (r"Lower the micro-batch size or cutoff_len\.", "请减小微批次或 cutoff_len。"),
    (r"Lower the learning rate: learning_rate (?P<a>\S+) → (?P<b>\S+)\.", "降低学习率：learning_rate {a} → {b}。"),
    (r"Clip the gradients: max_grad_norm 1\.0\.", "裁剪梯度：max_grad_norm 1.0。"),
    (r"fp16 overflows easily: use precision bf16 on a GPU that has it, or fp32\.",
     "fp16 容易溢出：在支持的 GPU 上用 precision bf16，或用 fp32。"),
    (r"Warm up longer: warmup_ratio 0\.05-0\.1\.", "延长预热：warmup_ratio 0.05-0.1。"),
    (r"Check the data for empty answers or rows the template renders oddly\.", "检查数据中是否有空回答，或被模板渲染得不正常的行。"),
    (r"NaN loss: (?P<e>.+)\. Training was stopped because the weights stop learning once the loss is NaN\.",
     "损失为 NaN：{e}。训练已停止，因为损失变成 NaN 后权重就不再学习。"),
    (r"The disk is full: a file of the run could not be written(?P<w>.*)\.", "磁盘已满：无法写入本运行的文件{w}。"),
    (r"Check the paths in the config \(dataset, model_name_or_path\)\.", "请检查配置中的路径（dataset、model_name_or_path）。"),
    (r"A package is missing: (?P<e>.+)", "缺少软件包：{e}"),
    (r"See the last lines of the log below\.", "请看下面日志的最后几行。"),
    (r"Fix the rows named above, or turn on skip_invalid_rows to train without them \(they are counted and "
     r"reported\)\.", "请修正上面列出的行，或开启 skip_invalid_rows 跳过它们训练（会统计并报告）。"),
    # presets (trainer/interop/presets.py)
    (r"'(?P<n>.+)' is a built-in preset \(read-only\); save yours under another name",
     "“{n}”是内置预设（只读）：请用其他名称保存你的预设"),
    (r"no preset named '(?P<n>.+)'; did you mean (?P<c>.+)\?", "没有名为“{n}”的预设；你是否想找 {c}？"),
    (r"no preset named '(?P<n>.+)'; known presets: (?P<c>.*)", "没有名为“{n}”的预设；已有的预设：{c}"),
    (r"the name is empty: give the preset a name", "名称为空：请给预设起个名字"),
    (r"'(?P<n>.+)' is a built-in preset and read-only", "“{n}”是内置预设，只读"),
    (r"no user preset named '(?P<n>.+)'", "没有名为“{n}”的用户预设"),
    (r"a preset named '(?P<n>.+)' already exists: choose another name or overwrite it",
     "已有名为“{n}”的预设：请换个名称或覆盖它"),
    (r"a preset named '(?P<n>.+)' already exists", "已有名为“{n}”的预设"),
    (r"'(?P<n>.+)' is not a preset name \(names cannot contain paths\)", "“{n}”不是预设名称（名称不能包含路径）"),
    (r"'(?P<n>.+)' is a path: a preset name cannot contain / or \\.*", "“{n}”是一个路径：预设名称不能包含 / 或 \\"),
    (r"'(?P<n>.+)' contains '\.\.': not allowed in a preset name", "“{n}”包含“..”：预设名称中不允许"),
    (r"the name is (?P<n>\d+) characters long; at most (?P<m>\d+)", "名称有 {n} 个字符；最多 {m} 个"),
    (r"'(?P<n>.+)' ends with a dot or a space: not allowed in a preset name", "“{n}”以点或空格结尾：预设名称中不允许"),
    (r"not a preset: the file holds (?P<k>.+), not a mapping of field: value", "不是预设：文件内容是 {k}，而不是“字段: 值”的映射"),
    (r"the file is empty: not a preset", "文件为空：不是预设"),
    (r"line (?P<l>\d+), column (?P<c>\d+): invalid YAML \((?P<m>.+)\)", "第 {l} 行第 {c} 列：YAML 无效（{m}）"),
    (r"invalid YAML \((?P<m>.+)\)", "YAML 无效（{m}）"),
    (r"a binary file, not a YAML preset", "这是二进制文件，不是 YAML 预设"),
    (r"unknown key", "未知的键"),
]
_MESSAGES = [(re.compile(pattern, re.DOTALL), template) for pattern, template in MESSAGE_PATTERNS_ZH]
# Python's json messages, as a broken line's refusal quotes them.
JSON_ZH = {"Expecting value": "缺少值", "Extra data": "多余的数据",
           "Expecting property name enclosed in double quotes": "属性名需要用双引号括起来",
           "Expecting ',' delimiter": "缺少逗号分隔符", "Expecting ':' delimiter": "缺少冒号分隔符",
           "Unterminated string starting at": "字符串没有结束", "Invalid control character at": "无效的控制字符"}
_WORDS = {"s": STATUS_ZH, "a": ACTION_ZH, "w": THING_ZH, "m": JSON_ZH}


def _filled(template: Any, values: dict[str, Any], original: str) -> str:
    """A template with the matched values; the original words if it cannot be filled (a translation must never
    cost the page its reply)."""
    try:
        return template(values) if callable(template) else template.format(**values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return original


def _places(text: str) -> str:
    """"line 3, line 7, ..." as "第 3 行、第 7 行……"."""
    return "、".join("……" if p == "..." else where_zh(p) for p in text.split(", "))


def plan_sentence_zh(sentence: str) -> str:
    """One plan sentence in Chinese, its numbers kept; unchanged when no pattern matches."""
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(sentence.strip())
        if match:
            values = {k: VERDICT_ZH.get(v, v) if k == "v" else v for k, v in match.groupdict().items()}
            return _filled(template, values, sentence)
    return sentence


@lru_cache(maxsize=2048)  # the Monitor says the same reason every second to every viewer
def message_zh(text: str) -> str:
    """A refusal or note the page passes on, in Chinese: each "; "-separated part matched whole (a ConfigError's
    "source: field: message" keeps its source and field); a part without a pattern stays as it is."""
    text = str(text)
    if "\n" in text:
        return "\n".join(line[:len(line) - len(line.lstrip())] + message_zh(line.strip()) if line.strip() else line
                         for line in text.split("\n"))
    whole = _one_message_zh(text)
    if whole != text:
        return whole
    parts = text.split("; ")
    translated = [_one_message_zh(part) for part in parts]
    return "；".join(translated) if translated != parts else text


def _one_message_zh(part: str) -> str:
    stripped = part.strip()
    for pattern, template in _MESSAGES:
        match = pattern.fullmatch(stripped)
        if match:
            values = {k: _WORDS.get(k, {}).get(v, v) for k, v in match.groupdict().items()}
            if "rest" in values:
                values["rest"] = _rest_zh(values["rest"])
            if "inner" in values:
                values["inner"] = message_zh(values["inner"])
            return _filled(template, values, part)
    plan = plan_sentence_zh(stripped)
    if plan != stripped:
        return plan
    pieces = stripped.split(": ")  # "file.yaml: learning_rate: message", "line 3: missing field 'output'"
    for cut in range(1, len(pieces)):
        rest = ": ".join(pieces[cut:])
        translated = _one_message_zh(rest)
        if translated != rest:
            head = [where_zh(p) for p in pieces[:cut]]
            return "：".join(head) + "：" + translated
    return part


_HEAD = re.compile(r"^(line|row|record) (\d+)$")


def where_zh(where: str) -> str:
    """A row's place ("line 3" of a JSONL file, "row 3" of a table) in Chinese; anything else unchanged."""
    return _HEAD.sub(lambda m: f"第 {m.group(2)} {'行' if m.group(1) == 'line' else '条'}", where)
_ISSUE_START = re.compile(r" (?=(?:line|row) \d+: |\.\.\. and \d+ more$)")


def _rest_zh(rest: str) -> str:
    """The listed row problems after a dataset's refusal, each in Chinese."""
    return " " + " ".join(message_zh(issue) for issue in _ISSUE_START.split(rest.strip())) if rest.strip() else rest
