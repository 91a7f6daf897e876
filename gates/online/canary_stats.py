"""The canary analysis as sums over the log's requests and routing units, so a look adds only what changed.

`request_stats(rows, feedback, scope)` reduces the served rows of both arms and the feedback of some
requests to `CanaryStats`: per arm the requests, 5xx errors, latency sketch, label-metric successes and
trials, absolute-error moments, and the current step's requests and labelled rows; and the label
conflicts. Each is a sum over request ids, so for the requests the newest rows (predictions or feedback)
touched, stats(all their rows) - stats(their rows seen before) is exactly what changed: a late label, a
correction that replaces a counted label, a replica's late first label.

`unit_stats(rows, scope)` counts the step's randomisation units per route-table version and arm (the SRM
strata of `canary_data.split_strata`): a sum over units, where only a unit's first row in the step (and,
for rows without a version, whether an arm has one) counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgate.gates.online.log_frames import (
    as_float,
    canonical,
    canonical_series,
    label_conflicts,
    labelled,
    ok,
    outlier_counts,
)
from mlgate.gates.online.sketch import Moments, ValueSketch, add_counts

UNKNOWN = "-"  # the stratum of rows logged without a route-table version


@dataclass(frozen=True)
class CanaryScope:
    """What the sums are of: the arms, the label metrics and the positive class, and the step's start."""

    metrics: tuple[str, ...]
    step_started: float
    positive_class: object = None
    champion: str = "champion"
    challenger: str = "challenger"

    @property
    def arms(self) -> tuple[str, str]:
        return self.champion, self.challenger


@dataclass
class ArmStats:
    """One arm: cumulative since the canary started, `step_*` only since the current step started."""

    requests: int = 0
    errors: int = 0
    latency: ValueSketch = field(default_factory=ValueSketch)
    labels: dict[str, list[int]] = field(default_factory=dict)  # metric -> [successes, trials]
    abs_errors: Moments = field(default_factory=Moments)
    step_requests: int = 0
    step_labels: int = 0
    outliers_checked: int = 0  # answered rows the arm's outlier detector checked
    outliers_flagged: int = 0

    def merge(self, other: ArmStats, sign: int = 1) -> None:
        for name in ("requests", "errors", "step_requests", "step_labels", "outliers_checked", "outliers_flagged"):
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        self.latency.merge(other.latency, sign)
        self.abs_errors.merge(other.abs_errors, sign)
        for metric, (x, n) in other.labels.items():
            mine = self.labels.setdefault(metric, [0, 0])
            mine[0] += sign * x
            mine[1] += sign * n

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "latency": self.latency.to_json(),
                "labels": self.labels, "abs_errors": self.abs_errors.to_json(),
                "step_requests": self.step_requests, "step_labels": self.step_labels,
                "outliers_checked": self.outliers_checked, "outliers_flagged": self.outliers_flagged}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArmStats:
        return cls(data["requests"], data["errors"], ValueSketch.from_json(data["latency"]),
                   {m: list(v) for m, v in data["labels"].items()}, Moments.from_json(data["abs_errors"]),
                   data["step_requests"], data["step_labels"], data.get("outliers_checked", 0),
                   data.get("outliers_flagged", 0))


@dataclass
class CanaryStats:
    """Both arms, the label conflicts, the forced requests left out, and the step's units by
    (route-table version or UNKNOWN, arm index)."""

    arms: list[ArmStats] = field(default_factory=lambda: [ArmStats(), ArmStats()])
    conflicts: int = 0
    forced: int = 0
    units: dict[str, int] = field(default_factory=dict)  # "version:arm" -> units in the step

    def merge(self, other: CanaryStats, sign: int = 1) -> CanaryStats:
        for mine, theirs in zip(self.arms, other.arms, strict=True):
            mine.merge(theirs, sign)
        self.conflicts += sign * other.conflicts
        self.forced += sign * other.forced
        add_counts(self.units, other.units, sign)
        return self

    def without_step(self) -> CanaryStats:
        """A copy whose step parts (step requests, labels and units) are zero: for a new step's start."""
        copy = CanaryStats.from_json(self.to_json())
        for arm in copy.arms:
            arm.step_requests = arm.step_labels = 0
        copy.units = {}
        return copy

    def to_json(self) -> dict[str, Any]:
        return {"arms": [arm.to_json() for arm in self.arms], "conflicts": self.conflicts, "forced": self.forced,
                "units": self.units}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CanaryStats:
        return cls([ArmStats.from_json(a) for a in data["arms"]], data["conflicts"], data["forced"],
                   dict(data["units"]))


