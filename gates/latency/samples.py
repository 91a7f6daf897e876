"""Latency samples of load rounds and their summaries: computed first, judged by the gates after.

A round is one model's measured window (warm-up already left out): the latencies of successful
requests, the failed-request count and the window's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RoundSamples:
    """One round of one model: successful latencies (ms), failed requests, measured seconds."""

    model: str
    index: int
    latencies_ms: np.ndarray
    errors: int
    duration_s: float


@dataclass(frozen=True)
class LatencySummary:
    """What a model did in all its measured windows (computed first, judged later)."""

    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    round_p95_ms: tuple[float, ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else float("nan")

    @property
    def rps(self) -> float:
        """Successful requests per measured second."""
        return (self.requests - self.errors) / self.duration_s if self.duration_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
                "duration_s": self.duration_s, "rps": self.rps, "p50_ms": self.p50_ms, "p95_ms": self.p95_ms,
                "p99_ms": self.p99_ms, "mean_ms": self.mean_ms, "round_p95_ms": list(self.round_p95_ms)}


def latencies(rounds: Sequence[RoundSamples]) -> np.ndarray:
    """All successful latencies of the rounds, pooled."""
    parts = [np.asarray(r.latencies_ms, dtype=float) for r in rounds]
    return np.concatenate(parts) if parts else np.empty(0)


def summarize(rounds: Sequence[RoundSamples]) -> LatencySummary:
    """Percentiles on the pooled raw latencies; NaN where there is no successful request."""
    pooled = latencies(rounds)
    errors = sum(r.errors for r in rounds)
    p50, p95, p99 = _percentiles(pooled, (50, 95, 99))
    round_p95 = tuple(_percentiles(np.asarray(r.latencies_ms, dtype=float), (95,))[0] for r in rounds)
    return LatencySummary(pooled.size + errors, errors, float(sum(r.duration_s for r in rounds)),
                          p50, p95, p99, float(pooled.mean()) if pooled.size else float("nan"), round_p95)


def quantile_interval(rounds: Sequence[RoundSamples], q: float, *, level: float, n_boot: int,
                      seed: int) -> tuple[float, float]:
    """Percentile CI of the pooled q-th percentile, resampling rounds, then requests in each round.

    Requests of one round share that round's machine state, so the rounds are the independent units
    (the same two-level bootstrap as the p95 ratio's). NaN when no round has a successful request.
    """
    parts = [np.asarray(r.latencies_ms, dtype=float) for r in rounds if len(r.latencies_ms)]
    if not parts:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    estimates = np.empty(n_boot)
    for b in range(n_boot):
        chosen = rng.integers(0, len(parts), size=len(parts))
        estimates[b] = np.percentile(np.concatenate([resample(parts[i], rng) for i in chosen]), q)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(estimates, [tail, 1.0 - tail])
    return float(low), float(high)


def resample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bootstrap resample (with replacement, same size) of one round's latencies."""
    return values[rng.integers(0, values.size, size=values.size)]


def _percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    if values.size == 0:
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]
