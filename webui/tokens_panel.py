"""The "API token" accordion (under the Runs tab): create a personal token for the HTTP API (shown once,
stored hashed by webui/api_tokens.py), list one's tokens (an admin: everyone's) and revoke one. The page and
the API share one TokenStore (Context.tokens), so a token revoked here is refused by the API at once.
"""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from .auth import LOCAL
from .components import INFO, UI, WARNING, Reply
from .context import Context, acting_as
from .i18n import t
from .views import say

OUTPUTS = ["tokens.list", "tokens.revoke_id"]


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if isinstance(ts, (int, float)) else ""


def listed(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """The user's tokens (never their secrets) and the revoke choices."""
    who = acting_as(user)
    if who.name == LOCAL:
        return {"tokens.list": t(lang, "tokens_open"), "tokens.revoke_id": gr.update(choices=[], value=None)}
    try:
        tokens = ctx.tokens.list(who)
    except RuntimeError as exc:  # an unreadable tokens file: say what to do, keep the page
        return {"tokens.list": f"⚠ {html.escape(say(str(exc), lang))}", "tokens.revoke_id": gr.update(choices=[], value=None)}
    if not tokens:
        text = t(lang, "tokens_none")
    else:
        text = "\n".join(f"- `{tok['id']}` {html.escape(tok.get('label') or '')} · {html.escape(str(tok['owner']))} · "
                         f"{_when(tok.get('created_at'))}" for tok in tokens)
    choices = [(f"{tok['id']} {tok.get('label') or ''} ({tok['owner']})".strip(), tok["id"]) for tok in tokens]
    return {"tokens.list": text, "tokens.revoke_id": gr.update(choices=choices, value=None)}


def create(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    """A new token, shown once in its box; the list follows."""
    who = acting_as(user)
    if who.name == LOCAL:
        return {WARNING: t(lang, "tokens_open")}
    try:
        token_id, token = ctx.tokens.create(who, v.get("tokens.label") or "")
    except (ValueError, RuntimeError, OSError) as exc:  # too many tokens, an unreadable file
        return {WARNING: say(str(exc), lang)}
    return {**listed(ctx, v, user, lang), "tokens.label": "",
            "tokens.new": gr.update(value=token, visible=True), INFO: t(lang, "token_created", id=token_id)}


def revoke(ctx: Context, v: dict[str, Any], user: str | None = None, lang: str | None = None) -> Reply:
    token_id = v.get("tokens.revoke_id")
    if not token_id:
        return {WARNING: t(lang, "token_pick")}
    try:
        ctx.tokens.revoke(acting_as(user), token_id)
    except (KeyError, PermissionError, RuntimeError, OSError) as exc:
        return {WARNING: say(str(exc).strip("'\""), lang)}
    return {**listed(ctx, v, user, lang), "tokens.new": gr.update(value="", visible=False),
            INFO: t(lang, "token_revoked", id=token_id)}


def render(ui: UI) -> None:
    i18n = ui.i18n
    with gr.Accordion(i18n("api_token"), open=False, elem_id="api-token-accordion"):
        ui.add("tokens.help", gr.Markdown(i18n("tokens_help"), elem_id="tokens-help"))
        with gr.Row(equal_height=True):
            ui.add("tokens.label", gr.Textbox(label=i18n("token_label"), elem_id="token-label", scale=3))
            ui.add("tokens.create_btn", gr.Button(i18n("token_create"), elem_id="token-create-btn", scale=1))
        ui.add("tokens.new", gr.Textbox(label=i18n("token_new"), visible=False, interactive=False,
                                        buttons=["copy"], elem_id="token-new"))
        ui.add("tokens.list", gr.Markdown("", elem_id="tokens-list"))
        with gr.Row(equal_height=True):
            ui.add("tokens.revoke_id", gr.Dropdown(choices=[], label=i18n("token_pick_label"), elem_id="token-revoke-id",
                                                   scale=3))
            ui.add("tokens.revoke_btn", gr.Button(i18n("token_revoke"), variant="stop", elem_id="token-revoke-btn",
                                                  scale=1))


def wire(ui: UI) -> None:
    ui.on([ui.demo.load, ui["top.language"].change], listed, [], OUTPUTS, show_progress="hidden")
    ui.on(ui["tokens.create_btn"].click, create, ["tokens.label"], [*OUTPUTS, "tokens.label", "tokens.new"])
    ui.on(ui["tokens.revoke_btn"].click, revoke, ["tokens.revoke_id"], [*OUTPUTS, "tokens.new"])
