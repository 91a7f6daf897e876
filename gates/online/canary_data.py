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

import numpy as np
import pandas as pd

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online.canary import GATE, ArmCounts, CanaryStep, SplitStratum, judge_canary
from mlgate.gates.online.core import OnlineAnalysis, error_analysis
from mlgate.gates.online.log_frames import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    as_float,
    canonical,
    canonical_series,
    label_conflicts,
    labelled,
    ok,
    requests_of,
    require,
    variant_rows,
)


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
    binary_only = sorted(m for m in config.metric_margins if m in ("precision", "recall"))
    if binary_only and positive_class is None:
        return error_analysis(GATE, f"{', '.join(binary_only)} need model.positive_class")
    served = preds[~preds["shadow"].astype(bool)]
    arms = [arm_counts(variant_rows(served, name), feedback, config, step_started=step_started,
                       positive_class=positive_class) for name in (champion, challenger)]
    split = split_strata(served, champion, challenger, step, step_started, route_weights or {})
    return judge_canary(*arms, config, step, task=task, label_conflicts=label_conflicts(feedback), split=split)


def split_strata(served: pd.DataFrame, champion: str, challenger: str, step: CanaryStep, step_started: float,
                 route_weights: Mapping[int, tuple[float, float]]) -> tuple[SplitStratum, ...] | None:
    """The step's units per route-table version with that version's weights (a version without a known
    table is judged at the step's weights); None when no row has a version (judged as before)."""
    if "route_version" not in served.columns:
        return None
    rows = served[(served["ts"] >= step_started) & served["variant"].isin([champion, challenger])]
    versions = pd.to_numeric(rows["route_version"], errors="coerce")
    if not versions.notna().any():
        return None
    step_weights = (100.0 - step.weight, float(step.weight))
    strata = []
    unknown = rows[versions.isna().to_numpy()]
    if len(unknown):
        per_arm = [_units(unknown[unknown["variant"] == name]).nunique() for name in (champion, challenger)]
        strata.append(SplitStratum(None, *per_arm, step_weights))
    known = rows[versions.notna().to_numpy()].assign(_version=versions.dropna().astype(int), _unit=_units)
    first = known.sort_values("ts", kind="stable").drop_duplicates("_unit")
    for version, group in first.groupby("_version"):
        counts = [int((group["variant"] == name).sum()) for name in (champion, challenger)]
        strata.append(SplitStratum(int(version), *counts, route_weights.get(int(version), step_weights)))
    return tuple(strata)


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


def _units(rows: pd.DataFrame) -> pd.Series:
    """The randomisation unit of each row: its routing key, else its request id."""
    if "routing_key" not in rows.columns:
        return rows["request_id"]
    return rows["routing_key"].fillna(rows["request_id"])


def arm_counts(rows: pd.DataFrame, feedback: pd.DataFrame, config: CanaryConfig, *, step_started: float,
               positive_class: object = None) -> ArmCounts:
    """Counts of one arm's served rows (cumulative) and of its rows in the current step."""
    requests = requests_of(rows)
    in_step = rows[rows["ts"] >= step_started]
    units = _units(in_step)
    joined = labelled(rows, feedback)
    labels = {m: metric_counts(m, joined, positive_class) for m in config.metric_margins if m != "mae"}
    abs_errors = None
    if "mae" in config.metric_margins:
        abs_errors = np.abs(as_float(joined["prediction"]) - as_float(joined["label"]))
    return ArmCounts(
        requests=len(requests), errors=int((requests["status"] >= 500).sum()), step_units=int(units.nunique()),
        step_requests=int(in_step["request_id"].nunique()), step_labels=int((joined["ts"] >= step_started).sum()),
        labels=labels, latency_ms=as_float(ok(requests)["latency_ms"]), abs_errors=abs_errors,
    )


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
