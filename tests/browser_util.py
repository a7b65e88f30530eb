"""Shared by the real-browser tests: a `python app.py` subprocess, Chromium's launch options, polling waits.

Not a test module. Each browser test module still skips itself when /usr/bin/chromium or playwright is
missing; this module imports neither.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
CHROMIUM_MISSING = f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does it as root)"


def launch_chromium(playwright):
    """Debian's Chromium, headless, with the options every browser test uses."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_dashboard(playwright, url: str):
    """(browser, page): Chromium on the dashboard at `url`, once its Start button is there."""
    browser = launch_chromium(playwright)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#start-btn", state="attached")
    return browser, page


def navigate(page, url: str, attempts: int = 5) -> None:
    """`page.goto(url)`, tolerating the page's own reload. When the server behind an open page restarts,
    Gradio's front end polls until it reconnects and then calls `location.reload()`; a goto issued in
    that moment is aborted by the reload (net::ERR_ABORTED). Either navigation lands on the same page,
    so the goto is tried again once the reload has settled."""
    for attempt in range(attempts):
        try:
            page.goto(url)
            return
        except Exception as exc:  # playwright's Error; this module does not import playwright
            if "ERR_ABORTED" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(1)
            try:
                page.wait_for_load_state("load", timeout=30_000)
            except Exception:
                pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python app.py` as a real subprocess; stopping it leaves the trainers it started running."""

    def __init__(self, runs_dir: Path, port: int, log: Path):
        self.runs_dir, self.port, self.log_path = runs_dir, port, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--runs-dir",
                                      str(self.runs_dir)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"app.py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"app.py did not listen on port {self.port} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return self.log_text()[-4000:]


def plot_points(page, elem_id: str, trace: int = 0) -> int:
    """How many points the plotly chart inside #elem_id holds in a trace (0 while it has none)."""
    return page.evaluate(
        """([id, trace]) => {
            const el = document.querySelector(`#${id} .js-plotly-plot`);
            if (!el || !el.data || el.data.length <= trace) return 0;
            const t = el.data[trace];
            return (t.y || t.x || []).length;
        }""", [elem_id, trace])


def trace_names(page, elem_id: str) -> list[str]:
    return page.evaluate(
        """(id) => { const el = document.querySelector(`#${id} .js-plotly-plot`);
                     return el && el.data ? el.data.map((t) => t.name || '') : []; }""", elem_id)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll predicate until it returns something truthy (returned), or fail naming what was awaited."""
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value {value!r})")


def kill_leftover_trainers(runs_dir: Path) -> None:
    """A failed test must not leave a trainer running: stop any process group that trains in runs_dir."""
    try:
        from trainer.jobs.manager import JobManager
        with JobManager(runs_dir, autostart=False) as jobs:
            for info in jobs.list_runs(status="running"):
                if info.pid:
                    try:
                        os.killpg(info.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
    except Exception:  # noqa: BLE001 - best effort cleanup
        pass
