"""Health alerts in plain words, from a run's series. Pure: no gradio, no torch.

Each check looks at the numbers a user would squint at on the charts and says what it sees and
what to try. Thresholds are deliberately conservative: an alert that cries wolf gets ignored.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from trainer.run.series import RunSeries, ema

SPIKE_WINDOW = 20  # steps of history a spike is judged against
SPIKE_MIN_HISTORY = 10
PLATEAU_MIN_POINTS = 40
PLATEAU_MIN_RELATIVE_DROP = 0.01  # a stretch's second half must be at least 1% below its first half
# The stretches judged end at the newest step and hold 1/2, 3/8, 1/4 and 1/8 of the logged points (never
# fewer than PLATEAU_MIN_POINTS): a run that fell for 550 steps and then sat flat for 450 is flat over its
# last 3/8, although its last half, which still holds some of the fall, is not.
PLATEAU_STRETCHES = (1 / 2, 3 / 8, 1 / 4, 1 / 8)
# Warm-up: the loss of a healthy run does not climb far above where it started. Judged over the first
# WARMUP_POINTS logged points (or the plan's warm-up, when longer), before SPIKE_MIN_HISTORY points exist
# to judge ordinary spikes against.
WARMUP_POINTS = 20
WARMUP_RISE_FACTOR = 1.5
GRAD_BLOWUP_FACTOR = 10.0
GRAD_WINDOW = 100  # steps of history a gradient norm is judged against
# Spikes and blow-ups are looked for in the most recent steps only, so a check costs the same at step
# 1,000,000 as at step 2,000 (the page re-runs the checks whenever new events arrive).
SCAN_LAST = 2000


@dataclass(frozen=True)
class Alert:
    code: str  # nan_loss, loss_spike, warmup_spike, grad_norm_blowup, plateau, overfitting, no_steps
    level: str  # "error" | "warning" | "info"
    message: str
    # The numbers in the message, by name, so a translation can say the same thing (not compared or hashed).
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def nan_loss(steps: Sequence[int], loss: Sequence[float]) -> Alert | None:
    bad = [s for s, v in zip(steps, loss) if not math.isfinite(v)]
    kinds = {"NaN" if math.isnan(v) else "infinite" for v in loss if not math.isfinite(v)}
    return _nan_alert(bad, kinds)


def _nan_alert(bad: Sequence[int], kinds: set[str]) -> Alert | None:
    if not bad:
        return None
    where = f"step {bad[0]}" + (f" and {len(bad) - 1} later step(s)" if len(bad) > 1 else "")
    return Alert("nan_loss", "error",
                 f"The loss is {' / '.join(sorted(kinds))} at {where}: training has diverged. Lower the learning "
                 "rate, keep gradient clipping on (max_grad_norm 1.0), and prefer bf16 over fp16 (fp16 overflows).",
                 {"kinds": sorted(kinds), "step": bad[0], "later_steps": len(bad) - 1})


def loss_spikes(steps: Sequence[int], loss: Sequence[float]) -> Alert | None:
    """A step whose loss jumps far above its recent past (robust: median and median absolute deviation)."""
    finite = [(s, v) for s, v in zip(steps[-(SCAN_LAST + SPIKE_WINDOW):], loss[-(SCAN_LAST + SPIKE_WINDOW):])
              if math.isfinite(v)]
    spikes: list[tuple[int, float, float]] = []
    for i in range(SPIKE_MIN_HISTORY, len(finite)):
        window = [v for _, v in finite[max(0, i - SPIKE_WINDOW):i]]
        median = statistics.median(window)
        mad = statistics.median(abs(v - median) for v in window)
        step, value = finite[i]
        spread = max(mad * 1.4826, abs(median) * 0.02, 1e-8)
        if value > median + 6 * spread and value > median * 1.25:
            spikes.append((step, value, median))
    if not spikes:
        return None
    step, value, median = max(spikes, key=lambda s: s[1] / max(s[2], 1e-12))
    return Alert("loss_spike", "warning",
                 f"Loss spike{'s' if len(spikes) > 1 else ''}: {len(spikes)} step(s) jumped well above the "
                 f"recent loss, the largest at step {step} ({value:.4g} vs a recent median of {median:.4g}). "
                 "Occasional spikes are harmless; frequent ones mean the learning rate is too high or a few "
                 "rows are broken (check the data preview).",
                 {"count": len(spikes), "step": step, "value": value, "median": median})


def warmup_spike(steps: Sequence[int], loss: Sequence[float], warmup_steps: int | None = None) -> Alert | None:
    """The loss climbing far above its first value early on: the learning rate is too high as warm-up
    reaches it (a fresh adapter starts from the base model, so its loss has no business rising)."""
    window = max(WARMUP_POINTS, 2 * (warmup_steps or 0))
    early = [(s, v) for s, v in zip(steps[:window], loss[:window]) if math.isfinite(v)]
    if len(early) < 2:
        return None
    first_step, first = early[0]
    step, peak = max(early[1:], key=lambda e: e[1])
    if first <= 0 or peak < first * WARMUP_RISE_FACTOR:
        return None
    return Alert("warmup_spike", "warning",
                 f"Warm-up spike: the loss rose from {first:.4g} at step {first_step} to {peak:.4g} at step {step} as "
                 "the learning rate ramped up. The peak learning rate is too high for this model: lower it (or "
                 "warm up over more steps) and the loss should fall from the start.",
                 {"first": first, "first_step": first_step, "peak": peak, "step": step})


def grad_norm_blowup(grad_norm: Sequence[tuple[int, float]], max_grad_norm: float | None = None) -> Alert | None:
    """Gradient norm far above its typical value over the previous GRAD_WINDOW steps (or not finite)."""
    grad_norm = grad_norm[-(SCAN_LAST + GRAD_WINDOW):]
    bad = [s for s, v in grad_norm if not math.isfinite(v)]
    if bad:
        return Alert("grad_norm_blowup", "error",
                     f"The gradient norm is not finite at step {bad[0]}: the update is garbage. Lower the learning "
                     "rate and keep max_grad_norm at 1.0.", {"step": bad[0]})
    if len(grad_norm) < SPIKE_MIN_HISTORY + 1:
        return None
    values = [v for _, v in grad_norm]
    for i in range(SPIKE_MIN_HISTORY, len(values)):
        typical = statistics.median(values[max(0, i - GRAD_WINDOW):i])
        if typical > 0 and values[i] > GRAD_BLOWUP_FACTOR * typical:
            step = grad_norm[i][0]
            clip = (f" Clipping at {max_grad_norm:g} limits the step size, but the spike says the loss surface "
                    "got steep." if max_grad_norm else " Turn on clipping (max_grad_norm 1.0).")
            return Alert("grad_norm_blowup", "warning",
                         f"Gradient norm blow-up at step {step}: {values[i]:.3g}, over {GRAD_BLOWUP_FACTOR:g}× its "
                         f"typical {typical:.3g}.{clip} Lower the learning rate or add warmup.",
                         {"step": step, "value": values[i], "typical": typical, "max_grad_norm": max_grad_norm})
    return None


def plateau(steps: Sequence[int], loss: Sequence[float]) -> Alert | None:
    """The loss has stopped falling over a recent stretch of the run (see PLATEAU_STRETCHES)."""
    finite_steps, prefix = [], [0.0]
    for step, value in zip(steps, loss):
        if math.isfinite(value):
            finite_steps.append(step)
            prefix.append(prefix[-1] + value)
    return _plateau_alert(finite_steps, prefix)


def _plateau_alert(finite_steps: Sequence[int], prefix: Sequence[float]) -> Alert | None:
    """plateau() on running sums of the finite losses: O(1) however long the run.

    A stretch is flat when the mean loss of its second half is less than 1% below that of its first
    half; the longest flat stretch is reported."""
    n = len(finite_steps)
    if n < PLATEAU_MIN_POINTS:
        return None
    for share in PLATEAU_STRETCHES:
        half = max(PLATEAU_MIN_POINTS, int(n * share)) // 2
        if 2 * half > n:
            continue
        recent = (prefix[n] - prefix[n - half]) / half
        before = (prefix[n - half] - prefix[n - 2 * half]) / half
        if (before - recent) / max(abs(before), 1e-8) >= PLATEAU_MIN_RELATIVE_DROP:
            continue
        first_step = finite_steps[n - 2 * half]
        return Alert("plateau", "info",
                     f"The loss has stopped falling: the last {2 * half} logged steps (since step {first_step}) "
                     f"average {recent:.4g} against {before:.4g} before. More steps may buy little; if it is still "
                     "high, raise the learning rate or the LoRA rank, or check the data.",
                     {"points": 2 * half, "since_step": first_step, "recent": recent, "before": before})
    return None


def overfitting(steps: Sequence[int], loss: Sequence[float], eval_steps: Sequence[int],
                eval_loss: Sequence[float], smoothed_loss: Sequence[float | None] | None = None) -> Alert | None:
    """Eval loss rising for two evaluations in a row while the train loss keeps falling."""
    evals = [(s, v) for s, v in zip(eval_steps, eval_loss) if math.isfinite(v)]
    if len(evals) < 3:
        return None
    (s0, v0), (s1, v1), (s2, v2) = evals[-3:]
    best_step, best = min(evals, key=lambda e: e[1])
    if not (v2 > v1 > v0 and v2 > best * 1.01):
        return None
    smoothed = ema(loss, 0.6) if smoothed_loss is None else smoothed_loss

    def train_near(step: int) -> float | None:
        """The smoothed train loss at the last logged step at or before `step` (searching from the end)."""
        for i in range(len(steps) - 1, -1, -1):
            if steps[i] <= step and smoothed[i] is not None:
                return smoothed[i]
        return None

    train_then, train_now = train_near(best_step), train_near(s2)
    if train_then is None or train_now is None or not train_now < train_then:
        return None
    return Alert("overfitting", "warning",
                 f"Eval loss is rising ({best:.4g} at step {best_step} → {v2:.4g} at step {s2}) while the train "
                 f"loss keeps falling ({train_then:.4g} → {train_now:.4g}): the model is memorising the training "
                 "rows. Stop earlier (fewer epochs, early_stopping_patience), load the best checkpoint, or add data.",
                 {"best": best, "best_step": best_step, "eval": v2, "step": s2, "train_then": train_then,
                  "train_now": train_now})


def no_steps(series: RunSeries) -> Alert | None:
    """Nothing to judge yet: no training loss logged (still loading, or a run that failed before its first step)."""
    if series.steps:
        return None
    if series.state in ("finished", "aborted", "failed", "interrupted"):
        return Alert("no_steps", "info", "No training step was logged: the run ended before its first step, so "
                                         "there is no loss to judge.", {"ended": True})
    return Alert("no_steps", "info", "No training step logged yet: health is judged once the loss arrives.",
                 {"ended": False})


def health_alerts(series: RunSeries, max_grad_norm: float | None = None) -> list[Alert]:
    """Every alert that fires on a run's series, the most serious first."""
    empty = no_steps(series)
    if empty is not None:
        return [empty]
    # The series keeps running sums and a cached smoothing, and the scans look at a bounded recent window,
    # so this costs the same at step 100,000 as at step 1,000.
    recent = SCAN_LAST + SPIKE_WINDOW
    warmup = series.plan.get("warmup_steps") if series.plan else None
    found = [
        _nan_alert(series.nonfinite_loss_steps, series.nonfinite_kinds),
        grad_norm_blowup(series.grad_norm[-(SCAN_LAST + GRAD_WINDOW):], max_grad_norm),
        warmup_spike(series.steps, series.loss, warmup if isinstance(warmup, int) else None),
        loss_spikes(series.steps[-recent:], series.loss[-recent:]),
        overfitting(series.steps, series.loss, series.eval_steps, series.eval_loss,
                    series.smoothed(0.6).values) if len(series.eval_loss) >= 3 else None,
        _plateau_alert(series.finite_loss_steps, series.finite_loss_prefix),
    ]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted((a for a in found if a is not None), key=lambda a: order[a.level])


def alerts_markdown(alerts: Sequence[Alert]) -> str:
    if not alerts:
        # Only what was checked: a short run has too few points to say whether it is still falling.
        return "**Health:** no alerts — no NaN loss, no spike, no gradient blow-up so far."
    word = {"error": "Error", "warning": "Warning", "info": "Note"}
    return "\n\n".join(f"**{word[a.level]}:** {a.message}" for a in alerts)
