"""The HTTP API beside the page, on the same server and port, with the same users and rules.

Authentication: HTTP Basic with a password login, or `Authorization: Bearer tdk_...` (an API token), or
`X-Tunedeck-Token: tdk_...` (a private Space's proxy wants a Hugging Face token in Authorization).
401 without (or with wrong) credentials, 403 for another's run (or a config that reads server files
outside the caller's upload folder, or trusts remote code: webui.auth.config_refusal), 404 for an unknown id, 409 for a request
the run's state refuses, 413 for a body over the limit, 422 for a config with field errors, 429 after
repeated failed sign-ins or when the owner's queue is full. Every error is JSON: {"detail": "why"}.
Cross-site browser requests are refused (a browser that cached Basic credentials cannot be driven by
another site). Handlers are plain functions FastAPI runs in its thread pool; no torch is imported.

    GET    /api/me                      who the credentials stand for
    GET    /api/runs[?status=&owner=]   the team's runs, newest first
    POST   /api/runs[?name=]            body: a YAML config -> 201 the queued run
    GET    /api/runs/{id}               one run (+ its place in the queue while queued)
    GET    /api/runs/{id}/events?offset=N   events from byte N, at most 256 KB; next_offset to go on
    POST   /api/runs/{id}/abort | /resume;  DELETE /api/runs/{id} (a queued run: cancel it first)
    GET    /api/queue                   running runs, then the line (position, ahead, estimated start)
    POST   /api/queue/{id}/cancel       the owner (or an admin) takes a queued run out of the line
    POST   /api/queue/{id}/move         {"position": N}: admins only
    GET/POST /api/tokens;  DELETE /api/tokens/{id}   the caller's API tokens (the token is shown once)
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import yaml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from trainer.config import ConfigError, TrainConfig
from trainer.jobs.manager import JobError, JobManager, QueueFullError, RunInfo, UnknownRunError
from trainer.run.events import STATUSES
from trainer.run.layout import EVENTS_FILE, is_run_id
from webui.api_tokens import SecretLabelError, TokenNeedsSignIn, TokenStore
from webui.space import is_loopback
from webui.auth import (
    LOCAL_USER, PASSWORD, SignIn, User, can_modify, can_reorder_queue, can_view, config_refusal, require_modify,
)

TOKEN_HEADER = "X-Tunedeck-Token"  # the API token where Authorization is taken (a private Space's proxy)
MAX_CONFIG_BYTES = 256 * 1024
MAX_JSON_BYTES = 4 * 1024
MAX_NAME_CHARS = 200
MAX_YAML_VALUES = 20_000  # a config has a few hundred
EVENTS_CHUNK_BYTES = 256 * 1024
FAILED_SIGN_INS_PER_MINUTE = 20
_HIDDEN_FIELDS = ("run_dir", "pid", "events_offset", "queue_order")  # server internals, not the team's business


class FailedSignIns:
    """Failed sign-ins per key (a client address and the login or token it claims) in the last minute: past
    the limit, 429 instead of another password hash (a guesser gets a few tries a minute per login, and the
    CPU stays free)."""

    def __init__(self, limit: int = FAILED_SIGN_INS_PER_MINUTE, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] < now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return None
            return max(1, int(failures[0] + self.window_s - now) + 1)

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._recent(client, time.monotonic()).append(time.monotonic())


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (never read whole first)."""
    too_big = _error(413, f"{what} may be at most {limit // 1024} KB")
    declared = request.headers.get("content-length")
    if declared and (not declared.isdigit() or int(declared) > limit):
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_big
    return bytes(body)


