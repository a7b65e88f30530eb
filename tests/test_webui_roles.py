"""Roles in the page's handlers: two users and an admin on one server (alice is the admin, bob and carol are
not). Only the owner or an admin changes a run, a queued run or a preset; the refusal comes back as a toast.
Real SQLite registry, real preset files; no browser (tests/test_browser_team.py drives the real page)."""

from __future__ import annotations

import pytest

from trainer.config import TrainConfig
from trainer.interop import presets as presets_mod
from trainer.jobs.manager import JobManager
from webui.components import INFO, WARNING
from webui.context import Context, acting_as
from webui.form import config_to_values
from webui.tabs import monitor, presets, runs, train


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_ADMINS", "alice")
    jobs = JobManager(tmp_path / "runs", autostart=False, max_queued_per_owner=2)  # runs stay queued
    try:
        yield Context(runs_root=tmp_path / "runs", jobs=jobs)
    finally:
        jobs.close()


def test_the_handlers_user_becomes_an_auth_user_with_admins_from_the_environment(ctx):
    assert acting_as("alice").is_admin and not acting_as("bob").is_admin
    assert acting_as(None).is_admin  # an open page: whoever reaches it is the operator


def test_only_the_owner_or_an_admin_aborts_resumes_or_deletes_a_run(ctx):
    bobs = ctx.jobs.submit(TrainConfig(), owner="bob", name="bobs")
    pick = {"monitor.run_select": bobs}
    refused = monitor.abort(ctx, pick, user="carol")
    assert "belongs to 'bob'" in refused[WARNING] and "(you are 'carol')" in refused[WARNING]
    assert ctx.jobs.get(bobs).status == "queued"
    ticked = monitor.tick(ctx, {**pick, "monitor.smoothing": 0.6, "monitor.log_scale": False, "monitor.drawn": {}},
                          user="alice")
    assert ticked["monitor.abort_btn"]["interactive"] is True  # the admin's buttons work on anyone's run
    assert "Abort requested" in monitor.abort(ctx, pick, user="alice")[INFO]  # the admin
    assert ctx.jobs.get(bobs).status == "aborted"
    assert "belongs to 'bob'" in monitor.resume(ctx, pick, user="carol")[WARNING]
    owners = monitor.resume(ctx, pick, user="bob")  # past the roles check: refused only for having no checkpoint
    assert "checkpoint" in owners[WARNING] and "belongs" not in owners[WARNING]

    table = {"runs.delete_picked": [bobs], "runs.filter": "", "runs.status": []}
    assert "belongs to 'bob'" in runs.delete(ctx, table, user="carol")[WARNING] and ctx.jobs.get(bobs)
    assert bobs in runs.delete(ctx, table, user="alice")[INFO]


def test_the_monitor_says_why_anothers_run_has_its_buttons_off(ctx):
    bobs = ctx.jobs.submit(TrainConfig(), owner="bob", name="bobs")
    values = {"monitor.run_select": bobs, "monitor.smoothing": 0.6, "monitor.log_scale": False, "monitor.drawn": {}}
    carol = monitor.tick(ctx, values, user="carol")
    assert carol["monitor.abort_btn"]["interactive"] is False and carol["monitor.cancel_btn"]["interactive"] is False
    assert carol["monitor.who"] == "bob's run: only bob or an admin may abort, resume or cancel it."
    assert monitor.tick(ctx, values, user="carol", lang="zh")["monitor.who"].startswith("bob 的运行：只有 bob")
    assert monitor.tick(ctx, values, user="bob")["monitor.who"] == ""  # their own: nothing to explain
    assert monitor.tick(ctx, values, user="alice")["monitor.who"] == ""  # the admin may
    redraw = monitor.tick(ctx, {**values, "monitor.drawn": carol["monitor.drawn"]}, user="carol")
    assert "monitor.who" not in redraw  # drawn once, not every tick
    assert monitor.tick(ctx, {**values, "monitor.drawn": carol["monitor.drawn"]}, user="bob")["monitor.who"] == ""
    assert monitor.tick(ctx, {**values, "monitor.run_select": None}, user="carol")["monitor.who"] == ""


def test_delete_of_anothers_run_is_refused_before_the_question(ctx):
    bobs = ctx.jobs.submit(TrainConfig(), owner="bob", name="bobs <b>")
    carols = ctx.jobs.submit(TrainConfig(), owner="carol", name="carols")
    asked = runs.ask_delete(ctx, {"runs.delete_picked": [carols, bobs]}, user="carol")
    assert asked["runs.confirm_box"]["visible"] is False and "runs.confirm_text" not in asked
    assert asked[WARNING] == (f"'bobs &lt;b&gt;' ({bobs}) is bob's run: only bob or an admin may delete it. "
                              "Take it out of Runs to delete; nothing was deleted.")
    assert "只有 bob 或管理员可以删除" in runs.ask_delete(ctx, {"runs.delete_picked": [bobs]}, user="carol",
                                                   lang="zh")[WARNING]
    assert ctx.jobs.get(bobs) and ctx.jobs.get(carols)
    for user in ("bob", "alice"):  # the owner and the admin are asked, as before
        mine = runs.ask_delete(ctx, {"runs.delete_picked": [bobs]}, user=user)
        assert mine["runs.confirm_box"]["visible"] is True and bobs in mine["runs.confirm_text"]
    assert runs.ask_delete(ctx, {"runs.delete_picked": [bobs]})["runs.confirm_box"]["visible"] is True  # open page


