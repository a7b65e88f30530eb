"""The server's log says what happened in one line where Gradio would print a traceback for an expected event.

A page's event stream (``/gradio_api/queue/data``) asks for a session the queue no longer holds whenever a
page reloads, a tab closes mid-stream or the server restarted under an open page; anyone can also ask for a
made-up one. Gradio answers the client (``session_not_found``, the page reconnects), then re-raises a 404
after the response has started, and uvicorn logs about sixty lines of traceback for it, each time. A log
full of those hides the tracebacks that matter; a loop of such requests (anyone's on an open server, any
signed-in user's otherwise) would write sixty lines per request instead of one.
"""

from __future__ import annotations

import logging

LOST_SESSION_LINE = ("a page's event stream asked for a session the server no longer holds (a reload, a closed tab "
                     "or a restart); the page was told to reconnect")


def _raised_in(exc: BaseException, function: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == function and "gradio" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def is_lost_session(exc: BaseException | None) -> bool:
    """Is this (or what caused it) the 404 Gradio's event stream raises for a session it does not hold?"""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "status_code", None) == 404 and _raised_in(exc, "sse_stream"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _LostSessionLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if is_lost_session(exc):
            record.msg, record.args, record.exc_info, record.exc_text = LOST_SESSION_LINE, (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_lost_sessions(logger_name: str = "uvicorn.error") -> None:
    """Log a lost page session as one line on the logger uvicorn reports ASGI errors on. Idempotent."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _LostSessionLine) for f in logger.filters):
        logger.addFilter(_LostSessionLine())
