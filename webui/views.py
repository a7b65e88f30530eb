"""Words and small HTML for the page, as pure functions (no gradio): plan panel, progress, runs table, diffs."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from trainer.config import TrainConfig
from trainer.plan.mfu import MFU_REASONS
from trainer.plan.resolve import BATCHING_REASONS
from trainer.run.series import RunSeries

from .charts import Progress, format_duration
from .i18n import UI_TEXT, ZH, t
from .i18n_fields import MEMORY_PARTS_ZH, PRESET_ZH
from .i18n_plan import message_zh, plan_sentence_zh

STATUS_COLOURS = {
    "queued": "#6b7280", "running": "#2563eb", "finished": "#16a34a", "aborted": "#d97706",
    "failed": "#dc2626", "interrupted": "#9333ea",
}

RUNS_TABLE_COLUMNS = ["col.id", "col.name", "col.status", "col.model", "col.dataset", "col.method", "col.best",
                      "col.step", "col.duration", "col.owner", "col.created"]
RUNS_TABLE_HEADERS = [t(None, key) for key in RUNS_TABLE_COLUMNS]


def runs_table_headers(lang: str | None = None) -> list[str]:
    return [t(lang, key) for key in RUNS_TABLE_COLUMNS]


def status_word(status: str | None, lang: str | None = None) -> str:
    key = f"status.{status or 'unknown'}"
    return t(lang, key) if key in UI_TEXT else str(status)


def short(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters, for a toast or a note."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def error_text(exc: BaseException, lang: str | None = None) -> str:
    """An exception's message for the page, in its language (the trainer's and the API's words are English)."""
    return say(str(exc) or exc.__class__.__name__, lang)


def say(text: str, lang: str | None = None) -> str:
    """A message the trainer, the job manager or a check wrote in English, in the page's language."""
    return message_zh(text) if lang == ZH else text


def md_lines(text: str) -> str:
    """Plain text as Markdown that keeps its line breaks and shows no markup of its own."""
    return "<br>".join(html.escape(line) for line in str(text).splitlines())


def hardware_label(hw: Any) -> str:
    if hw.device != "cuda":
        return "CPU"
    return f"{hw.gpu_name or 'GPU'} ({hw.gpu_total_gb:g} GB)" if hw.gpu_total_gb else (hw.gpu_name or "GPU")


def preset_words(name: str | None, title: str, description: str, lang: str | None = None) -> tuple[str, str]:
    """A built-in preset's title and description in the page's language (a user's own preset, name None
    or not built in, keeps the words it was given)."""
    return PRESET_ZH[name] if lang == ZH and name in PRESET_ZH else (title, description)


def preset_title(name: str | None, title: str, lang: str | None = None) -> str:
    return preset_words(name, title, "", lang)[0]


def preset_note(meta: dict[str, Any], ignored: dict[str, str] | None = None, lang: str | None = None) -> str:
    """The preset's title and description, and the keys that were not loaded (with why)."""
    name = meta.get("name")
    title = meta.get("title") or name or ""
    description = " ".join(str(meta.get("description") or "").split())
    title, description = preset_words(name, str(title), description, lang)
    note = f"**{html.escape(str(title))}** — {html.escape(description)}" if title else ""
    if ignored:
        keys = ", ".join(f"`{html.escape(k)}` ({html.escape(v)})" for k, v in ignored.items())
        note += "\n\n" + t(lang, "not_loaded", keys=keys)
    return note


def status_badge(status: str | None, detail: str = "", lang: str | None = None) -> str:
    status = status or "unknown"
    colour = STATUS_COLOURS.get(status, "#6b7280")
    extra = f" <span class='td-detail'>{html.escape(say(detail, lang))}</span>" if detail else ""
    return (f"<span class='td-status' data-status='{html.escape(status)}' "
            f"style='background:{colour}'>{html.escape(status_word(status, lang))}</span>{extra}")


