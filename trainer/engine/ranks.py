"""Which process of a run this is, and what the processes of one run share.

A run of several processes (trainer.engine.distributed launches them) is still one run: rank 0 alone
writes its events (`RankEventWriter`), every rank's memory reading reaches them (`gather_memory`), and
the ranks stop together (`any_rank`). With one process each of these is the plain single-process path.
torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainer.run.events import FAILED, EventWriter


def rank() -> int:
    """This process's global rank (0 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's rank on its own machine (0 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


class RankEventWriter:
    """The run's events as one run: rank 0 writes them all; another rank only its own failure (tagged with
    its rank), so the run fails with the reason of the rank that crashed."""

    def __init__(self, run_dir: str | Path, this_rank: int | None = None):
        self.rank = rank() if this_rank is None else this_rank
        self._writer = EventWriter(run_dir)

    def emit(self, type: str, **data: Any) -> dict[str, Any] | None:
        if self.rank == 0:
            return self._writer.emit(type, **data)
        if type == "status" and data.get("status") == FAILED:
            data["reason"] = f"rank {self.rank}: {data.get('reason')}"
            return self._writer.emit(type, rank=self.rank, **data)
        return None


def _distributed() -> bool:
    if world_size() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def gather_memory(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's reading with every rank's under `devices` (one collective: every rank must call it)."""
    if not _distributed():
        return snapshot
    import torch.distributed as dist

    readings: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(readings, {**snapshot, "rank": rank()})
    return {**snapshot, "devices": readings}


def any_rank(flag: bool, device: Any) -> bool:
    """Whether any rank raised `flag`: the ranks stop at the same step, or the others would wait forever."""
    if not _distributed():
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_ranks_done() -> None:
    """Wait until every rank got here. A rank that exits before rank 0 has written the checkpoint, the adapter
    and the status looks like a failure to the launcher, which then kills the others after 30 seconds."""
    if _distributed():
        import torch.distributed as dist

        dist.barrier()
