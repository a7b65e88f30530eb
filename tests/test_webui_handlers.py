"""The page's handlers called directly, without a browser: a real JobManager and SQLite registry on a
temporary runs root, real preset files, the demo dataset and tokenizer. Each handler takes the context
and {name: value} and replies {name: value}; `to_outputs` is what the page hands to Gradio."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from trainer.config import TrainConfig
from trainer.fieldspecs import field_specs
from trainer.jobs.registry import Registry
from trainer.run.events import EventWriter
from webui.components import (CONFIG_OUTPUTS, FIELDS, INFO, UI, WARNING, apply_config,
                              initial_shown, to_outputs)
from webui.form import EMPTY, config_to_values, controls, governing_fields, hidden_fields, shown_groups
from webui.tabs import TABS, data, monitor, presets, runs, train

LORA_FIELDS = ["lora_rank", "lora_alpha", "lora_dropout", "lora_target", "lora_bias", "use_rslora", "use_dora"]


def form(cfg: TrainConfig | None = None, **changes) -> dict:
    values = config_to_values(cfg or TrainConfig())
    values.update(changes)
    return values


def plan_values(values: dict, shown: dict | None = None) -> dict:
    return {"train.plan_hw": "local", "train.preset_ref": {}, "train.shown": shown or initial_shown(values),
            **values}


def replied(reply: dict, outputs: list[str]) -> set[str]:
    """The names a reply updates; each must be one of the listener's outputs."""
    names = set(reply) - {INFO, WARNING}
    assert names <= set(outputs), names - set(outputs)
    return names


# --- components ---------------------------------------------------------------------------------

def test_replies_become_ordered_outputs_and_unknown_names_fail():
    assert to_outputs({"b": 2}, ["a", "b"]) == [gr.skip(), 2]
    assert to_outputs({"a": 1}, ["a"]) == 1 and to_outputs({}, []) is None
    with pytest.raises(ValueError, match="not among its outputs"):
        to_outputs({"c": 3}, ["a", "b"])
    ui = UI(None, gr.I18n(en={}))
    ui.add("x", object())
    with pytest.raises(ValueError, match="already registered"):
        ui.add("x", object())


def test_every_tab_has_render_wire_and_a_unique_id():
    assert [t.ID for t in TABS] == ["train", "monitor", "runs", "data", "presets", "chat", "export"]
    for tab in TABS:
        assert callable(tab.render) and callable(tab.wire) and tab.TITLE.startswith("tab_")


def test_apply_config_fills_every_control_and_the_method():
    cfg = TrainConfig(finetuning_type="lora", quantization_bit=4, learning_rate=1e-4)
    reply = apply_config(cfg, "a note")
    assert replied(reply, CONFIG_OUTPUTS) == set(CONFIG_OUTPUTS)
    assert reply["top.method"] == "QLoRA (4-bit)" and reply["learning_rate"] == 1e-4
    assert reply["train.preset_note"] == "a note" and reply["train.load_anyway_btn"]["visible"] is False
    assert reply["train.preset_ref"] == {"effective_batch": 16, "learning_rate": 1e-4}


# --- visibility declared in the schema ----------------------------------------------------------

def test_visible_when_names_real_fields_and_their_values():
    specs = {s.name: s for s in field_specs()}
    declared = [s for s in specs.values() if s.visible_when]
    assert {s.name for s in declared} >= set(LORA_FIELDS) | {"quantization_type", "double_quantization"}
    for spec in declared:
        for name, allowed in spec.visible_when:
            assert name in specs and name != spec.name, (spec.name, name)
            assert specs[name].choices and set(allowed) <= set(specs[name].choices), (spec.name, allowed)
    assert set(governing_fields()) == {"finetuning_type", "quantization_bit", "eval_strategy", "save_strategy",
                                      "distributed_type"}


