"""The Evaluate & export tab: measure a run's weights beside the base model, download the adapter, merge
it into the base (and GGUF), publish on the Hugging Face Hub.

Everything that loads a model runs as `python -m trainer evaluate|merge|push` in a subprocess (the same
code paths as the command line); the page shows its progress lines, then reads the results from the run
directory. Anyone signed in may evaluate and download; only the run's owner may merge into its directory
or publish it. The Hub token comes from the server's HF_TOKEN only: there is no field for it.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path
from typing import Any, Generator, Iterator

import gradio as gr

from trainer.config import ConfigError
from trainer.engine.artifacts import AfterTrainingError, list_weights, resolve_weights
from trainer.engine.evaluate import read_evaluations
from trainer.engine.merge import adapter_zip, find_gguf_converter
from trainer.interop.hub import TOKEN_ENV, check_repo_id, model_card, upload_files

from .. import views
from ..after import CommandBusy, CommandResult, acting_user, picked_or_newest, runs_with_weights, status_word
from ..after_views import (SAMPLE_HEADERS, evaluation_markdown, files_markdown, merge_markdown, progress_markdown,
                           samples_table, translate, weights_choices)
from ..components import INFO, UI, WARNING, Reply
from ..context import Context, acting_as, checked_path, may_change
from ..i18n import t
from ..streaming import stream

ID = "export"
TITLE = "tab_export"
MERGED_DIR = "merged"  # <run dir>/merged/<weights>: deleted with the run
PICK = ["export.run", "export.weights"]
PICK_OUTPUTS = ["export.weights", "export.owner_note", "export.eval_table", "export.samples", "export.zip_file",
                "export.merge_status", "export.card", "export.files"]


def _run(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Any:
    run_id = v.get("export.run")
    if not run_id:
        raise AfterTrainingError(t(lang, "after.pick_run"))
    try:
        return ctx.jobs.get(run_id)
    except Exception as exc:  # noqa: BLE001 - KeyError or a registry error: one sentence
        raise AfterTrainingError(views.short(views.error_text(exc))) from None


def _owner_only(info: Any, user: str | None, action: str, lang: str | None = None) -> None:
    """Merging writes into the run's directory and publishing speaks for it: its owner or an admin only."""
    if not may_change(user, info.owner):
        raise AfterTrainingError(t(lang, "after.not_owner", run=info.id, owner=info.owner,
                                   action=t(lang, f"after.act_{action}"), who=acting_as(user).name))


def _samples(result: Any, lang: str | None) -> dict[str, Any]:
    return samples_table(result, lang)


# --- picking a run --------------------------------------------------------------------------------

