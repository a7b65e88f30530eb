"""Chinese words of the schema: group titles, field labels and field help. English comes from the schema
itself (trainer/config.py); webui/i18n.py joins both into the page's one message table."""

from __future__ import annotations

GROUP_ZH = {
    "model": "模型", "method": "方法", "data": "数据", "batch": "批次与步数", "optimizer": "优化器与学习率调度",
    "lora": "LoRA", "memory": "量化与显存", "eval": "评估与检查点", "logging": "日志", "distributed": "设备与多机",
}

FIELD_ZH = {
    "num_processes": "设备数（进程数）", "gpu_ids": "GPU 编号", "distributed_type": "分布式方式",
    "offload_optimizer": "优化器状态卸载到 CPU", "offload_params": "权重卸载到 CPU", "num_machines": "机器数",
    "machine_rank": "本机序号", "main_process_ip": "主机地址", "main_process_port": "主机端口",
    "model_name_or_path": "模型", "template": "对话模板", "trust_remote_code": "信任远程代码",
    "attn_implementation": "注意力实现", "stage": "训练阶段", "finetuning_type": "微调方法",
    "quantization_bit": "量化位数", "dataset": "数据集", "dataset_format": "数据格式", "dataset_split": "数据划分",
    "dataset_subset": "数据子集", "column_mapping": "列名映射", "cutoff_len": "最大长度 (cutoff_len)",
    "max_samples": "最大样本数", "val_size": "验证集大小", "train_on_prompt": "在提示上计算损失",
    "skip_invalid_rows": "跳过无效行", "kto_desirable_only": "KTO 数据：只用期望的行", "packing": "序列打包", "group_by_length": "按长度分组",
    "per_device_train_batch_size": "微批次大小", "gradient_accumulation_steps": "梯度累积",
    "per_device_eval_batch_size": "评估批次大小", "num_train_epochs": "训练轮数", "max_steps": "最大步数",
    "learning_rate": "学习率", "lr_scheduler_type": "学习率调度", "warmup_ratio": "预热比例",
    "warmup_steps": "预热步数", "weight_decay": "权重衰减", "max_grad_norm": "最大梯度范数", "optim": "优化器",
    "seed": "随机种子", "lora_rank": "LoRA 秩", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout",
    "lora_target": "LoRA 目标层", "lora_bias": "LoRA 偏置", "use_rslora": "使用 rsLoRA", "use_dora": "使用 DoRA",
    "quantization_type": "4 位量化类型", "double_quantization": "双重量化", "gradient_checkpointing": "梯度检查点",
    "offload_activations": "激活卸载到内存", "precision": "计算精度", "use_liger_kernel": "使用 Liger 内核",
    "oom_recovery": "显存不足时自动恢复", "eval_strategy": "评估策略", "eval_steps": "评估间隔步数",
    "save_strategy": "保存策略", "save_steps": "保存间隔步数", "save_total_limit": "最多保留检查点数",
    "load_best_model_at_end": "结束时加载最佳模型", "early_stopping_patience": "早停耐心",
    "early_stopping_threshold": "早停阈值", "resume_from_checkpoint": "从检查点继续", "run_name": "运行名称",
    "logging_steps": "日志间隔步数", "neftune_noise_alpha": "NEFTune 噪声强度",
    "model_hub": "模型中心", "report_to": "实验跟踪器", "tracker_project": "跟踪项目",
    "tracker_tags": "跟踪标签", "trackio_space_id": "Trackio Space",
}

