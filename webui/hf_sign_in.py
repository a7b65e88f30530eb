"""Hugging Face sign-in on a Space (`hf_oauth: true`): Gradio's OAuth routes (/login/huggingface,
/login/callback, /logout) and session, a page that sends a visitor who is not signed in to the Hugging
Face login, and the `auth_dependency` that tells Gradio who is behind each of the page's requests (so
`gr.Request.username` is the Hugging Face user name in every handler, as with password logins).
"""

from __future__ import annotations

import html
from typing import Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.base import BaseHTTPMiddleware

from webui.auth import SignIn, hf_user_from_session

_PAGE_PATHS = ("/", "")


def hf_auth_dependency(sign_in: SignIn) -> Callable[[Request], str | None]:
    """Gradio's auth_dependency: the signed-in (and allowed) user name, else None (Gradio answers 401)."""
    def user_name(request: Request) -> str | None:
        session = request.scope.get("session")
        return hf_user_from_session(session or {}, sign_in.hf_orgs)[0]
    return user_name


def attach_hf_sign_in(app: FastAPI, sign_in: SignIn) -> None:
    from gradio.oauth import attach_oauth

    async def to_login(request: Request, call_next):
        if request.method in ("GET", "HEAD") and request.url.path in _PAGE_PATHS:
            name, why = hf_user_from_session(request.scope.get("session") or {}, sign_in.hf_orgs)
            if name is None and why in ("not signed in", "the sign-in expired"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login/huggingface?_target_url={quote(target, safe='')}")
            if name is None:  # signed in, but not allowed: another login would loop, so say why
                return HTMLResponse(f"<p>tunedeck: {html.escape(why or 'not allowed')}.</p>"
                                    "<p><a href='/logout'>Sign out</a> and sign in with another account.</p>",
                                    status_code=403)
        return await call_next(request)

    # Added before the session middleware, so it runs inside it (the session is decoded by then).
    app.add_middleware(BaseHTTPMiddleware, dispatch=to_login)
    attach_oauth(app)