def request_stats(rows: pd.DataFrame, feedback: pd.DataFrame, scope: CanaryScope, *,
                  cumulative: bool = True, step: bool = True) -> CanaryStats:
    """The sums over the requests in `rows` (all their logged rows) and `feedback` (all their feedback since
    the canary started); `cumulative` and `step` choose which parts to count (a new step recounts its own)."""
    stats = CanaryStats()
    served = rows[rows["shadow"].astype(int) == 0]
    if cumulative:
        stats.conflicts = label_conflicts(feedback)
    for arm, name in zip(stats.arms, scope.arms, strict=True):
        _arm(arm, served[served["variant"] == name], feedback, scope, cumulative, step)
    return stats


def _arm(arm: ArmStats, rows: pd.DataFrame, feedback: pd.DataFrame, scope: CanaryScope, cumulative: bool,
         step: bool) -> None:
    requests = rows.sort_values(["ts", "row_index"], kind="stable").drop_duplicates("request_id")
    joined = labelled(rows, feedback)
    if cumulative:
        arm.requests, arm.errors = len(requests), int((requests["status"] >= 500).sum())
        arm.latency.add(as_float(ok(requests)["latency_ms"]))
        arm.labels = {m: list(metric_counts(m, joined, scope.positive_class)) for m in scope.metrics if m != "mae"}
        arm.outliers_checked, arm.outliers_flagged = outlier_counts(ok(rows))
        if "mae" in scope.metrics:
            errors = np.abs(as_float(joined["prediction"]) - as_float(joined["label"]))
            arm.abs_errors.add(errors[np.isfinite(errors)])
    if step:
        arm.step_requests = int(rows.loc[rows["ts"] >= scope.step_started, "request_id"].nunique())
        arm.step_labels = int((joined["ts"] >= scope.step_started).sum())


def unit_stats(rows: pd.DataFrame, scope: CanaryScope) -> dict[str, int]:
    """Units of the step by "version:arm": each unit (routing key, else request id) once, under the version
    and arm of its first row in the step; rows without a version count once per arm in UNKNOWN."""
    served = rows[rows["shadow"].astype(int) == 0]
    step = served[(served["ts"] >= scope.step_started) & served["variant"].isin(scope.arms)]
    units = units_of(step)
    versions = pd.to_numeric(step["route_version"], errors="coerce") if "route_version" in step.columns \
        else pd.Series(np.nan, index=step.index)
    arm = np.where(step["variant"] == scope.champion, 0, 1)
    frame = pd.DataFrame({"unit": units.to_numpy(), "version": versions.to_numpy(), "arm": arm,
                          "ts": step["ts"].to_numpy(dtype=float)})
    counts: dict[str, int] = {}
    unknown = frame[frame["version"].isna()].drop_duplicates(["unit", "arm"])
    for index, n in unknown.groupby("arm").size().items():
        counts[f"{UNKNOWN}:{index}"] = int(n)
    known = frame[frame["version"].notna()].sort_values("ts", kind="stable").drop_duplicates("unit")
    for (version, index), n in known.groupby(["version", "arm"]).size().items():
        counts[f"{int(version)}:{index}"] = int(n)
    return counts


def metric_counts(metric: str, joined: pd.DataFrame, positive_class: object) -> tuple[int, int]:
    """(successes, trials) of a proportion metric on labelled rows."""
    predicted, actual = canonical_series(joined["prediction"]), canonical_series(joined["label"])
    if metric == "accuracy":
        return int((predicted == actual).sum()), len(joined)
    positive = canonical(positive_class)
    if metric == "recall":
        among = actual == positive
        return int((predicted[among] == positive).sum()), int(among.sum())
    if metric == "precision":
        among = predicted == positive
        return int((actual[among] == positive).sum()), int(among.sum())
    raise ValueError(f"unknown canary metric {metric!r}")


def units_of(rows: pd.DataFrame) -> pd.Series:
    """The randomisation unit of each row: its routing key, else its request id."""
    if "routing_key" not in rows.columns:
        return rows["request_id"]
    return rows["routing_key"].fillna(rows["request_id"])


def step_units(units: Mapping[str, int]) -> tuple[dict[int | None, list[int]], bool]:
    """(version or None -> [champion units, challenger units], whether any row had a version)."""
    strata: dict[int | None, list[int]] = {}
    for key, n in units.items():
        if n <= 0:
            continue
        version, arm = key.rsplit(":", 1)
        strata.setdefault(None if version == UNKNOWN else int(version), [0, 0])[int(arm)] += n
    return strata, any(v is not None for v in strata)
