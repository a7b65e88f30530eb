"""One "smaller micro-batch, same effective batch" rule (trainer/plan/batching.py), and the out-of-memory
advice and the scheduler's out-of-memory recovery agreeing with it (real SQLite, real run directories)."""

from __future__ import annotations

import re

import pytest

from trainer.config import TrainConfig
from trainer.engine.telemetry import oom_advice
from trainer.jobs.manager import JobManager
from trainer.plan.batching import keep_effective_batch, largest_divisor_up_to, smaller_micro_batch
from trainer.run.events import FAILED, QUEUED, read_events
from trainer.run.layout import read_run_config

ADVICE = re.compile(r"per_device_train_batch_size (\d+) → (\d+) and gradient_accumulation_steps (\d+) → (\d+), "
                    r"keeping the effective batch at (\d+)")


def _config(micro: int, accumulation: int) -> TrainConfig:
    return TrainConfig.from_dict({"model_name_or_path": "demo", "dataset": "demo", "oom_recovery": True,
                                  "per_device_train_batch_size": micro,
                                  "gradient_accumulation_steps": accumulation})


def _advised(cfg: TrainConfig) -> tuple[int, int] | None:
    for line in oom_advice(cfg):
        match = ADVICE.search(line)
        if match:
            old_micro, new_micro, old_acc, new_acc, effective = map(int, match.groups())
            assert (old_micro, old_acc) == (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps)
            assert effective == new_micro * new_acc
            return new_micro, new_acc
    return None


def _recovered(jm: JobManager, cfg: TrainConfig) -> tuple[int, int] | None:
    """Submit, mark the run failed by an out-of-memory error, let the scheduler recover it."""
    run_id = jm.submit(cfg)
    with jm.registry.transaction(write=True) as conn:
        jm.registry.update(conn, run_id, status=FAILED, failure_kind="oom", reason="CUDA out of memory")
    jm._recover_from_oom(run_id)
    info = jm.get(run_id)
    if info.status != QUEUED:
        gave_up = [e for e in read_events(info.run_dir) if "gave up" in str(e.get("text", ""))]
        assert info.status == FAILED and gave_up
        return None
    new = read_run_config(info.run_dir)
    return new.per_device_train_batch_size, new.gradient_accumulation_steps


def test_micro_batch_5_accumulation_3_becomes_1_by_15_in_the_rule_the_advice_and_the_recovery(tmp_path):
    assert smaller_micro_batch(5, 3) == (1, 15)
    cfg = _config(5, 3)
    assert _advised(cfg) == (1, 15)
    with JobManager(tmp_path / "runs", autostart=False) as jm:
        assert _recovered(jm, cfg) == (1, 15)
        run_dir = jm.list_runs()[0].run_dir
        text = [e["text"] for e in read_events(run_dir) if e["type"] == "message"][-1]
        assert "micro-batch 1 and gradient accumulation 15 (was 3)" in text and "effective batch stays 15" in text


@pytest.mark.parametrize("micro,accumulation,expected", [
    (2, 2, (1, 4)), (9, 2, (3, 6)), (6, 2, (3, 4)), (5, 2, (2, 5)), (8, 1, (4, 2)), (7, 1, (1, 7)),
    (12, 3, (6, 6)), (1, 8, None),
])
def test_smaller_micro_batch_examples(micro, accumulation, expected):
    assert smaller_micro_batch(micro, accumulation) == expected


def test_smaller_micro_batch_keeps_the_effective_batch_exactly_and_at_least_halves():
    for micro in range(1, 130):
        for accumulation in range(1, 40):
            smaller = smaller_micro_batch(micro, accumulation)
            if micro == 1:
                assert smaller is None
                continue
            new_micro, new_accumulation = smaller
            assert new_micro * new_accumulation == micro * accumulation
            assert 1 <= new_micro <= micro // 2
            # the largest such micro-batch: no divisor of the effective batch between it and half the old one
            assert not any((micro * accumulation) % d == 0 for d in range(new_micro + 1, micro // 2 + 1))


def test_advice_and_recovery_agree_over_many_pairs(tmp_path):
    pairs = [(m, a) for m in range(1, 13) for a in (1, 2, 3, 5, 7)] + [(16, 3), (25, 4), (31, 1), (64, 9)]
    with JobManager(tmp_path / "runs", autostart=False) as jm:
        for micro, accumulation in pairs:
            cfg = _config(micro, accumulation)
            advised, recovered = _advised(cfg), _recovered(jm, cfg)
            assert advised == recovered == smaller_micro_batch(micro, accumulation), (micro, accumulation)
            if recovered:
                assert recovered[0] * recovered[1] == micro * accumulation


def test_keep_effective_batch_builds_on_the_same_divisor_rule():
    for effective in range(1, 97):
        for largest in range(1, effective + 1):
            micro, accumulation = keep_effective_batch(effective, largest)
            assert 1 <= micro <= largest
            if micro == largest_divisor_up_to(effective, largest):
                assert micro * accumulation == effective  # exact whenever the divisor is taken
            else:  # a throughput trade: the divisor was under half of what fits; closest from above
                assert largest_divisor_up_to(effective, largest) * 2 <= largest
                assert micro * accumulation >= effective > micro * (accumulation - 1)
    with pytest.raises(ValueError):
        largest_divisor_up_to(0, 3)
    with pytest.raises(ValueError):
        smaller_micro_batch(0, 1)
