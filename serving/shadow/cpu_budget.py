"""Pacing background work by the CPU time it uses, so it cannot crowd out the request path."""

from __future__ import annotations

import time


class BusyBudget:
    """A token bucket of CPU time: the shadow's thread may compute `share` of the wall-clock time.

    Shadow work holds the GIL that the answering variant needs too, so it is paced: when the
    budget is spent the worker waits (gathering a bigger batch meanwhile), its queue fills, and
    further mirrored requests are dropped (counted) instead of slowing the answers. Only CPU time
    counts: a shadow that waits (sleeps, I/O) does not hold the GIL.
    """

    def __init__(self, share: float, burst_s: float = 0.05) -> None:
        self._share, self._burst = share, burst_s
        self._credit, self._last = burst_s, time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._credit = min(self._burst, self._credit + (now - self._last) * self._share)
        self._last = now

    def spend(self, seconds: float) -> None:
        self._refill()
        self._credit -= seconds

    def wait_s(self) -> float:
        """How long to wait before the next piece of work (0 when there is credit)."""
        self._refill()
        return 0.0 if self._credit >= 0 else -self._credit / self._share
