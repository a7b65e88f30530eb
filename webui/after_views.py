"""Words for the after-training tabs: which model is loaded and by whom, evaluation results beside the
base model's, the samples table, merge notes. Pure functions of plain data (no gradio, no torch)."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from trainer.run.layout import checkpoint_step

from .i18n import t

SAMPLE_HEADERS = ["prompt", "reference", "base answer", "tuned answer"]


def weights_label(name: str) -> str:
    step = checkpoint_step(name)
    return "final adapter / model" if step is None else f"{name} (step {step})"


def weights_choices(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(weights_label(name), name) for name in names]


def _ago(when: Optional[float], lang: str | None = None) -> str:
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
        return t(lang, "ac_none_because", reason=html.escape(reason)) if reason else t(lang, "ac_none")
    run = Path(str(info.get("run_dir", ""))).name
    bits = t(lang, "ac_bits", bits=info["loaded_in_bits"]) if info.get("loaded_in_bits") else ""
    who = status.get("loaded_by")
    by = t(lang, "ac_by", who=html.escape(who), ago=_ago(status.get("loaded_at"), lang)) if who else ""
    return t(lang, "ac_loaded", run=html.escape(run), label=html.escape(str(info.get("label", info.get("name")))),
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


def evaluation_markdown(results: Sequence[dict[str, Any]], title: str = "") -> str:
    """The stored evaluations of a run: loss and perplexity beside the base model's, newest last."""
    if not results:
        return f"{title}No evaluation yet: run one in the *Evaluate & export* tab." if title else ""
    lines = [title.rstrip(), ""] if title else []
    lines += ["| weights | data | rows | eval loss | base eval loss | perplexity | base perplexity | change |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {html.escape(str(r.get('weights')))} | {html.escape(str(r.get('dataset')))} | "
                     f"{r.get('rows', 'n/a')} | {_number(r.get('eval_loss'))} | {_number(r.get('base_eval_loss'))} | "
                     f"{_number(r.get('perplexity'))} | {_number(r.get('base_perplexity'))} | "
                     f"{_change(r.get('perplexity'), r.get('base_perplexity'))} |")
    return "\n".join(lines)


def samples_rows(result: Optional[dict[str, Any]]) -> list[list[str]]:
    """The greedy answers of an evaluation: prompt, reference, base answer, tuned answer."""
    samples = (result or {}).get("samples") or []
    return [[str(s.get(k, "")) for k in ("prompt", "reference", "base", "tuned")] for s in samples
            if isinstance(s, dict)]


def merge_markdown(out_dir: str, notes: Sequence[str], gguf: Optional[str] = None) -> str:
    lines = [f"Merged model written to `{out_dir}` (sharded safetensors, tokenizer, generation config): "
             "`AutoModelForCausalLM.from_pretrained` loads it alone."]
    if gguf:
        lines.append(f"GGUF: `{gguf}`")
    if notes:
        lines.append("\n".join(f"- note: {html.escape(note)}" for note in notes))
    return "\n\n".join(lines)


def files_markdown(files: Sequence[tuple[str, Any]]) -> str:
    return "\n".join(f"- `{name}`" + ("" if path else " (made at push time)") for name, path in files)


def progress_markdown(lines: Sequence[str], limit: int = 6) -> str:
    """The last few progress lines of a command, the newest in bold."""
    shown = [html.escape(line) for line in list(lines)[-limit:]]
    if not shown:
        return ""
    return "<br>".join(shown[:-1] + [f"<b>{shown[-1]}</b>"])
