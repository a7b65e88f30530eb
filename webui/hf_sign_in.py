"""Hugging Face sign-in on a Space (`hf_oauth: true`): Gradio's OAuth routes (/login/huggingface,
/login/callback, /logout) and session, a page that sends a visitor who is not signed in to the Hugging
Face login, and the `auth_dependency` that tells Gradio who is behind each of the page's requests (so
`gr.Request.username` is the Hugging Face user name in every handler, as with password logins).
"""

from __future__ import annotations

import html
from typing import Any, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse

from webui.auth import SignIn, hf_user_from_session

_PAGE_PATHS = ("/", "")


def hf_auth_dependency(sign_in: SignIn, on_verified: Callable[[str], None] | None = None
                       ) -> Callable[[Request], str | None]:
    """Gradio's auth_dependency: the signed-in (and allowed) user name, else None (Gradio answers 401).
    `on_verified(name)` after each request of an allowed user (the API tokens' renewal)."""
    def user_name(request: Request) -> str | None:
        name = hf_user_from_session(request.scope.get("session") or {}, sign_in.hf_orgs)[0]
        if name is not None and on_verified is not None:
            on_verified(name)
        return name
    return user_name


class _PageNeedsSignIn:
    """ASGI middleware (plain, so the page's event streams pass through untouched): the page itself, asked
    for without a valid session, redirects to the Hugging Face login; a signed-in user outside the allowed
    organisations gets a 403 that says why (another redirect would loop)."""

    def __init__(self, app: Any, sign_in: SignIn):
        self.app, self.sign_in = app, sign_in

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] in _PAGE_PATHS:
            name, why = hf_user_from_session(scope.get("session") or {}, self.sign_in.hf_orgs)
            if name is None:
                if why in ("not signed in", "the sign-in expired"):
                    query = scope.get("query_string", b"").decode("latin-1")
                    target = scope["path"] + (f"?{query}" if query else "")
                    response: Any = RedirectResponse(f"/login/huggingface?_target_url={quote(target, safe='')}")
                else:
                    response = HTMLResponse(f"<p>tunedeck: {html.escape(why or 'not allowed')}.</p><p><a "
                                            "href='/logout'>Sign out</a> and sign in with another account.</p>",
                                            status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def attach_hf_sign_in(app: FastAPI, sign_in: SignIn) -> None:
    from gradio.oauth import attach_oauth

    # Added before the session middleware, so it runs inside it (the session is decoded by then).
    app.add_middleware(_PageNeedsSignIn, sign_in=sign_in)
    attach_oauth(app)
