"""The shadow analysis as sums over the log's requests, so a look adds only what the newest rows change.

`shadow_stats(rows, scope)` reduces prediction-log rows (the champion's served rows and the challenger's
shadow rows of some requests) to `ShadowStats`: counts, coverage, failures by kind, agreement and score
sums of the paired rows, output distributions, the served inputs per feature, and the timed shadow calls.
Every part except the timed calls is a sum over request ids, so for requests the newest rows touched,
stats(all their rows) - stats(their rows seen before) is exactly what those rows change
(`ShadowStats.merge`). The timed calls are counted row by row (`CallStats`), each row once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mlgate.gates.online.log_frames import as_float, canonical_series, ok, outlier_counts
from mlgate.gates.online.sketch import Moments, ValueSketch, add_counts

FAILURE_KINDS = 200  # distinct failure messages kept; the rest are counted together
CATEGORIES = 1000  # distinct values kept per categorical feature; the rest are counted together
RECENT_CALLS = 2000  # timed calls remembered, so a call whose rows come in two looks counts once


@dataclass(frozen=True)
class ShadowScope:
    """What the sums are of: the two variants, the task (which output is numeric), the features, and the
    model-time ratio beyond which a timed call counts as slow."""

    task: str
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    latency_limit: float = 1.5
    champion: str = "champion"
    challenger: str = "challenger"
    latency_slack_ms: float = 0.0  # a call at most this much slower than the champion's never counts as slow


@dataclass
class FeatureSums:
    """One input feature over the served requests: how many logged it, and its values (numeric: a
    sketch of the numbers; categorical: counts by the value's JSON text). Nulls are the rest."""

    present: int = 0
    values: ValueSketch | None = None
    categories: dict[str, int] | None = None

    def merge(self, other: FeatureSums, sign: int = 1) -> None:
        self.present += sign * other.present
        if other.values is not None:
            self.values = (self.values or ValueSketch()).merge(other.values, sign)
        if other.categories is not None:
            self.categories = self.categories if self.categories is not None else {}
            add_counts(self.categories, other.categories, sign, CATEGORIES)

    @property
    def counted(self) -> int:
        """Non-null values counted."""
        if self.values is not None:
            return self.values.total
        return sum(self.categories.values()) if self.categories else 0


@dataclass
class CallStats:
    """The challenger's timed shadow calls (one per model call: its time, the champion's on the same rows)."""

    calls: int = 0
    over: int = 0  # calls slower than the scope's latency_limit times the champion, and by more than its slack
    rows: int = 0
    ratios: ValueSketch = field(default_factory=ValueSketch)
    latency: ValueSketch = field(default_factory=ValueSketch)
    baseline: ValueSketch = field(default_factory=ValueSketch)
    recent: list[list[float]] = field(default_factory=list)  # (latency_ms, baseline_ms) of the latest calls

    def add_rows(self, challenger_ok: pd.DataFrame, limit: float, slack_ms: float = 0.0) -> None:
        """Count challenger rows answered with 200 (each row once): a row of a call already counted adds a row."""
        timed = "baseline_ms" in challenger_ok.columns and len(challenger_ok)
        times = pd.DataFrame({name: as_float(challenger_ok[name]) if timed else np.empty(0)
                              for name in ("latency_ms", "baseline_ms")})
        times = times[np.isfinite(times["latency_ms"]) & np.isfinite(times["baseline_ms"]) & (times["baseline_ms"] > 0)]
        if times.empty:
            return
        calls = times.groupby(["latency_ms", "baseline_ms"], sort=False).size().rename("rows").reset_index()
        self.rows += int(calls["rows"].sum())
        known = {tuple(key) for key in self.recent}
        fresh = calls[[(lat, base) not in known for lat, base in zip(calls["latency_ms"], calls["baseline_ms"],
                                                                     strict=True)]]
        ratios = (fresh["latency_ms"] / fresh["baseline_ms"]).to_numpy(dtype=float)
        self.calls += len(fresh)
        extra = (fresh["latency_ms"] - fresh["baseline_ms"]).to_numpy(dtype=float)
        self.over += int(((ratios > limit) & (extra > slack_ms)).sum())
        self.ratios.add(ratios)
        self.latency.add(fresh["latency_ms"].to_numpy(dtype=float))
        self.baseline.add(fresh["baseline_ms"].to_numpy(dtype=float))
        self.recent = (self.recent + fresh[["latency_ms", "baseline_ms"]].to_numpy().tolist())[-RECENT_CALLS:]

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "over": self.over, "rows": self.rows, "ratios": self.ratios.to_json(),
                "latency": self.latency.to_json(), "baseline": self.baseline.to_json(), "recent": self.recent}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallStats:
        return cls(data["calls"], data["over"], data["rows"], ValueSketch.from_json(data["ratios"]),
                   ValueSketch.from_json(data["latency"]), ValueSketch.from_json(data["baseline"]),
                   [list(map(float, key)) for key in data["recent"]])