def yaml_problem(text: str) -> str | None:
    """Why a YAML body is refused before it is even turned into values: aliases that expand to a huge tree
    (a "billion laughs" costs seconds of CPU per request), or nesting too deep for the parser. None: parse it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        return "the YAML is nested too deeply"
    except yaml.YAMLError:
        return None  # a syntax error: the config parser reports it with its line
    if root is None:
        return None
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    try:
        while stack:
            node, children_done = stack.pop()
            if id(node) in sizes:
                continue
            children = ([part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode)
                        else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
            if children_done:
                sizes[id(node)] = min(MAX_YAML_VALUES + 1, 1 + sum(sizes[id(child)] for child in children))
            else:
                stack.append((node, True))
                stack.extend((child, False) for child in children if id(child) not in sizes)
    except KeyError:  # an alias inside its own anchor
        return "the YAML refers to itself (a recursive alias)"
    if sizes[id(root)] > MAX_YAML_VALUES:
        return f"the YAML expands to more than {MAX_YAML_VALUES} values (through aliases); write the config out"
    return None


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=detail, headers=headers)


def field_errors(detail: str, errors: list[tuple[str, str]]) -> JSONResponse:
    """422 naming the fields: {"detail": one sentence, "errors": [{"field", "message"}]} — for a config and
    for a query parameter alike (FastAPI's own validation records are a list no script prints as a sentence,
    so query parameters are read as text and checked here)."""
    return JSONResponse({"detail": detail, "errors": [{"field": f, "message": m} for f, m in errors]},
                        status_code=422)


def _query_error(field: str, message: str) -> JSONResponse:
    return field_errors(f"{field}: {message}", [(field, message)])


def query_offset(raw: str | None) -> int | None:
    """?offset=N: a whole number of bytes from 0; None when it is not one."""
    text = (raw or "0").strip()
    return int(text) if text.isdigit() and len(text) <= 18 else None


def run_json(info: RunInfo) -> dict[str, Any]:
    data = info.to_dict()
    for name in _HIDDEN_FIELDS:
        data.pop(name, None)
    return data


def api_router(jobs: JobManager, sign_in: SignIn, tokens: TokenStore, loopback_only: bool = False) -> APIRouter:
    """The /api routes over one JobManager. `loopback_only`: an open server on this machine's loopback
    answers only requests addressed to a loopback name (a site that rebinds its own name to 127.0.0.1
    cannot drive it from a browser)."""
    router = APIRouter(prefix="/api")
    limiter = FailedSignIns()  # per address and claimed login/token
    address_limiter = FailedSignIns(limit=10 * FAILED_SIGN_INS_PER_MINUTE)  # per address: the CPU's guard
    unauthorized = {"WWW-Authenticate": 'Basic realm="tunedeck", charset="UTF-8"'}

    def current_user(request: Request) -> User:
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise _error(403, "cross-site requests are refused: call the API from a script, not from another site")
        if loopback_only and not is_loopback(urlsplit(f"//{request.headers.get('host', '')}").hostname or ""):
            raise _error(403, "this open server answers only requests to localhost or 127.0.0.1")
        if sign_in.is_open:
            return LOCAL_USER  # no sign-in configured: everyone is the operator, as on the page
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        own_header = request.headers.get(TOKEN_HEADER, "").strip()
        if own_header:  # a private Space's proxy takes Authorization for the Hugging Face token: ours goes here
            header, scheme, credentials = own_header, "bearer", own_header
        if not header:
            raise _error(401, "sign in: HTTP Basic with your login, or 'Authorization: Bearer <API token>' "
                              f"(on a private Space: '{TOKEN_HEADER}: <API token>')", unauthorized)
        client = request.client.host if request.client else "?"
        name = password = ""
        sep = ""
        if scheme.lower() == "basic":
            try:
                name, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise _error(401, "malformed Basic credentials (expected base64 of name:password)",
                             unauthorized) from None
        # Failures count per address *and* claimed login (or token id): behind a Space's proxy the whole team
        # shares one address, and one script with a revoked token must not lock everyone else out.
        claimed = f"basic:{name[:100]}" if scheme.lower() == "basic" else f"token:{credentials.strip()[:16]}"
        key = f"{client}\x00{claimed}"
        wait = limiter.retry_after(key) or address_limiter.retry_after(client)
        if wait is not None:
            raise _error(429, f"too many failed sign-ins with these credentials from this address; try again in "
                              f"{wait} s", {"Retry-After": str(wait)})
        user = None
        if scheme.lower() == "basic":
            user = sign_in.accounts.check_password(name, password) if sep else None
        elif scheme.lower() == "bearer":
            try:
                found = tokens.verified_owner(credentials.strip())
            except TokenNeedsSignIn as exc:  # the right secret: not a failed sign-in, a lapsed one
                raise _error(401, str(exc), unauthorized) from None
            owner = found[0] if found else None
            request.state.token_verified_at = found[1] if found else None
            if sign_in.mode == PASSWORD and owner not in sign_in.accounts.names:
                owner = None  # a login that was removed: its tokens go with it
            user = sign_in.accounts.user(owner) if owner else None
        if user is None:
            limiter.failed(key)
            address_limiter.failed(client)
            raise _error(401, "wrong user name, password or API token", unauthorized)
        return user

    def find_run(run_id: str, user: User) -> RunInfo:
        try:
            info = jobs.get(run_id)
        except UnknownRunError:
            shown = run_id[:80]
            raise _error(404, f"no run '{shown}'" if is_run_id(run_id) else
                         f"'{shown}' is not a run id (run ids look like 20261123-053012-a1b2c3)") from None
        if not can_view(user, info.owner):
            raise _error(403, "you may not see this run")
        return info

    def act(run_id: str, user: User, verb: str, action: Callable[..., Any]) -> Any:
        info = find_run(run_id, user)
        try:
            require_modify(user, info.owner, verb)
            return action(run_id)
        except PermissionError as exc:
            raise _error(403, str(exc)) from None
        except UnknownRunError:  # deleted meanwhile
            raise _error(404, f"no run '{run_id}'") from None
        except QueueFullError as exc:
            raise _error(429, str(exc)) from None
        except (JobError, ConfigError) as exc:
            raise _error(409, str(exc)) from None

    @router.get("/me")
    def me(user: User = Depends(current_user)) -> dict[str, Any]:
        return {"name": user.name, "is_admin": user.is_admin, "sign_in": sign_in.mode}

    @router.get("/runs")
    def list_runs(status: str | None = None, owner: str | None = None,
                  user: User = Depends(current_user)) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise _error(400, f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        return [run_json(info) for info in jobs.list_runs(status, owner) if can_view(user, info.owner)]

    @router.post("/runs", status_code=201)
    async def submit(request: Request, name: str | None = None,
                     user: User = Depends(current_user)) -> JSONResponse:
        if name is not None and len(name) > MAX_NAME_CHARS:
            return _query_error("name", f"at most {MAX_NAME_CHARS} characters (got {len(name)})")
        body = await read_body(request, MAX_CONFIG_BYTES, "the config")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _error(400, "the body must be a YAML config in UTF-8") from None
        if not text.strip():
            raise _error(422, "the body is empty: send a YAML config (as `python -m trainer check` takes)")
        try:  # in a worker thread: parsing and validating never hold up the server's event loop
            problem = await run_in_threadpool(yaml_problem, text)
            if problem:
                raise _error(422, problem)
            cfg = await run_in_threadpool(TrainConfig.from_yaml_text, text, "request body")
        except ConfigError as exc:
            return field_errors(str(exc), exc.errors)
        refusal = config_refusal(user, cfg, jobs.runs_root)
        if refusal:
            raise _error(403, refusal)
        try:
            run_id = await run_in_threadpool(jobs.submit, cfg, user.name, name)
        except QueueFullError as exc:
            raise _error(429, str(exc)) from None
        except ConfigError as exc:
            return field_errors(str(exc), exc.errors)
        return JSONResponse(run_json(jobs.get(run_id)), status_code=201)

    @router.get("/runs/{run_id}")
    def get_run(run_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        data = run_json(find_run(run_id, user))
        place = next((e for e in jobs.queue() if e.run_id == run_id), None)
        data["queue"] = place.to_dict() if place is not None else None
        return data

    @router.get("/runs/{run_id}/events")
    def events(run_id: str, offset: str | None = None, user: User = Depends(current_user)) -> Any:
        info = find_run(run_id, user)
        start = query_offset(offset)
        if start is None:
            return _query_error("offset", f"expects a whole number of bytes from 0 (got {str(offset)[:40]!r})")
        path = Path(info.run_dir) / EVENTS_FILE
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, 2)
                if start > size:
                    raise _error(400, f"offset {start} is past the end of the events ({size} bytes)")
                fh.seek(start)
                chunk = fh.read(EVENTS_CHUNK_BYTES)
        except FileNotFoundError:
            chunk, size = b"", 0
        if chunk and not chunk.endswith(b"\n"):
            cut = chunk.rfind(b"\n") + 1  # whole lines only; the rest comes with the next offset
            if cut:
                chunk = chunk[:cut]
            elif len(chunk) < EVENTS_CHUNK_BYTES:
                chunk = b""  # one line still being written: it comes whole next time
            # else: a single line longer than a chunk cannot be an event; it is passed over
        parsed = []
        for line in chunk.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut by an offset in its middle
            if isinstance(event, dict):
                parsed.append(event)
        next_offset = start + len(chunk)
        return {"run_id": run_id, "status": info.status, "offset": start, "next_offset": next_offset,
                "size": size, "more": next_offset < size, "events": parsed}

    @router.post("/runs/{run_id}/abort")
    def abort(run_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        return run_json(act(run_id, user, "abort", jobs.abort))

    @router.post("/runs/{run_id}/resume")
    def resume(run_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        return run_json(act(run_id, user, "resume", jobs.resume))

    @router.delete("/runs/{run_id}")
    def delete(run_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        info = find_run(run_id, user)
        if info.status == "queued" and can_modify(user, info.owner):
            # A script's way out of the line is the queue's cancel, not abort: say which call to make.
            raise _error(409, f"run {run_id} is waiting in the queue: cancel it first "
                              f"(POST /api/queue/{run_id}/cancel), then delete it")
        act(run_id, user, "delete", jobs.delete)
        return {"deleted": run_id}

    @router.get("/queue")
    def queue(user: User = Depends(current_user)) -> dict[str, Any]:
        entries = [e.to_dict() for e in jobs.queue()]
        return {"slots": jobs.max_concurrent, "max_queued_per_user": jobs.max_queued_per_owner,
                "running": [e for e in entries if e["position"] is None],
                "waiting": [e for e in entries if e["position"] is not None]}

    @router.post("/queue/{run_id}/cancel")
    def cancel(run_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        return run_json(act(run_id, user, "cancel", jobs.cancel))

    @router.post("/queue/{run_id}/move")
    async def move(run_id: str, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
        if not can_reorder_queue(user):
            raise _error(403, "only an admin may reorder the queue")
        body = await read_body(request, MAX_JSON_BYTES, "the request")
        try:
            position = json.loads(body or b"null").get("position")
        except (ValueError, AttributeError):
            raise _error(400, 'send JSON like {"position": 1}') from None
        find_run(run_id, user)
        try:
            entries = await run_in_threadpool(jobs.move, run_id, position)
        except UnknownRunError:  # deleted meanwhile
            raise _error(404, f"no run '{run_id}'") from None
        except JobError as exc:
            well_formed = isinstance(position, int) and not isinstance(position, bool) and position >= 1
            raise _error(409 if well_formed else 400, str(exc)) from None
        return {"waiting": [e.to_dict() for e in entries if e.position is not None]}

    @router.get("/tokens")
    def list_tokens(user: User = Depends(current_user)) -> list[dict[str, Any]]:
        return tokens.list(user)

    @router.post("/tokens", status_code=201)
    async def create_token(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
        body = await read_body(request, MAX_JSON_BYTES, "the request")
        try:
            label = json.loads(body).get("label", "") if body.strip() else ""
        except (ValueError, AttributeError):
            raise _error(400, 'send JSON like {"label": "my script"} (or nothing)') from None
        if label is None:
            label = ""
        if not isinstance(label, str):
            raise _error(400, f"label: expects text, got {type(label).__name__}")
        try:
            # Made with a token, the new one is no younger than it: tokens cannot keep each other alive.
            verified_at = getattr(request.state, "token_verified_at", None)
            token_id, token = await run_in_threadpool(tokens.create, user, label, verified_at)
        except SecretLabelError as exc:
            raise _error(400, str(exc)) from None
        except ValueError as exc:
            raise _error(429, str(exc)) from None
        return {"id": token_id, "token": token, "note": "shown once: keep it in your script's environment"}

    @router.delete("/tokens/{token_id}")
    def revoke_token(token_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        try:
            tokens.revoke(user, token_id)
        except KeyError:
            raise _error(404, f"no API token '{token_id}'") from None
        except PermissionError as exc:
            raise _error(403, str(exc)) from None
        return {"revoked": token_id}

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown(rest: str, request: Request) -> None:
        # Last: a path no route above matched (an id with a slash such as ../x, a typo) gets a reason too.
        raise _error(404, f"no API endpoint {request.method} /api/{rest[:200]} (run ids look like "
                          "20261123-053012-a1b2c3; the README's HTTP API section lists the endpoints)")

    return router


def server_extension(jobs: JobManager, sign_in: SignIn, tokens: TokenStore, loopback_only: bool = False) -> FastAPI:
    """A FastAPI app holding what the page's server adds to Gradio's: the API routes and, on a Space with
    Hugging Face sign-in, the OAuth routes and session. app.py hands its routes and middleware to Gradio's
    own app (Blocks.launch(app_kwargs=...)), so the page and the API share one port."""
    extension = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # only the routes travel to Gradio's app
    extension.include_router(api_router(jobs, sign_in, tokens, loopback_only))
    if sign_in.mode == "huggingface":
        from webui.hf_sign_in import attach_hf_sign_in

        attach_hf_sign_in(extension, sign_in)
    return extension
