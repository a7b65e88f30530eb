"""Load test (bounded, loopback): N viewers polling a live run's Monitor on a shared server.

Starts `python app.py` with two logins on a loopback port, starts the demo training from the page (as
alice), then alternates windows with no viewers and windows with N viewers (each a signed-in session of bob's
that calls the Monitor's timer endpoint every 1.5 s the way an open tab does: a direct POST to
`/gradio_api/run/predict`, since the timer skips Gradio's queue). Records every poll's latency, the
training's tokens/s (from its `log` events) and the CPU time of the server, the trainer and the viewers'
own client inside each window. Alternating windows put the machine's background load on both sides alike.

The viewers run on the same machine as the server and the trainer, which a team's browsers do not: the
client's CPU (parsing every reply) is reported beside the server's so the two can be told apart.

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
import uuid
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


class Viewer:
    """One open tab of a signed-in user: its own session hash and login cookie, calling listeners the way the
    browser does for those that skip the queue (the timer): one POST each, the state inputs left to the server."""

    def __init__(self, url: str, user: str, password: str, config_from: Session):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=120)
        answer = self.http.post("login", data={"username": user, "password": password})
        if answer.status_code != 200:
            raise SystemExit(f"login as {user} failed: {answer.status_code} {answer.text[:200]}")
        self.session_hash = uuid.uuid4().hex[:11]
        self.components, self.dependencies = config_from.components, config_from.dependencies

    def call(self, index: int, **values) -> dict:
        import orjson

        data = [None if self.components[cid]["type"] == "state" else
                values.get(self.components[cid].get("props", {}).get("elem_id") or "",
                           self.components[cid].get("props", {}).get("value"))
                for cid in self.dependencies[index]["inputs"]]
        answer = self.http.post("gradio_api/run/predict", json={
            "data": data, "fn_index": index, "session_hash": self.session_hash, "event_data": None,
            "trigger_id": self.dependencies[index]["targets"][0][0]})
        answer.raise_for_status()
        return orjson.loads(answer.content)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in MB."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, kb = line.split()[:2]
                values["rss_mb" if name == "VmRSS:" else "peak_rss_mb"] = round(int(kb) / 1024, 1)
    except OSError:
        pass
    return values


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
        db, run_id, server_memory = runs / "runs.db", None, {}
        latencies: list[float] = []
        windows: list[dict] = []
        failures: list[str] = []
        window_open = threading.Event()  # polls are counted inside the measured windows only
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
            viewers = [Viewer(url, "bob", "pw2", alice) for _ in range(args.viewers)]
            tick = alice.index(lambda c, e: c.get("type") == "timer" and e == "tick")
            opened = next(i for i, d in enumerate(alice.dependencies)  # the page's load: the run list
                          if any(t[1] == "load" for t in d["targets"])
                          and "run-select" in [alice.components[o]["props"].get("elem_id") for o in d["outputs"]])
            for viewer in viewers:
                viewer.call(opened)
            with sqlite3.connect(db) as conn:
                trainer_pid = conn.execute("SELECT pid FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            for phase in ["none", "viewers"] * args.rounds + ["none"]:
                stop = threading.Event()
                threads = []
                if phase == "viewers":
                    def poll(viewer: Viewer) -> None:
                        while not stop.is_set():
                            started = time.monotonic()
                            try:
                                viewer.call(tick, **{"run-select": run_id})
                            except Exception as exc:  # noqa: BLE001 - counted and reported, the others go on
                                failures.append(f"{type(exc).__name__}: {exc}"[:200])
                                stop.wait(TIMER_SECONDS)
                                continue
                            took = time.monotonic() - started
                            if window_open.is_set():
                                latencies.append(took)
                            stop.wait(max(0.0, TIMER_SECONDS - took))
                    threads = [threading.Thread(target=poll, args=(v,), daemon=True) for v in viewers]
                    for t in threads:
                        t.start()
                    time.sleep(3)  # the viewers' first full draws are not steady state
                cpu0 = {"server": cpu_seconds(server.pid), "trainer": cpu_seconds(trainer_pid),
                        "viewers": time.process_time()}
                window_open.set()
                t0 = time.time()
                time.sleep(args.window)
                t1 = time.time()
                window_open.clear()
                cpu = {"server": cpu_seconds(server.pid), "trainer": cpu_seconds(trainer_pid),
                       "viewers": time.process_time()}
                stop.set()
                for t in threads:
                    t.join(timeout=30)
                tps = tokens_per_second(runs, run_id, t0, t1)
                windows.append({"phase": phase, "start": t0, "end": t1, "log_events": len(tps),
                                "tokens_per_second_median": statistics.median(tps) if tps else None,
                                "cores_used": {k: round((cpu[k] - cpu0[k]) / (t1 - t0), 3) for k in cpu}})
                print(json.dumps(windows[-1]), flush=True)
            server_memory = memory_mb(server.pid)
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
        "server_memory": server_memory,
        "windows": windows,
    }
    for phase in ("none", "viewers"):
        for who in ("server", "trainer", "viewers"):
            used = [w["cores_used"][who] for w in windows if w["phase"] == phase]
            result[f"cores_{who}_{phase}"] = round(statistics.median(used), 3) if used else None
    if result["tokens_per_second_no_viewers"] and result["tokens_per_second_viewers"]:
        result["tokens_per_second_change"] = (result["tokens_per_second_viewers"] /
                                              result["tokens_per_second_no_viewers"] - 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitor_viewers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
