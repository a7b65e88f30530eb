"""Words and small HTML for the page, as pure functions (no gradio): plan panel, progress, runs table, diffs."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from trainer.config import TrainConfig
from trainer.run.series import RunSeries

from .charts import Progress, format_duration

STATUS_COLOURS = {
    "queued": "#6b7280", "running": "#2563eb", "finished": "#16a34a", "aborted": "#d97706",
    "failed": "#dc2626", "interrupted": "#9333ea",
}

RUNS_TABLE_HEADERS = ["run id", "name", "status", "model", "dataset", "method", "best train loss", "step",
                      "duration", "owner", "created"]


def short(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters, for a toast or a note."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def error_text(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


def md_lines(text: str) -> str:
    """Plain text as Markdown that keeps its line breaks and shows no markup of its own."""
    return "<br>".join(html.escape(line) for line in str(text).splitlines())


def hardware_label(hw: Any) -> str:
    if hw.device != "cuda":
        return "CPU"
    return f"{hw.gpu_name or 'GPU'} ({hw.gpu_total_gb:g} GB)" if hw.gpu_total_gb else (hw.gpu_name or "GPU")


def preset_note(meta: dict[str, Any], ignored: dict[str, str] | None = None) -> str:
    """The preset's title and description, and the keys that were not loaded (with why)."""
    title = meta.get("title") or meta.get("name") or ""
    description = " ".join(str(meta.get("description") or "").split())
    note = f"**{html.escape(str(title))}** — {html.escape(description)}" if title else ""
    if ignored:
        note += "\n\nNot loaded: " + ", ".join(f"`{html.escape(k)}` ({html.escape(v)})" for k, v in ignored.items())
    return note


def status_badge(status: str | None, detail: str = "") -> str:
    status = status or "unknown"
    colour = STATUS_COLOURS.get(status, "#6b7280")
    extra = f" <span class='td-detail'>{html.escape(detail)}</span>" if detail else ""
    return (f"<span class='td-status' data-status='{html.escape(status)}' "
            f"style='background:{colour}'>{html.escape(status)}</span>{extra}")


def progress_html(p: Progress, status: str | None) -> str:
    fraction = p.fraction
    pct = 0.0 if fraction is None else fraction * 100
    total = "?" if p.total is None else str(p.total)
    colour = STATUS_COLOURS.get(status or "", "#2563eb")
    remaining = format_duration(p.remaining_s) if status == "running" else "—"
    return (
        "<div class='td-progress'>"
        f"<div class='td-bar'><div class='td-fill' style='width:{pct:.1f}%;background:{colour}'></div></div>"
        f"<div class='td-progress-text'><b>step <span id='td-step'>{p.step}</span> / {total}</b>"
        f"{f' ({pct:.0f}%)' if fraction is not None else ''} · elapsed {format_duration(p.elapsed_s)}"
        f" · remaining {remaining}</div></div>")


