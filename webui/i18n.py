"""Every word of the page, in English and Chinese: one message table.

Static words (labels, help, tab names, buttons) reach the browser through Gradio's own i18n (gr.I18n, the
`translations()` below) and switch without a round trip; words the server writes (the run plan, toasts,
status badges, progress, charts, tables, errors) are rendered with `t(lang, key, ...)` in the language the
page shows, which every handler that writes words receives as `lang`. English labels and help come from
the schema; their Chinese from webui/i18n_fields.py. A key without a Chinese entry falls back to English.
"""

from __future__ import annotations

import re

from trainer.config import GROUPS

from .form import bounds_text, controls
from .i18n_after import AFTER_TEXT
from .i18n_fields import FIELD_ZH, GROUP_ZH, HELP_ZH
from .i18n_plan import message_zh

LANGUAGES = {"English": "en", "中文": "zh-CN"}  # the top bar's choice -> Gradio's locale
EN, ZH = "en", "zh"

UI_TEXT: dict[str, tuple[str, str]] = {
    # key: (English, Chinese); {name} placeholders are filled by t(). A dotted key ("status.running") is a
    # path in the browser's i18n: no plain key may equal the part before a dot ("status" would show an object).
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
    "load_anyway": ("Load, ignoring unknown keys", "加载，忽略未知键"),
    "save_preset": ("Save preset", "保存预设"),
    "preset_name": ("Save as", "另存为"),
    "preview": ("Preview", "预览"),
    "command": ("Command", "命令"),
    "start": ("Start", "开始"),
    "abort": ("Abort", "中止"),
    "resume": ("Resume", "继续训练"),
    "open_notice": ("This dashboard is open: anyone who can reach it may start, abort and delete runs. Set "
                    "TUNEDECK_AUTH or TUNEDECK_USERS_FILE (or use Hugging Face sign-in on a Space) to require a login.",
                    "此面板对所有人开放：任何能访问它的人都可以启动、中止和删除运行。设置 TUNEDECK_AUTH 或 "
                    "TUNEDECK_USERS_FILE（或在 Space 上使用 Hugging Face 登录）以要求登录。"),
    "storage_warning": ("Runs are kept in the Space's container, which loses them on every restart or rebuild: add "
                        "persistent storage in the Space's settings (it appears as /data and runs go there).",
                        "运行保存在 Space 的容器中，每次重启或重建都会丢失：请在 Space 设置中添加持久存储"
                        "（它显示为 /data，运行将保存在那里）。"),
    "api_token": ("API token", "API 令牌"),
    "tokens_help": ("A personal token for the HTTP API (`Authorization: Bearer <token>`, or `X-Tunedeck-Token: "
                    "<token>` behind a private Space; see the README): it acts as you. It is shown once; only its "
                    "hash is kept.",
                    "用于 HTTP API 的个人令牌（`Authorization: Bearer <令牌>`；在私有 Space 后面用 `X-Tunedeck-Token: "
                    "<令牌>`，见 README）：它以你的身份操作。令牌只显示一次；服务器只保存其哈希。"),
    "token_label": ("What it is for (optional)", "用途（可选）"),
    "token_create": ("Create token", "创建令牌"),
    "token_new": ("Your new token — copy it now, it is not shown again", "你的新令牌 —— 请立即复制，它不会再次显示"),
    "token_pick_label": ("Token to revoke", "要撤销的令牌"),
    "token_revoke": ("Revoke", "撤销"),
    "token_pick": ("Pick a token to revoke first.", "请先选择要撤销的令牌。"),
    "token_created": ("API token {id} created: copy it now, it is shown once.", "API 令牌 {id} 已创建：请立即复制，它只显示一次。"),
    "token_revoked": ("API token {id} revoked: the API refuses it from now on.", "API 令牌 {id} 已撤销：API 从现在起拒绝它。"),
    "tokens_none": ("No API tokens yet.", "还没有 API 令牌。"),
    "tokens_open": ("API tokens are for a server with sign-in: this open server's API answers on this machine "
                    "without one.", "API 令牌用于需要登录的服务器：这个开放服务器的 API 在本机无需令牌即可使用。"),
    "cancel_queued": ("Cancel (leave the queue)", "取消排队"),
    "move_up": ("Move up", "上移"),
    "move_down": ("Move down", "下移"),
    "others_run_note": ("{owner}'s run: only {owner} or an admin may abort, resume or cancel it.",
                        "{owner} 的运行：只有 {owner} 或管理员可以中止、恢复或取消它。"),
    "local_run_note": ("This run was made before sign-in was turned on: only an admin may abort, resume or "
                       "cancel it.", "这个运行创建于启用登录之前：只有管理员可以中止、恢复或取消它。"),
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
    "filter_placeholder": ("model, dataset, owner, status…", "模型、数据集、所有者、状态……"),
    "status_filter": ("Status", "状态"),
    "compare": ("Compare", "比较"),
    "delete": ("Delete", "删除"),
    "open_monitor": ("Open in monitor", "在监控中打开"),
    "selected_runs": ("Picked runs (click rows) — to open or compare", "选中的运行（点击表格行）——用于打开或比较"),
    "delete_runs": ("Runs to delete", "要删除的运行"),
    "confirm_delete": ("Yes, delete", "确认删除"),
    "cancel": ("Cancel", "取消"),
    "dataset_preview": ("Preview the dataset", "预览数据集"),
    "upload_dataset": ("Upload a dataset file", "上传数据集文件"),
    "upload_preset": ("Upload a preset file", "上传预设文件"),
    "download": ("Download", "下载"),
    "file": ("File", "文件"),
    "rename": ("Rename", "重命名"),
    "new_name": ("New name", "新名称"),
    "import_lf": ("Import a LLaMA-Factory YAML", "导入 LLaMA-Factory YAML"),
    "export_lf": ("Export as LLaMA-Factory YAML", "导出为 LLaMA-Factory YAML"),
    "export_script": ("Export as a Python script", "导出为 Python 脚本"),
    "upload_anyway": ("Load the rest, ignoring the unknown keys", "加载其余部分，忽略未知键"),
    "page": ("Page", "页"),
    "run_config": ("config.yaml of this run", "本次运行的 config.yaml"),
    "trackers_title": ("Experiment trackers", "实验跟踪器"),
    "tracker_project": ("project {project}", "项目 {project}"),
    "tracker_project_later": ("project {project} (the run's link appears once training starts)",
                              "项目 {project}（训练开始后这里显示本运行的链接）"),
    "tracker_run": ("(run {run})", "（运行 {run}）"),
    "reuse_config": ("Use this config in the form (to start a new run from it)", "把此配置填入表单（以它开始新运行）"),
    "queue": ("Queue", "队列"),
    "choose_preset": ("Choose a preset first.", "请先选择一个预设。"),
    "builtin_preset": ("built-in (read-only)", "内置（只读）"),
    "your_preset": ("yours, in `{path}`", "你的，位于 `{path}`"),
    "owned_preset": ("saved by {owner}, in `{path}`", "由 {owner} 保存，位于 `{path}`"),
    "preset_renamed": ("Renamed '{old}' to '{new}'.", "已将“{old}”重命名为“{new}”。"),
    "preset_deleted": ("Deleted preset '{name}'.", "已删除预设“{name}”。"),
    "loaded_upload": ("Loaded from the uploaded file (save it to keep it). ", "已从上传的文件加载（保存为预设以保留）。"),
    "imported_from": ("Imported from {name}", "从 {name} 导入"),
    "imported_lf": ("Imported from a LLaMA-Factory YAML (save it as a preset to keep it). ",
                    "已从 LLaMA-Factory YAML 导入（保存为预设以保留）。"),
    "quant.none": ("none (16-bit)", "无（16 位）"), "quant.4": ("4-bit (QLoRA)", "4 位（QLoRA）"),
    "quant.8": ("8-bit", "8 位"),
    "methods.lora": ("LoRA", "LoRA"), "methods.qlora4": ("QLoRA (4-bit)", "QLoRA（4 位）"),
    "methods.qlora8": ("QLoRA (8-bit)", "QLoRA（8 位）"), "methods.full": ("Full", "全量微调"),
    # status badges
    "status.queued": ("queued", "排队中"), "status.running": ("running", "运行中"),
    "status.finished": ("finished", "已完成"), "status.aborted": ("aborted", "已中止"),
    "status.failed": ("failed", "失败"), "status.interrupted": ("interrupted", "已中断"),
    "status.unknown": ("unknown", "未知"),
    "no_run": ("no run selected: press Start, or pick one", "未选择运行：点击“开始”，或选择一个运行"),
    "abort_requested": ("abort requested: stopping at the next step", "已请求中止：将在下一步停止"),
    # progress
    "progress": ("step {step} / {total}", "第 {step} / {total} 步"),
    "elapsed": ("elapsed {value}", "已用 {value}"),
    "remaining": ("remaining {value}", "剩余 {value}"),
    # toasts and messages
    "fix_red": ("Fix the fields marked in red: {detail}", "请修正标红的字段：{detail}"),
    "not_started_fix": ("Not started: fix the fields marked in red.", "未开始：请修正标红的字段。"),
    "not_started": ("Not started: {detail}", "未开始：{detail}"),
    "queue_full": ("Not started: you already have {cap} runs waiting in the queue, the most one person may queue; "
                   "cancel one or wait until one starts.",
                   "未开始：你已有 {cap} 个运行在队列中等待，这是每人可排队的上限；请取消一个或等其中一个开始。"),
    "fix_these": ("Fix these before starting:", "开始前请修正："),
    "run_queued": ("Run {run_id} queued.", "运行 {run_id} 已加入队列。"),
    "preset_saved": ("Saved preset '{name}'.", "已保存预设“{name}”。"),
    "secrets_removed": (" Secrets removed: {names}", " 已移除密钥：{names}"),
    "preset_is": ("Preset: **{name}**", "预设：**{name}**"),
    "yours": (" (yours)", "（你的）"),
    "by_owner": (" (by {owner})", "（{owner} 的）"),
    "broken_file": (" — broken file", " —— 文件已损坏"),
    "not_loaded": ("Not loaded: {keys}", "未加载：{keys}"),
    "select_run_first": ("Select a run first.", "请先选择一个运行。"),
    "cancel_sent": ("Run {run_id} left the queue: cancelled before it started.", "运行 {run_id} 已离开队列：开始前已取消。"),
    "moved_up": ("Run {run_id} moved up the queue.", "运行 {run_id} 已在队列中上移。"),
    "moved_down": ("Run {run_id} moved down the queue.", "运行 {run_id} 已在队列中下移。"),
    "abort_sent": ("Abort requested for {run_id}: it stops at the next step and saves a checkpoint.",
                   "已请求中止 {run_id}：它会在下一步停止并保存检查点。"),
    "resume_sent": ("Run {run_id} queued again: it resumes from its newest checkpoint.",
                    "运行 {run_id} 已重新排队：将从最新的检查点继续。"),
    "reuse_note": ("Config of run **{run_id}** — change what you like and press Start for a new run.",
                   "运行 **{run_id}** 的配置——按需修改后点击“开始”以新建运行。"),
    "runs_unreadable": ("The run list cannot be read: {detail}", "无法读取运行列表：{detail}"),
    "pick_in_table": ("Select a run in the table first.", "请先在表格中选择一个运行。"),
    "pick_two": ("Select two or more runs to compare.", "请选择两个或更多运行进行比较。"),
    "pick_delete": ("Choose the runs to delete first (Runs to delete).", "请先选择要删除的运行（“要删除的运行”）。"),
    "confirm_delete_text": ("Delete {count} run(s)? This removes their directories (checkpoints, adapter, logs) "
                            "and cannot be undone:", "删除 {count} 个运行？这会删除它们的目录（检查点、适配器、日志），无法撤销："),
    "delete_not_yours": ("{run} is {owner}'s run: only {owner} or an admin may delete it. Take it out of Runs "
                         "to delete; nothing was deleted.", "{run} 是 {owner} 的运行：只有 {owner} 或管理员可以删除它。"
                         "请把它从“要删除的运行”中移除；未删除任何运行。"),
    "delete_local_run": ("{run} was made before sign-in was turned on: only an admin may delete it. Take it out "
                         "of Runs to delete; nothing was deleted.", "{run} 创建于启用登录之前：只有管理员可以删除它。"
                         "请把它从“要删除的运行”中移除；未删除任何运行。"),
    "finished_warning": ("its trained adapter is deleted too", "训练好的适配器也会被删除"),
    "deleted": ("Deleted {runs}.", "已删除 {runs}。"),
    "delete_cancelled": ("Nothing deleted.", "未删除任何运行。"),
    "configs_identical": ("The configs are identical.", "这些配置完全相同。"),
    "compare_need_two": ("Select two or more runs to compare their configs.", "请选择两个或更多运行来比较它们的配置。"),
    "diff_field": ("field", "字段"),
    "no_output": ("(no output yet)", "（尚无输出）"),
    "plan_failed": ("The plan could not be computed: {detail}", "无法计算训练计划：{detail}"),
    "dataset_label": ("Dataset: `{dataset}`", "数据集：`{dataset}`"),
    "fix_form_first": ("Fix the form first: {detail}", "请先修正表单：{detail}"),
    "data_unreadable": ("The dataset could not be read: {detail}", "无法读取数据集：{detail}"),
    "upload_refused": ("Upload refused: {detail}", "上传被拒绝：{detail}"),
    "upload_saved": ("Saved as {name}; the form's dataset now points at it.", "已保存为 {name}；表单的数据集已指向它。"),
    # run notes
    "finished_note": ("**Finished**", "**已完成**"),
    "saved_to": ("saved to `{path}`", "已保存到 `{path}`"),
    "finished_next": ("Next: talk to it beside the base model in the **{chat}** tab; measure, merge, download or "
                      "publish it in **{export}**.",
                      "下一步：在“**{chat}**”标签页把它与基座模型并排对话；在“**{export}**”中评估、合并、下载或发布它。"),
    "best_eval": ("best eval loss {value}", "最佳评估损失 {value}"),
    "best_checkpoint": ("best checkpoint `{name}`", "最佳检查点 `{name}`"),
    "reason_note": ("**{status}:** {reason}", "**{status}：** {reason}"),
    # the queue
    "queue_empty": ("Queue: nothing waiting.", "队列：没有等待中的运行。"),
    "queue_live": ("Live: {runs}", "正在进行：{runs}"),
    "queue_row": ("#{position} {run} — waits for {ahead}; estimated start {eta}",
                  "第 {position} 位 {run} —— 等待 {ahead}；预计开始 {eta}"),
    "queue_free": ("a free slot", "空闲位置"),
    "queue_soon": ("as soon as the scheduler picks it up", "调度器接手后立即开始"),
    "queue_unknown": ("unknown (a run ahead has no pace yet)", "未知（前面的运行还没有速度数据）"),
    "queue_in": ("in about {value} ({clock})", "约 {value} 后（{clock}）"),
    "waits_for": ("waiting for {ahead}", "正在等待 {ahead}"),
    # health
    "health_ok": ("**Health:** no alerts — no NaN loss, no spike, no gradient blow-up so far.",
                  "**健康检查：** 没有警报——目前没有 NaN 损失、没有尖峰、没有梯度暴增。"),
    "health_none": ("**Health:** nothing to judge yet — no logged steps.", "**健康检查：** 还没有可判断的数据——尚无记录的步。"),
    "level.error": ("Error", "错误"), "level.warning": ("Warning", "警告"), "level.info": ("Note", "提示"),
    "toast_success": ("Success", "成功"),
    # Health in Chinese: alerts.py words each alert in English with its numbers; these say the same numbers.
    "alert.nan_loss": ("The loss is not finite from step {step}: training has diverged.",
                       "损失从第 {step} 步起出现 NaN 或无穷大：训练已发散。请降低学习率，保持梯度裁剪（max_grad_norm 1.0），"
                       "优先用 bf16 而不是 fp16。"),
    "alert.warmup_spike": ("Warm-up spike: {first:.4g} at step {first_step} → {peak:.4g} at step {step}.",
                           "预热期间损失从第 {first_step} 步的 {first:.4g} 升到第 {step} 步的 {peak:.4g}：学习率升得太高。"
                           "请降低学习率或延长预热。"),
    "alert.no_steps": ("No training step was logged yet.", "尚未记录任何训练步：等损失出现后才能判断健康状况。"),
    "alert.loss_spike": ("{count} loss spike(s), the largest at step {step}: {value:.4g} vs {median:.4g}.",
                         "损失出现 {count} 次尖峰，最大一次在第 {step} 步：{value:.4g}，而最近的中位数为 {median:.4g}。"
                         "偶尔出现无妨；频繁出现说明学习率过高或有损坏的数据行（请看数据预览）。"),
    "alert.grad_norm_blowup": ("Gradient norm blow-up at step {step}: {value:.3g} against a typical {typical:.3g}.",
                               "第 {step} 步梯度范数暴增：{value:.3g}，通常为 {typical:.3g}。请降低学习率或增加预热，"
                               "并保持梯度裁剪（max_grad_norm）。"),
    "alert.grad_norm_nonfinite": ("The gradient norm is not finite at step {step}.",
                                  "第 {step} 步梯度范数不是有限值：这次更新无效。请降低学习率，并保持 max_grad_norm 为 1.0。"),
    "alert.plateau": ("The loss has stopped falling: {recent:.4g} over the last {points} steps (since step "
                      "{since_step}) vs {before:.4g}.",
                      "损失已停止下降：最近 {points} 个记录步（自第 {since_step} 步起）平均 {recent:.4g}，此前为 {before:.4g}。"
                      "更多步数收益可能很小；若仍偏高，请提高学习率或 LoRA 秩，或检查数据。"),
    "alert.overfitting": ("Eval loss is rising: {best:.4g} at step {best_step} → {eval:.4g} at step {step}, while "
                          "the train loss falls ({train_then:.4g} → {train_now:.4g}).",
                          "评估损失在上升（第 {best_step} 步 {best:.4g} → 第 {step} 步 {eval:.4g}），而训练损失仍在下降"
                          "（{train_then:.4g} → {train_now:.4g}）：模型在记忆训练数据。请提前停止（减少轮数、"
                          "early_stopping_patience）、加载最佳检查点，或增加数据。"),
    # the run plan
    "plan.effective_batch": ("Effective batch", "有效批次"),
    "plan.effective_batch_value": ("{total} = {micro} × {accumulation} × {devices} device(s)",
                                   "{total} = {micro} × {accumulation} × {devices} 个设备"),
    "plan.training_rows": ("Training rows", "训练行数"),
    "plan.format": ("{format} format", "{format} 格式"),
    "plan.steps_per_epoch": ("Steps per epoch", "每轮步数"),
    "plan.total_steps": ("Total optimizer steps", "优化器总步数"),
    "plan.warmup_steps": ("Warmup steps", "预热步数"),
    "plan.epochs": ("Epochs (effective)", "实际轮数"),
    "plan.precision": ("Precision · attention", "精度 · 注意力"),
    "plan.packing": ("Packing · group by length", "打包 · 按长度分组"),
    "batching.set": (" (set in the config)", "（配置中指定）"),
    "batching.gpu_padding_free": (" — auto on a GPU: padding-free packing, rows kept apart by {attention}",
                                  " — GPU 上自动：无填充打包，由 {attention} 隔开各行"),
    "batching.attention_not_padding_free": (" — auto: {attention} cannot keep packed rows apart, so grouped by length",
                                            " — 自动：{attention} 无法隔开打包的行，因此按长度分组"),
    "batching.cpu_grouped": (" — auto on a CPU: grouped by length (set packing to pack)",
                             " — CPU 上自动：按长度分组（要打包请开启“序列打包”）"),
    "plan.on": ("on", "开"), "plan.off": ("off", "关"), "plan.unknown": ("unknown", "未知"),
    "plan.real_tokens": ("Real tokens / processed", "有效 token / 处理 token"),
    "plan.throughput": ("Expected throughput (estimate)", "预计吞吐量（估计）"),
    "plan.throughput_value": ("≈ {tokens} tokens/s, MFU {mfu} of {gpu} ({peak} TFLOP/s 16-bit), from the measured "
                              "benchmarks", "≈ {tokens} 词元/秒，MFU {mfu}（{gpu}，16 位峰值 {peak} TFLOP/s），"
                              "依据实测基准"),
    "plan.throughput_by_gpu": ("tokens/s: {rates}; MFU {mfu}, from the measured benchmarks",
                               "词元/秒：{rates}；MFU {mfu}，依据实测基准"),
    "plan.flops": (" · {value} FLOPs per token", " · 每词元 {value} 次浮点运算"),
    "mfu.cpu": ("no MFU on a CPU: MFU is a share of a GPU's tensor-core peak, which a CPU does not have",
                "CPU 上没有 MFU：MFU 是 GPU 张量核心峰值的占比，CPU 没有这个峰值"),
    "mfu.precision": ("no MFU at 32-bit precision: the known peaks are 16-bit tensor-core figures",
                      "32 位精度下没有 MFU：已知峰值是 16 位张量核心的数值"),
    "mfu.unknown_model": ("no MFU: the model's shape is unknown, so are its FLOPs per token",
                          "没有 MFU：模型结构未知，每词元的浮点运算量也未知"),
    "mfu.mixture_of_experts": ("no MFU for a mixture of experts: the FLOPs per token depend on the experts used",
                               "混合专家模型没有 MFU：每词元的浮点运算量取决于所用专家"),
    "mfu.small_model": ("no expected tokens/s under 1B parameters: a step is bound by kernel launches, not FLOPs",
                        "参数少于 10 亿时不给出预计吞吐量：每步受内核启动开销限制，而非浮点运算"),
    "mfu.unknown_gpu": ("no MFU: this GPU's peak is not in the GPU table", "没有 MFU：GPU 表中没有该 GPU 的峰值"),
    "mfu.no_gpu_size": ("pick a GPU size for the expected tokens/s", "选择 GPU 显存大小以查看预计吞吐量"),
    "plan.trainable": ("Trainable parameters", "可训练参数"),
    "plan.of": ("{part} of {whole} ({share})", "{whole} 中的 {part}（{share}）"),
    "plan.memory": ("Peak memory estimate", "峰值显存估计"),
    "plan.memory_of": (" of {total} GB", " / {total} GB"),
    "plan.largest_micro": ("Largest micro-batch that fits", "能放下的最大微批次"),
    "plan.with_accumulation": (" (with accumulation {value} for about the same effective batch)",
                               "（配合梯度累积 {value}，有效批次大致不变）"),
    "plan.by_gpu": ("By GPU size", "按 GPU 显存"),
    "plan.breakdown": ("Memory breakdown", "显存构成"),
    "plan.planned_for": ("Planned for", "规划硬件"),
    "plan.warnings": ("Warnings", "警告"),
    "verdict.fits": ("fits", "放得下"), "verdict.tight": ("tight: little headroom", "偏紧：余量很少"),
    "verdict.will not fit": ("will NOT fit", "放不下"), "verdict.unknown": ("unknown (model shape not known)",
                                                                       "未知（模型结构未知）"),
    "this_machine_cpu": ("this machine: CPU", "本机：CPU"),
    "this_machine_gpu": ("this machine: {name} ({gb} GB)", "本机：{name}（{gb} GB）"),
    # charts
    "chart.loss": ("Loss", "损失"), "chart.step": ("step", "步"), "chart.loss_axis": ("loss", "损失"),
    "chart.log_axis": (" (log scale)", "（对数坐标）"),
    "chart.waiting_step": ("waiting for the first logged step…", "等待第一个记录的步……"),
    "chart.loss_raw": ("loss (raw)", "损失（原始）"), "chart.loss_smoothed": ("loss (smoothed {value})", "损失（平滑 {value}）"),
    "chart.nan": ("NaN / inf loss", "NaN / 无穷大损失"), "chart.eval_loss": ("eval loss", "评估损失"),
    "chart.gpu_memory": ("GPU memory", "GPU 显存"), "chart.cpu_memory": ("CPU: process memory (RSS)", "CPU：进程内存（RSS）"),
    "chart.memory": ("Memory", "内存"),
    "chart.devices_memory": ("{kind} memory of {count} devices", "{count} 个设备的{kind}内存"), "chart.elapsed": ("elapsed (s)", "已用时间（秒）"),
    "chart.waiting_memory": ("waiting for the first memory reading…", "等待第一次内存读数……"),
    "chart.of_ram": ("of {value} GB system RAM", "系统内存共 {value} GB"),
    "mem.allocated_gb": ("allocated (PyTorch)", "已分配（PyTorch）"),
    "mem.reserved_gb": ("reserved (PyTorch)", "已保留（PyTorch）"),
    "mem.peak_gb": ("peak allocated", "峰值分配"), "mem.device_used_gb": ("device used (whole card)", "设备已用（整卡）"),
    "mem.device_total_gb": ("device total", "设备总量"), "mem.rss_gb": ("process RAM (RSS)", "进程内存（RSS）"),
    "mem.system_total_gb": ("system RAM total", "系统内存总量"),
    "chart.lr": ("Learning rate and gradient norm", "学习率与梯度范数"),
    "chart.lr_axis": ("learning rate", "学习率"), "chart.grad_norm": ("gradient norm", "梯度范数"),
    "chart.throughput": ("Throughput", "吞吐量"), "chart.tokens_s": ("tokens / s", "token / 秒"),
    "chart.samples_s": ("samples / s", "样本 / 秒"),
    "chart.mfu": ("MFU {value} of {gpu} ({peak} TFLOP/s)", "MFU {value}（{gpu}，{peak} TFLOP/s）"),
    "chart.mfu_expected": (" · planned {value}", " · 计划 {value}"),
    "chart.compare": ("Smoothed loss, compared", "平滑损失对比"),
    "chart.compare_empty": ("select two or more runs to compare", "请选择两个或更多运行进行比较"),
    "chart.eval_suffix": ("{name} (eval)", "{name}（评估）"),
    # the runs table
    "col.id": ("run id", "运行 ID"), "col.name": ("name", "名称"), "col.status": ("status", "状态"),
    "col.model": ("model", "模型"), "col.dataset": ("dataset", "数据集"), "col.method": ("method", "方法"),
    "col.best": ("best train loss", "最佳训练损失"), "col.step": ("step", "步"), "col.duration": ("duration", "时长"),
    "col.owner": ("owner", "所有者"), "col.created": ("created", "创建时间"),
    # start checks
    "check.dataset": ("dataset: {detail}", "数据集：{detail}"),
    "check.model": ("model: {detail}", "模型：{detail}"),
    # after training: the Chat and Evaluate & export tabs
    "tab_chat": ("Chat", "对话"),
    "tab_export": ("Evaluate & export", "评估与导出"),
    "chat_weights": ("Weights", "权重"),
    "chat_load": ("Load", "加载"),
    "chat_wait": ("Wait, then load", "等待后加载"),
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
    # the Data tab's summary, table, histogram and rows (webui/data_view.py)
    "dv.legend_trained": ("trained (carries loss)", "训练（计入损失）"),
    "dv.legend_masked": ("masked (no loss)", "屏蔽（不计损失）"),
    "dv.legend_cut": ("cut by cutoff_len", "被 cutoff_len 截断"),
    "dv.no_rows": ("No rows to show.", "没有可显示的行。"),
    "dv.row_head": ("{where} · {tokens} tokens, {loss} carry loss", "{where} · {tokens} 个 token，{loss} 个计入损失"),
    "dv.cut_from": (" · cut from {tokens} tokens", " · 原有 {tokens} 个 token，已截断"),
    "dv.split_into": (" · {tokens} tokens of text, split into {rows} training rows",
                      " · 文本共 {tokens} 个 token，切分为 {rows} 个训练行"),
    "dv.more_chars": (" … ({count} more characters)", " …（还有 {count} 个字符）"),
    "dv.page_of": ("Page {page} of {pages} ({total} training rows)", "第 {page} / {pages} 页（共 {total} 个训练行）"),
    "dv.tokens": ("tokens", "个 token"), "dv.rows": ("rows", "行"),
    "dv.keep99": ("99% of rows: {value}", "99% 的行：{value}"),
    "dv.hist_title": ("Tokenized row lengths", "分词后的行长度"),
    "dv.hist_stats": (" — {count} rows, median {p50}, p99 {p99}, longest {longest}",
                      " —— {count} 行，中位数 {p50}，p99 {p99}，最长 {longest}"),
    "dv.tokens_per_row": ("tokens per row", "每行 token 数"),
    "dv.t_lengths": ("Token lengths", "Token 长度"), "dv.t_rows": ("Rows", "行数"),
    "dv.t_sample": (" (a sample of the {count} rows)", "（{count} 行中的样本）"),
    "dv.t_per_row": ("Tokens per row", "每行 token 数"),
    "dv.t_per_row_value": ("min {min}, median {p50}, p90 {p90}, p99 {p99}, max {max}",
                           "最少 {min}，中位数 {p50}，p90 {p90}，p99 {p99}，最多 {max}"),
    "dv.t_longer": ("Longer than cutoff_len {cutoff}", "超过 cutoff_len {cutoff}"),
    "dv.t_longer_value": ("{rows} rows ({share}), {cut} tokens cut", "{rows} 行（{share}），截掉 {cut} 个 token"),
    "dv.t_padding": ("Padding waste at micro-batch {micro}", "微批次 {micro} 时的填充浪费"),
    "dv.t_padding_value": ("plain {plain}, group_by_length {grouped}, packing {packed}",
                           "不处理 {plain}，group_by_length {grouped}，打包 {packed}"),
    "dv.t_packing": ("Packing into {cutoff}-token sequences", "打包为 {cutoff} token 的序列"),
    "dv.t_packing_value": ("{rows} rows per sequence on average ({sequences} sequences); {factor} of the longest "
                           "row would fit in one", "平均每个序列 {rows} 行（共 {sequences} 个序列）；一个序列可容纳 {factor} 个最长的行"),
    "dv.t_keep99": ("cutoff_len keeping 99% of rows whole", "让 99% 的行保持完整的 cutoff_len"),
    "dv.format": ("{format} format", "{format} 格式"),
    "dv.train_row": ("{count} training row", "{count} 个训练行"), "dv.train_rows": ("{count} training rows", "{count} 个训练行"),
    "dv.val_row": ("{count} validation row", "{count} 个验证行"),
    "dv.val_rows": ("{count} validation rows", "{count} 个验证行"),
    "dv.invalid": (", {count} invalid", "，{count} 个无效"), "dv.skipped": (", {count} skipped", "，跳过 {count} 个"),
    "dv.refused": ("A run would be refused:", "运行会被拒绝："),
    "dv.more": ("… and {count} more", "……还有 {count} 个"),
    "dv.skipped_head": ("**Skipped rows** (skip_invalid_rows is on):", "**跳过的行**（skip_invalid_rows 已开启）："),
    "dv.warnings_head": ("**Warnings and advice:**", "**警告与建议：**"),
    # the Chat and Evaluate & export tabs' controls and status lines
    "ac_temperature": ("temperature (0 = greedy)", "温度（0 = 贪心解码）"), "ac_top_p": ("top-p", "top-p"),
    "ac_max_new_tokens": ("max new tokens", "最多生成的 token 数"),
    "ac_repetition_penalty": ("repetition penalty", "重复惩罚"),
    "ac_eval_placeholder": ("the run's validation split", "该运行的验证集"),
    "ac_max_rows": ("at most this many rows (0: all)", "最多评估的行数（0：全部）"), "ac_samples": ("answers to compare", "对比的回答数"),
    "ac_gguf": ("also GGUF (llama.cpp)", "同时导出 GGUF（llama.cpp）"),
    "ac_no_gguf": ("GGUF needs llama.cpp's convert_hf_to_gguf.py: clone https://github.com/ggml-org/llama.cpp, "
                   "pip install -r its requirements.txt and set TUNEDECK_LLAMA_CPP to the checkout (then restart "
                   "tunedeck)",
                   "GGUF 需要 llama.cpp 的 convert_hf_to_gguf.py：克隆 https://github.com/ggml-org/llama.cpp，"
                   "pip install -r 其 requirements.txt，并把 TUNEDECK_LLAMA_CPP 设为该目录（然后重启 tunedeck）"),
    "ac_zip_file": ("adapter zip", "适配器 zip"), "ac_repo_id": ("repo id", "仓库 ID"),
    "ac_push_what": ("push", "推送内容"), "ac_adapter": ("adapter", "适配器"), "ac_merged": ("merged model", "合并后的模型"),
    "ac_private": ("private", "私有"), "ac_commit_message": ("commit message", "提交说明"),
    "ac_commit_placeholder": ("Upload the adapter of run …", "上传运行 … 的适配器"),
    "ac_card": ("README.md (model card)", "README.md（模型卡）"),
    "ac_loading": ("Loading: **{who}** is loading {what}…", "加载中：**{who}** 正在加载 {what}……"),
    "ac_none_because": ("No model loaded: {reason}", "未加载模型：{reason}"),
    "ac_none": ("No model loaded: pick a run and its weights, then **Load**.",
                "未加载模型：选择一个运行及其权重，然后点击“**加载**”。"),
    "ac_loaded": ("Loaded: **{run}** · {label} on {base} ({method}; {device}, {precision}{bits}){by}. One model is "
                  "loaded per server, shared by everyone: only who loaded it (or an admin) may replace or unload it.",
                  "已加载：**{run}** · {label}，基座 {base}（{method}；{device}，{precision}{bits}）{by}。每个服务器"
                  "只加载一个模型，所有人共用：只有加载者（或管理员）可以替换或卸载它。"),
    "ac_bits": (", {bits}-bit base", "，{bits} 位基座"),
    "ac_by": (" — loaded by **{who}** {ago}", " —— 由 **{who}** 于 {ago} 加载"),
    "ac_token_note": ("The token comes from the server's `{env}` environment variable only (now: **{state}**); it "
                      "is never asked for here, saved or shown.",
                      "令牌只来自服务器的 `{env}` 环境变量（当前：**{state}**）；这里从不询问、保存或显示它。"),
    "ac_token_set": ("set", "已设置"), "ac_token_not_set": ("not set", "未设置"),
    "ac_seconds_ago": ("{n} s ago", "{n} 秒前"), "ac_minutes_ago": ("{n} min ago", "{n} 分钟前"),
}
UI_TEXT.update(AFTER_TEXT)  # the after-training tabs' words, one table all the same