def progress_html(p: Progress, status: str | None, lang: str | None = None) -> str:
    fraction = p.fraction
    pct = 0.0 if fraction is None else fraction * 100
    total = "?" if p.total is None else str(p.total)
    colour = STATUS_COLOURS.get(status or "", "#2563eb")
    remaining = format_duration(p.remaining_s) if status == "running" else "—"
    step = t(lang, "progress", step=f"<span id='td-step'>{p.step}</span>", total=total)
    return (
        "<div class='td-progress'>"
        f"<div class='td-bar'><div class='td-fill' style='width:{pct:.1f}%;background:{colour}'></div></div>"
        f"<div class='td-progress-text'><b>{step}</b>"
        f"{f' ({pct:.0f}%)' if fraction is not None else ''} · {t(lang, 'elapsed', value=format_duration(p.elapsed_s))}"
        f" · {t(lang, 'remaining', value=remaining)}</div></div>")


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def _fmt(value: Any, lang: str | None = None) -> str:
    if value is None:
        return t(lang, "plan.unknown")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _gb(value: Any) -> str:
    """GB with a tenth for real models and two significant digits for the tiny demo (0.04 GB, not 0.0)."""
    value = float(value)
    return f"{value:.1f} GB" if value >= 1 else f"{value:.2g} GB"


def _verdict(verdict: Any, lang: str | None) -> str:
    key = f"verdict.{verdict}"
    return t(lang, key) if key in UI_TEXT else str(verdict)


def _breakdown_part(key: str, lang: str | None) -> str:
    return MEMORY_PARTS_ZH.get(key, key) if lang == ZH else key.replace("_", " ")


def _plan_sentences(sentences: Sequence[str], lang: str | None) -> list[str]:
    """The plan's sentences (summary, warnings) in the page's language, their numbers kept."""
    return [plan_sentence_zh(s) if lang == ZH else s for s in sentences]


def _rate(tokens_per_second: float) -> str:
    """An estimate's tokens/s to three figures: 3,030, not 3,031."""
    return f"{float(f'{tokens_per_second:.3g}'):,.0f}"


def _throughput(d: dict[str, Any], lang: str | None) -> str:
    """Expected tokens/s and MFU (an estimate: trainer/plan/mfu.py), or why the plan has none."""
    flops = t(lang, "plan.flops", value=f"{d['flops_per_token']:.3g}") if d.get("flops_per_token") else ""
    if d.get("expected_tokens_per_second"):
        return t(lang, "plan.throughput_value", tokens=_rate(d["expected_tokens_per_second"]),
                 mfu=f"{d['expected_mfu']:.1%}", gpu=d.get("gpu_model", "GPU"),
                 peak=f"{d['gpu_peak_tflops']:g}") + flops
    by_gpu = d.get("expected_tokens_per_second_by_gpu")
    if isinstance(by_gpu, dict) and by_gpu:
        ranked = sorted(by_gpu.items(), key=lambda kv: kv[1])
        return t(lang, "plan.throughput_by_gpu", rates=" · ".join(f"{name} ≈ {_rate(v)}" for name, v in ranked),
                 mfu=f"{d['expected_mfu']:.1%}") + flops
    reason = d.get("mfu_reason")
    return t(lang, f"mfu.{reason}") + flops if reason in MFU_REASONS else ""