def test_runs_made_before_sign_in_are_for_admins_to_change(ctx):
    old = ctx.jobs.submit(TrainConfig(), owner="local", name="before logins")
    values = {"monitor.run_select": old, "monitor.smoothing": 0.6, "monitor.log_scale": False, "monitor.drawn": {}}
    assert "before sign-in was turned on: only an admin" in monitor.tick(ctx, values, user="bob")["monitor.who"]
    asked = runs.ask_delete(ctx, {"runs.delete_picked": [old]}, user="bob")
    assert "made before sign-in was turned on: only an admin may delete it" in asked[WARNING]
    assert asked["runs.confirm_box"]["visible"] is False
    assert "belongs to 'local'" in monitor.abort(ctx, {"monitor.run_select": old}, user="bob")[WARNING]
    assert INFO in monitor.abort(ctx, {"monitor.run_select": old}, user="alice")


def test_a_full_queue_is_a_toast_naming_the_cap(ctx):
    for _ in range(2):
        ctx.jobs.submit(TrainConfig(), owner="bob")
    refused = train.start(ctx, {**_form(), "train.shown": {}}, user="bob")
    assert "2 runs waiting" in refused[WARNING] and len(ctx.jobs.list_runs(owner="bob")) == 2
    assert "2 个运行" in train.start(ctx, {**_form(), "train.shown": {}}, user="bob", lang="zh")[WARNING]


def _form(**changes) -> dict:
    return {**config_to_values(TrainConfig()), **changes}


# --- presets ------------------------------------------------------------------------------------

def _save(ctx, name: str, user: str | None, **changes) -> dict:
    return train.save_preset(ctx, {"train.save_name": name, **_form(**changes)}, user=user)


def test_a_preset_records_its_owner_and_only_the_owner_or_an_admin_changes_it(ctx):
    assert INFO in _save(ctx, "bobs recipe", "bob", learning_rate=3e-4)
    info = presets_mod.find_preset("bobs recipe", ctx.runs_root)
    assert info.owner == "bob"
    # The owner sits in the preset: block: the file stays a preset that `trainer check` loads.
    loaded = presets_mod.load_named_preset("bobs recipe", runs_root=ctx.runs_root)
    assert loaded.meta["owner"] == "bob" and loaded.config.learning_rate == 3e-4

    listed = dict((value, label) for label, value in train.preset_choices(ctx.runs_root, user="bob"))
    assert listed["bobs recipe"].endswith("(yours)")
    assert dict((v, lbl) for lbl, v in train.preset_choices(ctx.runs_root, user="carol"))["bobs recipe"] \
        .endswith("(by bob)")
    assert "bob 的" in dict((v, lbl) for lbl, v in train.preset_choices(ctx.runs_root, "zh", "carol"))["bobs recipe"]

    assert "saved by bob" in presets.details(ctx, {"presets.select": "bobs recipe"}, user="carol")["presets.details"]
    assert "yours" in presets.details(ctx, {"presets.select": "bobs recipe"}, user="bob")["presets.details"]

    # carol may neither overwrite, rename nor delete it; the file is as bob saved it.
    refused = _save(ctx, "bobs recipe", "carol", learning_rate=1e-3)
    assert "belongs to 'bob'" in refused[WARNING] and "overwrite" in refused[WARNING]
    assert WARNING in _save(ctx, "Bobs Recipe", "carol")  # the same preset, in other letters
    pick = {"presets.select": "bobs recipe", "presets.new_name": "carols now"}
    assert "belongs to 'bob'" in presets.rename(ctx, pick, user="carol")[WARNING]
    assert "belongs to 'bob'" in presets.delete(ctx, pick, user="carol")[WARNING]
    assert presets_mod.load_named_preset("bobs recipe", runs_root=ctx.runs_root).config.learning_rate == 3e-4

    # bob overwrites and renames his own; the admin's overwrite keeps bob the owner; the admin deletes it.
    assert INFO in _save(ctx, "bobs recipe", "bob", learning_rate=5e-4)
    assert INFO in presets.rename(ctx, pick, user="bob")
    assert INFO in _save(ctx, "carols now", "alice", learning_rate=6e-4)
    assert presets_mod.find_preset("carols now", ctx.runs_root).owner == "bob"
    assert INFO in presets.delete(ctx, {"presets.select": "carols now"}, user="alice")
    assert [p for p in presets_mod.list_presets(ctx.runs_root) if not p.builtin] == []