@dataclass
class ShadowStats:
    """Sums over requests: served (the champion answered 200), attempted (the challenger's mirror was run),
    done (both), the challenger's failures, served requests per second of their time (coverage), the
    paired rows' agreement, scores and output labels, and the served inputs. `calls` and
    `newest_attempted` are kept row by row."""

    served: int = 0
    attempted: int = 0
    done: int = 0
    challenger_rows: int = 0
    forced: int = 0
    failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    served_seconds: dict[int, int] = field(default_factory=dict)
    keyed: int = 0  # served requests whose logged input has any column
    pairs: int = 0
    agree: int = 0
    labels_a: dict[str, int] = field(default_factory=dict)
    labels_b: dict[str, int] = field(default_factory=dict)
    scores: Moments = field(default_factory=Moments)
    score_a: ValueSketch = field(default_factory=ValueSketch)
    score_b: ValueSketch = field(default_factory=ValueSketch)
    features: dict[str, FeatureSums] = field(default_factory=dict)
    newest_attempted: float = -math.inf
    calls: CallStats = field(default_factory=CallStats)
    outliers_checked: int = 0  # the challenger's answered rows its outlier detector checked
    outliers_flagged: int = 0  # ... and flagged

    def merge(self, other: ShadowStats, sign: int = 1) -> ShadowStats:
        """self += sign * other for the sums over requests (not `calls`, not `newest_attempted`)."""
        for name in ("served", "attempted", "done", "challenger_rows", "forced", "failures", "keyed", "pairs",
                     "agree", "outliers_checked", "outliers_flagged"):
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        add_counts(self.failure_kinds, other.failure_kinds, sign, FAILURE_KINDS)
        for target, source in ((self.labels_a, other.labels_a), (self.labels_b, other.labels_b)):
            add_counts(target, source, sign)
        add_counts(self.served_seconds, other.served_seconds, sign)
        self.scores.merge(other.scores, sign)
        self.score_a.merge(other.score_a, sign)
        self.score_b.merge(other.score_b, sign)
        for name, sums in other.features.items():
            self.features.setdefault(name, FeatureSums()).merge(sums, sign)
        return self

    def settled_before(self, second: int) -> int:
        """Served requests logged in whole seconds before `second` (coverage's settled requests)."""
        return sum(n for s, n in self.served_seconds.items() if s < second)

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in ("served", "attempted", "done", "challenger_rows", "forced",
                                                         "failures", "failure_kinds", "keyed", "pairs", "agree",
                                                         "labels_a", "labels_b", "outliers_checked",
                                                         "outliers_flagged")}
        data.update(served_seconds=[list(self.served_seconds), list(self.served_seconds.values())],
                    scores=self.scores.to_json(), score_a=self.score_a.to_json(), score_b=self.score_b.to_json(),
                    newest_attempted=None if math.isinf(self.newest_attempted) else self.newest_attempted,
                    calls=self.calls.to_json(), features={name: _feature_json(f) for name, f in self.features.items()})
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShadowStats:
        plain = {k: data[k] for k in ("served", "attempted", "done", "challenger_rows", "forced", "failures",
                                      "failure_kinds", "keyed", "pairs", "agree", "labels_a", "labels_b")}
        seconds, counts = data["served_seconds"]
        newest = data["newest_attempted"]
        return cls(**plain, served_seconds=dict(zip(map(int, seconds), counts, strict=True)),
                   outliers_checked=data.get("outliers_checked", 0), outliers_flagged=data.get("outliers_flagged", 0),
                   scores=Moments.from_json(data["scores"]), score_a=ValueSketch.from_json(data["score_a"]),
                   score_b=ValueSketch.from_json(data["score_b"]),
                   features={name: _feature_from_json(f) for name, f in data["features"].items()},
                   newest_attempted=-math.inf if newest is None else float(newest),
                   calls=CallStats.from_json(data["calls"]))


