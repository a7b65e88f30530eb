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