def test_hidden_fields_and_groups_follow_the_governing_values():
    lora4 = form(finetuning_type="lora", quantization_bit="4", eval_strategy="steps", val_size=0.1)
    assert hidden_fields(lora4) & (set(LORA_FIELDS) | {"quantization_type", "eval_steps"}) == set()
    full = form(finetuning_type="full", quantization_bit=EMPTY)
    hidden = hidden_fields(full)
    assert set(LORA_FIELDS) | {"quantization_type", "double_quantization", "eval_steps"} <= hidden
    assert "learning_rate" not in hidden and "save_steps" not in hidden
    groups = shown_groups(hidden, ("model_name_or_path", "quantization_bit", "template"))
    assert groups[("lora", False)] is False and groups[("lora", True)] is False
    assert groups[("memory", False)] is True and groups[("memory", True)] is True  # use_liger_kernel stays
    # A field with an error stays shown, whatever the schema says: the user must see what to fix.
    assert "lora_alpha" not in hidden_fields(full, errors={"lora_alpha": "a number is required"})
    # A governing value that cannot be parsed hides nothing.
    assert hidden_fields(form(finetuning_type="nonsense")) & set(LORA_FIELDS) == set()


def test_switching_to_full_hides_the_lora_group_and_back_shows_it(ctx):
    lora = form(finetuning_type="lora")
    shown = initial_shown(lora)
    full = {**lora, "finetuning_type": "full"}
    reply = train.refresh_plan(ctx, plan_values(full, shown))
    replied(reply, train.PLAN_OUTPUTS)
    assert all(reply[name]["visible"] is False for name in LORA_FIELDS)
    assert reply["group.lora"]["visible"] is False and reply["group.lora.advanced"]["visible"] is False
    assert "learning_rate" not in reply  # unchanged controls are not sent
    back = train.refresh_plan(ctx, plan_values(lora, reply["train.shown"]))
    assert all(back[name]["visible"] is True for name in LORA_FIELDS) and back["group.lora"]["visible"] is True
    again = train.refresh_plan(ctx, plan_values(lora, back["train.shown"]))
    assert "group.lora" not in again and not set(LORA_FIELDS) & set(again)


# --- train --------------------------------------------------------------------------------------

def test_plan_refresh_and_the_one_fix_these_path(ctx):
    values = form(per_device_train_batch_size=4, gradient_accumulation_steps=2)
    ok = train.refresh_plan(ctx, plan_values(values))
    assert "Effective batch" in ok["train.plan"] and "8 = 4 × 2 × 1" in ok["train.plan"]
    assert ok["train.errors"]["visible"] is False
    bad = train.refresh_plan(ctx, plan_values({**values, "learning_rate": -1, "max_samples": "lots"},
                                              ok["train.shown"]))
    assert "train.plan" not in bad  # the last good plan stays while the form is being fixed
    assert bad["train.errors"]["visible"] is True and "Fix these before starting" in bad["train.errors"]["value"]
    assert "learning_rate" in bad["train.errors"]["value"] and "max_samples" in bad["train.errors"]["value"]
    assert bad["learning_rate"]["elem_classes"] == ["td-field-error"] and bad["learning_rate"]["info"].startswith("⚠")
    assert set(bad["train.shown"]["errors"]) == {"learning_rate", "max_samples"}
    fixed = train.refresh_plan(ctx, plan_values(values, bad["train.shown"]))
    # Fixed, the field shows its help again, in the page's language (a key Gradio's i18n translates).
    assert fixed["learning_rate"]["elem_classes"] == [] and "help.learning_rate" in str(fixed["learning_rate"]["info"])
    assert fixed["train.errors"]["visible"] is False and fixed["train.shown"]["errors"] == {}
    # A GPU picked in "Plan for": the plan names it.
    gpu = train.refresh_plan(ctx, {**plan_values(values), "train.plan_hw": "24"})
    assert "24" in gpu["train.plan"] and "Planned for" in gpu["train.plan"]


def test_preview_shows_the_command_and_the_config(ctx):
    reply = train.preview(ctx, form(learning_rate=5e-5))
    assert "-m trainer train" in reply["train.preview_cmd"] and str(ctx.runs_root) in reply["train.preview_cmd"]
    assert "learning_rate: 5.0e-05" in reply["train.preview_yaml"] or "5e-05" in reply["train.preview_yaml"]
    assert WARNING in train.preview(ctx, form(learning_rate="fast"))


