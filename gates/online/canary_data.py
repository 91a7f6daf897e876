"""From the prediction log and the feedback to the canary's counts per arm, then to `judge_canary`.

Served rows only (shadow rows are not part of a canary). Requests count once per variant; labelled rows
are the served rows answered with 200 that have a label; units for the SRM test are routing keys (the
unit the router assigns), else request ids.

When rows carry the route-table version that routed them (`route_version`), the step's units are split
by version (`split_strata`), each unit counted once, under the version of its first row in the step: a
key seen first under a version was assigned by that version's weights alone, whereas the same key seen
again under the next version is not a fresh draw (sticky routing moves it only toward a growing
variant). Rows without a version (a store from before them) are judged as before, against the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online.canary import GATE, ArmCounts, CanaryStep, SplitStratum, judge_canary
from mlgate.gates.online.canary_stats import (
    CanaryScope,
    CanaryStats,
    metric_counts,
    request_stats,
    step_units,
    unit_stats,
    units_of,
)
from mlgate.gates.online.core import OnlineAnalysis, error_analysis
from mlgate.gates.online.log_frames import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, require

__all__ = ["arm_counts", "canary_analysis", "judge_canary_stats", "metric_counts", "split_strata",
           "weights_by_version"]


def canary_analysis(
    preds: pd.DataFrame, feedback: pd.DataFrame, config: CanaryConfig, step: CanaryStep, *, step_started: float,
    task: str, positive_class: object = None, champion: str = "champion", challenger: str = "challenger",
    route_weights: Mapping[int, tuple[float, float]] | None = None,
) -> OnlineAnalysis:
    """Judge the canary on the log since the canary started; `step_started` begins the current step.
    `route_weights`: (champion, challenger) weights of each route-table version (`weights_by_version`)."""
    try:
        require(preds, PREDICTION_COLUMNS, "the prediction log")
        require(feedback, FEEDBACK_COLUMNS, "the feedback table")
    except ValueError as exc:
        return error_analysis(GATE, str(exc))
    scope = CanaryScope(tuple(config.metric_margins), step_started, positive_class, champion, challenger)
    stats = request_stats(preds, feedback, scope)
    stats.units = unit_stats(preds, scope)
    return judge_canary_stats(stats, config, step, task=task, positive_class=positive_class,
                              route_weights=route_weights)


def judge_canary_stats(stats: CanaryStats, config: CanaryConfig, step: CanaryStep, *, task: str,
                       positive_class: object = None,
                       route_weights: Mapping[int, tuple[float, float]] | None = None,
                       outlier_share: float | None = None) -> OnlineAnalysis:
    """The canary decision from the sums over the log (`CanaryStats`)."""
    binary_only = sorted(m for m in config.metric_margins if m in ("precision", "recall"))
    if binary_only and positive_class is None:
        return error_analysis(GATE, f"{', '.join(binary_only)} need model.positive_class")
    strata, versioned = step_units(stats.units)
    unversioned = strata.get(None, [0, 0])
    arms = [ArmCounts(requests=arm.requests, errors=arm.errors, step_units=unversioned[index],
                      step_requests=arm.step_requests, step_labels=arm.step_labels,
                      labels={m: (int(x), int(n)) for m, (x, n) in arm.labels.items()},
                      latency=arm.latency, abs_error_moments=arm.abs_errors if "mae" in config.metric_margins else None,
                      outliers_checked=arm.outliers_checked, outliers_flagged=arm.outliers_flagged)
            for index, arm in enumerate(stats.arms)]
    split = split_of(strata, step, route_weights or {}) if versioned else None
    result = judge_canary(*arms, config, step, task=task, label_conflicts=stats.conflicts, split=split,
                          outlier_share=outlier_share)
    if stats.forced:
        result.counts["forced_requests"] = stats.forced
    return result


def split_of(strata: Mapping[int | None, list[int]], step: CanaryStep,
             route_weights: Mapping[int, tuple[float, float]]) -> tuple[SplitStratum, ...]:
    """The strata of `srm_check`: rows without a version first (judged at the step's weights), then each
    version against its own table's weights (the step's when its table is not in the history)."""
    step_weights = (100.0 - step.weight, float(step.weight))
    found = [SplitStratum(None, *strata[None], step_weights)] if None in strata else []
    return (*found, *(SplitStratum(v, *strata[v], route_weights.get(v, step_weights))
                      for v in sorted(k for k in strata if k is not None)))


def split_strata(served: pd.DataFrame, champion: str, challenger: str, step: CanaryStep, step_started: float,
                 route_weights: Mapping[int, tuple[float, float]]) -> tuple[SplitStratum, ...] | None:
    """The step's units per route-table version with that version's weights (a version without a known
    table is judged at the step's weights); None when no row has a version (judged as before)."""
    if "route_version" not in served.columns:
        return None
    scope = CanaryScope((), step_started, None, champion, challenger)
    strata, versioned = step_units(unit_stats(served, scope))
    return split_of(strata, step, route_weights) if versioned else None


def weights_by_version(history: Mapping[int, Mapping[str, Any]], champion: str = "champion",
                       challenger: str = "challenger") -> dict[int, tuple[float, float]]:
    """(champion, challenger) traffic weights of each route-table body (a shadow or absent variant gets 0);
    bandit tables have no fixed weights and are left out."""
    weights = {}
    for version, body in history.items():
        if body.get("mode") == "bandit":
            continue
        served = {v.get("name"): float(v.get("weight", 0)) for v in body.get("variants", []) if not v.get("shadow")}
        weights[int(version)] = (served.get(champion, 0.0), served.get(challenger, 0.0))
    return weights


def arm_counts(rows: pd.DataFrame, feedback: pd.DataFrame, config: CanaryConfig, *, step_started: float,
               positive_class: object = None) -> ArmCounts:
    """Counts of one arm's served rows (cumulative) and of its rows in the current step."""
    name = str(rows["variant"].iloc[0]) if len(rows) else "champion"
    scope = CanaryScope(tuple(config.metric_margins), step_started, positive_class, name, "\x00none")
    arm = request_stats(rows, feedback, scope).arms[0]
    return ArmCounts(requests=arm.requests, errors=arm.errors,
                     step_units=int(units_of(rows[rows["ts"] >= step_started]).nunique()),
                     step_requests=arm.step_requests, step_labels=arm.step_labels,
                     labels={m: (int(x), int(n)) for m, (x, n) in arm.labels.items()}, latency=arm.latency,
                     abs_error_moments=arm.abs_errors if "mae" in config.metric_margins else None)
