"""Words for the after-training tabs: which model is loaded and by whom, evaluation results beside the
base model's, the samples table, merge notes. Pure functions of plain data (no gradio, no torch)."""

from __future__ import annotations

import html
import math
import re
import string
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

from trainer.run.layout import checkpoint_step

from .i18n import UI_TEXT, ZH, t

SAMPLE_COLUMNS = ["after.col_prompt", "after.col_reference", "after.col_base", "after.col_tuned"]
SAMPLE_HEADERS = [t(None, key) for key in SAMPLE_COLUMNS]
# The trainer's progress lines, notes and the chat worker's reasons are English sentences written by processes
# that know nothing of the page; these message keys' English text is their template, matched to show them in
# the page's language with their values (run ids, paths, numbers) carried over.
_MATCHED_PREFIXES = ("after.p_", "after.r_", "after.unloaded_by", "after.starting", "after.waiting")
_SENTENCES = {"reason", "detail", "note"}  # values that are sentences of their own ("a; b" included)
_FREE, _WORDS = ".*?", "[^;]*?"


@lru_cache(maxsize=None)
def _patterns() -> list[tuple[str, "re.Pattern[str]"]]:
    patterns = []
    for key, (english, _) in UI_TEXT.items():
        if not key.startswith(_MATCHED_PREFIXES):
            continue
        regex = "".join(re.escape(literal) + (f"(?P<{field}>{_FREE if field in _SENTENCES else _WORDS})" if field else "")
                        for literal, field, _, _ in string.Formatter().parse(english))
        patterns.append((key, re.compile(regex + r"\Z", re.DOTALL)))
    return patterns


def translate(lang: str | None, text: str, depth: int = 0) -> str:
    """A sentence from the trainer or the chat worker in the page's language (unknown ones stay as they are)."""
    if lang != ZH or not text or depth > 3:
        return text
    for key, pattern in _patterns():
        found = pattern.match(text)
        if found:
            return t(lang, key, **{k: translate(lang, v, depth + 1) for k, v in found.groupdict().items()})
    if "; " in text:
        return "；".join(translate(lang, part, depth + 1) for part in text.split("; "))
    return text


def weights_label(name: str, lang: str | None = None) -> str:
    step = checkpoint_step(name)
    return t(lang, "after.final_weights") if step is None else t(lang, "after.step_weights", name=name, step=step)


def weights_choices(names: Sequence[str], lang: str | None = None) -> list[tuple[str, str]]:
    return [(weights_label(name, lang), name) for name in names]


def ago(when: Optional[float], lang: str | None = None) -> str:
    if not when:
        return ""
    seconds = max(0, int(time.time() - when))
    return t(lang, "ac_seconds_ago", n=seconds) if seconds < 120 else t(lang, "ac_minutes_ago", n=seconds // 60)


def chat_status_markdown(status: dict[str, Any], lang: str | None = None) -> str:
    """One line: what the shared chat worker holds, who loaded it, or why it holds nothing."""
    loading = status.get("loading")
    if loading:
        who, what = loading
        return t(lang, "ac_loading", who=html.escape(who), what=html.escape(what))
    info = status.get("loaded")
    if not info:
        reason = status.get("unload_reason")
        return t(lang, "ac_none_because", reason=html.escape(translate(lang, reason))) if reason else t(lang, "ac_none")
    run = Path(str(info.get("run_dir", ""))).name
    bits = t(lang, "ac_bits", bits=info["loaded_in_bits"]) if info.get("loaded_in_bits") else ""
    who = status.get("loaded_by")
    by = t(lang, "ac_by", who=html.escape(who), ago=ago(status.get("loaded_at"), lang)) if who else ""
    label = translate(lang, str(info.get("label", info.get("name"))))
    return t(lang, "ac_loaded", run=html.escape(run), label=html.escape(label),
             base=html.escape(str(info.get("base_model"))), method=html.escape(str(info.get("method"))),
             device=html.escape(str(info.get("device"))), precision=html.escape(str(info.get("precision"))),
             bits=bits, by=by)


def _number(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.4g}"


def _change(tuned: Any, base: Any) -> str:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (tuned, base)) or not base:
        return ""
    return f"{100 * (tuned - base) / base:+.1f}%"


def evaluation_markdown(results: Sequence[dict[str, Any]], title: str = "", lang: str | None = None,
                        empty: str = "after.no_eval_runs") -> str:
    """The stored evaluations of a run: loss and perplexity beside the base model's, newest last."""
    if not results:
        return f"{title}{t(lang, empty)}" if title else ""
    lines = [title.rstrip(), ""] if title else []
    lines += [t(lang, "after.eval_head"), "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {html.escape(translate(lang, str(r.get('weights'))))} | "
                     f"{html.escape(translate(lang, str(r.get('dataset'))))} | "
                     f"{r.get('rows', 'n/a')} | {_number(r.get('eval_loss'))} | {_number(r.get('base_eval_loss'))} | "
                     f"{_number(r.get('perplexity'))} | {_number(r.get('base_perplexity'))} | "
                     f"{_change(r.get('perplexity'), r.get('base_perplexity'))} |")
    return "\n".join(lines)


def samples_rows(result: Optional[dict[str, Any]]) -> list[list[str]]:
    """The greedy answers of an evaluation: prompt, reference, base answer, tuned answer."""
    samples = (result or {}).get("samples") or []
    return [[str(s.get(k, "")) for k in ("prompt", "reference", "base", "tuned")] for s in samples
            if isinstance(s, dict)]


def samples_table(result: Optional[dict[str, Any]], lang: str | None = None) -> dict[str, Any]:
    """The samples as the page's table: its headers in the page's language and the rows."""
    return {"headers": [t(lang, key) for key in SAMPLE_COLUMNS], "data": samples_rows(result)}


def merge_markdown(out_dir: str, notes: Sequence[str], gguf: Optional[str] = None, lang: str | None = None) -> str:
    lines = [t(lang, "after.merged_to", path=out_dir)]
    if gguf:
        lines.append(t(lang, "after.gguf_file", path=gguf))
    if notes:
        lines.append("\n".join(f"- {html.escape(translate(lang, 'note: ' + note))}" for note in notes))
    return "\n\n".join(lines)


def files_markdown(files: Sequence[tuple[str, Any]], lang: str | None = None) -> str:
    return "\n".join(f"- `{name}`" + ("" if path else t(lang, "after.made_at_push")) for name, path in files)


def progress_markdown(lines: Sequence[str], limit: int = 6, lang: str | None = None) -> str:
    """The last few progress lines of a command, the newest in bold, in the page's language."""
    shown = [html.escape(translate(lang, line)) for line in list(lines)[-limit:]]
    if not shown:
        return ""
    return "<br>".join(shown[:-1] + [f"<b>{shown[-1]}</b>"])
