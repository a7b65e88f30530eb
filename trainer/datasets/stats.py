"""Token-length statistics of a dataset's rows: percentiles, a histogram, how much cutoff_len cuts,
padding efficiency of plain, length-grouped and packed batches, and advice in sentences.

Pure: the lengths come from tokenizing (trainer/datasets/tokenize.py); the batching figures come from
trainer/plan/resolve.py, so the Data tab, `check` and the plan agree.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from trainer.config import TrainConfig
from trainer.plan.resolve import (CPU, Hardware, length_group_rows, pack_best_fit_decreasing, packing_factor,
                                  padding_efficiency, resolve_packing)

PADDING_ADVICE_THRESHOLD = 0.8  # the plan warns below this padding efficiency too


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below it."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def suggested_cutoff_len(lengths: Sequence[int], keep: float = 0.99, multiple: int = 8) -> int:
    """The cutoff_len that keeps `keep` of the rows whole, rounded up to a multiple of 8 (at least 8)."""
    value = percentile(sorted(lengths), keep * 100)
    return max(8, math.ceil(value / multiple) * multiple)


def _nice_width(span: int, bins: int) -> int:
    raw = max(1, math.ceil(span / bins))
    magnitude = 10 ** max(0, len(str(raw)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= raw:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def length_histogram(lengths: Sequence[int], bins: int = 30) -> dict[str, Any]:
    """Bins of equal, round width for a bar chart: edges[i] <= length < edges[i + 1] counts in counts[i]."""
    if not lengths:
        return {"edges": [], "counts": [], "width": 0}
    low, high = min(lengths), max(lengths)
    width = _nice_width(high - low + 1, bins)
    first = (low // width) * width
    count = (high - first) // width + 1
    counts = [0] * count
    for n in lengths:
        counts[(n - first) // width] += 1
    return {"edges": [first + i * width for i in range(count + 1)], "counts": counts, "width": width}


def length_stats(lengths: Sequence[int], cfg: TrainConfig, hw: Optional[Hardware] = None) -> dict[str, Any]:
    """Token-length statistics of rows (lengths before truncation) under cfg's cutoff_len and micro-batch.

    hw decides what `auto` packing / group_by_length resolve to (plan.resolve_packing; a CPU when
    not given): `batching` names the strategy the run would use, `padding_efficiency` its figure.

    padding_efficiency_* = real tokens / processed tokens (padded to the longest row of each
    micro-batch), padding_waste_* = padded tokens / processed tokens, for plain (shuffled) batches,
    group_by_length and packing (padding-free). packing_factor: rows of the longest (cut) length that
    fit one cutoff_len sequence; rows_per_packed_sequence: the average with best-fit packing.
    """
    values = [int(n) for n in lengths if n > 0]
    cutoff = cfg.cutoff_len
    micro = cfg.per_device_train_batch_size
    if not values:
        return {"count": 0, "cutoff_len": cutoff, "micro_batch": micro, "advice": [],
                "histogram": length_histogram([])}
    ordered = sorted(values)
    n = len(values)
    truncated = [v for v in values if v > cutoff]
    clipped_max = min(ordered[-1], cutoff)
    plain = padding_efficiency(values, micro, "plain", cutoff, cfg.seed)
    # transformers sorts mega-batches of min(50, rows // (4 × micro × accumulation)) batches (plan.length_group_rows)
    grouped = padding_efficiency(values, micro, "group_by_length", cutoff, cfg.seed,
                                 length_group_rows(len(values), micro * cfg.gradient_accumulation_steps))
    packed = padding_efficiency(values, micro, "packing", cutoff, cfg.seed)
    packs = pack_best_fit_decreasing(values, cutoff)
    stats: dict[str, Any] = {
        "count": n,
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(sum(values) / n, 2),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "cutoff_len": cutoff,
        "micro_batch": micro,
        "truncated_rows": len(truncated),
        "truncated_share": round(len(truncated) / n, 4),
        "tokens_cut": sum(v - cutoff for v in truncated),
        "tokens_after_cut": sum(min(v, cutoff) for v in values),
        "padding_efficiency_plain": round(plain, 4),
        "padding_efficiency_grouped": round(grouped, 4),
        "padding_efficiency_packed": round(packed, 4),
        "padding_waste_plain": round(1 - plain, 4),
        "padding_waste_grouped": round(1 - grouped, 4),
        "padding_waste_packed": round(1 - packed, 4),
        # Share of processed tokens that grouping saves compared with plain batches.
        "grouping_saves": round(1 - plain / grouped, 4),
        "packed_sequences": len(packs),
        "rows_per_packed_sequence": round(n / len(packs), 2),
        "packing_factor": packing_factor(clipped_max, cutoff),
        "suggested_cutoff_len": suggested_cutoff_len(values),
        "histogram": length_histogram(values),
    }
    packing, group = resolve_packing(cfg, hw or CPU)
    stats["batching"] = "packing" if packing else ("group_by_length" if group else "plain")
    stats["padding_efficiency"] = {"packing": stats["padding_efficiency_packed"],
                                   "group_by_length": stats["padding_efficiency_grouped"],
                                   "plain": stats["padding_efficiency_plain"]}[stats["batching"]]
    stats["advice"] = length_advice(stats)
    return stats


def length_advice(stats: dict[str, Any]) -> list[str]:
    """Sentences for the plan: truncation, and packing or grouping when lengths vary."""
    advice = []
    n, cutoff = stats["count"], stats["cutoff_len"]
    if stats["truncated_rows"]:
        advice.append(
            f"{stats['truncated_rows']} of {n} rows ({stats['truncated_share']:.1%}) are longer than cutoff_len "
            f"{cutoff}: {stats['tokens_cut']} tokens are cut. cutoff_len {stats['suggested_cutoff_len']} keeps "
            "99% of the rows whole.")
    batching = stats["batching"]
    if stats["micro_batch"] > 1 and batching != "packing" and stats["padding_efficiency"] < PADDING_ADVICE_THRESHOLD:
        packing = (f"packing (no padding, about {stats['rows_per_packed_sequence']:g} rows per {cutoff}-token "
                   "sequence)")
        spread = (f"Lengths vary (median {stats['p50']}, p90 {stats['p90']}, longest {stats['max']} tokens): at "
                  f"micro-batch {stats['micro_batch']}")
        if batching == "group_by_length":
            advice.append(f"{spread}, {stats['padding_waste_grouped']:.0%} of the tokens processed are padding even "
                          f"grouped by length. Turn on {packing}.")
        else:
            advice.append(f"{spread}, {stats['padding_waste_plain']:.0%} of the tokens processed with plain batches "
                          f"are padding. Turn on group_by_length ({stats['padding_waste_grouped']:.0%} padding) or "
                          f"{packing}.")
    return advice
