"""Each health alert fires on a series crafted to trip it, and none fires on a clean run."""

from __future__ import annotations

import math
import random

from webui.alerts import alerts_markdown, health_alerts
from trainer.run.series import RunSeries


def _series(loss, grad=None, evals=()):
    series = RunSeries()
    events = []
    for i, value in enumerate(loss, start=1):
        event = {"t": float(i), "type": "log", "step": i, "loss": value if math.isfinite(value) else str(value)}
        if grad is not None:
            g = grad[i - 1]
            event["grad_norm"] = g if math.isfinite(g) else str(g)
        events.append(event)
    for step, value in evals:
        events.append({"t": float(step) + 0.5, "type": "eval", "step": step, "eval_loss": value})
    events.sort(key=lambda e: e["t"])
    series.extend(events)
    return series


def _clean_loss(n=200, seed=0):
    rng = random.Random(seed)
    return [0.5 + 2.0 * math.exp(-i / 60) + rng.gauss(0, 0.02) for i in range(n)]


def _clean_grad(n=200, seed=1):
    rng = random.Random(seed)
    return [1.0 + rng.gauss(0, 0.1) for _ in range(n)]


def _codes(series, **kw):
    return {a.code for a in health_alerts(series, **kw)}


def test_clean_run_raises_no_alert():
    evals = [(s, 0.6 + 2.0 * math.exp(-s / 60)) for s in range(25, 201, 25)]
    series = _series(_clean_loss(), _clean_grad(), evals)
    assert health_alerts(series, max_grad_norm=1.0) == []
    assert "no alerts" in alerts_markdown([])


def test_nan_loss():
    loss = _clean_loss(50)
    loss[30] = math.nan
    loss[31] = math.inf
    alerts = health_alerts(_series(loss))
    assert alerts[0].code == "nan_loss" and alerts[0].level == "error"
    assert "step 31" in alerts[0].message and "NaN" in alerts[0].message


def test_loss_spike():
    loss = _clean_loss(120)
    loss[80] = loss[79] * 3
    alerts = [a for a in health_alerts(_series(loss)) if a.code == "loss_spike"]
    assert alerts and "step 81" in alerts[0].message


def test_grad_norm_blowup():
    grad = _clean_grad(60)
    grad[45] = 40.0
    assert "grad_norm_blowup" in _codes(_series(_clean_loss(60), grad), max_grad_norm=1.0)
    grad = _clean_grad(60)
    grad[20] = math.inf
    assert "grad_norm_blowup" in _codes(_series(_clean_loss(60), grad))


def test_plateau():
    loss = _clean_loss(60) + [0.55 + 0.01 * math.sin(i) for i in range(100)]
    alerts = [a for a in health_alerts(_series(loss)) if a.code == "plateau"]
    assert alerts and alerts[0].level == "info"
    assert "plateau" not in _codes(_series(_clean_loss(60)))


def test_eval_loss_rising_while_train_falls():
    loss = _clean_loss(200)
    evals = [(25, 1.6), (50, 1.2), (75, 1.0), (100, 1.05), (125, 1.12), (150, 1.2)]
    alerts = [a for a in health_alerts(_series(loss, evals=evals)) if a.code == "overfitting"]
    assert alerts and "step 75" in alerts[0].message and "step 150" in alerts[0].message
    # the same eval curve with a train loss that rises too is not overfitting
    rising = list(reversed(loss))
    assert "overfitting" not in _codes(_series(rising, evals=evals))


def test_a_warmup_spike_above_the_first_loss_is_flagged():
    # The old demo: 1.26 at step 1 (learning rate 0), 6.9 by step 3 as warm-up reached 3e-3, then 2.2-2.5.
    rng = random.Random(3)
    loss = [1.26, 3.1, 6.9, 5.2, 4.0] + [2.35 + rng.gauss(0, 0.1) for _ in range(120)]
    alerts = [a for a in health_alerts(_series(loss)) if a.code == "warmup_spike"]
    assert alerts and alerts[0].level == "warning"
    assert "1.26 at step 1" in alerts[0].message and "6.9 at step 3" in alerts[0].message
    assert alerts[0].params["peak"] == 6.9
    # A healthy start falls from its first value, noise and all: nothing to flag.
    healthy = [7.7, 7.9, 7.2, 6.5, 5.6] + [3.0 + 4 * math.exp(-i / 10) + rng.gauss(0, 0.3) for i in range(60)]
    assert "warmup_spike" not in _codes(_series(healthy))


def test_a_long_flat_stretch_is_a_plateau_even_after_a_long_fall():
    rng = random.Random(5)
    falling = [0.8 + 2.0 * (1 - i / 550) + rng.gauss(0, 0.03) for i in range(550)]
    flat = [0.8 + rng.gauss(0, 0.03) for _ in range(450)]
    series = _series(falling + flat)
    alerts = [a for a in health_alerts(series) if a.code == "plateau"]
    assert alerts, "a 450-step flat stretch was called still moving"
    assert alerts[0].params["since_step"] > 550  # the stretch reported is the flat one
    assert "still moving" not in alerts_markdown(health_alerts(series))
    # ... while a run that is still falling at its end is not a plateau.
    assert "plateau" not in _codes(_series(falling))


def test_a_run_that_failed_before_its_first_step_is_not_called_finite():
    series = RunSeries()
    series.extend([{"t": 1.0, "type": "status", "status": "running"},
                   {"t": 9.0, "type": "status", "status": "failed", "reason": "dataset file not found"}])
    alerts = health_alerts(series)
    assert [a.code for a in alerts] == ["no_steps"]
    text = alerts_markdown(alerts)
    assert "No training step was logged" in text and "finite" not in text
    waiting = RunSeries()
    waiting.extend([{"t": 1.0, "type": "status", "status": "running"}])
    assert "yet" in alerts_markdown(health_alerts(waiting))


def test_every_alert_says_its_numbers_in_chinese_too():
    from webui.tabs.monitor import health_markdown

    loss = _clean_loss(120)
    loss[80] = loss[79] * 3
    grad = _clean_grad(120)
    grad[45] = 40.0
    cases = {
        "loss_spike": (_series(loss), ["第 81 步"]),
        "grad_norm_blowup": (_series(_clean_loss(120), grad), ["第 46 步", "40"]),
        "plateau": (_series(_clean_loss(60) + [0.55 + 0.01 * math.sin(i) for i in range(100)]), ["自第"]),
        "overfitting": (_series(_clean_loss(200), evals=[(25, 1.6), (50, 1.2), (75, 1.0), (100, 1.05), (125, 1.12),
                                                        (150, 1.2)]), ["第 75 步 1", "第 150 步 1.2"]),
        "warmup_spike": (_series([1.26, 3.1, 6.9, 5.2, 4.0] + [2.35] * 60), ["第 1 步的 1.26", "第 3 步的 6.9"]),
    }
    nan_loss = _clean_loss(50)
    nan_loss[30] = math.nan
    cases["nan_loss"] = (_series(nan_loss), ["第 31 步"])
    inf_grad = _clean_grad(60)
    inf_grad[20] = math.inf
    cases["grad_norm_nonfinite"] = (_series(_clean_loss(60), inf_grad), ["第 21 步梯度范数不是有限值"])
    for code, (series, numbers) in cases.items():
        zh = health_markdown(series, "zh")
        assert all(n in zh for n in numbers), (code, zh)
        assert not any(c.isascii() and c.isalpha() for c in zh.replace("max_grad_norm", "").replace("NaN", "")
                       .replace("bf16", "").replace("fp16", "").replace("LoRA", "")
                       .replace("early_stopping_patience", "")), (code, zh)
