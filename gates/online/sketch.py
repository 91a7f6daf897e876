"""Mergeable summaries for incremental online analysis: a value sketch, moments, capped counters.

A look at the prediction log must cost the same whatever the log's size, so each analysis keeps sums over
the rows it has seen and adds only what the newest rows change. Every summary here can be added to and
subtracted from (a row whose contribution changes is taken out and put back), and serialises to JSON.

`ValueSketch` holds a distribution: the exact values with their counts while there are at most
`EXACT_LIMIT` distinct ones (discrete features, labels-like scores, small samples: every statistic is
then exactly the one of the raw values), then counts in logarithmic bins of relative accuracy
`RELATIVE_ACCURACY` (DDSketch's mapping): each value is known to within +-0.5% of itself, so a quantile,
a rank statistic or a bin share is that of values moved by at most 0.5%.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EXACT_LIMIT = 1024
RELATIVE_ACCURACY = 0.005
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-12  # |value| below this is counted as 0 once binned
_MIN_INDEX = math.ceil(math.log(_TINY) / _LOG_GAMMA)


@dataclass
class ValueSketch:
    """Counts of values: exact (`exact` value -> count) or binned (`bins` signed bin -> count)."""

    exact: dict[float, int] | None = field(default_factory=dict)
    bins: dict[int, int] = field(default_factory=dict)

    @property
    def binned(self) -> bool:
        return self.exact is None

    @property
    def total(self) -> int:
        return int(sum((self.exact if self.exact is not None else self.bins).values()))

    def add(self, values: Iterable[float] | np.ndarray, sign: int = 1) -> ValueSketch:
        """Count finite `values` (`sign` -1 takes them out again); NaN and infinities are ignored."""
        array = np.asarray(values, dtype=float).ravel()
        array = array[np.isfinite(array)]
        if array.size == 0:
            return self
        if self.exact is not None:
            keys, counts = np.unique(array, return_counts=True)
            if len(self.exact) + keys.size <= EXACT_LIMIT or sign < 0:
                _accumulate(self.exact, keys.tolist(), (counts * sign).tolist())
            else:  # too many values to keep them all (and too many to count them one by one first)
                merged = np.unique(np.concatenate([np.fromiter(self.exact, float, len(self.exact)), keys]))
                if merged.size <= EXACT_LIMIT:
                    _accumulate(self.exact, keys.tolist(), (counts * sign).tolist())
                    return self
                self._to_bins()
                return self.add(array, sign)
            if len(self.exact) > EXACT_LIMIT:
                self._to_bins()
            return self
        keys, counts = np.unique(_bin_of(array), return_counts=True)
        _accumulate(self.bins, keys.tolist(), (counts * sign).tolist())
        return self

    def merge(self, other: ValueSketch, sign: int = 1) -> ValueSketch:
        """Add (or with `sign` -1 subtract) another sketch's counts; binned if either is."""
        if other.exact is not None and self.exact is not None:
            _accumulate(self.exact, list(other.exact), [c * sign for c in other.exact.values()])
            if len(self.exact) > EXACT_LIMIT:
                self._to_bins()
            return self
        if self.exact is not None:
            self._to_bins()
        bins = other.bins if other.exact is None else _bins_of(other.exact)
        _accumulate(self.bins, list(bins), [c * sign for c in bins.values()])
        return self

    def values_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted values, counts): the exact values, or each bin's representative (its geometric middle)."""
        items = self.exact if self.exact is not None else self.bins
        keys = np.array(list(items), dtype=float)
        counts = np.array(list(items.values()), dtype=np.int64)
        if self.exact is None:
            keys = _representative(keys.astype(np.int64))
        order = np.argsort(keys, kind="stable")
        keep = counts[order] > 0
        return keys[order][keep], counts[order][keep]

    def quantile(self, q: float) -> float:
        """numpy's default (linear) quantile of the values; NaN when empty."""
        values, counts = self.values_counts()
        n = int(counts.sum())
        if n == 0:
            return math.nan
        position = (n - 1) * q
        low = math.floor(position)
        ends = np.cumsum(counts)
        below, above = (values[min(np.searchsorted(ends, k, side="right"), values.size - 1)]
                        for k in (low, min(low + 1, n - 1)))
        return float(below + (position - low) * (above - below))

    def shares(self, edges: np.ndarray) -> np.ndarray:
        """Share of the values in each right-closed bin (-inf, e0], (e0, e1], ..., (e_last, inf)."""
        values, counts = self.values_counts()
        slots = np.searchsorted(np.asarray(edges, dtype=float), values, side="left")
        counted = np.bincount(slots, weights=counts, minlength=len(edges) + 1)
        return counted / max(int(counts.sum()), 1)

    def sample(self, max_size: int, rng: np.random.Generator) -> np.ndarray:
        """The values (representatives once binned) as an array; a seeded subsample of `max_size` when
        there are more (drawn without replacement, as `rng.choice` on the raw values would)."""
        values, counts = self.values_counts()
        if counts.sum() > max_size:
            counts = rng.multivariate_hypergeometric(counts, max_size)
        return np.repeat(values, counts)

    def single_value(self) -> bool:
        """True when every counted value is the same one (a constant; never once binned)."""
        return self.exact is not None and sum(1 for c in self.exact.values() if c > 0) == 1

    def to_json(self) -> dict[str, Any]:
        if self.exact is not None:
            return {"values": list(self.exact), "counts": list(self.exact.values())}
        return {"bins": list(self.bins), "counts": list(self.bins.values())}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ValueSketch:
        if "values" in data:
            return cls(dict(zip(map(float, data["values"]), data["counts"], strict=True)))
        return cls(None, dict(zip(map(int, data["bins"]), data["counts"], strict=True)))

    def _to_bins(self) -> None:
        self.bins, self.exact = _bins_of(self.exact or {}), None


