"""Load test (bounded, loopback): N viewers polling a live run's Monitor on a shared server.

Starts `python app.py` with two logins on a loopback port, starts the demo training from the page (as
alice), then alternates windows with no viewers and windows with N viewers (each a Gradio client session
of bob's, calling the Monitor's timer endpoint every 1.5 s like an open tab). Records every poll's latency
and the training's tokens/s (from its `log` events) inside each window. Alternating windows put the
machine's background load on both sides alike.

Goals (issue 17): median poll under 1 s with 20 viewers; training tokens/s within 3% of no viewers.

    python benchmarks/monitor_viewers.py [--viewers 20] [--window 20] [--rounds 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TIMER_SECONDS = 1.5  # webui/tabs/monitor.py's timer: an open tab polls this often

from trainer.run.layout import request_abort  # noqa: E402 - after the repo root is importable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TUNEDECK_AUTH": "alice:pw1,bob:pw2", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--runs-dir", str(runs)],
                            cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"app.py did not start: {log.read_text()[-2000:]}")


class Session:
    """One signed-in browser tab, as the Gradio client sees the page: listeners by their trigger."""

    def __init__(self, url: str, user: str, password: str):
        from gradio_client import Client

        self.client = Client(url, auth=(user, password), verbose=False, httpx_kwargs={"timeout": 120},
                             analytics_enabled=False)
        config = self.client.config
        self.components = {c["id"]: c for c in config["components"]}
        self.dependencies = config["dependencies"]

    def index(self, match) -> int:
        return next(i for i, d in enumerate(self.dependencies)
                    if any(match(self.components.get(t[0], {}), t[1]) for t in d["targets"]))

    def inputs(self, index: int, **values) -> list:
        out = []
        for cid in self.dependencies[index]["inputs"]:
            if self.components[cid]["type"] == "state":  # the client fills these in itself
                continue
            props = self.components[cid].get("props", {})
            out.append(values.get(props.get("elem_id") or "", props.get("value")))
        return out


def _ended(db: Path, run_id: str) -> bool:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return bool(row) and row[0] not in ("running", "queued")


def tokens_per_second(db_runs: Path, run_id: str, start: float, end: float) -> list[float]:
    values = []
    with open(db_runs / run_id / "events.jsonl", encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            if event.get("type") == "log" and start <= event["t"] <= end and event.get("tokens_per_second"):
                values.append(float(event["tokens_per_second"]))
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--window", type=float, default=20.0, help="seconds per window")
    parser.add_argument("--rounds", type=int, default=2, help="(no viewers, viewers) pairs; a last no-viewer window")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tunedeck-viewers-") as tmp:
        runs, port = Path(tmp) / "runs", free_port()
        db, run_id = runs / "runs.db", None
        latencies: list[float] = []
        windows: list[dict] = []
        failures: list[str] = []
        server = start_server(runs, port, Path(tmp) / "server.log")
        try:
            url = f"http://127.0.0.1:{port}/"
            alice = Session(url, "alice", "pw1")
            start = alice.index(lambda c, e: c.get("props", {}).get("elem_id") == "start-btn" and e == "click")
            # Long enough to outlast every window: epochs of the demo dataset, a log event every step.
            alice.client.predict(*alice.inputs(start, **{"field-num_train_epochs": 200, "field-run_name": "viewers"}),
                                 fn_index=start)
            while run_id is None:
                time.sleep(1)
                with sqlite3.connect(db) as conn:
                    row = conn.execute("SELECT id FROM runs WHERE status = 'running'").fetchone()
                run_id = row[0] if row else None
            while not tokens_per_second(runs, run_id, 0, time.time() + 1):
                time.sleep(1)
            time.sleep(10)  # past the first steps' warm-up
            viewers = [Session(url, "bob", "pw2") for _ in range(args.viewers)]
            tick = viewers[0].index(lambda c, e: c.get("type") == "timer" and e == "tick")
            for viewer in viewers:  # an opened tab: its run list (the dropdown's choices) is filled on load
                opened = next(i for i, d in enumerate(viewer.dependencies)
                              if any(t[1] == "load" for t in d["targets"]) and not d["inputs"]
                              and [viewer.components[o]["props"].get("elem_id") for o in d["outputs"]] == ["run-select"])
                viewer.client.predict(fn_index=opened)
            for phase in ["none", "viewers"] * args.rounds + ["none"]:
                stop = threading.Event()
                threads = []
                if phase == "viewers":
                    def poll(session: Session) -> None:
                        values = session.inputs(tick, **{"run-select": run_id})
                        while not stop.is_set():
                            started = time.monotonic()
                            try:
                                session.client.predict(*values, fn_index=tick)
                            except Exception as exc:  # noqa: BLE001 - counted and reported, the others go on
                                failures.append(f"{type(exc).__name__}: {exc}"[:200])
                                continue
                            took = time.monotonic() - started
                            latencies.append(took)
                            stop.wait(max(0.0, TIMER_SECONDS - took))
                    threads = [threading.Thread(target=poll, args=(s,), daemon=True) for s in viewers]
                    for t in threads:
                        t.start()
                    time.sleep(3)  # the viewers' first full draws are not steady state
                t0 = time.time()
                time.sleep(args.window)
                t1 = time.time()
                stop.set()
                for t in threads:
                    t.join(timeout=30)
                tps = tokens_per_second(runs, run_id, t0, t1)
                windows.append({"phase": phase, "start": t0, "end": t1, "log_events": len(tps),
                                "tokens_per_second_median": statistics.median(tps) if tps else None})
                print(json.dumps(windows[-1]), flush=True)
        finally:
            if run_id is not None:  # the trainer outlives the server: stop it the way Abort does
                request_abort(runs / run_id)
                deadline = time.time() + 60
                while time.time() < deadline and not _ended(db, run_id):
                    time.sleep(1)
            server.terminate()
            server.wait(timeout=30)
    none = [w["tokens_per_second_median"] for w in windows if w["phase"] == "none" and w["tokens_per_second_median"]]
    with_viewers = [w["tokens_per_second_median"] for w in windows
                    if w["phase"] == "viewers" and w["tokens_per_second_median"]]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "viewers": args.viewers,
        "window_s": args.window, "rounds": args.rounds, "polls": len(latencies), "failed_polls": len(failures),
        "failures": sorted(set(failures))[:5],
        "poll_median_s": statistics.median(latencies) if latencies else None,
        "poll_p95_s": sorted(latencies)[int(0.95 * (len(latencies) - 1))] if latencies else None,
        "poll_max_s": max(latencies) if latencies else None,
        "tokens_per_second_no_viewers": statistics.median(none) if none else None,
        "tokens_per_second_viewers": statistics.median(with_viewers) if with_viewers else None,
        "windows": windows,
    }
    if result["tokens_per_second_no_viewers"] and result["tokens_per_second_viewers"]:
        result["tokens_per_second_change"] = (result["tokens_per_second_viewers"] /
                                              result["tokens_per_second_no_viewers"] - 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitor_viewers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