def test_start_queues_a_run_or_says_what_to_fix(ctx):
    bad = train.start(ctx, {"train.shown": {}, **form(learning_rate=0)}, user=None)
    replied(bad, train.START_OUTPUTS)
    assert "Not started" in bad[WARNING] and bad["train.errors"]["visible"] is True
    assert ctx.jobs.list_runs() == []
    reply = train.start(ctx, {"train.shown": {}, **form(run_name="mine")}, user="alice")
    run_id = reply["monitor.run_select"]["value"]
    assert run_id in reply[INFO] and reply["page.tabs"].selected == "monitor"
    info = ctx.jobs.get(run_id)
    assert (info.status, info.owner, info.name) == ("queued", "alice", "mine")
    assert ctx.jobs.read_config(run_id).run_name == "mine"
    # The Monitor is reset for the new run at once: no step count of the run it showed before.
    assert reply["monitor.progress"] == "" and reply["monitor.drawn"] == {} and "queued" in reply["monitor.status"]


def test_start_refuses_what_check_refuses_at_the_field(ctx, tmp_path):
    """A missing dataset file, a JSONL with a bad line, a missing local model folder: refused before
    anything is queued, the field marked red, in the page's language."""
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n{not json\n')
    cases = [("dataset", str(tmp_path / "nope.jsonl"), "nope.jsonl"), ("dataset", str(broken), "line 3"),
             ("model_name_or_path", str(tmp_path / "no-model"), "no-model")]
    for field, value, said in cases:
        values = form(TrainConfig(model_name_or_path="demo", dataset="demo"), **{field: value})
        refused = train.start(ctx, {"train.shown": {}, **values})
        replied(refused, train.START_OUTPUTS)
        assert "Not started" in refused[WARNING] and said in refused["train.errors"]["value"], (field, refused)
        assert refused[field]["elem_classes"] == ["td-field-error"] and "page.tabs" not in refused
        # The plan marks the same field while the form is edited, before Start is pressed.
        assert train.refresh_plan(ctx, plan_values(values))[field]["elem_classes"] == ["td-field-error"]
    zh = train.start(ctx, {"train.shown": {}, **form(dataset=str(tmp_path / "nope.jsonl"))}, lang="zh")
    assert "未开始" in zh[WARNING] and "数据集" in zh["train.errors"]["value"]
    assert ctx.jobs.list_runs() == []


def test_page_opens_on_the_monitor_of_the_live_or_asked_run(ctx):
    assert "page.tabs" not in monitor.page_opened(ctx, {}, query={})  # nothing live: the Train tab
    run_id = ctx.jobs.submit(TrainConfig(), owner="local")
    opened = monitor.page_opened(ctx, {}, query={})
    assert opened["monitor.run_select"]["value"] == run_id and opened["page.tabs"].selected == "monitor"
    ctx.jobs.abort(run_id)
    asked = monitor.page_opened(ctx, {}, query={"run": run_id})
    assert asked["monitor.run_select"]["value"] == run_id and asked["page.tabs"].selected == "monitor"
    assert "page.tabs" not in monitor.page_opened(ctx, {}, query={"run": "no-such-run"})


def test_the_form_comes_back_from_the_browser(ctx):
    values = form(num_train_epochs=9, finetuning_type="full")
    assert train.refresh_plan(ctx, plan_values(values))["train.saved_form"]["num_train_epochs"] == 9
    restored = train.restore_form(ctx, {"train.saved_form": values})
    assert restored["num_train_epochs"] == 9 and restored["top.method"] == "Full"
    assert train.restore_form(ctx, {"train.saved_form": None}) == {}


def test_the_queue_panel_says_position_what_is_ahead_and_when(ctx):
    first = ctx.jobs.submit(TrainConfig(), owner="local", name="first")
    second = ctx.jobs.submit(TrainConfig(), owner="local", name="second")
    out = monitor.tick(ctx, {"monitor.run_select": second, "monitor.drawn": {}})
    assert "#1" in out["monitor.queue"] and "#2" in out["monitor.queue"] and out["train.live"] == out["monitor.queue"]
    assert "first" in out["monitor.status"]  # the queued run says what it waits for
    with ctx.jobs.registry.transaction(write=True) as conn:
        Registry.update(conn, first, status="running", started_at=1.0)
    from webui.queue_view import queue_markdown
    entries = ctx.jobs.queue(now=0.0)
    assert queue_markdown(entries, {first: (0, 10)}, now=0.0).count("unknown") == 1  # no pace yet
    with ctx.jobs.registry.transaction(write=True) as conn:
        Registry.update(conn, first, step=5, total_steps=10, started_at=0.0)
    entries = ctx.jobs.queue(now=120.0)  # 5 steps in 120 s: 5 left, about 120 s more
    text = queue_markdown(entries, {first: (5, 10)}, lang="zh", now=120.0)
    assert "第 1 位" in text and "first" in text and "约 2m 00s 后" in text and "正在进行" in text
    assert "5/10" in text and "· local" in text


def test_presets_load_save_and_refuse_a_path(ctx):
    loaded = train.load_preset(ctx, "demo", "local")
    assert replied(loaded, CONFIG_OUTPUTS) == set(CONFIG_OUTPUTS)
    assert loaded["model_name_or_path"] == "demo" and "Demo" in loaded["train.preset_note"]
    missing = train.load_preset(ctx, "no-such-preset", "local")
    assert "no preset named" in missing[WARNING] and "model_name_or_path" not in missing
    saved = train.save_preset(ctx, {"train.save_name": "my-recipe", **form(num_train_epochs=7)})
    assert "Saved preset 'my-recipe'" in saved[INFO]
    assert (ctx.runs_root / "presets" / "my-recipe.yaml").is_file()
    assert ("my-recipe (yours)", "my-recipe") in saved["presets.select"]["choices"]
    assert train.load_preset(ctx, "my-recipe", "local")["num_train_epochs"] == 7
    refused = train.save_preset(ctx, {"train.save_name": "../x", **form()})
    assert "cannot contain" in refused[WARNING] and not (ctx.runs_root / "x.yaml").exists()


def test_a_preset_with_unknown_keys_is_named_then_loaded_on_request(ctx):
    folder = ctx.runs_root / "presets"
    folder.mkdir(parents=True)
    (folder / "odd.yaml").write_text("model_name_or_path: demo\nlearning_rat: 0.1\nnum_train_epochs: 2\n")
    first = train.load_selected(ctx, {"train.preset_select": "odd", "train.plan_hw": "local"})
    assert "learning_rat" in first["train.preset_note"] and first["train.load_anyway_btn"]["visible"] is True
    anyway = train.load_selected_anyway(ctx, {"train.preset_select": "odd", "train.plan_hw": "local"})
    assert anyway["num_train_epochs"] == 2 and "learning_rat" in anyway["train.preset_note"]


def test_the_top_bar_method_and_the_form_follow_each_other(ctx):
    assert train.method_chosen(ctx, {"top.method": "QLoRA (4-bit)"}) == {"finetuning_type": "lora",
                                                                         "quantization_bit": "4"}
    assert train.method_chosen(ctx, {"top.method": "Full"}) == {"finetuning_type": "full", "quantization_bit": EMPTY}
    assert train.method_followed(ctx, {"finetuning_type": "full", "quantization_bit": EMPTY}) == {"top.method": "Full"}
    assert train.method_followed(ctx, {"finetuning_type": "lora", "quantization_bit": "8"}) == {
        "top.method": "QLoRA (8-bit)"}


# --- monitor ------------------------------------------------------------------------------------

def test_monitor_tick_actions_and_reusing_a_runs_config(ctx):
    run_id = ctx.jobs.submit(TrainConfig(learning_rate=1e-4, resume_from_checkpoint="last"), owner="alice")
    EventWriter(ctx.jobs.run_dir(run_id)).emit("log", step=1, loss=2.0, learning_rate=1e-4, grad_norm=1.0)
    values = {"monitor.run_select": run_id, "monitor.smoothing": 0.6, "monitor.log_scale": False,
              "monitor.drawn": {}}
    mine = monitor.tick(ctx, values, user="alice")
    replied(mine, monitor.TICK_OUTPUTS)
    assert "queued" in mine["monitor.status"] and mine["monitor.abort_btn"]["interactive"] is True
    assert monitor.tick(ctx, values, user="bob")["monitor.abort_btn"]["interactive"] is False  # not bob's run
    nothing = monitor.tick(ctx, {**values, "monitor.run_select": None, "monitor.drawn": {}})
    assert "no run selected" in nothing["monitor.status"]
    unknown = monitor.tick(ctx, {**values, "monitor.run_select": "20990101-000000-abcdef"})
    assert "unknown" in unknown["monitor.status"]

    assert monitor.abort(ctx, {"monitor.run_select": None})[WARNING] == "Select a run first."
    assert "only its owner" in monitor.abort(ctx, {"monitor.run_select": run_id}, user="bob")[WARNING]
    assert "Abort requested" in monitor.abort(ctx, {"monitor.run_select": run_id}, user="alice")[INFO]
    assert WARNING in monitor.resume(ctx, {"monitor.run_select": run_id}, user="alice")  # still queued

    reused = monitor.reuse_config(ctx, {"monitor.run_select": run_id})
    replied(reused, [*CONFIG_OUTPUTS, "page.tabs"])
    assert reused["learning_rate"] == 1e-4 and reused["resume_from_checkpoint"] == ""  # a new run, not a resume
    assert reused["page.tabs"].selected == "train" and run_id in reused["train.preset_note"]
    assert WARNING in monitor.reuse_config(ctx, {"monitor.run_select": "20990101-000000-abcdef"})


def test_the_page_opens_on_the_run_in_the_url_or_the_newest_live_one(ctx):
    first = ctx.jobs.submit(TrainConfig(), owner="local")
    second = ctx.jobs.submit(TrainConfig(), owner="local")
    assert monitor.page_opened(ctx, {}, query={"run": first})["monitor.run_select"]["value"] == first
    assert monitor.page_opened(ctx, {}, query={"run": "../etc"})["monitor.run_select"]["value"] == second
    assert monitor.page_opened(ctx, {}, query={})["monitor.run_select"]["value"] == second


# --- runs ---------------------------------------------------------------------------------------

def _table_ids(reply):
    return list(reply["runs.table"].data.iloc[:, 0])


def test_runs_list_pick_compare_open_and_delete(ctx):
    a = ctx.jobs.submit(TrainConfig(learning_rate=1e-4), owner="alice", name="first")
    b = ctx.jobs.submit(TrainConfig(learning_rate=2e-4), owner="bob", name="second")
    listed = runs.list_runs(ctx, {"runs.filter": "", "runs.status": []})
    assert _table_ids(listed) == [b, a]
    assert _table_ids(runs.list_runs(ctx, {"runs.filter": "bob", "runs.status": []})) == [b]
    assert _table_ids(runs.list_runs(ctx, {"runs.filter": "", "runs.status": ["finished"]})) == []
    zh = runs.list_runs(ctx, {"runs.filter": "", "runs.status": []}, lang="zh")
    table = zh["runs.table"].data
    assert list(table.columns)[:3] == ["运行 ID", "名称", "状态"] and "排队中" in table.iloc[0, 2]

    picked = runs.pick_row(ctx, {"runs.picked": []}, row=[a, "first"])["runs.picked"]["value"]
    picked = runs.pick_row(ctx, {"runs.picked": picked}, row=[b, "second"])["runs.picked"]["value"]
    assert picked == [a, b] and runs.pick_row(ctx, {"runs.picked": picked}, row=[a])["runs.picked"]["value"] == [b]
    assert runs.pick_row(ctx, {"runs.picked": picked}, row=None) == {}
    html_table = runs.pick_row(ctx, {"runs.picked": []}, row=[a])["runs.table"].to_html()
    assert runs.PICKED_STYLE.split(":")[1].strip() in html_table  # the picked row is highlighted

    assert WARNING in runs.compare(ctx, {"runs.picked": [a]})
    compared = runs.compare(ctx, {"runs.picked": [a, b], "monitor.smoothing": 0.6, "monitor.log_scale": False})
    assert "`learning_rate`" in compared["runs.compare_diff"] and "0.0002" in compared["runs.compare_diff"]
    assert isinstance(compared["runs.compare_plot"], type(runs.charts.compare_loss_figure([])))

    opened = runs.open_run(ctx, {"runs.picked": [a, b]})
    assert opened["monitor.run_select"]["value"] == b and opened["page.tabs"].selected == "monitor"
    assert WARNING in runs.open_run(ctx, {"runs.picked": []})

    # Delete has its own selection: runs picked to compare are never deleted.
    assert WARNING in runs.ask_delete(ctx, {"runs.picked": [a, b], "runs.delete_picked": []})
    asked = runs.ask_delete(ctx, {"runs.delete_picked": [a]})
    assert asked["runs.confirm_box"]["visible"] is True and "first" in asked["runs.confirm_text"] and b not in \
        asked["runs.confirm_text"]
    cancelled = runs.cancel_delete(ctx, {})
    assert cancelled["runs.confirm_box"]["visible"] is False and ctx.jobs.get(a)
    refused = runs.delete(ctx, {"runs.delete_picked": [a], "runs.filter": "", "runs.status": []}, user="bob")
    assert WARNING in refused and ctx.jobs.get(a)  # alice's run stays
    ctx.jobs.abort(a, owner="alice")  # a queued run aborted at once: now it may be deleted
    deleted = runs.delete(ctx, {"runs.picked": [a, b], "runs.delete_picked": [a], "runs.filter": "",
                                "runs.status": []}, user="alice")
    assert a in deleted[INFO] and _table_ids(deleted) == [b]
    assert deleted["runs.delete_picked"]["value"] == [] and deleted["runs.picked"]["value"] == [b]
    assert not ctx.jobs.run_dir(a).exists() and ctx.jobs.get(b)


def test_delete_names_a_finished_run_and_says_its_adapter_goes(ctx):
    run_id = ctx.jobs.submit(TrainConfig(), owner="local", name="keeper")
    with ctx.jobs.registry.transaction(write=True) as conn:  # the registry's row as a finished run leaves it
        Registry.update(conn, run_id, status="finished")
    asked = runs.ask_delete(ctx, {"runs.delete_picked": [run_id]})
    assert ctx.jobs.get(run_id).status == "finished" and "adapter is deleted too" in asked["runs.confirm_text"]
    zh = runs.ask_delete(ctx, {"runs.delete_picked": [run_id]}, lang="zh")
    assert "删除 1 个运行" in zh["runs.confirm_text"] and "keeper" in zh["runs.confirm_text"]


# --- data ---------------------------------------------------------------------------------------

def test_data_preview_upload_and_source(ctx, tmp_path):
    cfg = TrainConfig(model_name_or_path="demo", dataset="demo", cutoff_len=128)
    shown = data.preview(ctx, {"data.page": 1, **config_to_values(cfg)})
    replied(shown, data.PREVIEW_OUTPUTS)
    assert "demo" in shown["data.summary"] and "td-loss" in shown["data.rows"]
    assert ctx.datasets.facts(cfg).token_lengths  # the preview's lengths now feed the plan
    assert "Fix the form first" in data.preview(ctx, {"data.page": 1, **form(cutoff_len="long")})["data.summary"]
    missing = data.preview(ctx, {"data.page": 1, **form(dataset=str(tmp_path / "nope.jsonl"))})
    assert missing["data.summary"].startswith("⚠") and "Traceback" not in missing["data.summary"]

    upload = tmp_path / "mine.jsonl"
    upload.write_text('{"instruction": "hi", "output": "there"}\n')
    reply = data.uploaded(ctx, {"data.upload": str(upload)})
    assert reply["dataset"] == str(ctx.runs_root / "uploads" / "local" / "mine.jsonl") and "mine.jsonl" in reply["data.source"]
    assert data.uploaded(ctx, {"data.upload": None}) == {}
    assert data.dataset_changed(ctx, {"dataset": "x.jsonl"}) == {"data.source": "Dataset: `x.jsonl`"}


# --- presets ------------------------------------------------------------------------------------

def test_presets_tab_rename_delete_download_and_details(ctx):
    train.save_preset(ctx, {"train.save_name": "one", **form()})
    details = presets.details(ctx, {"presets.select": "one"})["presets.details"]
    assert "yours" in details and "built-in" in presets.details(ctx, {"presets.select": "demo"})["presets.details"]
    renamed = presets.rename(ctx, {"presets.select": "one", "presets.new_name": "two"})
    assert renamed["presets.select"]["value"] == "two" and "Renamed" in renamed[INFO]
    assert (ctx.runs_root / "presets" / "two.yaml").is_file() and not (ctx.runs_root / "presets" / "one.yaml").exists()
    assert WARNING in presets.rename(ctx, {"presets.select": "demo", "presets.new_name": "x"})  # read-only
    assert WARNING in presets.rename(ctx, {"presets.select": "two", "presets.new_name": "../x"})
    copy = Path(presets.download(ctx, {"presets.select": "two"})["presets.download_file"])
    assert copy.read_text() == (ctx.runs_root / "presets" / "two.yaml").read_text()
    assert not copy.is_relative_to(ctx.runs_root)
    loaded = presets.load_into_form(ctx, {"presets.select": "two", "train.plan_hw": "local"})
    assert loaded["train.preset_select"]["value"] == "two" and loaded["page.tabs"].selected == "train"
    assert WARNING in presets.load_into_form(ctx, {"presets.select": None})
    deleted = presets.delete(ctx, {"presets.select": "two"})
    assert "Deleted" in deleted[INFO] and not (ctx.runs_root / "presets" / "two.yaml").exists()
    assert WARNING in presets.delete(ctx, {"presets.select": "demo"})


def test_presets_upload_import_and_export_round_trip(ctx, tmp_path):
    upload = tmp_path / "shared.yaml"
    upload.write_text("preset: {title: Shared}\nlearning_rate: 0.0001\nwarmup_ratoi: 0.1\n")
    first = presets.upload_preset(ctx, {"presets.upload": str(upload)})
    assert "warmup_ratoi" in first["presets.messages"] and first["presets.upload_anyway_btn"]["visible"] is True
    assert "learning_rate" not in first
    anyway = presets.upload_preset_anyway(ctx, {"presets.upload": str(upload)})
    replied(anyway, presets.UPLOAD_OUTPUTS)
    assert anyway["learning_rate"] == 1e-4 and "Shared" in anyway["train.preset_note"]
    assert "warmup_ratoi" in anyway["presets.messages"]
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\x02")
    assert presets.upload_preset(ctx, {"presets.upload": str(tmp_path / "binary.yaml")})["presets.messages"].startswith("⚠")

    values = form(learning_rate=5e-5, lora_rank=8, num_train_epochs=2)
    exported = Path(presets.export_llamafactory(ctx, values)["presets.download_file"])
    assert "lora_rank: 8" in exported.read_text()
    imported = presets.import_llamafactory(ctx, {"presets.import_lf": str(exported)})
    assert imported["lora_rank"] == 8 and imported["learning_rate"] == 5e-5
    assert imported["presets.messages"].startswith("Imported from a LLaMA-Factory YAML")
    script = Path(presets.export_plain_script(ctx, values)["presets.download_file"])
    assert script.suffix == ".py" and "SFTConfig" in script.read_text()
    assert WARNING in presets.export_plain_script(ctx, form(lora_rank="big"))
    (tmp_path / "bad.yaml").write_text("- not a mapping\n")
    assert presets.import_llamafactory(ctx, {"presets.import_lf": str(tmp_path / "bad.yaml")})["presets.messages"].startswith("⚠")


def test_controls_of_the_form_are_registered_by_their_field_names():
    assert FIELDS == [c.name for c in controls()] == [s.name for s in field_specs()]


def test_the_badge_says_aborted_as_soon_as_the_run_says_so(ctx):
    """The trainer's own "aborted" event is shown at once, not "running — abort requested" until the
    scheduler next updates the registry; an older final event (before a resume) is not."""
    run_id = ctx.jobs.submit(TrainConfig(), owner="local")
    with ctx.jobs.registry.transaction(write=True) as conn:
        Registry.update(conn, run_id, status="running", started_at=100.0, abort_requested_at=101.0)
    writer = EventWriter(ctx.jobs.run_dir(run_id))
    writer.emit("status", status="aborted", t=50.0)  # a previous attempt's end: the run is running again
    first = monitor.tick(ctx, {"monitor.run_select": run_id, "monitor.drawn": {}})
    assert "data-status='running'" in first["monitor.status"] and "abort requested" in first["monitor.status"]
    writer.emit("status", status="aborted", t=105.0)
    second = monitor.tick(ctx, {"monitor.run_select": run_id, "monitor.drawn": first["monitor.drawn"]})
    assert "data-status='aborted'" in second["monitor.status"] and "abort requested" not in second["monitor.status"]
