"""Words of the page in English and Chinese, for Gradio's own i18n (gr.I18n).

English comes from the schema (field labels, group titles) and the UI_TEXT table; Chinese from the
tables below. A key without a Chinese entry falls back to English, so a new schema field never breaks
the page: it shows its English label until someone translates it.
"""

from __future__ import annotations

from trainer.config import GROUPS
from trainer.fieldspecs import field_specs

LANGUAGES = {"English": "en", "中文": "zh-CN"}

UI_TEXT: dict[str, tuple[str, str]] = {
    # key: (English, Chinese)
    "title": ("tunedeck — fine-tune language models", "tunedeck — 大语言模型微调"),
    "model": ("Model", "模型"),
    "model_info": ("demo, a listed model, a Hub id or a local path", "demo、列表中的模型、Hub ID 或本地路径"),
    "method": ("Method", "微调方法"),
    "quantization": ("Quantization", "量化"),
    "template": ("Chat template", "对话模板"),
    "language": ("Language", "语言"),
    "tab_train": ("Train", "训练"),
    "tab_monitor": ("Monitor", "监控"),
    "tab_runs": ("Runs", "运行记录"),
    "tab_data": ("Data", "数据"),
    "tab_presets": ("Presets", "预设"),
    "preset": ("Preset", "预设"),
    "load_preset": ("Load preset", "加载预设"),
    "save_preset": ("Save preset", "保存预设"),
    "preset_name": ("Save as", "另存为"),
    "preview": ("Preview", "预览"),
    "start": ("Start", "开始"),
    "abort": ("Abort", "中止"),
    "resume": ("Resume", "继续训练"),
    "run_plan": ("Run plan", "训练计划"),
    "plan_gpu": ("Plan for", "按此硬件规划"),
    "advanced": ("Advanced", "高级"),
    "run": ("Run", "运行"),
    "smoothing": ("Smoothing", "平滑"),
    "log_scale": ("Log scale", "对数坐标"),
    "log_tail": ("Log (stdout.log, last lines)", "日志（stdout.log 末尾）"),
    "alerts": ("Health", "健康检查"),
    "refresh": ("Refresh", "刷新"),
    "filter": ("Filter", "筛选"),
    "compare": ("Compare", "比较"),
    "delete": ("Delete", "删除"),
    "open_monitor": ("Open in monitor", "在监控中打开"),
    "selected_runs": ("Selected runs", "选中的运行"),
    "dataset_preview": ("Preview the dataset", "预览数据集"),
    "upload_dataset": ("Upload a dataset file", "上传数据集文件"),
    "upload_preset": ("Upload a preset file", "上传预设文件"),
    "download": ("Download", "下载"),
    "rename": ("Rename", "重命名"),
    "new_name": ("New name", "新名称"),
    "import_lf": ("Import a LLaMA-Factory YAML", "导入 LLaMA-Factory YAML"),
    "export_lf": ("Export as LLaMA-Factory YAML", "导出为 LLaMA-Factory YAML"),
    "export_script": ("Export as a Python script", "导出为 Python 脚本"),
    "page": ("Page", "页"),
    # after training: the Chat and Evaluate & export tabs
    "tab_chat": ("Chat", "对话"),
    "tab_export": ("Evaluate & export", "评估与导出"),
    "chat_weights": ("Weights", "权重"),
    "chat_load": ("Load", "加载"),
    "chat_wait": ("Wait for the GPU", "等待 GPU 空闲"),
    "chat_unload": ("Unload", "卸载"),
    "chat_settings": ("Generation settings", "生成参数"),
    "chat_system": ("System prompt", "系统提示词"),
    "chat_compare": ("Side by side with the base model", "与基座模型并排对比"),
    "chat_tuned": ("Fine-tuned model", "微调后的模型"),
    "chat_base": ("Base model", "基座模型"),
    "chat_placeholder": ("Type a message and press Enter", "输入消息后按回车"),
    "chat_send": ("Send", "发送"),
    "chat_stop": ("Stop", "停止"),
    "chat_clear": ("Clear history", "清空历史"),
    "evaluate": ("Evaluate", "评估"),
    "eval_dataset": ("Dataset (empty: the run's validation split)", "数据集（留空：该运行的验证集）"),
    "export": ("Export", "导出"),
    "adapter_zip": ("Adapter as a zip", "下载适配器 zip"),
    "merge": ("Merge into the base model", "合并到基座模型"),
    "publish": ("Publish on the Hugging Face Hub", "发布到 Hugging Face Hub"),
    "dry_run": ("Dry run (card and files)", "试运行（模型卡与文件）"),
    "push": ("Push", "推送"),
}

GROUP_ZH = {
    "model": "模型", "method": "方法", "data": "数据", "batch": "批次与步数", "optimizer": "优化器与学习率调度",
    "lora": "LoRA", "memory": "量化与显存", "eval": "评估与检查点", "logging": "日志",
}

FIELD_ZH = {
    "model_name_or_path": "模型", "template": "对话模板", "trust_remote_code": "信任远程代码",
    "attn_implementation": "注意力实现", "stage": "训练阶段", "finetuning_type": "微调方法",
    "quantization_bit": "量化位数", "dataset": "数据集", "dataset_format": "数据格式", "dataset_split": "数据划分",
    "dataset_subset": "数据子集", "column_mapping": "列名映射", "cutoff_len": "最大长度 (cutoff_len)",
    "max_samples": "最大样本数", "val_size": "验证集大小", "train_on_prompt": "在提示上计算损失",
    "skip_invalid_rows": "跳过无效行", "packing": "序列打包", "group_by_length": "按长度分组",
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
}


def translations() -> dict[str, dict[str, str]]:
    """{locale: {key: text}} for gr.I18n: UI words, group titles and every field label."""
    en: dict[str, str] = {key: pair[0] for key, pair in UI_TEXT.items()}
    zh: dict[str, str] = {key: pair[1] for key, pair in UI_TEXT.items()}
    for key, title, _ in GROUPS:
        en[f"group.{key}"] = title
        zh[f"group.{key}"] = GROUP_ZH.get(key, title)
    for spec in field_specs():
        en[f"field.{spec.name}"] = spec.label
        zh[f"field.{spec.name}"] = FIELD_ZH.get(spec.name, spec.label)
    return {"en": en, "zh-CN": zh, "zh": zh}
