"""The Data and Presets tabs in a real browser: headless Chromium (Debian's) driving a real `python app.py`.

Data tab: the demo dataset's preview (trained tokens highlighted, masked ones dimmed) and its token-length
histogram; then a small JSONL uploaded through the page, one line of it broken: the good rows are shown
and counted in the histogram, and the message names line 3. Presets: save the form under a name, find it
in the preset list, load it back; a name like `../x` is refused with a plain message and writes nothing
outside the presets folder. Waits are conditions with timeouts, never fixed sleeps of the thing tested.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser_util import CHROMIUM, CHROMIUM_MISSING, Server, free_port, open_dashboard, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]

if not Path(CHROMIUM).exists():
    pytest.skip(CHROMIUM_MISSING, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

GOOD_WORDS = ["apple", "pear", "plum", "fig"]


def _write_small_jsonl(path: Path) -> Path:
    """Four alpaca rows and, on line 3, a line that is not JSON."""
    lines = [json.dumps({"instruction": f"Say {w} twice.", "input": "", "output": f"{w} {w}"}) for w in GOOD_WORDS]
    lines.insert(2, '{"instruction": "broken row", ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _histogram(page) -> dict:
    """The drawn length histogram: bars (sum of counts) and title, from the plotly element itself."""
    return page.evaluate(
        """() => { const el = document.querySelector('#length-histogram .js-plotly-plot');
                   if (!el || !el.data || !el.data.length) return {rows: 0, title: '', bars: 0};
                   const y = el.data[0].y || [];
                   const t = el.layout && el.layout.title;
                   return {rows: Array.from(y).reduce((a, b) => a + b, 0), bars: y.length,
                           title: (t && (t.text || t)) || '',
                           drawn: el.querySelectorAll('.bars .point').length}; }""")


def _preview_styles(page) -> dict:
    """What the rows really look like: computed styles of a trained and a masked token span."""
    return page.evaluate(
        """() => { const st = (sel) => { const e = document.querySelector(sel); if (!e) return null;
                                           const s = getComputedStyle(e);
                                           return {bg: s.backgroundColor, opacity: parseFloat(s.opacity),
                                                   underline: s.textDecorationLine}; };
                   return {loss: st('#dataset-rows .td-row pre .td-loss'),
                           masked: st('#dataset-rows .td-row pre .td-masked')}; }""")


def _check_preview_rows(page) -> None:
    rows = page.locator("#dataset-rows .td-row")
    wait_for(lambda: rows.count() >= 1, 60, "preview rows")
    assert page.locator("#dataset-rows .td-row pre .td-loss").count() >= rows.count()
    assert page.locator("#dataset-rows .td-row pre .td-masked").count() >= rows.count()
    styles = _preview_styles(page)
    # Trained tokens: green background and underlined; masked ones: dimmed.
    assert styles["loss"]["bg"] not in ("rgba(0, 0, 0, 0)", "transparent"), styles
    assert "underline" in styles["loss"]["underline"], styles
    assert styles["masked"]["opacity"] < 1, styles
    assert styles["loss"]["opacity"] == 1, styles


def _toast(page, text: str):
    toast = page.locator("[data-testid='toast-body']", has_text=text)
    toast.first.wait_for(state="visible", timeout=30_000)
    return toast.first.inner_text()


def _set_epochs(page, value: str) -> None:
    epochs = page.locator("#field-num_train_epochs input")
    epochs.fill(value)
    epochs.press("Tab")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_data_preview_upload_and_presets(tmp_path):
    runs_dir = tmp_path / "runs"
    presets_dir = runs_dir / "presets"
    upload = _write_small_jsonl(tmp_path / "small.jsonl")
    server = Server(runs_dir, free_port(), tmp_path / "app.log")
    server.start()
    try:
        with sync_api.sync_playwright() as p:
            browser, page = open_dashboard(p, server.url)

            # 1. The demo dataset (the page opens on the demo preset): masks and the histogram.
            page.get_by_role("tab", name="Data").click()
            page.locator("#dataset-preview-btn").click()
            _check_preview_rows(page)
            assert "demo" in page.locator("#dataset-summary").inner_text()
            hist = wait_for(lambda: (h := _histogram(page))["rows"] > 0 and h, 60, "the length histogram")
            assert hist["bars"] >= 1 and hist["drawn"] >= 1, hist
            assert "Tokenized row lengths" in hist["title"], hist

            # 2. An uploaded file with a broken line 3: the good rows, and the message naming line 3.
            page.locator("#dataset-upload input[type=file]").set_input_files(str(upload))
            summary = page.locator("#dataset-summary")
            text = wait_for(lambda: "small.jsonl" in (t := summary.inner_text()) and "line 3" in t and t, 90,
                            "the uploaded file's summary naming line 3")
            assert "Traceback" not in text
            assert "invalid JSON" in text, text
            assert "small.jsonl" in page.locator("#dataset-source").inner_text()
            assert (runs_dir / "uploads" / "local" / "small.jsonl").is_file()  # the user's own upload folder
            train_rows = int(re.search(r"(\d+) training rows", text).group(1))
            assert 1 <= train_rows < len(GOOD_WORDS) + 1, text  # the good rows only (a few go to validation)
            rows = page.locator("#dataset-rows .td-row")
            wait_for(lambda: rows.count() == train_rows, 30, f"{train_rows} preview rows of the upload")
            _check_preview_rows(page)
            rows_text = page.locator("#dataset-rows").inner_text()
            assert "broken row" not in rows_text
            assert sum(w in rows_text for w in GOOD_WORDS) == train_rows, rows_text
            heads = page.locator("#dataset-rows .td-row-head").all_inner_texts()
            assert not any(h.startswith("line 3 ") for h in heads), heads
            hist = wait_for(lambda: (h := _histogram(page))["rows"] == train_rows and h, 30,
                            f"the histogram to count the upload's {train_rows} rows")
            assert f"{train_rows} rows" in hist["title"], hist

            # 3. Presets: save the form under a name, see it listed, change the form, load it back.
            page.get_by_role("tab", name="Train").click()
            _set_epochs(page, "7")
            page.locator("#save-preset-name input, #save-preset-name textarea").first.fill("my-recipe")
            page.locator("#save-preset-btn").click()
            _toast(page, "Saved preset 'my-recipe'")
            wait_for(lambda: "my-recipe" in page.locator("#preset-note").inner_text(), 30, "the preset note")
            saved = presets_dir / "my-recipe.yaml"
            assert saved.is_file(), _files(tmp_path)
            assert re.search(r"^num_train_epochs: 7(\.0)?$", saved.read_text(encoding="utf-8"), re.M)
            _set_epochs(page, "9")
            wait_for(lambda: page.locator("#field-num_train_epochs input").input_value() == "9", 10, "epochs 9")

            page.get_by_role("tab", name="Presets").click()
            page.locator("#presets-select input").click()
            option = page.get_by_role("option", name=re.compile(r"^my-recipe \(yours\)"))
            option.first.wait_for(state="visible", timeout=30_000)
            option.first.click()
            wait_for(lambda: "yours" in page.locator("#presets-details").inner_text(), 30, "the preset's details")
            page.locator("#presets-load-btn").click()
            page.wait_for_selector("#field-num_train_epochs input", state="visible", timeout=30_000)
            wait_for(lambda: page.locator("#field-num_train_epochs input").input_value() == "7", 30,
                     "the saved preset's epochs back in the form")
            assert page.locator("#field-dataset input, #field-dataset textarea").first.input_value().endswith(
                "small.jsonl")

            # A name that is a path: a plain message, no traceback, no file written anywhere.
            before = _files(tmp_path)
            page.locator("#save-preset-name input, #save-preset-name textarea").first.fill("../x")
            page.locator("#save-preset-btn").click()
            message = _toast(page, "../x")
            assert "cannot contain" in message and "Traceback" not in message, message
            assert not page.locator("[data-testid='toast-body']", has_text="Saved preset '../x'").count()
            after = _files(tmp_path)
            assert {f for f in after - before if f.endswith((".yaml", ".yml")) or "x" == Path(f).stem} == set(), \
                after - before
            assert not (runs_dir / "x.yaml").exists() and not (tmp_path / "x.yaml").exists()
            assert sorted(q.name for q in presets_dir.iterdir()) == ["my-recipe.yaml"]
            browser.close()
    finally:
        server.stop()
    log = server.log_text()
    assert "Traceback" not in log, log[-4000:]