def _accumulate(target: dict[Any, int], keys: list[Any], counts: list[int]) -> None:
    for key, count in zip(keys, counts, strict=True):
        total = target.get(key, 0) + int(count)
        if total:
            target[key] = total
        else:
            target.pop(key, None)


def _bin_of(values: np.ndarray) -> np.ndarray:
    """Signed bin of each value: 0 for |v| < _TINY, else +-(k - _MIN_INDEX + 1) for |v| in (gamma^(k-1), gamma^k]."""
    magnitude = np.abs(values)
    small = magnitude < _TINY
    index = np.ceil(np.log(np.where(small, 1.0, magnitude)) / _LOG_GAMMA).astype(np.int64)
    shifted = index - _MIN_INDEX + 1  # >= 1 for every |v| >= _TINY
    return np.where(small, 0, np.where(values < 0, -shifted, shifted))


def _representative(bins: np.ndarray) -> np.ndarray:
    index = np.abs(bins) + _MIN_INDEX - 1
    middle = 2 * np.power(_GAMMA, index.astype(float)) / (_GAMMA + 1)
    return np.where(bins == 0, 0.0, np.sign(bins) * middle)


def _bins_of(exact: Mapping[float, int]) -> dict[int, int]:
    binned: dict[int, int] = {}
    if exact:
        keys = _bin_of(np.array(list(exact), dtype=float)).tolist()
        _accumulate(binned, keys, list(exact.values()))
    return binned


@dataclass
class Moments:
    """Count, sums and sums of squares and products of paired values (a, b): enough for a mean, a
    variance, a Pearson correlation and the mean absolute difference |b - a| with its spread."""

    n: int = 0
    sa: float = 0.0
    sb: float = 0.0
    saa: float = 0.0
    sbb: float = 0.0
    sab: float = 0.0
    sd: float = 0.0
    sdd: float = 0.0

    def add(self, a: np.ndarray, b: np.ndarray | None = None, sign: int = 1) -> Moments:
        a = np.asarray(a, dtype=float)
        b = a if b is None else np.asarray(b, dtype=float)
        d = np.abs(b - a)
        self.n += sign * int(a.size)
        for name, value in (("sa", a.sum()), ("sb", b.sum()), ("saa", (a * a).sum()), ("sbb", (b * b).sum()),
                            ("sab", (a * b).sum()), ("sd", d.sum()), ("sdd", (d * d).sum())):
            setattr(self, name, getattr(self, name) + sign * float(value))
        return self

    def merge(self, other: Moments, sign: int = 1) -> Moments:
        for name in ("n", "sa", "sb", "saa", "sbb", "sab", "sd", "sdd"):
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        return self

    @property
    def mean_a(self) -> float:
        return self.sa / self.n if self.n else math.nan

    def var_a(self) -> float:
        """Sample variance of a (ddof 1)."""
        return max(self.saa - self.sa * self.sa / self.n, 0.0) / (self.n - 1) if self.n > 1 else math.nan

    def correlation(self) -> float:
        """Pearson r of a and b."""
        cov = self.sab - self.sa * self.sb / self.n
        var_a, var_b = self.saa - self.sa ** 2 / self.n, self.sbb - self.sb ** 2 / self.n
        return cov / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else math.nan

    def mean_abs_difference(self) -> tuple[float, float]:
        """Mean of |b - a| and its sample standard deviation (ddof 1)."""
        mean = self.sd / self.n if self.n else math.nan
        spread = math.sqrt(max(self.sdd - self.sd * self.sd / self.n, 0.0) / (self.n - 1)) if self.n > 1 else math.nan
        return mean, spread

    def to_json(self) -> list[float]:
        return [self.n, self.sa, self.sb, self.saa, self.sbb, self.sab, self.sd, self.sdd]

    @classmethod
    def from_json(cls, data: list[float]) -> Moments:
        return cls(int(data[0]), *map(float, data[1:]))


OTHER = "\x00other"  # the bucket of a capped counter once it holds `limit` keys


def add_counts(target: dict[Any, int], counts: Mapping[Any, int], sign: int = 1, limit: int | None = None) -> None:
    """target += sign * counts, in place; beyond `limit` keys a new key is counted under OTHER."""
    for key, count in counts.items():
        if limit is not None and key not in target and len(target) >= limit:
            key = OTHER
        total = target.get(key, 0) + sign * int(count)
        if total:
            target[key] = total
        else:
            target.pop(key, None)