HELP_ZH = {
    "num_processes": "在本机的几个设备上训练，每个设备一个进程（通过 accelerate 启动）。1 表示照常单进程训练。留空或 `auto` = 所有可见的 GPU。没有 GPU 的机器上，2 个或更多会用 gloo 后端启动多个 CPU 进程。",
    "gpu_ids": "使用本机的哪些 GPU，例如 `0,1`（nvidia-smi 列出的编号）。留空：由调度器挑选空闲的 GPU。数量须与上面的设备数相同。",
    "distributed_type": "多个设备如何分担工作。ddp：每个设备持有完整模型（放得下时最快）。fsdp：权重、梯度和优化器状态分片到各设备。deepspeed_zero2：梯度和优化器状态分片。deepspeed_zero3：权重、梯度和优化器状态都分片（需要安装 deepspeed）。",
    "offload_optimizer": "把优化器状态放在 CPU 内存而不是 GPU 上（ZeRO/FSDP 卸载）：GPU 显存少得多，每步更慢。FSDP 会同时卸载权重和优化器状态。",
    "offload_params": "把分片后的权重也放在 CPU 内存中，每层用时再取（ZeRO-3/FSDP）：显存最少，速度最慢。",
    "num_machines": "一起训练这个运行的机器数。大于 1 时，在每台机器上运行打印出的命令（python -m trainer launch-commands CONFIG.yaml），运行目录放在各机器共享的存储上。",
    "machine_rank": "本机在这些机器中的序号：0 是主机，由它写入运行结果。",
    "main_process_ip": "0 号机器的地址，每台机器都必须能访问（多机时必填）。",
    "main_process_port": "0 号机器上一个空闲的 TCP 端口，供各进程会合。",
    "model_name_or_path": "基础模型：`demo`（离线构建的小模型，用于试用）、含 config.json 的本地目录，或 Hugging Face Hub ID，"
                          "如 meta-llama/Llama-3.1-8B。",
    "template": "把对话转成文本的对话模板。`auto` 使用分词器自带的模板，没有时使用简单的后备模板；也可指定名称"
                "（chatml、llama3、alpaca……）。",
    "trust_remote_code": "允许模型仓库运行它自带的 Python 代码。只用于你信任的模型。",
    "attn_implementation": "注意力内核。`auto`：GPU 上装有 FlashAttention 时使用它（Hopper 上优先 3，其次 2，再次已缓存的 Hub `kernels` 版本），否则使用 PyTorch SDPA。",
    "stage": "训练阶段：在提示/回答对上做监督微调。",
    "finetuning_type": "`lora` 只训练小的适配器矩阵、冻结基础模型（配合 quantization_bit=4 即 QLoRA）；`full` 更新全部权重，"
                       "显存需求高数倍。",
    "quantization_bit": "用 bitsandbytes 以 4 位或 8 位加载冻结的基础模型（4 = QLoRA）。留空为 16 位。仅用于 LoRA。",
    "dataset": "训练数据：内置数据集名称（`demo`）、本地文件（JSON、JSONL、CSV、Parquet）或 Hugging Face Hub 数据集 ID。",
    "dataset_format": "每行的格式：alpaca（instruction/input/output）、sharegpt（多轮对话）、messages（role/content）、"
                      "prompt_completion，或用于继续预训练的 text。`auto` 自动识别。",
    "dataset_split": "训练使用 Hub 数据集的哪个划分。",
    "dataset_subset": "Hub 数据集的子集（配置），若有多个。",
    "column_mapping": "把列名改成格式要求的名称，例如 {question: instruction, answer: output}。",
    "cutoff_len": "每条训练样本的最大 token 数；更长的会被截断。越长越占显存。",
    "max_samples": "最多使用数据集的多少行（留空：全部）。",
    "val_size": "留出用于评估的行：小于 1 的比例（0.1 = 10%），或 1 及以上的行数。0 表示不划分验证集。",
    "train_on_prompt": "在提示部分的 token 上也计算损失。关闭：只学习回答。",
    "kto_desirable_only": "KTO 数据（每个回答带 true/false 标签）：只在标为 true（期望）的行上训练，其余不用。关闭：拒绝 KTO 数据，因为 SFT 也会模仿不期望的回答。",
    "skip_invalid_rows": "部分行格式错误时仍然训练，跳过它们（会计数并报告）。关闭：任何坏行都会在开始前中止运行。",
    "packing": "把多条短样本打包成一条序列，不在填充上浪费计算。留空 = 自动：在 GPU 上且注意力内核能隔开打包样本（FlashAttention、SDPA）时开启，否则关闭。",
    "group_by_length": "把长度相近的样本放进同一批，减少填充。留空 = 自动：不打包时开启。",
    "per_device_train_batch_size": "微批次：每个设备一次处理的行数。显存的主要旋钮；目标约为 GPU 的 90%。",
    "gradient_accumulation_steps": "每次优化器更新前累加的微批次数。有效批次 = 微批次 × 累积 × 设备数：小显卡也能用大的有效批次。",
    "per_device_eval_batch_size": "评估时一次处理的行数（留空：与微批次相同）。",
    "num_train_epochs": "遍历数据集的次数。设置了 max_steps 时忽略。",
    "max_steps": "在这么多优化器步后停止；优先于训练轮数。-1 = 按轮数训练。固定 max_steps 时，批次越大运行越长。",
    "learning_rate": "峰值学习率。LoRA 通常 1e-4..3e-4，全量微调 1e-5..5e-5。改变有效批次时要相应调整。",
    "lr_scheduler_type": "预热之后学习率随训练的变化方式。",
    "warmup_ratio": "用于把学习率从 0 逐步升高的步数比例。",
    "warmup_steps": "以步数而不是比例表示的预热（0：使用 warmup_ratio）。",
    "weight_decay": "对训练权重的 L2 式衰减。",
    "max_grad_norm": "把梯度范数裁剪到这个值（0：不裁剪）。可抑制损失尖峰。",
    "optim": "优化器。adamw_8bit 和 paged_adamw_8bit 用 8 位保存优化器状态（bitsandbytes），节省显存；paged 在压力下移到内存。",
    "seed": "初始化、打乱和验证集划分的随机种子。",
    "neftune_noise_alpha": "NEFTune：训练时给嵌入加随机噪声，按 alpha / sqrt(长度 × 宽度) 缩放；常让对话回答更好。"
                           "常用 5 到 15。留空：关闭。",
    "lora_rank": "LoRA 秩 r：适配器矩阵的大小。常用 16-32。",
    "lora_alpha": "LoRA 缩放：更新按 alpha / r 缩放（rsLoRA 时为 alpha / sqrt(r)）。",
    "lora_dropout": "LoRA 输入上的 dropout，一种温和的正则化。",
    "lora_target": "哪些层加适配器：`all-linear`（注意力和 MLP 投影），或 q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                   "down_proj 这样的名称。",
    "lora_bias": "同时训练偏置项。通常选 `none`。",
    "use_rslora": "秩稳定 LoRA：按 alpha / sqrt(r) 缩放；秩较高时有帮助。",
    "use_dora": "DoRA：权重分解的 LoRA。效果略好，速度较慢。",
    "quantization_type": "4 位数据类型。NF4 是 QLoRA 论文的选择。",
    "double_quantization": "把 4 位量化常数也量化（每个权重约省 0.4 位）。",
    "gradient_checkpointing": "反向传播时重新计算激活：显存少很多，约慢 30%。",
    "offload_activations": "前向传播时把保存的激活移到 CPU 内存。用于长序列。",
    "precision": "计算精度。`auto`：GPU 支持时用 bf16，否则 GPU 上用 fp16，CPU 上用 fp32。",
    "use_liger_kernel": "融合的 Liger 内核（更省显存、更快）。留空 = 自动：GPU 上已安装时开启。",
    "oom_recovery": "显存不足时，自动从最近的检查点重新开始，微批次减半、梯度累积加倍，有效批次保持不变。重复直到微批次为 1。",
    "eval_strategy": "何时在验证集上计算损失。需要 val_size > 0。",
    "eval_steps": "每 N 步评估一次（eval_strategy = steps）。",
    "save_strategy": "何时保存可用于继续训练的检查点。",
    "save_steps": "每 N 步保存一次（save_strategy = steps）。",
    "save_total_limit": "只保留最新的 N 个检查点（留空：全部保留）。",
    "load_best_model_at_end": "结束时保留评估损失最低的检查点，而不是最后一个。",
    "early_stopping_patience": "评估损失连续这么多次没有改善就停止（留空：从不）。",
    "early_stopping_threshold": "评估损失至少要改善多少才算改善。",
    "resume_from_checkpoint": "从检查点继续：`last`（本运行目录中最新的）或一个路径。",
    "run_name": "运行列表中显示的名称。",
    "logging_steps": "每 N 步记录一次损失和学习率。",
    "model_hub": "模型和数据集的 Hub ID 从哪里下载：`huggingface`（或环境变量 HF_ENDPOINT 指定的镜像）、`modelscope`"
                 "（需要 modelscope 包），或 `auto`：环境设置了 USE_MODELSCOPE_HUB=1 时用魔搭 ModelScope，否则用 Hugging Face。",
    "report_to": "除面板自己的图表外，还接收本次运行指标的实验跟踪器：tensorboard（运行目录中的文件）、trackio（本地优先，"
                 "仪表盘在本机或 Space 上；推荐团队使用）、wandb、mlflow、swanlab。除 TensorBoard 外都是可选依赖"
                 "（pip install 'tunedeck[trackio]'）；凭据只从环境变量读取（WANDB_API_KEY 等）。",
    "tracker_project": "本次运行在各跟踪器中归入的项目（Trackio 项目、W&B 项目、MLflow 实验、SwanLab 项目）。留空：`tunedeck`。",
    "tracker_tags": "本次运行在 W&B、MLflow 和 SwanLab 中的标签，用逗号分隔。",
    "trackio_space_id": "托管团队 Trackio 仪表盘的 Hugging Face Space（user/space）；留空则仪表盘留在本机。"
                        "需要环境中有具备写权限的 HF_TOKEN。",
}

