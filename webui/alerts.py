"""Health alerts in plain words, from a run's series. Pure: no gradio, no torch.

Each check looks at the numbers a user would squint at on the charts and says what it sees and
what to try. Thresholds are deliberately conservative: an alert that cries wolf gets ignored.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from trainer.run.series import RunSeries, ema

SPIKE_WINDOW = 20  # steps of history a spike is judged against
SPIKE_MIN_HISTORY = 10
PLATEAU_MIN_POINTS = 40
PLATEAU_MIN_RELATIVE_DROP = 0.01  # the last quarter must be at least 1% below the quarter before
GRAD_BLOWUP_FACTOR = 10.0
GRAD_WINDOW = 100  # steps of history a gradient norm is judged against
# Spikes and blow-ups are looked for in the most recent steps only, so a check costs the same at step
# 1,000,000 as at step 2,000 (the page re-runs the checks whenever new events arrive).
SCAN_LAST = 2000


@dataclass(frozen=True)
class Alert:
    code: str  # nan_loss, loss_spike, grad_norm_blowup, plateau, overfitting
    level: str  # "error" | "warning" | "info"
    message: str


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
                 "rate, keep gradient clipping on (max_grad_norm 1.0), and prefer bf16 over fp16 (fp16 overflows).")


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
                 "rows are broken (check the data preview).")


def grad_norm_blowup(grad_norm: Sequence[tuple[int, float]], max_grad_norm: float | None = None) -> Alert | None:
    """Gradient norm far above its typical value over the previous GRAD_WINDOW steps (or not finite)."""
    grad_norm = grad_norm[-(SCAN_LAST + GRAD_WINDOW):]
    bad = [s for s, v in grad_norm if not math.isfinite(v)]
    if bad:
        return Alert("grad_norm_blowup", "error",
                     f"The gradient norm is not finite at step {bad[0]}: the update is garbage. Lower the learning "
                     "rate and keep max_grad_norm at 1.0.")
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
                         f"typical {typical:.3g}.{clip} Lower the learning rate or add warmup.")
    return None


def plateau(steps: Sequence[int], loss: Sequence[float]) -> Alert | None:
    """The mean loss of the last quarter of the run is no lower than that of the quarter before."""
    finite_steps, prefix = [], [0.0]
    for step, value in zip(steps, loss):
        if math.isfinite(value):
            finite_steps.append(step)
            prefix.append(prefix[-1] + value)
    return _plateau_alert(finite_steps, prefix)


def _plateau_alert(finite_steps: Sequence[int], prefix: Sequence[float]) -> Alert | None:
    """plateau() on running sums of the finite losses: O(1) however long the run."""
    n = len(finite_steps)
    if n < PLATEAU_MIN_POINTS:
        return None
    quarter = n // 4
    recent = (prefix[n] - prefix[n - quarter]) / quarter
    before = (prefix[n - quarter] - prefix[n - 2 * quarter]) / quarter
    scale = max(abs(before), 1e-8)
    if (before - recent) / scale >= PLATEAU_MIN_RELATIVE_DROP:
        return None
    first_step = finite_steps[n - 2 * quarter]
    return Alert("plateau", "info",
                 f"The loss has stopped falling: the last {2 * quarter} logged steps (since step {first_step}) "
                 f"average {recent:.4g} against {before:.4g} before. More steps may buy little; if it is still "
                 "high, raise the learning rate or the LoRA rank, or check the data.")


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
                 "rows. Stop earlier (fewer epochs, early_stopping_patience), load the best checkpoint, or add data.")


def health_alerts(series: RunSeries, max_grad_norm: float | None = None) -> list[Alert]:
    """Every alert that fires on a run's series, the most serious first."""
    # The series keeps running sums and a cached smoothing, and the scans look at a bounded recent window,
    # so this costs the same at step 100,000 as at step 1,000.
    recent = SCAN_LAST + SPIKE_WINDOW
    found = [
        _nan_alert(series.nonfinite_loss_steps, series.nonfinite_kinds),
        grad_norm_blowup(series.grad_norm[-(SCAN_LAST + GRAD_WINDOW):], max_grad_norm),
        loss_spikes(series.steps[-recent:], series.loss[-recent:]),
        overfitting(series.steps, series.loss, series.eval_steps, series.eval_loss,
                    series.smoothed(0.6).values) if len(series.eval_loss) >= 3 else None,
        _plateau_alert(series.finite_loss_steps, series.finite_loss_prefix),
    ]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted((a for a in found if a is not None), key=lambda a: order[a.level])


def alerts_markdown(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return "**Health:** no alerts — the loss is finite, without spikes, and still moving."
    word = {"error": "Error", "warning": "Warning", "info": "Note"}
    return "\n\n".join(f"**{word[a.level]}:** {a.message}" for a in alerts)
