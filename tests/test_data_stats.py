"""Token-length statistics against hand-computed cases."""

from __future__ import annotations

import pytest

from trainer.config import TrainConfig
from trainer.datasets import length_histogram, length_stats, percentile, suggested_cutoff_len
from trainer.plan.resolve import resolve_plan


def test_percentiles_mean_and_suggested_cutoff():
    stats = length_stats(list(range(1, 101)), TrainConfig(cutoff_len=1024))
    assert (stats["count"], stats["min"], stats["max"], stats["mean"]) == (100, 1, 100, 50.5)
    assert (stats["p50"], stats["p90"], stats["p99"]) == (50, 90, 99)
    # 99% of the rows are at most 99 tokens; rounded up to a multiple of 8.
    assert stats["suggested_cutoff_len"] == 104
    assert (stats["truncated_rows"], stats["truncated_share"], stats["tokens_cut"]) == (0, 0.0, 0)
    assert percentile([7], 99) == 7 and percentile([], 50) == 0
    assert suggested_cutoff_len([3, 4]) == 8  # never below the schema's minimum


def test_truncation_counts_rows_and_tokens_cut():
    stats = length_stats([10, 20, 300, 500], TrainConfig(cutoff_len=256, per_device_train_batch_size=1))
    assert (stats["truncated_rows"], stats["truncated_share"]) == (2, 0.5)
    assert stats["tokens_cut"] == (300 - 256) + (500 - 256) == 288
    assert stats["tokens_after_cut"] == 10 + 20 + 256 + 256
    assert stats["advice"] == ["2 of 4 rows (50.0%) are longer than cutoff_len 256: 288 tokens are cut. "
                               "cutoff_len 504 keeps 99% of the rows whole."]


def test_padding_waste_at_the_micro_batch():
    # One micro-batch of 4 padded to 40 tokens: 160 processed, 100 real, 60 padding.
    stats = length_stats([10, 20, 30, 40], TrainConfig(per_device_train_batch_size=4))
    assert stats["padding_efficiency_plain"] == 0.625
    assert stats["padding_waste_plain"] == 0.375
    assert stats["padding_efficiency_packed"] == 1.0 and stats["padding_waste_packed"] == 0.0
    # Grouping by length pairs 30 with 30 and 10 with 10 at micro-batch 2: no padding at all.
    stats = length_stats([10, 30, 10, 30], TrainConfig(per_device_train_batch_size=2))
    assert stats["padding_waste_grouped"] == 0.0
    plain = stats["padding_efficiency_plain"]
    assert stats["grouping_saves"] == round(1 - plain, 4)
    # A micro-batch of 1 never pads.
    stats = length_stats([10, 30, 10, 30], TrainConfig(per_device_train_batch_size=1))
    assert stats["padding_waste_plain"] == 0.0 and stats["advice"] == []


def test_packing_factor_and_rows_per_packed_sequence():
    # Rows of at most 768 tokens: 5 always fit a 3840-token sequence.
    stats = length_stats([768, 500, 100], TrainConfig(cutoff_len=3840))
    assert stats["packing_factor"] == 5
    assert (stats["packed_sequences"], stats["rows_per_packed_sequence"]) == (1, 3.0)
    stats = length_stats([768] * 10, TrainConfig(cutoff_len=3840))
    assert (stats["packing_factor"], stats["packed_sequences"], stats["rows_per_packed_sequence"]) == (5, 2, 5.0)
    # Longer rows are cut first: a 5000-token row is one whole packed sequence.
    stats = length_stats([5000, 100], TrainConfig(cutoff_len=3840))
    assert (stats["packing_factor"], stats["packed_sequences"]) == (1, 2)


