"""A per-run cache of parsed events, read incrementally. Pure Python: no gradio, no torch.

The page holds no state that matters: this cache is rebuilt from the run directory whenever a
process starts, and each poll reads only the bytes appended since the last one (EventReader keeps
the byte offset), so a long run costs the same per poll as a short one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainer.run.events import EventReader

from trainer.run.series import RunSeries


@dataclass
class CachedRun:
    run_dir: Path
    reader: EventReader
    series: RunSeries = field(default_factory=RunSeries)
    version: int = 0  # bumped whenever new events arrive: the page redraws only when it changed
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _drawn: dict = field(default_factory=dict, repr=False)  # (what, version, options) -> value, for this version

    def drawn(self, what: tuple, make: Callable[[], Any]) -> Any:
        """`make()` once per events version and `what` (a chart and its options), shared by every viewer of the
        run: twenty open tabs cost one drawing per new event, not twenty."""
        key = (self.version, *what)
        with self.lock:
            if key in self._drawn:
                return self._drawn[key]
        value = make()
        with self.lock:
            if key[0] == self.version:
                self._drawn = {k: v for k, v in self._drawn.items() if k[0] == self.version}
                self._drawn[key] = value
        return value

    def poll(self) -> int:
        """Read the new events; returns how many arrived."""
        with self.lock:
            try:
                if self.reader.path.stat().st_size < self.reader.offset:  # rewritten: start over
                    self.reader = EventReader(self.reader.path)
                    self.series = RunSeries()
            except OSError:
                pass
            new = self.reader.read_new()
            if new:
                self.series.extend(new)
                self.version += 1
            return len(new)


class EventCache:
    """run directory -> CachedRun, least recently used dropped beyond `capacity` runs."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._runs: OrderedDict[str, CachedRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_dir: str | Path) -> CachedRun:
        key = str(Path(run_dir).resolve())
        with self._lock:
            cached = self._runs.get(key)
            if cached is None or not cached.reader.path.parent.exists():
                cached = CachedRun(Path(key), EventReader.for_run(key))
                self._runs[key] = cached
            self._runs.move_to_end(key)
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)
        return cached

    def poll(self, run_dir: str | Path) -> CachedRun:
        cached = self.get(run_dir)
        cached.poll()
        return cached

    def forget(self, run_dir: str | Path) -> None:
        with self._lock:
            self._runs.pop(str(Path(run_dir).resolve()), None)
