"""Counting the mirrors a server chose not to run, per time window, for the shadow analysis.

A mirror the server sheds (its queue is full, its CPU budget is spent, it is closing, or the route
table stopped mirroring to the variant) was never attempted: the analysis must not count it as a
challenger failure. Shedding happens under overload, so recording it must add no write per request:
the tally only counts in memory and hands over one row per reason per window (`window_s`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

SHED_REASONS = ("queue_full", "cpu_budget", "closing", "table_changed")
ShedSink = Callable[[list[dict[str, Any]]], None]  # rows of the shadow_shed table


class ShedTally:
    """Shed mirrors of one shadow variant, counted by reason and flushed once per window."""

    def __init__(self, variant: str, model_version: str, sink: ShedSink | None, window_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.variant, self.model_version = variant, model_version
        self._sink, self._window_s, self._clock = sink, window_s, clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._window_start = clock()

    def add(self, reason: str, count: int = 1) -> None:
        """Count `count` shed mirrors; hands the window over when it has lasted `window_s`."""
        if reason not in SHED_REASONS:
            raise ValueError(f"unknown shed reason {reason!r}; expected one of {', '.join(SHED_REASONS)}")
        with self._lock:
            self._counts[reason] += count
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        """Write the current window's counts (at once when `force`, else only once the window is over)."""
        now = self._clock()
        with self._lock:
            if not self._counts or (not force and now - self._window_start < self._window_s):
                return
            rows = [{"variant": self.variant, "model_version": self.model_version, "reason": reason,
                     "count": count, "window_start": self._window_start, "ts": now}
                    for reason, count in sorted(self._counts.items())]
            self._counts.clear()
            self._window_start = now
        if self._sink is not None:
            self._sink(rows)
