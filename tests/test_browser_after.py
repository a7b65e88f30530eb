"""After training in a real browser: headless Chromium (Debian's) driving a real `python app.py`.

A demo run finishes first (`python -m trainer train`, seconds), the server adopts it from the runs root.
Chat: pick the run, Load (progress, then who loaded what), send one prompt to both models and watch both
columns grow while the replies stream; the server's own process has no torch mapped (the worker has it).
The Chat screenshot for the README (docs/chat.png, refreshed with TUNEDECK_UPDATE_SCREENSHOT=1). Then
Evaluate & export: make the adapter zip and download it through the page; it holds adapter_config.json.
Waits are conditions with timeouts, never fixed sleeps of the thing tested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from browser_util import CHROMIUM, CHROMIUM_MISSING, ROOT, Server, free_port, open_dashboard, wait_for

from trainer.run.layout import new_run_id

pytestmark = [pytest.mark.slow, pytest.mark.browser]

if not Path(CHROMIUM).exists():
    pytest.skip(CHROMIUM_MISSING, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

SCREENSHOT = ROOT / "docs" / "chat.png"
CONFIG = """model_name_or_path: demo
dataset: demo
max_samples: 48
val_size: 8
cutoff_len: 64
per_device_train_batch_size: 4
max_steps: 6
learning_rate: 0.02
warmup_ratio: 0.0
eval_strategy: "no"
save_steps: 3
logging_steps: 1
gradient_checkpointing: false
"""


WATCH_COLUMNS_JS = """() => {
    window.tdSeen = {'chat-tuned': [], 'chat-base': []};
    for (const id of Object.keys(window.tdSeen)) {
        const el = document.querySelector('#' + id);
        new MutationObserver(() => window.tdSeen[id].push(el.innerText.length))
            .observe(el, {subtree: true, childList: true, characterData: true});
    }
}"""


def _finished_demo_run(runs_dir: Path, tmp_path: Path) -> str:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    run_id = new_run_id()
    done = subprocess.run([sys.executable, "-m", "trainer", "train", str(config), "--run-dir", str(runs_dir / run_id)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return run_id


def _pick(page, dropdown: str, option: re.Pattern) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option).first.click()


def _column_text(page, elem_id: str) -> str:
    return page.evaluate("(id) => { const el = document.querySelector(`#${id}`); return el ? el.innerText : ''; }",
                         elem_id)


def _maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text(errors="replace")


def test_chat_with_both_models_and_download_the_adapter(tmp_path):
    runs_dir = tmp_path / "runs"
    run_id = _finished_demo_run(runs_dir, tmp_path)
    server = Server(runs_dir, free_port(), tmp_path / "app.log")
    server.start()
    try:
        with sync_api.sync_playwright() as p:
            browser, page = open_dashboard(p, server.url)
            page.get_by_role("tab", name="Chat").click()
            _pick(page, "#chat-run", re.compile(re.escape(run_id)))
            wait_for(lambda: "adapter" in page.locator("#chat-weights input").input_value(), 30,
                     "the run's weights offered")
            page.locator("#chat-load").click()
            wait_for(lambda: "loaded by" in page.locator("#chat-status").inner_text(), 240, "the model to load")
            assert "final adapter" in page.locator("#chat-status").inner_text()

            page.locator("#chat-settings").get_by_text("Generation settings").click()
            max_tokens = page.locator("#chat-max-new-tokens input[type='number']")
            max_tokens.fill("64")
            max_tokens.press("Enter")
            page.locator("#chat-system textarea").fill("Answer briefly.")
            prompt = "What is the capital of Germany?"
            page.locator("#chat-message textarea").fill(prompt)
            # Every change the page makes to a column is recorded as it happens (no polling gaps).
            page.evaluate(WATCH_COLUMNS_JS)
            page.locator("#chat-send").click()
            wait_for(lambda: all(f"{m}:" in page.locator("#chat-timing").inner_text() for m in ("tuned", "base")), 180,
                     "both replies to end")
            seen = {column: set(lengths) for column, lengths in page.evaluate("() => window.tdSeen").items()}
            tuned, base = _column_text(page, "chat-tuned"), _column_text(page, "chat-base")
            assert prompt in tuned and prompt in base
            # Each column was seen at several lengths on its way to the end: the text grew as it streamed.
            assert len(seen["chat-tuned"]) >= 3 and len(seen["chat-base"]) >= 3, seen
            assert tuned.replace(prompt, "").strip() and base.replace(prompt, "").strip()
            assert not _maps_torch(server.proc.pid)  # the server process never loaded torch; the worker did

            shot = tmp_path / "chat.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 30_000
            if os.environ.get("TUNEDECK_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
                shutil.copyfile(shot, SCREENSHOT)

            page.get_by_role("tab", name="Evaluate & export").click()
            _pick(page, "#export-run", re.compile(re.escape(run_id)))
            wait_for(lambda: "owner" in page.locator("#export-owner").inner_text(), 30, "the run's owner note")
            page.locator("#export-zip-btn").click()
            link = page.locator("#export-zip-file a").first
            link.wait_for(timeout=60_000)
            with page.expect_download() as download:
                link.click()
            saved = tmp_path / "adapter.zip"
            download.value.save_as(saved)
            with zipfile.ZipFile(saved) as archive:
                assert any(name.endswith("/adapter_config.json") for name in archive.namelist())
            browser.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log_tail(), server.log_tail()