VERDICT_WORDS = {"fits": "fits", "tight": "tight: little headroom", "will not fit": "will NOT fit",
                 "unknown": "unknown (model shape not known)"}


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def _fmt(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _gb(value: Any) -> str:
    """GB with a tenth for real models and two significant digits for the tiny demo (0.04 GB, not 0.0)."""
    value = float(value)
    return f"{value:.1f} GB" if value >= 1 else f"{value:.2g} GB"


def plan_markdown(plan: Any, *, num_samples: int | None, dataset_note: str = "", hardware_label: str = "") -> str:
    """The run plan panel: the numbers that decide the run, in words, then the plan's warnings."""
    d = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
    rows = [
        ("Effective batch", f"{d['effective_batch_size']} = {d['micro_batch_size']} × "
                            f"{d['gradient_accumulation_steps']} × {d['num_devices']} device(s)"),
        ("Training rows", _fmt(num_samples) + (f" ({dataset_note})" if dataset_note else "")),
        ("Steps per epoch", _fmt(d.get("steps_per_epoch"))),
        ("Total optimizer steps", _fmt(d.get("total_steps"))),
        ("Warmup steps", _fmt(d.get("warmup_steps"))),
        ("Epochs (effective)", _fmt(d.get("epochs_effective"))),
        ("Precision · attention", f"{d.get('precision')} · {d.get('attn_implementation')}"),
        ("Packing · group by length", f"{'on' if d.get('packing') else 'off'} · "
                                      f"{'on' if d.get('group_by_length') else 'off'}"),
    ]
    if d.get("padding_efficiency") is not None:
        rows.append(("Real tokens / processed", f"{d['padding_efficiency']:.0%}"))
    if d.get("trainable_parameters") and d.get("total_parameters"):
        trainable, total = d["trainable_parameters"], d["total_parameters"]
        rows.append(("Trainable parameters", f"{_count(trainable)} of {_count(total)} ({trainable / total:.2%})"))
    if d.get("memory_estimate_gb") is not None:
        memory = _gb(d["memory_estimate_gb"])
        if d.get("memory_gpu_gb"):
            memory += f" of {d['memory_gpu_gb']:g} GB"
            if d.get("memory_share_of_gpu") is not None:
                memory += f" ({d['memory_share_of_gpu']:.0%})"
        verdict = d.get("memory_verdict")
        if verdict:
            memory += f" — {VERDICT_WORDS.get(str(verdict), str(verdict))}"
        rows.append(("Peak memory estimate", memory))
        if d.get("largest_micro_batch"):
            text = str(d["largest_micro_batch"])
            if d.get("suggested_gradient_accumulation"):
                text += f" (with accumulation {d['suggested_gradient_accumulation']} for about the same effective batch)"
            rows.append(("Largest micro-batch that fits", text))
        by_gpu = d.get("memory_verdict_by_gpu")
        if isinstance(by_gpu, dict) and by_gpu:
            rows.append(("By GPU size", " · ".join(f"{k}: {v}" for k, v in by_gpu.items())))
        breakdown = d.get("memory_breakdown_gb")
        if isinstance(breakdown, dict) and breakdown:
            parts = sorted(breakdown.items(), key=lambda kv: -float(kv[1] or 0))
            rows.append(("Memory breakdown", " · ".join(f"{k.replace('_', ' ')} {_gb(v)}" for k, v in parts
                                                         if v)))
    if hardware_label:
        rows.append(("Planned for", hardware_label))
    lines = ["| Run plan | |", "|---|---|"] + [f"| {k} | {html.escape(str(v))} |" for k, v in rows]
    out = "\n".join(lines)
    summary = d.get("summary") or []
    if summary:
        out += "\n\n" + "\n".join(f"- {html.escape(s)}" for s in summary)
    warnings = d.get("warnings") or []
    if warnings:
        out += "\n\n**Warnings**\n\n" + "\n".join(f"- ⚠ {html.escape(w)}" for w in warnings)
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


def runs_table(infos: Iterable[Any], text_filter: str = "", statuses: Sequence[str] = ()) -> list[list[Any]]:
    """Rows for the runs table, filtered by free text (any column) and by status."""
    rows = []
    needle = (text_filter or "").strip().lower()
    for info in infos:
        if statuses and info.status not in statuses:
            continue
        best = info.best_loss
        row = [info.id, info.name, info.status, info.model or "", info.dataset or "", info.method or "",
               "" if best is None or not math.isfinite(best) else round(best, 4),
               f"{info.step or 0}/{info.total_steps or '?'}",
               format_duration(run_duration(info)), info.owner, _when(info.created_at)]
        if needle and not any(needle in str(cell).lower() for cell in row):
            continue
        rows.append(row)
    return rows


def run_choice_label(info: Any) -> str:
    return f"{info.name} · {info.status} · {info.id}"


def config_diff_markdown(configs: Sequence[tuple[str, TrainConfig | None]]) -> str:
    """A side-by-side table of the fields on which the configs differ."""
    usable = [(name, cfg.to_dict()) for name, cfg in configs if cfg is not None]
    if len(usable) < 2:
        return "Select two or more runs to compare their configs."
    keys = [k for k in usable[0][1] if len({repr(data.get(k)) for _, data in usable}) > 1]
    if not keys:
        return "The configs are identical."
    header = "| field | " + " | ".join(html.escape(name) for name, _ in usable) + " |"
    sep = "|---|" + "---|" * len(usable)
    body = [f"| `{k}` | " + " | ".join(html.escape(_fmt(data.get(k))) for _, data in usable) + " |" for k in keys]
    return "\n".join([header, sep, *body])


def log_tail_text(lines: Sequence[str]) -> str:
    return "\n".join(lines) if lines else "(no output yet)"


def run_summary_markdown(info: Any, series: RunSeries) -> str:
    """Reason and advice of a failed run, and the trainer's messages."""
    parts = []
    status = series.status or {}
    if status.get("status") == "finished":
        bits = []
        if status.get("adapter"):
            bits.append(f"saved to `{html.escape(str(status['adapter']))}`")
        best = status.get("best_eval_loss")
        if isinstance(best, (int, float)):
            bits.append(f"best eval loss {best:.4g}")
        if status.get("best_checkpoint"):
            bits.append(f"best checkpoint `{html.escape(Path(str(status['best_checkpoint'])).name)}`")
        parts.append("**Finished**" + (": " + ", ".join(bits) if bits else "."))
    if status.get("status") in ("failed", "interrupted", "aborted") and status.get("reason"):
        parts.append(f"**{status['status'].capitalize()}:** {html.escape(str(status['reason']))}")
    advice = status.get("advice") or []
    if isinstance(advice, list) and advice:
        parts.append("\n".join(f"- {html.escape(str(a))}" for a in advice))
    for message in series.messages[-5:]:
        parts.append(f"ℹ {html.escape(str(message.get('text', '')))}")
    return "\n\n".join(parts)
