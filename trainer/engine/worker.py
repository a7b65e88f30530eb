"""The chat worker process: `python -m trainer.engine.worker`, driven by JSON lines on stdin/stdout.

The web server never imports torch; it spawns this process (trainer.jobs.workers.ChatWorker) and talks
to it one JSON object a line. Requests carry an `id` that every answer to them repeats:

    {"id": 1, "op": "load", "run_dir": "...", "checkpoint": null}
        -> {"type": "progress", "text": "loading the base model ..."} ... {"type": "loaded", "info": {...}}
    {"id": 2, "op": "chat", "message": "...", "history": [{"role", "content"}, ...], "settings": {...},
     "models": ["tuned", "base"]}
        -> {"type": "chunk", "model": "tuned" or "base", "text": "..."} ... (both models generate at once, their
           chunks interleaved) {"type": "end", "model", "text": full, "seconds": s, "stopped": bool} per model,
           then {"type": "done"}
    {"op": "stop"}        ends the reply being generated (read while generating)
    {"id": 3, "op": "unload"} -> {"type": "unloaded"};  {"op": "exit"} or end of stdin: the process ends
    any failure -> {"type": "error", "message": "one sentence"}

stdout carries only the protocol: the libraries' own prints are sent to stderr.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from typing import Any, Optional, TextIO

from trainer.engine.artifacts import BASE, TUNED, AfterTrainingError, LoadedRun, load_run, resolve_weights
from trainer.engine.chat import GenerationSettings, conversation, stream_reply


class Worker:
    def __init__(self, out: TextIO):
        self.out = out
        self.loaded: Optional[LoadedRun] = None
        self.stop_event = threading.Event()
        self.requests: "queue.Queue[Optional[dict[str, Any]]]" = queue.Queue()
        self._write_lock = threading.Lock()

    def send(self, request_id: Any, type: str, **data: Any) -> None:
        line = json.dumps({"id": request_id, "type": type, **data}, ensure_ascii=False)
        with self._write_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def read_stdin(self, stdin: TextIO) -> None:
        """Queue requests; a `stop` acts at once, so it can end a reply being generated."""
        for line in stdin:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.send(None, "error", message=f"bad request line: {exc}")
                continue
            if request.get("op") == "stop":
                self.stop_event.set()
                continue
            self.requests.put(request)
            if request.get("op") == "exit":
                return
        self.requests.put(None)

    def serve(self) -> None:
        while True:
            request = self.requests.get()
            if request is None or request.get("op") == "exit":
                return
            request_id = request.get("id")
            try:
                self.handle(request_id, request)
            except AfterTrainingError as exc:
                self.send(request_id, "error", message=str(exc))
            except Exception as exc:  # noqa: BLE001 — the worker must answer every request and keep serving
                print(f"worker: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                self.send(request_id, "error", message=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def handle(self, request_id: Any, request: dict[str, Any]) -> None:
        op = request.get("op")
        if op == "load":
            if self.loaded is not None:  # the old model goes before the new one loads
                self.loaded = None
                _free_memory()
            weights = resolve_weights(str(request.get("run_dir") or ""), request.get("checkpoint"))
            self.loaded = load_run(weights, progress=lambda text: self.send(request_id, "progress", text=text))
            self.send(request_id, "loaded", info=self.loaded.info())
        elif op == "chat":
            self.chat(request_id, request)
        elif op == "unload":
            self.loaded = None
            _free_memory()
            self.send(request_id, "unloaded")
        elif op == "ping":
            self.send(request_id, "pong", loaded=self.loaded.info() if self.loaded else None)
        else:
            raise AfterTrainingError(f"op: unknown request '{op}' (load, chat, stop, unload, ping, exit)")

    def chat(self, request_id: Any, request: dict[str, Any]) -> None:
        if self.loaded is None:
            raise AfterTrainingError("no model is loaded: load a run first")
        settings = GenerationSettings.from_dict(request.get("settings"))
        history = request.get("history") or []
        if not isinstance(history, list):
            raise AfterTrainingError("history: expected a list of {'role', 'content'} turns")
        messages = conversation(history, request.get("message"), settings.system_prompt)
        models = request.get("models") or [TUNED]
        if not isinstance(models, list) or any(m not in (TUNED, BASE) for m in models):
            raise AfterTrainingError(f"models: a list of '{TUNED}' and/or '{BASE}'")
        self.stop_event.clear()
        # Every model generates at once, each in its own thread: the page's columns stream side by side.
        pieces: "queue.Queue[tuple[str, str, Any]]" = queue.Queue()

        def generate(which: str) -> None:
            started, parts = time.time(), []
            try:
                for text in stream_reply(self.loaded, messages, settings, which, stop_event=self.stop_event):
                    parts.append(text)
                    pieces.put((which, "chunk", text))
                pieces.put((which, "end", {"text": "".join(parts), "seconds": round(time.time() - started, 2),
                                           "stopped": self.stop_event.is_set()}))
            except BaseException as exc:  # noqa: BLE001 — reported by the serving thread below
                pieces.put((which, "error", exc))

        threads = [threading.Thread(target=generate, args=(which,), name=f"chat-{which}", daemon=True)
                   for which in dict.fromkeys(models)]
        for thread in threads:
            thread.start()
        failure: Optional[BaseException] = None
        for _ in range(len(threads)):
            while True:
                which, kind, value = pieces.get()
                if kind == "chunk":
                    self.send(request_id, "chunk", model=which, text=value)
                    continue
                if kind == "end":
                    self.send(request_id, "end", model=which, **value)
                elif failure is None:
                    failure = value
                    self.stop_event.set()  # one side failed: the other stops too
                break
        for thread in threads:
            thread.join()
        if failure is not None:
            raise failure
        self.send(request_id, "done")


def _free_memory() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> int:
    # The protocol gets its own copy of stdout; anything else printed to fd 1 goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    worker = Worker(out)
    worker.send(None, "ready", pid=os.getpid())
    reader = threading.Thread(target=worker.read_stdin, args=(sys.stdin,), name="worker-stdin", daemon=True)
    reader.start()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
