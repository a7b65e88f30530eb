"""A shared server under attack (bounded, loopback): does one user's input exhaust it for the others?

Starts `python app.py` with two logins (alice, an admin, and bob) on a loopback port, then, as bob, feeds
the exhaustion inputs of issue 17 through real HTTP requests: the page's own listeners (Gradio's client,
as a browser tab calls them), Gradio's upload route, and the HTTP API. Meanwhile alice keeps making a
simple request (the page's dataset field, and GET /api/runs) and its latency is recorded, and the server's
VmRSS / VmHWM are read from /proc (with the largest resident size of its child processes, where the data
worker does the work on user data).

The attacks (each in its own window): dataset `/dev/zero`; `/` as the dataset (both also by the admin,
whose paths are not limited, so that they reach the data worker and its caps, with bob as the other user); a Parquet bomb (3M rows of
one 2,500-character string, dictionary-encoded: under 2 MB on disk) uploaded and previewed; a LLaMA-Factory
YAML of nested aliases imported, uploaded as a preset and posted to the API; a 200 MB upload exported as a
LLaMA-Factory YAML (the export reads the whole file for its format and columns); a run's events file with one
300 MB line, polled by the Monitor and the API.

Goals (issue 17): the other user answered within a second throughout; each input refused with a message;
the server's RSS bounded.

    python benchmarks/server_under_attack.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from monitor_viewers import Session, Viewer, free_port, memory_mb, start_server  # noqa: E402

ALICE, BOB = ("alice", "pw1"), ("bob", "pw2")
LINE_MB = 300
ALIAS_BOMB = ("a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)))


class Page(Session):
    """A signed-in tab: call a listener by its trigger's elem_id and event, some inputs replaced."""

    def call(self, trigger: str, event: str, **values: Any) -> dict[str, Any]:
        index = self.index(lambda c, e: c.get("props", {}).get("elem_id") == trigger and e == event)
        result = self.client.predict(*self.inputs(index, **values), fn_index=index)
        result = result if isinstance(result, (list, tuple)) else [result]
        outputs = self.dependencies[index]["outputs"]
        return {self.components[o].get("props", {}).get("elem_id") or str(o): v for o, v in zip(outputs, result)}


def children_rss_mb(pid: int) -> float:
    """The resident memory of a process's descendants, summed (the data workers, trainers), in MB."""
    total, todo = 0.0, [pid]
    while todo:
        parent = todo.pop()
        kids = []
        for task in Path(f"/proc/{parent}/task").glob("*"):  # a child belongs to the thread that started it
            try:
                kids += (task / "children").read_text().split()
            except OSError:
                continue
        for kid in map(int, kids):
            total += memory_mb(kid).get("rss_mb", 0.0)
            todo.append(kid)
    return round(total, 1)


class Watch:
    """During one attack: alice's simple requests, timed, and the server's memory, sampled."""

    def __init__(self, other: Page, auth: tuple[str, str], url: str, server_pid: int):
        import httpx

        self.other, self.server_pid = other, server_pid
        self.api = httpx.Client(base_url=url, auth=auth, timeout=60)
        self.page_s: list[float] = []
        self.api_s: list[float] = []
        self.rss: list[float] = []
        self.children: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._requests, daemon=True),
                         threading.Thread(target=self._memory, daemon=True)]

    def _requests(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.other.call("field-dataset", "change", **{"field-dataset": "demo"})
            self.page_s.append(time.monotonic() - started)
            started = time.monotonic()
            self.api.get("api/runs").raise_for_status()
            self.api_s.append(time.monotonic() - started)
            self._stop.wait(0.2)

    def _memory(self) -> None:
        while not self._stop.is_set():
            self.rss.append(memory_mb(self.server_pid).get("rss_mb", 0.0))
            self.children.append(children_rss_mb(self.server_pid))
            self._stop.wait(0.1)

    def __enter__(self) -> "Watch":
        for thread in self._threads:
            thread.start()
        time.sleep(0.5)  # a request of alice's in flight before the attack lands
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.5)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def summary(self) -> dict[str, Any]:
        both = self.page_s + self.api_s
        return {"other_user_requests": len(both),
                "other_user_page_median_s": round(statistics.median(self.page_s), 3) if self.page_s else None,
                "other_user_page_max_s": round(max(self.page_s), 3) if self.page_s else None,
                "other_user_api_max_s": round(max(self.api_s), 3) if self.api_s else None,
                "server_rss_max_mb": max(self.rss) if self.rss else None,
                "workers_rss_max_mb": max(self.children) if self.children else None}