# Parts of the plan's memory breakdown (trainer/plan/memory.py names them).
MEMORY_PARTS_ZH = {
    "cuda_context": "CUDA 上下文", "weights": "权重", "base_weights": "基础权重", "gradients": "梯度",
    "lora_weights": "LoRA 权重", "lora_gradients": "LoRA 梯度", "optimizer_state": "优化器状态", "activations": "激活",
    "logits_and_loss": "logits 与损失", "allocator_overhead": "分配器开销", "step_temporaries": "单步临时张量",
}

# The built-in presets (presets/*.yaml): title and description in Chinese.
PRESET_ZH = {
    "demo": ("演示——小模型，CPU 即可运行", "内置的小型 Llama 风格模型和指令数据集，均离线构建。在 CPU 上一分钟内完成 LoRA 训练，"
             "损失明显下降：用它从头到尾试用这个面板。"),
    "chatglm3-6b-lora-24gb": ("ChatGLM3-6B LoRA 微调——单张 24 GB 显卡", "经典的 ChatGLM-6B 级 LoRA 配方：fp16、样本截断到 1024 token、"
                              "微批次 8 × 累积 2、学习率 5e-5 训练 3 轮。需要 trust_remote_code：只用你信任的仓库。"),
    "llama3.1-8b-qlora-80gb": ("Llama-3.1-8B QLoRA——单张 80 GB A100/H100", "4 位 NF4 基础模型、所有线性层上的 LoRA、2048 token 样本按长度分组、"
                               "8 位 AdamW。Llama 3.1 在 Hub 上需授权：接受许可并在环境中设置 HF_TOKEN。"),
    "open-llama-7b-v2-qlora": ("OpenLLaMA 7B v2 QLoRA——按轮训练，有效批次 128", "4 位基础模型，按轮训练：分页 8 位 AdamW、fp16、每轮结束评估并保存检查点，"
                               "结束时加载最佳检查点。微批次 4 × 累积 32 = 有效批次 128。适合 24 GB 显卡。"),
    "qwen2.5-0.5b-full-sft-24gb": ("Qwen2.5-0.5B 全量微调，2048 token——单张 24 GB 显卡", "小模型全量微调：微批次 6 × 累积 4 = 有效批次 24，"
                                   "学习率 3e-5、bf16、不用梯度检查点。显存不足时选择“显存紧张”的变体。"),
    "qwen2.5-0.5b-full-sft-24gb-tight-4x6": ("Qwen2.5-0.5B 全量微调，显存紧张——批次 4 × 累积 6", "有效批次仍为 24、学习率不变，"
                                             "只保留 4 行的激活（约少三分之一显存）。"),
    "qwen2.5-0.5b-full-sft-24gb-tight-6x4": ("Qwen2.5-0.5B 全量微调，显存紧张——批次 6 × 累积 4", "批次和学习率不变，用梯度检查点在反向传播时重新计算激活，"
                                             "显存大幅减少，约慢 30%。"),
    "unsloth-style-qlora": ("Unsloth 风格 QLoRA——r 32、打包短样本、卸载检查点", "4 位基础模型、LoRA r 32、alpha 16，作用于注意力和 MLP 投影，"
                            "梯度检查点并把激活卸载到内存，短样本打包成 2048 token 序列。适合 16-24 GB 显卡。"),
}
