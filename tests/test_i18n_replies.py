"""The Chinese page's handler replies for the states a newcomer reaches that say something went wrong or was
refused: not yours (a run, a queued run, a preset, the queue order), already finished, a dataset that is
missing or has a broken line, a model folder that is not there, a built-in preset, API tokens, the trackers
panel. Each reply carries no English sentence (three or more ASCII words outside code spans and names),
and the English page still says them in English. Real SQLite registry, real preset and token files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.jobs.manager import JobManager
from trainer.run.layout import write_run_config
from webui import tokens_panel, views
from webui.api_tokens import TokenStore
from webui.components import INFO, WARNING
from webui.context import Context
from webui.form import config_to_values
from webui.tabs import data, monitor, presets, runs, train

# What the Chinese page may show in Latin letters: names (fields, files, tools, models), not sentences.
NAMES = ["Hugging Face Hub", "LLaMA-Factory YAML", "Hugging Face", "API"]
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’]+(?:[ ,]+[A-Za-z][A-Za-z'’]+){2,}")


def english_sentences(reply: object) -> list[str]:
    """Runs of 3+ ASCII words in the text a reply shows, code spans (`...`, <code>, <pre>) left out."""
    texts = []
    for value in (reply.values() if isinstance(reply, dict) else [reply]):
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):  # gr.update(...): what it shows
            texts += [str(value[key]) for key in ("value", "info", "label") if isinstance(value.get(key), str)]
    found = []
    for text in texts:
        text = re.sub(r"`[^`]*`|<code>.*?</code>|<pre>.*?</pre>|<https?://[^>]*>", " ", text, flags=re.DOTALL)
        for name in NAMES:
            text = text.replace(name, " ")
        found += ENGLISH_RUN.findall(text)
    return found


def test_the_detector_finds_an_english_sentence_and_passes_names_and_code():
    assert english_sentences({WARNING: "这个运行属于“alice”：only its owner may"}) == ["only its owner may"]
    assert english_sentences({"x": "运行 `python -m trainer check config.yaml` 后"}) == []
    assert english_sentences({"x": {"value": "see the README now", "visible": True}}) == ["see the README now"]


@pytest.fixture
def team(tmp_path, monkeypatch):
    """alice (admin) and bob on one server; runs stay queued (no scheduler)."""
    monkeypatch.setenv("TUNEDECK_ADMINS", "alice")
    jobs = JobManager(tmp_path / "runs", autostart=False)
    try:
        yield Context(runs_root=tmp_path / "runs", jobs=jobs, tokens=TokenStore(tmp_path / "runs"))
    finally:
        jobs.close()


def _both(handler, *args, **kwargs) -> tuple[dict, dict]:
    return handler(*args, **kwargs, lang="zh"), handler(*args, **kwargs, lang="en")


def test_refusals_of_someone_elses_run_preset_and_queue_are_chinese(team):
    alices = team.jobs.submit(TrainConfig(), owner="alice", name="alices")
    pick = {"monitor.run_select": alices}
    for handler in (monitor.abort, monitor.cancel, monitor.move_up):
        zh, en = _both(handler, team, pick, user="bob")
        assert zh[WARNING] and not english_sentences(zh), (handler, zh)
        assert "alice" in zh[WARNING] or "管理员" in zh[WARNING]
        assert english_sentences(en), en  # the English page keeps its words
    assert "中止" in monitor.abort(team, pick, user="bob", lang="zh")[WARNING]
    table = {"runs.delete_picked": [alices], "runs.filter": "", "runs.status": []}
    zh = runs.delete(team, table, user="bob", lang="zh")
    assert "alice" in zh[WARNING] and not english_sentences(zh), zh
    assert team.jobs.get(alices).status == "queued"

    saved = train.save_preset(team, {**config_to_values(TrainConfig()), "train.save_name": "alices"}, user="alice")
    assert INFO in saved
    overwrite = train.save_preset(team, {**config_to_values(TrainConfig()), "train.save_name": "alices"}, user="bob",
                                  lang="zh")
    assert "覆盖" in overwrite[WARNING] and not english_sentences(overwrite), overwrite
    for handler, values in ((presets.delete, {"presets.select": "alices"}),
                            (presets.rename, {"presets.select": "alices", "presets.new_name": "mine"})):
        zh = handler(team, values, user="bob", lang="zh")
        assert "alice" in zh[WARNING] and not english_sentences(zh), zh


def test_a_finished_runs_abort_and_a_running_runs_delete_are_chinese(team):
    run_id = team.jobs.submit(TrainConfig(), owner="alice")
    team.jobs.abort(run_id, owner="alice")  # a queued run aborts at once
    zh, en = _both(monitor.abort, team, {"monitor.run_select": run_id}, user="alice")
    assert "已中止" in zh[WARNING] and not english_sentences(zh), zh
    assert "nothing to abort" in en[WARNING]
    zh = monitor.resume(team, {"monitor.run_select": run_id}, user="alice", lang="zh")
    assert "检查点" in zh[WARNING] and not english_sentences(zh), zh


def test_start_refusals_missing_dataset_broken_line_and_missing_model_are_chinese(team, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n' * 20 + "{oops\n", encoding="utf-8")
    cases = [({"dataset": str(tmp_path / "missing.jsonl")}, "dataset", "missing.jsonl"),
             ({"dataset": str(broken)}, "dataset", "21"),
             ({"dataset": "demo", "model_name_or_path": str(tmp_path / "no-model")}, "model_name_or_path", "no-model")]
    for changes, field, named in cases:
        form = {**config_to_values(TrainConfig()), **changes, "train.shown": {}}
        zh = train.start(team, form, user="alice", lang="zh")
        marked = zh[field]
        assert named in marked["info"] and not english_sentences({"info": marked["info"]}), marked
        assert not english_sentences(zh), zh
        en = train.start(team, form, user="alice", lang="en")
        assert english_sentences({"info": en[field]["info"]}), en[field]
    assert team.jobs.list_runs() == []


def test_built_in_preset_missing_preset_and_api_tokens_are_chinese(team):
    zh = presets.delete(team, {"presets.select": "demo"}, user="alice", lang="zh")
    assert not english_sentences(zh), zh
    zh = presets.details(team, {"presets.select": "no-such-preset"}, lang="zh")
    assert not english_sentences(zh), zh
    zh = tokens_panel.revoke(team, {"tokens.revoke_id": "nope"}, user="bob", lang="zh")
    assert "nope" in zh[WARNING] and not english_sentences(zh), zh
    made = tokens_panel.create(team, {"tokens.label": "ci"}, user="alice", lang="zh")
    token_id = made[INFO].split()[2]
    zh = tokens_panel.revoke(team, {"tokens.revoke_id": token_id}, user="bob", lang="zh")
    assert WARNING in zh and not english_sentences(zh), zh


def test_the_trackers_panel_and_the_data_tabs_refusals_are_chinese(team, tmp_path):
    run_dir = Path(tmp_path / "run")
    run_dir.mkdir()
    write_run_config(TrainConfig(report_to=["tensorboard", "wandb", "mlflow"]), run_dir)
    zh, en = monitor.trackers_markdown(run_dir, "zh"), monitor.trackers_markdown(run_dir)
    assert "项目" in zh and not english_sentences(zh), zh
    assert "appears once training starts" in en
    form = {**config_to_values(TrainConfig(dataset=str(tmp_path / "gone.jsonl"))), "data.page": 1}
    zh = data.preview(team, form, user="alice", lang="zh")
    assert "gone.jsonl" in zh["data.summary"] and not english_sentences(zh), zh


def test_why_a_run_ended_is_chinese():
    from trainer.run.series import RunSeries
    from webui.views import run_summary_markdown

    reasons = ["stopped by the user (abort requested) at step 12; checkpoint checkpoint-10 saved, resume to continue",
               "aborted before it started", "the trainer was killed by SIGKILL; it saved no checkpoint, so start it again",
               "the trainer process (pid 42) is gone without reporting an end — the server or machine restarted, or it "
               "was killed; resume it to continue from its last checkpoint"]
    for reason in reasons:
        series = RunSeries()
        series.extend([{"t": 1.0, "type": "status", "status": "aborted", "reason": reason}])
        zh, en = run_summary_markdown(None, series, "zh"), run_summary_markdown(None, series)
        assert "已中止" in zh and not english_sentences(zh), zh
        assert english_sentences(en), en
    series = RunSeries()
    series.extend([{"t": 1.0, "type": "status", "status": "finished", "adapter": "/runs/x/adapter", "best_eval_loss": 2.5}])
    assert not english_sentences(run_summary_markdown(None, series, "zh"))
    reason = reasons[0]
    assert not english_sentences(re.sub(r"<[^>]+>", " ", views.status_badge("aborted", reason, "zh")))
    assert "stopped by the user" in views.status_badge("aborted", reason)


def test_the_data_tabs_refusal_warnings_and_row_problems_are_chinese():
    from webui.data_view import summary_markdown

    error = ("/d/b.jsonl: 1 of 3 rows are invalid (fix them, or set skip_invalid_rows to train without them):\n"
             "  line 3: invalid JSON: Expecting value (column 1)")
    advice = ("Lengths vary (median 20, p90 40, longest 70 tokens): at micro-batch 16, 45% of the tokens processed are "
              "padding even grouped by length. Turn on packing (no padding, about 2.5 rows per 256-token sequence).")
    answer = {"loaded": {"source": "/d/b.jsonl", "format": "alpaca", "skipped": 1, "train_rows": 2, "eval_rows": 0,
                         "errors": ["line 3: missing field 'output'", "line 5: duplicate of line 3"]},
              "error": error, "warnings": [advice], "stats": None}
    zh = summary_markdown(answer, "zh")
    without_code = zh.replace("`", "")  # the refusal is in a code block, yet read by people: checked too
    assert "第 3 行" in zh and "缺少值" in zh and "打包" in zh and not english_sentences(without_code), zh
    assert not english_sentences(summary_markdown({**answer, "error": None}, "zh"))
    assert "Turn on packing" in summary_markdown(answer)


def test_a_broken_preset_upload_is_chinese(team, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [1, 2\nfoo: 3\n", encoding="utf-8")
    zh = presets.upload_preset(team, {"presets.upload": str(bad)}, lang="zh")
    assert "bad.yaml" in zh["presets.messages"] and "第 2 行" in zh["presets.messages"], zh
    assert not english_sentences({"m": zh["presets.messages"].split("（")[0]}), zh  # YAML's own words stay
    assert "invalid YAML" in presets.upload_preset(team, {"presets.upload": str(bad)})["presets.messages"]


def test_the_trainers_notes_are_chinese():
    from trainer.run.series import RunSeries
    from webui.views import run_summary_markdown

    notes = ["Building the demo model (first run only, about half a minute)…",
             "3 of 324 rows are longer than cutoff_len 64: 120 tokens are cut (line 3, line 7, ...)",
             "line 5: duplicate of line 3", "... and 7 more dataset warnings",
             "1 invalid row was skipped (skip_invalid_rows is on)."]
    series = RunSeries()
    series.extend([{"t": 1.0, "type": "message", "level": "info", "text": text} for text in notes])
    zh = run_summary_markdown(None, series, "zh")
    assert "演示模型" in zh and "第 3 行" in zh and not english_sentences(zh), zh
    assert "Building the demo model" in run_summary_markdown(None, series)


def test_a_failed_runs_reason_and_advice_are_chinese():
    from trainer.config import TrainConfig as Config
    from trainer.engine.telemetry import oom_advice
    from trainer.run.series import RunSeries
    from webui.views import run_summary_markdown

    for cfg in (Config(per_device_train_batch_size=8, cutoff_len=1024), Config(finetuning_type="full")):
        series = RunSeries()
        series.extend([{"t": 1.0, "type": "status", "status": "failed", "advice": oom_advice(cfg),
                        "reason": "Out of memory: the GPU ran out of memory during training (CUDA out of memory)."}])
        zh = run_summary_markdown(None, series, "zh")
        assert "显存不足" in zh and not english_sentences(zh.replace("CUDA out of memory", "")), zh
        assert "Out of memory" in run_summary_markdown(None, series)