def refusal(reply: Any, *words: str) -> str | None:
    """The first of `words` the reply carries (how it was refused), else None."""
    text = repr(reply)
    return next((w for w in words if w in text), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    import httpx
    import gradio_client

    attacks: list[dict[str, Any]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tunedeck-attack-") as tmp_name:
        tmp = Path(tmp_name)
        runs, port, team = tmp / "runs", free_port(), tmp / "team"
        team.mkdir()
        os.environ.update({"TUNEDECK_ADMINS": "alice", "TUNEDECK_ALLOWED_PATHS": str(team),
                           "TUNEDECK_WORKER_MEMORY_GB": "2", "TUNEDECK_WORKER_TIMEOUT_S": "30",
                           "GRADIO_ANALYTICS_ENABLED": "False"})
        server = start_server(runs, port, tmp / "server.log")  # TUNEDECK_AUTH=alice:pw1,bob:pw2
        url = f"http://127.0.0.1:{port}/"
        try:
            alice, bob = Page(url, *ALICE), Page(url, *BOB)
            api = httpx.Client(base_url=url, auth=BOB, timeout=120)
            start_memory = memory_mb(server.pid)

            def attack(name: str, how: str, run: Callable[[], Any], *words: str, by_admin: bool = False) -> None:
                other, auth = (bob, BOB) if by_admin else (alice, ALICE)
                with Watch(other, auth, url, server.pid) as watch:
                    started = time.monotonic()
                    try:
                        reply = run()
                    except Exception as exc:  # noqa: BLE001 - an error answer is an answer too: recorded
                        reply = f"{type(exc).__name__}: {exc}"
                    took = time.monotonic() - started
                said = refusal(reply, *words)
                attacks.append({"attack": name, "by": "alice (admin)" if by_admin else "bob", "how": how, "answered_in_s": round(took, 2), "refused_with": said,
                                "reply_chars": len(repr(reply)), "reply_head": repr(reply)[:160], **watch.summary()})
                print(json.dumps(attacks[-1]), flush=True)

            def dataset(value: str, page: Page = bob) -> Callable[[], Any]:
                return lambda: [page.call("field-dataset", "input", **{"field-dataset": value}),
                                page.call("dataset-preview-btn", "click", **{"field-dataset": value})]

            attack("dataset /dev/zero", "page: plan refresh + Data preview", dataset("/dev/zero"),
                   "not allowed", "memory limit", "stopped after")
            attack("dataset /", "page: plan refresh + Data preview", dataset("/"),
                   "not allowed", "memory limit", "stopped after")

            # An admin may name any file: these reach the data worker, whose caps are what holds them.
            attack("dataset /dev/zero", "page: plan refresh + Data preview", dataset("/dev/zero", alice),
                   "memory limit", "stopped after", "not a regular file", "not found", by_admin=True)
            attack("dataset /", "page: plan refresh + Data preview", dataset("/", alice),
                   "too many files", "stopped after", "memory limit", by_admin=True)

            import numpy as np
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = 3_000_000
            one = lambda text: pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)),
                                                              pa.array([text]))
            bomb = tmp / "bomb.parquet"
            pq.write_table(pa.table({"instruction": one("x" * 2500), "output": one("y")}), bomb)

            def parquet_bomb() -> Any:
                saved = bob.call("dataset-upload", "upload", **{"dataset-upload": gradio_client.handle_file(str(bomb))})
                path = saved.get("field-dataset") or ""
                return [saved, *dataset(path)()]
            attack(f"Parquet bomb ({bomb.stat().st_size // 1024} KB, {rows:,} rows of 2,500 characters)",
                   "page: upload, plan refresh, Data preview", parquet_bomb, "memory limit", "stopped after",
                   "rows", "limit")

            big = tmp / "big.jsonl"  # within the upload limit; the LLaMA-Factory export reads all of it
            row = json.dumps({"instruction": "x" * 400, "output": "y" * 400}) + "\n"
            with open(big, "w", encoding="utf-8") as fh:
                fh.writelines(row for _ in range(250_000))

            def big_export() -> Any:
                saved = bob.call("dataset-upload", "upload", **{"dataset-upload": gradio_client.handle_file(str(big))})
                path = saved.get("field-dataset") or ""
                return bob.call("presets-export-lf-btn", "click", **{"field-dataset": path})
            attack(f"LLaMA-Factory export of a {big.stat().st_size // 1024**2} MB upload",
                   "page: upload, Presets → export LLaMA-Factory YAML", big_export, "llamafactory.yaml")
            attacks[-1]["note"] = "not an attack to refuse: exported (refused_with: the download), the file read by the data worker"

            alias = tmp / "aliases.yaml"
            alias.write_text(ALIAS_BOMB)

            def alias_bomb() -> Any:
                return [bob.call("presets-import-lf", "upload", **{"presets-import-lf": gradio_client.handle_file(str(alias))}),
                        bob.call("presets-upload", "upload", **{"presets-upload": gradio_client.handle_file(str(alias))}),
                        api.post("api/runs", content=ALIAS_BOMB).text]
            attack(f"YAML alias bomb ({len(ALIAS_BOMB)} bytes)", "page: LLaMA-Factory import, preset upload; API: POST "
                   "/api/runs", alias_bomb, "aliases", "nested too deeply", "expands to more")

            posted = api.post("api/runs", content="model_name_or_path: demo\ndataset: demo\nmax_steps: 1\n")
            run_id = posted.json()["id"]
            events = runs / run_id / "events.jsonl"
            deadline = time.time() + 120
            while time.time() < deadline and json.loads(api.get(f"api/runs/{run_id}").text)["status"] in ("queued", "running"):
                time.sleep(1)
            with open(events, "ab") as fh:  # one line of 300 MB, then an ordinary event after it
                fh.write(b'{"t": 1, "type": "message", "text": "')
                chunk = b"x" * (1024 * 1024)
                for _ in range(LINE_MB):
                    fh.write(chunk)
                fh.write(b'"}\n')
                fh.write(json.dumps({"t": time.time(), "type": "message", "text": "after the long line"}).encode() + b"\n")
            viewer = Viewer(url, *BOB, bob)
            tick = bob.index(lambda c, e: c.get("type") == "timer" and e == "tick")
            opened = next(i for i, d in enumerate(bob.dependencies)  # the page's load, as an open tab has had
                          if any(t[1] == "load" for t in d["targets"])
                          and "run-select" in [bob.components[o]["props"].get("elem_id") for o in d["outputs"]])
            viewer.call(opened)

            def long_line() -> Any:
                # The Monitor reads at most 8 MB of events per draw, and draws a run at most once a second:
                # passing the long line takes about 40 s of polls, one every 0.5 s (faster than an open tab).
                polls, deadline = [], time.monotonic() + 90
                while time.monotonic() < deadline and (not polls or "was skipped" not in repr(polls[-1])):
                    polls.append(viewer.call(tick, **{"run-select": run_id}))
                    time.sleep(0.5)
                offset, pages, shipped = 0, 0, 0
                while pages < 2000:
                    page = api.get(f"api/runs/{run_id}/events", params={"offset": offset}).json()
                    shipped += sum(len(json.dumps(e)) for e in page["events"])
                    pages, offset = pages + 1, page["next_offset"]
                    if not page["more"]:
                        break
                said = [m for m in ("was skipped",) if m in repr(polls[-1])]
                return {"monitor_polls": len(polls), "monitor_said": said, "monitor_largest_reply": max(len(repr(p)) for p in polls),
                        "api_pages": pages, "api_event_bytes": shipped}
            attack(f"events file with one {LINE_MB} MB line", "page: Monitor polls until it has passed the line; API: every events page",
                   long_line, "was skipped")
            end_memory = memory_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "worker_caps": {"memory_gb": 2, "timeout_s": 30}, "seconds": round(time.monotonic() - began, 1),
        "server_memory_start": start_memory, "server_memory_end": end_memory,
        "other_user_max_s": max(max(a["other_user_page_max_s"] or 0, a["other_user_api_max_s"] or 0) for a in attacks),
        "attacks": attacks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server_under_attack.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "attacks"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
