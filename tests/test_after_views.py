"""The after-training tabs' words without a model: the trainer's progress lines and the chat worker's reasons
shown in the page's language, matched by the English text of their message keys (webui/after_views.py)."""

from __future__ import annotations

from webui.after_views import evaluation_markdown, progress_markdown, translate


def test_progress_lines_and_worker_reasons_in_chinese_keep_their_values():
    assert translate("zh", "measuring the tuned model on 36 rows of validation split") == "在 验证集 的 36 行上测量微调后的模型"
    assert translate("zh", "applying the checkpoint-4 with PEFT (not merged)") == "正在用 PEFT 应用 checkpoint-4（不合并）"
    assert translate("zh", "loading the base model demo in 16 bits on the CPU") == "在 CPU 上以 16 位加载基座模型 demo"
    busy = ("cannot load the chat model: the GPU is needed for training (training run r1 is using it; r2, r3 are "
            "queued for it); the chat model loads when it is free (wait, or abort the run)")
    assert translate("zh", busy) == ("无法加载对话模型：训练需要使用 GPU（训练运行 r1 正在使用它；r2, r3 正在排队等待它）；"
                                     "GPU 空闲后才会加载对话模型（请等待，或中止该运行）")
    assert translate("zh", "the chat model was unloaded after 15 idle minutes; load it again to continue") == \
        "对话模型空闲 15 分钟后已卸载；重新加载即可继续"
    assert "不是 Hub 仓库 ID" in translate("zh", "repo_id: '' is not a Hub repository id; use your-name/model-name")
    offline = "cannot reach the Hugging Face Hub: HF_HUB_OFFLINE is set (no network); nothing was pushed"
    assert translate("zh", offline) == "无法连接 Hugging Face Hub：已设置 HF_HUB_OFFLINE（无网络）；什么都没有推送"
    assert translate("en", busy) == busy and translate("zh", "something new") == "something new"
    shown = progress_markdown(["starting evaluate…", "ready"], lang="zh")
    assert shown == "正在启动 evaluate……<br><b>就绪</b>"


def test_the_evaluation_table_in_both_languages():
    results = [{"weights": "adapter", "dataset": "validation split", "rows": 6, "eval_loss": 2.0,
                "base_eval_loss": 4.0, "perplexity": 7.389, "base_perplexity": 54.6}]
    assert "| adapter | validation split | 6 | 2 | 4 | 7.389 | 54.6 | -86.5% |" in evaluation_markdown(results)
    assert "| 权重 |" in evaluation_markdown(results, lang="zh") and "| 验证集 |" in evaluation_markdown(results, lang="zh")
    assert evaluation_markdown([], "t: ", "zh") == "t: 尚无评估：请在“*评估与导出*”标签页中运行一次。"