# Messages that come from the schema's validation (pydantic and our rules), in Chinese by pattern: the
# field is already named by the form, so the message says what is wrong with its value.
ERROR_PATTERNS_ZH: list[tuple[str, str]] = [
    (r"^a number is required.*", "需要一个数字"),
    (r"^must be a whole number.*", "必须是整数"),
    (r"^must be a finite number.*", "必须是有限的数"),
    (r"^(?:Input should be|must be) greater than or equal to (\S+)$", r"必须大于或等于 \1"),
    (r"^(?:Input should be|must be) greater than (\S+)$", r"必须大于 \1"),
    (r"^(?:Input should be|must be) less than or equal to (\S+)$", r"必须小于或等于 \1"),
    (r"^(?:Input should be|must be) less than (\S+)$", r"必须小于 \1"),
    (r"^choose one of (.*)$", r"请从以下选择：\1"),
    (r"^(?:Input should be a valid integer|.*whole number).*", "必须是整数"),
    (r"^(?:Input should be a valid number).*", "需要一个数字"),
    (r".*not found.*|.*does not exist.*", "找不到：请检查路径"),
]


def t(lang: str | None, key: str, **values: object) -> str:
    """The message `key` in `lang` ("en" or "zh"), its {placeholders} filled."""
    pair = UI_TEXT[key]
    text = pair[1] if lang == ZH else pair[0]
    return text.format(**values) if values else text