def test_presets_saved_before_owners_are_for_admins_to_change(ctx):
    presets_mod.save_user_preset("old one", TrainConfig(), runs_root=ctx.runs_root)  # no owner recorded
    assert presets_mod.find_preset("old one", ctx.runs_root).owner == "local"
    assert "belongs to 'local'" in presets.delete(ctx, {"presets.select": "old one"}, user="bob")[WARNING]
    assert "belongs to 'local'" in _save(ctx, "old one", "bob")[WARNING]
    assert INFO in presets.rename(ctx, {"presets.select": "old one", "presets.new_name": "kept"}, user="alice")
    assert "read-only" in presets.delete(ctx, {"presets.select": "demo"}, user="alice")[WARNING]


# --- the queue ----------------------------------------------------------------------------------

def _line(ctx) -> list[str]:
    return [e.run_id for e in ctx.jobs.queue() if e.position is not None]


def test_the_owner_cancels_a_queued_run_and_only_an_admin_reorders(ctx):
    bobs = ctx.jobs.submit(TrainConfig(), owner="bob", name="bobs")
    carols = ctx.jobs.submit(TrainConfig(), owner="carol", name="carols")
    tick = {"monitor.smoothing": 0.6, "monitor.log_scale": False, "monitor.drawn": {}}
    as_bob = monitor.tick(ctx, {**tick, "monitor.run_select": carols}, user="bob")
    assert "#1" in as_bob["monitor.queue"] and "· bob" in as_bob["monitor.queue"] and "#2" in as_bob["monitor.queue"]
    assert "bobs" in as_bob["monitor.status"]  # carol's run waits for bob's
    assert as_bob["monitor.cancel_btn"] == {"__type__": "update", "visible": True, "interactive": False}
    assert as_bob["monitor.up_btn"]["visible"] is False  # not an admin: no reordering
    as_admin = monitor.tick(ctx, {**tick, "monitor.run_select": carols}, user="alice")
    assert as_admin["monitor.cancel_btn"]["interactive"] is True and as_admin["monitor.up_btn"]["visible"] is True

    assert "only an admin" in monitor.move_up(ctx, {"monitor.run_select": carols}, user="bob")[WARNING]
    assert _line(ctx) == [bobs, carols]
    assert INFO in monitor.move_up(ctx, {"monitor.run_select": carols}, user="alice")
    assert _line(ctx) == [carols, bobs]
    assert INFO in monitor.move_down(ctx, {"monitor.run_select": carols}, user="alice")
    assert _line(ctx) == [bobs, carols]

    assert "belongs to 'carol'" in monitor.cancel(ctx, {"monitor.run_select": carols}, user="bob")[WARNING]
    assert INFO in monitor.cancel(ctx, {"monitor.run_select": carols}, user="carol")
    assert ctx.jobs.get(carols).status == "aborted" and _line(ctx) == [bobs]
    assert WARNING in monitor.cancel(ctx, {"monitor.run_select": carols}, user="carol")  # no longer queued
    assert WARNING in monitor.move_up(ctx, {"monitor.run_select": carols}, user="alice")
    assert INFO in monitor.cancel(ctx, {"monitor.run_select": bobs}, user="alice")  # an admin may cancel any


# --- the top of the page and API tokens ----------------------------------------------------------

def test_an_open_page_says_so_and_a_space_without_storage_warns(ctx, monkeypatch):
    from webui.page import notices
    monkeypatch.delenv("SPACE_ID", raising=False)  # off a Space first, whatever the environment says
    assert notices(ctx, {}, user=None)["page.notice"]["visible"] is True
    assert "open" in notices(ctx, {}, user=None)["page.notice"]["value"]
    assert "开放" in notices(ctx, {}, user=None, lang="zh")["page.notice"]["value"]
    assert notices(ctx, {}, user="bob")["page.notice"]["visible"] is False  # signed in, not on a Space
    monkeypatch.setenv("SPACE_ID", "team/tunedeck")  # a Space whose runs are not on /data
    warned = notices(ctx, {}, user="bob")["page.notice"]
    assert warned["visible"] is True and "/data" in warned["value"] and "open" not in warned["value"]


def test_api_tokens_are_created_once_listed_and_revoked_by_their_owner(ctx):
    from webui import tokens_panel
    made = tokens_panel.create(ctx, {"tokens.label": "ci script"}, user="bob")
    token = made["tokens.new"]["value"]
    assert token.startswith("tdk_") and made["tokens.new"]["visible"] is True and made["tokens.label"] == ""
    assert ctx.tokens.owner_of(token) == "bob"  # the API accepts it as bob
    listed = tokens_panel.listed(ctx, {}, user="bob")
    assert "ci script" in listed["tokens.list"] and token not in listed["tokens.list"]  # never shown again
    token_id = listed["tokens.revoke_id"]["choices"][0][1]
    assert tokens_panel.listed(ctx, {}, user="carol")["tokens.revoke_id"]["choices"] == []  # not carol's to see
    assert WARNING in tokens_panel.revoke(ctx, {"tokens.revoke_id": token_id}, user="carol")
    assert ctx.tokens.owner_of(token) == "bob"
    revoked = tokens_panel.revoke(ctx, {"tokens.revoke_id": token_id}, user="bob")
    assert INFO in revoked and ctx.tokens.owner_of(token) is None and revoked["tokens.new"]["visible"] is False
    assert WARNING in tokens_panel.create(ctx, {}, user=None)  # an open page: its API needs no token
