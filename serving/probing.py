"""Probing: per routing key (else per client address), the share of recent requests that were outliers or
lay on the model's decision boundary.

Someone mapping a model's boundary (to find the inputs that just flip a decision) or its blind spots sends
many rows near the boundary or unlike the training data; an ordinary client sends few. Each server counts,
from the rows it writes to the prediction log, per key: requests, rows, and suspicious rows (flagged by the
variant's outlier detector, or within `serving.probing.boundary_margin` of the boundary). Counts live in ten
buckets covering `window_s`; `top` gives the keys with the highest share, so /metrics exports at most
`top_k` series (`mlgate_probing_share`, `mlgate_probing_requests`), never one per key. Memory is bounded
too: past `max_keys` keys in a bucket, new keys count under OTHER.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlgate.serving.settings import ProbingConfig

BUCKETS = 10
OTHER = "(other)"
MAX_KEY_CHARS = 64  # a key is cut to this many characters in the metric's label


@dataclass(frozen=True)
class KeyActivity:
    """One key's requests, rows and suspicious rows in the window."""

    key: str
    requests: int
    rows: int
    suspicious: int

    @property
    def share(self) -> float:
        return self.suspicious / self.rows if self.rows else 0.0


def suspicious_rows(outliers: Sequence[bool] | None, scores: Sequence[Any] | None,
                    probabilities: Sequence[Sequence[float]] | None, margin: float) -> int:
    """Rows flagged as outliers or on the boundary: a score (positive-class probability) within `margin` of
    0.5, or a probability row whose top two classes are within `margin` of each other."""
    n = max(len(outliers or ()), len(scores or ()), len(probabilities or ()))
    return sum(1 for i in range(n) if _flagged(outliers, i) or _near(_at(scores, i), margin)
               or _close_top_two(_at(probabilities, i), margin))


def _at(values: Sequence[Any] | None, i: int) -> Any:
    return values[i] if values is not None and i < len(values) else None


def _flagged(outliers: Sequence[bool] | None, i: int) -> bool:
    return bool(_at(outliers, i))


def _near(score: Any, margin: float) -> bool:
    return isinstance(score, (int, float)) and math.isfinite(score) and abs(score - 0.5) <= margin


def _close_top_two(row: Any, margin: float) -> bool:
    if not isinstance(row, (list, tuple)) or len(row) < 2:
        return False
    first, second = sorted(row, reverse=True)[:2]
    return first - second <= margin


class ProbingWatch:
    """Counts per key over a sliding window of BUCKETS buckets; `clock` is monotonic seconds."""

    def __init__(self, config: ProbingConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._width = config.window_s / BUCKETS
        self._buckets: deque[tuple[int, dict[str, list[int]]]] = deque()

    def observe(self, key: str, rows: int, suspicious: int) -> None:
        """One answered request of `key` with `rows` rows, `suspicious` of them outliers or on the boundary."""
        index = int(self._clock() // self._width)
        if not self._buckets or self._buckets[-1][0] != index:
            self._buckets.append((index, {}))
            self._drop_old(index)
        counts = self._buckets[-1][1]
        entry = counts.get(key)
        if entry is None:
            key = key if len(counts) < self.config.max_keys else OTHER
            entry = counts.setdefault(key, [0, 0, 0])
        entry[0] += 1
        entry[1] += rows
        entry[2] += suspicious

    def _drop_old(self, index: int) -> None:
        while self._buckets and self._buckets[0][0] <= index - BUCKETS:
            self._buckets.popleft()

    def top(self) -> list[KeyActivity]:
        """The `top_k` keys with at least `min_requests` in the window, highest share first."""
        self._drop_old(int(self._clock() // self._width))
        totals: dict[str, list[int]] = {}
        for _, counts in list(self._buckets):
            for key, (requests, rows, suspicious) in list(counts.items()):
                total = totals.setdefault(key, [0, 0, 0])
                total[0] += requests
                total[1] += rows
                total[2] += suspicious
        active = [KeyActivity(key, *total) for key, total in totals.items() if total[0] >= self.config.min_requests]
        active.sort(key=lambda a: (-a.share, -a.requests, a.key))
        return active[:self.config.top_k]