def lang_of(choice: str | None) -> str:
    """The top bar's language choice ("English" / "中文") as "en" / "zh"."""
    return ZH if LANGUAGES.get(choice or "", "en").startswith("zh") else EN


def field_label(lang: str | None, name: str, english: str) -> str:
    return FIELD_ZH.get(name, english) if lang == ZH else english


def field_message(lang: str | None, message: str) -> str:
    """A validation message of a field in the page's language; one without a Chinese pattern stays as is."""
    if lang != ZH:
        return message
    got = re.search(r"\s*\(got (.*)\)$", message, flags=re.DOTALL)
    base = message[:got.start()] if got else message
    suffix = f"（当前为 {got.group(1)}）" if got else ""
    named = message_zh(base)  # a rule or a check that names a file, a line or a model keeps the name
    if named != base:
        return named + suffix
    for pattern, replacement in ERROR_PATTERNS_ZH:
        if re.match(pattern, base, flags=re.IGNORECASE | re.DOTALL):
            return re.sub(pattern, replacement, base, flags=re.IGNORECASE | re.DOTALL) + suffix
    return message


def help_text(lang: str | None, name: str, english: str, bounds: str) -> str:
    text = HELP_ZH.get(name, english) if lang == ZH else english
    return f"{text} {bounds}".strip()


def translations() -> dict[str, dict[str, str]]:
    """{locale: {key: text}} for gr.I18n: UI words, group titles, every field's label and help."""
    en: dict[str, str] = {key: pair[0] for key, pair in UI_TEXT.items()}
    zh: dict[str, str] = {key: pair[1] for key, pair in UI_TEXT.items()}
    for key, title, _ in GROUPS:
        en[f"group.{key}"] = title
        zh[f"group.{key}"] = GROUP_ZH.get(key, title)
    for control in controls():
        en[f"field.{control.name}"] = control.label
        zh[f"field.{control.name}"] = FIELD_ZH.get(control.name, control.label)
        en[f"help.{control.name}"] = control.info
        zh[f"help.{control.name}"] = help_text(ZH, control.name, control.help, bounds_text(control.spec))
    return {"en": en, "zh-CN": zh, "zh": zh}
