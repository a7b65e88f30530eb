"""Splitting an effective batch into micro-batch × gradient accumulation. Pure arithmetic.

One rule for "a smaller micro-batch, the same effective batch": the out-of-memory advice, the
scheduler's out-of-memory recovery, the probe and the memory plan's suggestion all call it, so they
never disagree (micro-batch 5 × accumulation 3 becomes 1 × 15 everywhere: 15 has no divisor between).
"""

from __future__ import annotations

import math
from typing import Optional


def largest_divisor_up_to(effective: int, limit: int) -> int:
    """The largest micro-batch in [1, limit] that divides the effective batch exactly (1 always does)."""
    if effective < 1:
        raise ValueError(f"the effective batch must be at least 1, not {effective}")
    limit = min(int(limit), effective)
    return max((d for d in range(1, limit + 1) if effective % d == 0), default=1)


def smaller_micro_batch(micro: int, accumulation: int) -> Optional[tuple[int, int]]:
    """After an out-of-memory error: (micro-batch, accumulation) with at most half the micro-batch and
    exactly the same effective batch (micro × accumulation); None when the micro-batch is already 1.

    At most half, because activation memory grows with the micro-batch: a step down by one would often
    run out of memory again. The largest divisor of the effective batch up to half is taken, so as much
    of the throughput as possible is kept: 9 × 2 -> 3 × 6, 6 × 2 -> 3 × 4, 5 × 3 -> 1 × 15.
    """
    if micro < 1 or accumulation < 1:
        raise ValueError(f"micro-batch and accumulation must be at least 1, not {micro} and {accumulation}")
    if micro == 1:
        return None
    effective = micro * accumulation
    new_micro = largest_divisor_up_to(effective, micro // 2)
    return new_micro, effective // new_micro


def keep_effective_batch(effective: int, largest: int) -> tuple[int, int]:
    """(micro-batch, accumulation) for the largest micro-batch that fits (`largest`, from the probe or the
    memory plan), keeping the effective batch.

    The biggest divisor of the effective batch up to `largest` keeps it exactly. Only when that divisor
    is under half of what fits (a prime effective batch, say) is the throughput of the larger micro-batch
    worth more: then the largest micro-batch and the accumulation that comes closest from above.
    (0, 0) when nothing fits.
    """
    if largest < 1:
        return 0, 0
    largest = min(largest, effective)
    divisor = largest_divisor_up_to(effective, largest)
    if divisor * 2 > largest or divisor == largest:
        return divisor, effective // divisor
    return largest, math.ceil(effective / largest)