def plan_markdown(plan: Any, *, num_samples: int | None, dataset_note: str = "", hardware_label: str = "",
                  lang: str | None = None, on_gpu: bool = True) -> str:
    """The run plan panel: the numbers that decide the run, in words, then the plan's warnings.

    Planned for a CPU, the per-GPU verdicts and the GPU memory breakdown say nothing about this machine
    and are left out."""
    d = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
    on, off = t(lang, "plan.on"), t(lang, "plan.off")
    rows = [
        (t(lang, "plan.effective_batch"), t(lang, "plan.effective_batch_value", total=d["effective_batch_size"],
                                            micro=d["micro_batch_size"], accumulation=d["gradient_accumulation_steps"],
                                            devices=d["num_devices"])),
        (t(lang, "plan.training_rows"), _fmt(num_samples, lang) + (f" ({say(dataset_note, lang)})" if dataset_note else "")),
        (t(lang, "plan.steps_per_epoch"), _fmt(d.get("steps_per_epoch"), lang)),
        (t(lang, "plan.total_steps"), _fmt(d.get("total_steps"), lang)),
        (t(lang, "plan.warmup_steps"), _fmt(d.get("warmup_steps"), lang)),
        (t(lang, "plan.epochs"), _fmt(d.get("epochs_effective"), lang)),
        (t(lang, "plan.precision"), f"{d.get('precision')} · {d.get('attn_implementation')}"),
        (t(lang, "plan.packing"), f"{on if d.get('packing') else off} · {on if d.get('group_by_length') else off}"
                                  + (t(lang, f"batching.{d['batching_reason']}", attention=d.get("attn_implementation"))
                                     if d.get("batching_reason") in BATCHING_REASONS else "")),
    ]
    if d.get("padding_efficiency") is not None:
        rows.append((t(lang, "plan.real_tokens"), f"{d['padding_efficiency']:.0%}"))
    throughput = _throughput(d, lang)
    if throughput:
        rows.append((t(lang, "plan.throughput"), throughput))
    if d.get("trainable_parameters") and d.get("total_parameters"):
        trainable, total = d["trainable_parameters"], d["total_parameters"]
        rows.append((t(lang, "plan.trainable"), t(lang, "plan.of", part=_count(trainable), whole=_count(total),
                                                  share=f"{trainable / total:.2%}")))
    if d.get("memory_estimate_gb") is not None:
        memory = _gb(d["memory_estimate_gb"])
        if d.get("memory_gpu_gb"):
            memory += t(lang, "plan.memory_of", total=f"{d['memory_gpu_gb']:g}")
            if d.get("memory_share_of_gpu") is not None:
                memory += f" ({d['memory_share_of_gpu']:.0%})"
        verdict = d.get("memory_verdict")
        if verdict:
            memory += f" — {_verdict(verdict, lang)}"
        rows.append((t(lang, "plan.memory"), memory))
        if d.get("largest_micro_batch"):
            text = str(d["largest_micro_batch"])
            if d.get("suggested_gradient_accumulation"):
                text += t(lang, "plan.with_accumulation", value=d["suggested_gradient_accumulation"])
            rows.append((t(lang, "plan.largest_micro"), text))
        by_gpu = d.get("memory_verdict_by_gpu")
        if on_gpu and isinstance(by_gpu, dict) and by_gpu:
            rows.append((t(lang, "plan.by_gpu"), " · ".join(f"{k}: {_verdict(v, lang)}" for k, v in by_gpu.items())))
        breakdown = d.get("memory_breakdown_gb")
        if on_gpu and isinstance(breakdown, dict) and breakdown:
            parts = sorted(breakdown.items(), key=lambda kv: -float(kv[1] or 0))
            rows.append((t(lang, "plan.breakdown"), " · ".join(f"{_breakdown_part(k, lang)} {_gb(v)}"
                                                               for k, v in parts if v)))
    if hardware_label:
        rows.append((t(lang, "plan.planned_for"), hardware_label))
    lines = [f"| {t(lang, 'run_plan')} | |", "|---|---|"] + [f"| {k} | {html.escape(str(v))} |" for k, v in rows]
    out = "\n".join(lines)
    summary = _plan_sentences(d.get("summary") or [], lang)
    if summary:
        out += "\n\n" + "\n".join(f"- {html.escape(s)}" for s in summary)
    warnings = _plan_sentences(d.get("warnings") or [], lang)
    if warnings:
        out += f"\n\n**{t(lang, 'plan.warnings')}**\n\n" + "\n".join(f"- ⚠ {html.escape(w)}" for w in warnings)
    return out


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def run_duration(info: Any, now: float | None = None) -> float | None:
    """Time spent running, every attempt of a resumed run counted (the registry's earlier ones + this one)."""
    start = getattr(info, "started_at", None)
    if not start:
        return None
    end = getattr(info, "finished_at", None) or (now or time.time())
    return (getattr(info, "earlier_attempts_s", None) or 0.0) + max(0.0, end - start)