def run_choices(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    token = t(lang, "ac_token_set" if os.environ.get(TOKEN_ENV, "").strip() else "ac_token_not_set")
    choices = runs_with_weights(ctx.jobs, lang)
    return {"export.run": gr.update(choices=choices, value=picked_or_newest(choices, v.get("export.run"))),
            "export.token_note": t(lang, "ac_token_note", env=TOKEN_ENV, state=token)}


def _stored(results: list, lang: str | None) -> str:
    return evaluation_markdown(results, t(lang, "after.stored") + "\n\n", lang, empty="after.no_eval_yet")


def pick_run(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """The picked run's weights, who may change it, and what is stored about it (its evaluations)."""
    cleared: Reply = {"export.zip_file": None, "export.merge_status": "", "export.card": "", "export.files": ""}
    try:
        info = _run(ctx, v, lang)
    except AfterTrainingError:
        return {**cleared, "export.weights": gr.update(choices=[], value=None), "export.owner_note": "",
                "export.eval_table": "", "export.samples": _samples(None, lang)}
    names = list_weights(info.run_dir)
    results = read_evaluations(info.run_dir)
    note = (t(lang, "after.owner_note", run=html.escape(info.id), owner=html.escape(info.owner),
              status=html.escape(status_word(lang, info.status)))
            + " " + t(lang, "after.you_may" if may_change(user, info.owner) else "after.you_may_not"))
    return {**cleared, "export.weights": gr.update(choices=weights_choices(names, lang), value=names[0] if names else None),
            "export.owner_note": note, "export.eval_table": _stored(results, lang),
            "export.samples": _samples(results[-1] if results else None, lang)}


# --- evaluate -------------------------------------------------------------------------------------

def evaluate(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Iterator[Reply]:
    """`python -m trainer evaluate RUN --json` in a subprocess: its progress, then the stored results."""
    try:
        # The access policy of the dataset field first: a shared server's users read only the allowed folders.
        dataset = checked_path(ctx, user, v.get("export.dataset"), "eval dataset")
        info = _run(ctx, v, lang)
        weights = resolve_weights(info.run_dir, v.get("export.weights") or None)
    except (AfterTrainingError, ConfigError) as exc:
        yield {WARNING: translate(lang, str(exc))}
        return
    args = [str(info.run_dir), "--checkpoint", weights.name, "--json",
            "--samples", str(int(v.get("export.samples_count") or 0))]
    if dataset:
        args += ["--dataset", dataset]
    if v.get("export.max_rows"):
        args += ["--max-rows", str(int(v["export.max_rows"]))]
    result = yield from _command(ctx, "evaluate", info.id, user, args, "export.eval_status", lang)
    if result is None:
        return
    if not result.ok:
        message = t(lang, "after.eval_failed", error=translate(lang, result.error))
        yield {"export.eval_status": "⚠ " + html.escape(message), WARNING: message}
        return
    stored = read_evaluations(info.run_dir)
    latest = result.json() or (stored[-1] if stored else None)
    yield {"export.eval_status": t(lang, "after.evaluated", weights=translate(lang, weights.label),
                                   dataset=html.escape(translate(lang, str((latest or {}).get("dataset")))),
                                   seconds=(latest or {}).get("seconds", "?")),
           "export.eval_table": _stored(stored, lang), "export.samples": _samples(latest, lang)}


def _command(ctx: Context, command: str, run_id: str, user: str | None, args: list[str],
             status: str, lang: str | None = None) -> Generator[Reply, None, CommandResult | None]:
    """The command's progress into the `status` component; returns its CommandResult (None when it could not
    start): `result = yield from _command(...)`."""
    lines: list[str] = [t(None, "after.starting", command=command)]
    yield {status: progress_markdown(lines, lang=lang)}
    try:
        for item in ctx.commands.run(command, run_id, acting_user(user), args):
            if isinstance(item, CommandResult):
                return item
            lines.append(item)
            yield {status: progress_markdown(lines, lang=lang)}
    except CommandBusy as exc:
        message = t(lang, "after.command_busy", command=exc.command, run=exc.run_id, who=exc.user)
        yield {status: f"⚠ {html.escape(message)}", WARNING: message}
    except OSError as exc:
        yield {status: f"⚠ {html.escape(str(exc))}", WARNING: str(exc)}
    return None


# --- export ---------------------------------------------------------------------------------------

def make_zip(ctx: Context, v: dict[str, Any], lang: str | None = None) -> Reply:
    """The adapter (config, weights, tokenizer, the run's chat template) as a zip to download."""
    try:
        info = _run(ctx, v, lang)
        weights = resolve_weights(info.run_dir, v.get("export.weights") or None)
        folder = Path(tempfile.mkdtemp(prefix="tunedeck-adapter-"))  # the page serves no file from the runs root
        path = adapter_zip(info.run_dir, folder / f"{info.name}-{weights.name}.zip", weights.name)
    except AfterTrainingError as exc:
        return {WARNING: translate(lang, str(exc))}
    return {"export.zip_file": str(path), INFO: t(lang, "after.zip_ready", name=path.name)}


def merge(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Iterator[Reply]:
    """`python -m trainer merge RUN RUN/merged/WEIGHTS` in a subprocess (owner only), GGUF when asked."""
    try:
        info = _run(ctx, v, lang)
        _owner_only(info, user, "merge", lang)
        weights = resolve_weights(info.run_dir, v.get("export.weights") or None)
    except AfterTrainingError as exc:
        yield {WARNING: translate(lang, str(exc))}
        return
    gguf = bool(v.get("export.gguf"))
    if gguf and find_gguf_converter() is None:
        yield {"export.merge_status": f"⚠ {html.escape(t(lang, 'ac_no_gguf'))}", WARNING: t(lang, "ac_no_gguf")}
        return
    out_dir = Path(info.run_dir) / MERGED_DIR / weights.name
    if out_dir.is_dir() and any(out_dir.iterdir()):
        yield {"export.merge_status": t(lang, "after.already_merged", path=out_dir),
               INFO: t(lang, "after.merged_already")}
        return
    args = [str(info.run_dir), str(out_dir), "--checkpoint", weights.name] + (["--gguf"] if gguf else [])
    result = yield from _command(ctx, "merge", info.id, user, args, "export.merge_status", lang)
    if result is None:
        return
    if not result.ok:
        message = t(lang, "after.merge_failed", error=translate(lang, result.error))
        yield {"export.merge_status": "⚠ " + html.escape(message), WARNING: message}
        return
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    gguf_file = next((line for line in printed if line.endswith(".gguf")), None)
    yield {"export.merge_status": merge_markdown(printed[0] if printed else str(out_dir), result.notes, gguf_file, lang),
           INFO: t(lang, "after.merged")}


# --- publish --------------------------------------------------------------------------------------

def _publish_request(ctx: Context, v: dict[str, Any], user: str | None,
                     lang: str | None = None) -> tuple[Any, Any, str, bool]:
    info = _run(ctx, v, lang)
    _owner_only(info, user, "publish", lang)
    weights = resolve_weights(info.run_dir, v.get("export.weights") or None)
    return info, weights, check_repo_id(v.get("export.repo_id") or ""), v.get("export.push_what") == "merged"


def dry_run(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """The model card and the file list a push would send; nothing is sent or changed."""
    try:
        info, weights, repo_id, merged = _publish_request(ctx, v, user, lang)
        card = model_card(info.run_dir, repo_id, weights.name, merged)
        files = upload_files(info.run_dir, weights.name, merged)
    except AfterTrainingError as exc:
        return {WARNING: translate(lang, str(exc))}
    return {"export.card": card, "export.files": files_markdown(files, lang),
            "export.push_status": t(lang, "after.dry_run_done", repo=repo_id)}


def push(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Iterator[Reply]:
    """`python -m trainer push` in a subprocess (a merged push merges first); the token from HF_TOKEN only."""
    try:
        info, weights, repo_id, merged = _publish_request(ctx, v, user, lang)
    except AfterTrainingError as exc:
        yield {WARNING: translate(lang, str(exc))}
        return
    if not os.environ.get(TOKEN_ENV, "").strip():
        message = t(lang, "after.no_token", env=TOKEN_ENV)
        yield {"export.push_status": f"⚠ {message}", WARNING: message}
        return
    args = [str(info.run_dir), repo_id, "--checkpoint", weights.name]
    args += ["--merged"] if merged else []
    args += ["--private"] if v.get("export.private") else []
    message = (v.get("export.commit_message") or "").strip()
    args += ["--message", message] if message else []
    result = yield from _command(ctx, "push", info.id, user, args, "export.push_status", lang)
    if result is None:
        return
    if not result.ok:
        failed = t(lang, "after.push_failed", error=translate(lang, result.error))
        yield {"export.push_status": "⚠ " + html.escape(failed), WARNING: failed}
        return
    url = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"https://huggingface.co/{repo_id}"
    yield {"export.push_status": t(lang, "after.published", url=html.escape(url)), INFO: t(lang, "after.pushed", repo=repo_id)}


# --- layout and wiring ----------------------------------------------------------------------------

def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Row(equal_height=True):
        ui.add("export.run", gr.Dropdown(choices=[], value=None, label=i18n("run"), elem_id="export-run", scale=4))
        ui.add("export.weights", gr.Dropdown(choices=[], value=None, label=i18n("chat_weights"),
                                             elem_id="export-weights", scale=2))
    ui.add("export.owner_note", gr.Markdown("", elem_id="export-owner"))
    with gr.Accordion(i18n("evaluate"), open=True, elem_id="export-evaluate"):
        with gr.Row(equal_height=True):
            ui.add("export.dataset", gr.Textbox(label=i18n("eval_dataset"), placeholder=i18n("ac_eval_placeholder"),
                                                elem_id="export-dataset", scale=3))
            ui.add("export.max_rows", gr.Number(value=0, precision=0, minimum=0, label=i18n("ac_max_rows"),
                                                elem_id="export-max-rows", scale=1))
            ui.add("export.samples_count", gr.Number(value=3, precision=0, minimum=0, maximum=20,
                                                     label=i18n("ac_samples"), elem_id="export-samples-count",
                                                     scale=1))
            ui.add("export.evaluate_btn", gr.Button(i18n("evaluate"), variant="primary", elem_id="export-evaluate-btn",
                                                    scale=1))
        ui.add("export.eval_status", gr.Markdown("", elem_id="export-eval-status"))
        ui.add("export.eval_table", gr.Markdown("", elem_id="export-eval-table"))
        # Fixed widths: without them a long prompt takes the whole row and hides the three answers.
        ui.add("export.samples", gr.Dataframe(headers=SAMPLE_HEADERS, value=[], interactive=False, wrap=True,
                                              column_widths=["28%", "24%", "24%", "24%"], elem_id="export-samples"))
    with gr.Accordion(i18n("export"), open=True, elem_id="export-export"):
        with gr.Row(equal_height=True):
            ui.add("export.zip_btn", gr.Button(i18n("adapter_zip"), elem_id="export-zip-btn", scale=1))
            has_converter = find_gguf_converter() is not None
            ui.add("export.gguf", gr.Checkbox(value=False, label=i18n("ac_gguf"), interactive=has_converter,
                                              info=None if has_converter else i18n("ac_no_gguf"), elem_id="export-gguf", scale=2))
            ui.add("export.merge_btn", gr.Button(i18n("merge"), elem_id="export-merge-btn", scale=1))
        ui.add("export.zip_file", gr.File(label=i18n("ac_zip_file"), interactive=False, elem_id="export-zip-file"))
        ui.add("export.merge_status", gr.Markdown("", elem_id="export-merge-status"))
    with gr.Accordion(i18n("publish"), open=True, elem_id="export-publish"):
        ui.add("export.token_note", gr.Markdown("", elem_id="export-token-note"))
        with gr.Row(equal_height=True):
            ui.add("export.repo_id", gr.Textbox(label=i18n("ac_repo_id"), placeholder="your-name/model-name",
                                                elem_id="export-repo-id", scale=3))
            ui.add("export.push_what", gr.Radio(choices=[(i18n("ac_adapter"), "adapter"), (i18n("ac_merged"), "merged")],
                                                value="adapter", label=i18n("ac_push_what"), elem_id="export-push-what", scale=2))
            ui.add("export.private", gr.Checkbox(value=True, label=i18n("ac_private"), elem_id="export-private", scale=1))
        ui.add("export.commit_message", gr.Textbox(label=i18n("ac_commit_message"), placeholder=i18n("ac_commit_placeholder"),
                                                   elem_id="export-commit-message"))
        with gr.Row():
            ui.add("export.dry_run_btn", gr.Button(i18n("dry_run"), elem_id="export-dry-run-btn"))
            ui.add("export.push_btn", gr.Button(i18n("push"), variant="primary", elem_id="export-push-btn"))
        ui.add("export.push_status", gr.Markdown("", elem_id="export-push-status"))
        ui.add("export.files", gr.Markdown("", elem_id="export-files"))
        ui.add("export.card", gr.Code(language="markdown", label=i18n("ac_card"), elem_id="export-card",
                                      lines=12))


def wire(ui: UI) -> None:
    quiet = dict(show_progress="hidden")
    ui.on([ui["tab.export"].select, ui.demo.load], run_choices, ["export.run"], ["export.run", "export.token_note"],
          **quiet)
    ui.on(ui["export.run"].change, pick_run, PICK, PICK_OUTPUTS, **quiet)
    stream(ui, ui["export.evaluate_btn"].click, evaluate,
           [*PICK, "export.dataset", "export.max_rows", "export.samples_count"],
           ["export.eval_status", "export.eval_table", "export.samples"])
    ui.on(ui["export.zip_btn"].click, make_zip, PICK, ["export.zip_file"])
    stream(ui, ui["export.merge_btn"].click, merge, [*PICK, "export.gguf"], ["export.merge_status"])
    publish = [*PICK, "export.repo_id", "export.push_what"]
    ui.on(ui["export.dry_run_btn"].click, dry_run, publish, ["export.card", "export.files", "export.push_status"])
    stream(ui, ui["export.push_btn"].click, push, [*publish, "export.private", "export.commit_message"],
           ["export.push_status"])
