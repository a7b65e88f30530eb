"""A team on one server, in a real browser: `python app.py` with two logins (TUNEDECK_AUTH) and an admin
(TUNEDECK_ADMINS), headless Chromium signing in through Gradio's own login form. Alice (the admin) starts a
long demo run; bob, in a second browser context, starts his and sees the queue panel put his run at position
1 behind hers, with Cancel for himself and no reordering; alice sees Move up/down on his run and aborts hers.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from pathlib import Path

import pytest
from browser_util import CHROMIUM, CHROMIUM_MISSING, Server, free_port, launch_chromium
from browser_util import wait_for as _wait

pytestmark = [pytest.mark.slow, pytest.mark.browser]

if not Path(CHROMIUM).exists():
    pytest.skip(CHROMIUM_MISSING, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

LOGINS = {"alice": "pw1", "bob": "pw2"}


def _sign_in(browser, url: str, name: str):
    """A fresh browser context (its own cookies) signed in as `name` through Gradio's login form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_label(re.compile("username", re.I)).fill(name)
    page.get_by_label(re.compile("password", re.I)).fill(LOGINS[name])
    page.get_by_role("button", name=re.compile(r"log ?in", re.I)).click()
    page.wait_for_selector("#start-btn", state="attached")
    return context, page


def _start(page, epochs: int | None = None) -> str:
    """Start the form's run (the demo preset the page opens on); the run id the Monitor then shows."""
    page.get_by_role("tab", name="Train").click()  # a page opens on the Monitor while a run is live
    _wait(lambda: "Effective batch" in page.locator("#run-plan").inner_text(), 90, "the run plan")
    if epochs is not None:
        field = page.locator("#field-num_train_epochs input")

        def held():  # the page's load events may still be filling the form: type the edit until it holds
            if field.input_value() != str(epochs):
                field.fill(str(epochs))
                field.press("Tab")
            return re.search(rf"Epochs \(effective\)\s+{epochs}\b", page.locator("#run-plan").inner_text())
        _wait(held, 90, "the plan to follow the form", interval=2)
    def on_train_tab():  # a late load event may still move the page to a live run's Monitor: go back
        if not page.locator("#start-btn").is_visible():
            page.get_by_role("tab", name="Train").click()
        return page.locator("#start-btn").is_visible()
    _wait(on_train_tab, 60, "the Train tab", interval=1)
    page.locator("#start-btn").click()
    page.wait_for_selector("#loss-chart", state="visible")
    label = _wait(lambda: page.locator("#run-select input").input_value(), 30, "the new run in the selector")
    return label.split(" · ")[-1]


def _abort_by_api(url: str, run_id: str) -> None:
    """Whatever the test reached: alice's long run must not outlive it (the server leaves trainers running)."""
    request = urllib.request.Request(f"{url}api/runs/{run_id}/abort", method="POST", headers={
        "Authorization": "Basic " + base64.b64encode(b"alice:pw1").decode()})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            json.load(answer)
    except OSError:
        pass  # already ended: nothing to stop


def test_two_users_and_an_admin_share_one_queue(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEDECK_AUTH", ",".join(f"{n}:{p}" for n, p in LOGINS.items()))
    monkeypatch.setenv("TUNEDECK_ADMINS", "alice")
    server = Server(tmp_path / "runs", free_port(), tmp_path / "app.log")
    server.start()
    alices = None
    try:
        with sync_api.sync_playwright() as p:
            browser = launch_chromium(p)
            _, alice = _sign_in(browser, server.url, "alice")
            assert not alice.locator("#td-notice").is_visible()  # signed in: no open-server banner
            alices = _start(alice, epochs=200)  # long enough to still be running when bob's run queues
            _wait(lambda: alice.locator("#run-status [data-status='running']").count() == 1, 120,
                  "alice's run running")

            _, bob = _sign_in(browser, server.url, "bob")
            # A page opened while a run is live lands on it: wait for that before going to the form.
            _wait(lambda: bob.locator("#run-status [data-status='running']").is_visible(), 60,
                  "bob's page landing on alice's live run")
            # Abort is off on alice's run, and the line under the buttons says why.
            note = bob.locator("#run-actions-note")
            _wait(lambda: "alice's run: only alice or an admin may abort" in note.inner_text(), 30,
                  "the reason bob's buttons are off")
            assert bob.locator("#abort-btn").is_disabled() and alice.locator("#abort-btn").is_enabled()
            # Her own run: nothing to explain (waited for: a request in flight shows Gradio's timer there meanwhile).
            _wait(lambda: alice.locator("#run-actions-note").inner_text().strip() == "", 30, "alice's note empty")
            bobs = _start(bob)
            assert bobs != alices
            queue = bob.locator("#monitor-queue")
            _wait(lambda: re.search(rf"#1 .*{bobs[-6:]}.*· bob", queue.inner_text()), 30, "bob's run at #1")
            assert alices[-6:] in queue.inner_text()  # what it waits for: alice's running run
            assert bob.locator("#cancel-queued-btn").is_visible() and bob.locator("#cancel-queued-btn").is_enabled()
            assert not bob.locator("#move-up-btn").is_visible()  # bob is no admin

            # Alice, the admin, looking at bob's queued run: she may reorder and cancel it.
            alice.get_by_role("tab", name="Monitor").click()
            alice.locator("#run-select input").click()
            alice.get_by_role("option", name=re.compile(re.escape(bobs))).click()
            _wait(lambda: alice.locator("#move-up-btn").is_visible(), 30, "Move up for the admin")
            assert "#1" in alice.locator("#monitor-queue").inner_text()

            # Bob leaves the queue himself.
            bob.locator("#cancel-queued-btn").click()
            _wait(lambda: bob.locator("#run-status [data-status='aborted']").count() == 1, 30, "bob's run cancelled")
            _wait(lambda: "#1" not in queue.inner_text(), 30, "the queue empty again")
            browser.close()
    finally:
        if alices:
            _abort_by_api(server.url, alices)
        server.stop()