def shadow_stats(rows: pd.DataFrame, scope: ShadowScope) -> ShadowStats:
    """The sums over the requests in `rows` (every logged row of each request there, of both variants)."""
    stats = ShadowStats()
    champ = rows[(rows["variant"] == scope.champion) & (rows["shadow"].astype(int) == 0)]
    chall = rows[(rows["variant"] == scope.challenger) & (rows["shadow"].astype(int) == 1)]
    served, attempted = _first_rows(ok(champ)), _first_rows(chall)
    stats.served, stats.attempted, stats.challenger_rows = len(served), len(attempted), len(chall)
    served_ids = set(served["request_id"])
    stats.done = sum(1 for request in attempted["request_id"] if request in served_ids)
    failed = attempted[attempted["status"] != 200]
    stats.failures = len(failed)
    add_counts(stats.failure_kinds, failure_kinds(failed), limit=FAILURE_KINDS)
    seconds = np.floor(served["ts"].to_numpy(dtype=float)).astype(np.int64)
    keys, counts = np.unique(seconds, return_counts=True)
    stats.served_seconds = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    _add_pairs(stats, ok(champ), ok(chall), scope.task)
    _add_features(stats, served, scope)
    stats.outliers_checked, stats.outliers_flagged = outlier_counts(ok(chall))
    return stats



def add_row_level(stats: ShadowStats, new_rows: pd.DataFrame, scope: ShadowScope) -> None:
    """The parts counted row by row, from rows never seen before: timed calls and the newest mirror's time."""
    rows = new_rows
    chall = rows[(rows["variant"] == scope.challenger) & (rows["shadow"].astype(int) == 1)]
    if len(chall):
        stats.newest_attempted = max(stats.newest_attempted, float(chall["ts"].max()))
    stats.calls.add_rows(ok(chall), scope.latency_limit, scope.latency_slack_ms)


def failure_kinds(failed: pd.DataFrame) -> dict[str, int]:
    """'HTTP 400 missing_column: ...' -> count, for the challenger's failed mirrors."""
    errors = failed["error"] if "error" in failed.columns else pd.Series([None] * len(failed), index=failed.index)
    keys = [f"HTTP {int(status)} {str(error or 'no message')[:160]}"
            for status, error in zip(failed["status"], errors, strict=True)]
    found: dict[str, int] = {}
    for key in keys:
        found[key] = found.get(key, 0) + 1
    return found


def _first_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request: its first in log order (ts, row_index)."""
    return rows.sort_values(["ts", "row_index"], kind="stable").drop_duplicates("request_id")


def _add_pairs(stats: ShadowStats, champ: pd.DataFrame, chall: pd.DataFrame, task: str) -> None:
    key = ["request_id", "row_index"]
    cols = [*key, "prediction", "score"] if "score" in champ.columns else [*key, "prediction"]
    pairs = champ[cols].merge(chall[cols], on=key, suffixes=("_a", "_b"))
    stats.pairs = len(pairs)
    if pairs.empty:
        return
    a_labels, b_labels = canonical_series(pairs["prediction_a"]), canonical_series(pairs["prediction_b"])
    stats.agree = int((a_labels == b_labels).sum())
    for target, labels in ((stats.labels_a, a_labels), (stats.labels_b, b_labels)):
        values, counts = np.unique(labels.astype(str), return_counts=True)
        add_counts(target, dict(zip(values.tolist(), counts.tolist(), strict=True)))
    numeric = ("prediction_a", "prediction_b") if task == "regression" else ("score_a", "score_b")
    if numeric[0] not in pairs.columns:
        return
    a, b = as_float(pairs[numeric[0]]), as_float(pairs[numeric[1]])
    both = np.isfinite(a) & np.isfinite(b)
    stats.scores.add(a[both], b[both])
    stats.score_a.add(a[both])
    stats.score_b.add(b[both])


def _add_features(stats: ShadowStats, served: pd.DataFrame, scope: ShadowScope) -> None:
    records = [f if isinstance(f, dict) else {} for f in served["features"]] if "features" in served.columns else []
    stats.keyed = sum(1 for record in records if record)
    for name in (*scope.numeric, *scope.categorical):
        sums = stats.features.setdefault(name, FeatureSums())
        logged = [record[name] for record in records if name in record]
        sums.present = len(logged)
        if name in scope.numeric:
            values = pd.to_numeric(pd.Series(logged, dtype=object), errors="coerce").to_numpy(dtype=float)
            sums.values = ValueSketch().add(values)
        else:
            sums.categories = {}
            texts = [_category_text(v) for v in logged]
            kinds, counts = np.unique(np.array([t for t in texts if t is not None], dtype=object), return_counts=True)
            add_counts(sums.categories, dict(zip(kinds.tolist(), counts.tolist(), strict=True)), limit=CATEGORIES)


def _category_text(value: Any) -> str | None:
    """A categorical value as JSON text (decoded back when the live inputs are rebuilt); None for a null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _feature_json(sums: FeatureSums) -> dict[str, Any]:
    return {"present": sums.present, "values": None if sums.values is None else sums.values.to_json(),
            "categories": sums.categories}


def _feature_from_json(data: dict[str, Any]) -> FeatureSums:
    values = data.get("values")
    return FeatureSums(data["present"], None if values is None else ValueSketch.from_json(values),
                       data.get("categories"))