def test_advice_when_lengths_vary():
    lengths = [16] * 14 + [200, 16]
    config = TrainConfig(cutoff_len=256, per_device_train_batch_size=8, packing=False, group_by_length=False)
    stats = length_stats(lengths, config)
    # Whatever the shuffle, one batch of 8 holds the 200-token row: 8 * 200 + 8 * 16 processed.
    assert stats["padding_efficiency_plain"] == round((15 * 16 + 200) / (8 * 200 + 8 * 16), 4) == 0.2546
    assert (stats["batching"], stats["padding_efficiency"]) == ("plain", 0.2546)
    # 200 + 3 * 16 fill one 256-token sequence, the other twelve rows of 16 a second one.
    assert (stats["packed_sequences"], stats["rows_per_packed_sequence"]) == (2, 8.0)
    assert stats["advice"] == [
        "Lengths vary (median 16, p90 16, longest 200 tokens): at micro-batch 8, 75% of the tokens processed with "
        "plain batches are padding. Turn on group_by_length (75% padding) or packing (no padding, about 8 rows "
        "per 256-token sequence)."]
    # Grouped by length (set, or auto on a CPU), a lone long row still pads its batch: packing is the cure.
    for grouped in (config.replace(group_by_length=True), config.replace(group_by_length=None, packing=None)):
        stats = length_stats(lengths, grouped)
        assert stats["batching"] == "group_by_length"
        assert stats["advice"] == [
            "Lengths vary (median 16, p90 16, longest 200 tokens): at micro-batch 8, 75% of the tokens processed "
            "are padding even grouped by length. Turn on packing (no padding, about 8 rows per 256-token sequence)."]
    stats = length_stats(lengths, config.replace(packing=True))
    assert (stats["batching"], stats["padding_efficiency"], stats["advice"]) == ("packing", 1.0, [])
    # Where auto packs (FlashAttention on a GPU) there is nothing to advise.
    from trainer.plan.resolve import Hardware

    gpu = Hardware(device="cuda", flash_attention=True)
    assert length_stats(lengths, config.replace(packing=None, group_by_length=None), gpu)["advice"] == []


def test_histogram_bins_have_round_widths():
    hist = length_histogram([3, 12, 17, 25, 25], bins=5)
    assert hist == {"edges": [0, 5, 10, 15, 20, 25, 30], "counts": [1, 0, 1, 1, 0, 2], "width": 5}
    hist = length_histogram(list(range(1, 1001)))
    assert hist["width"] == 50 and sum(hist["counts"]) == 1000
    assert length_histogram([]) == {"edges": [], "counts": [], "width": 0}
    assert length_stats([], TrainConfig())["count"] == 0


def test_stats_agree_with_the_plan():
    lengths = [(i * 37) % 230 + 12 for i in range(200)]
    config = TrainConfig(cutoff_len=128, per_device_train_batch_size=4, packing=False, group_by_length=False)
    stats = length_stats(lengths, config)
    plan = resolve_plan(config, len(lengths), token_lengths=lengths)
    assert plan.padding_efficiency == stats["padding_efficiency_plain"]
    packed = resolve_plan(config.replace(packing=True, group_by_length=None), len(lengths), token_lengths=lengths)
    assert packed.num_train_samples == stats["packed_sequences"]


@pytest.mark.parametrize("micro", [2, 8])
def test_grouped_is_never_worse_than_plain(micro):
    lengths = [(i * 53) % 400 + 5 for i in range(300)]
    stats = length_stats(lengths, TrainConfig(per_device_train_batch_size=micro, cutoff_len=512))
    assert stats["padding_efficiency_grouped"] >= stats["padding_efficiency_plain"]
    assert 0 < stats["padding_efficiency_plain"] < 1


def _best_fit_reference(lengths, capacity):
    """The plain quadratic best-fit decreasing: every bin scanned for every row."""
    bins, space = [], []
    for n in sorted((min(n, capacity) for n in lengths if n > 0), reverse=True):
        best = -1
        for i, free in enumerate(space):
            if n <= free and (best < 0 or free < space[best]):
                best = i
        if best < 0:
            bins.append([n])
            space.append(capacity - n)
        else:
            bins[best].append(n)
            space[best] -= n
    return bins


def test_fast_best_fit_packs_exactly_like_the_quadratic_one():
    import random

    from trainer.plan.resolve import pack_best_fit_decreasing

    rng = random.Random(0)
    for case in range(40):
        capacity = rng.choice([64, 100, 256, 1000])
        lengths = [rng.randint(0, capacity + 50) for _ in range(rng.randint(0, 300))]
        assert pack_best_fit_decreasing(lengths, capacity) == _best_fit_reference(lengths, capacity), case