def runs_table(infos: Iterable[Any], text_filter: str = "", statuses: Sequence[str] = (),
               lang: str | None = None) -> list[list[Any]]:
    """Rows for the runs table, filtered by free text (any column) and by status."""
    rows = []
    needle = (text_filter or "").strip().lower()
    for info in infos:
        if statuses and info.status not in statuses:
            continue
        best = info.best_loss
        row = [info.id, info.name, status_word(info.status, lang), info.model or "", info.dataset or "",
               info.method or "",
               "" if best is None or not math.isfinite(best) else round(best, 4),
               f"{info.step or 0}/{info.total_steps or '?'}",
               format_duration(run_duration(info)), info.owner, _when(info.created_at)]
        if needle and not any(needle in str(cell).lower() for cell in row):
            continue
        rows.append(row)
    return rows


def run_choice_label(info: Any, lang: str | None = None) -> str:
    return f"{info.name} · {status_word(info.status, lang)} · {info.id}"


def config_diff_markdown(configs: Sequence[tuple[str, TrainConfig | None]], lang: str | None = None) -> str:
    """A side-by-side table of the fields on which the configs differ."""
    usable = [(name, cfg.to_dict()) for name, cfg in configs if cfg is not None]
    if len(usable) < 2:
        return t(lang, "compare_need_two")
    keys = [k for k in usable[0][1] if len({repr(data.get(k)) for _, data in usable}) > 1]
    if not keys:
        return t(lang, "configs_identical")
    header = f"| {t(lang, 'diff_field')} | " + " | ".join(html.escape(name) for name, _ in usable) + " |"
    sep = "|---|" + "---|" * len(usable)
    body = [f"| `{k}` | " + " | ".join(html.escape(_fmt(data.get(k))) for _, data in usable) + " |" for k in keys]
    return "\n".join([header, sep, *body])


def log_tail_text(lines: Sequence[str], lang: str | None = None) -> str:
    return "\n".join(lines) if lines else t(lang, "no_output")


def log_tail_html(lines: Sequence[str], lang: str | None = None) -> str:
    """The log tail as a box that stays scrolled to its newest line: a column-reverse flex box keeps its
    scroll anchored at the bottom, so the last line shows without any script."""
    return (f"<div class='td-log' data-lines='{len(lines)}'><pre>"
            f"{html.escape(log_tail_text(lines, lang))}</pre></div>")


def run_summary_markdown(info: Any, series: RunSeries, lang: str | None = None) -> str:
    """Reason and advice of a failed run, and the trainer's messages."""
    parts = []
    status = series.status or {}
    if status.get("status") == "finished":
        bits = []
        if status.get("adapter"):
            bits.append(t(lang, "saved_to", path=html.escape(str(status["adapter"]))))
        best = status.get("best_eval_loss")
        if isinstance(best, (int, float)):
            bits.append(t(lang, "best_eval", value=f"{best:.4g}"))
        if status.get("best_checkpoint"):
            bits.append(t(lang, "best_checkpoint", name=html.escape(Path(str(status["best_checkpoint"])).name)))
        colon, comma = ("：", "，") if lang == ZH else (": ", ", ")
        parts.append(t(lang, "finished_note") + (colon + comma.join(bits) if bits else "" if lang == ZH else "."))
        if status.get("adapter"):  # what a newcomer does with it next, where the page does it
            parts.append(t(lang, "finished_next", chat=t(lang, "tab_chat"), export=t(lang, "tab_export")))
    if status.get("status") in ("failed", "interrupted", "aborted") and status.get("reason"):
        word = status_word(status["status"], lang)
        parts.append(t(lang, "reason_note", status=word[:1].upper() + word[1:],
                       reason=html.escape(say(str(status["reason"]), lang))))
    advice = status.get("advice") or []
    if isinstance(advice, list) and advice:
        parts.append("\n".join(f"- {html.escape(say(str(a), lang))}" for a in advice))
    for message in series.messages[-5:]:
        text = str(message.get("text", ""))
        parts.append(f"ℹ {html.escape(say(text, lang))}")
    return "\n\n".join(parts)
