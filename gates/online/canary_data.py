"""From the prediction log and the feedback to the canary's counts per arm, then to `judge_canary`.

Served rows only (shadow rows are not part of a canary). Requests count once per variant; labelled rows
are the served rows answered with 200 that have a label; units for the SRM test are routing keys (the
unit the router assigns), else request ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online.canary import GATE, ArmCounts, CanaryStep, judge_canary
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
) -> OnlineAnalysis:
    """Judge the canary on the log since the canary started; `step_started` begins the current step."""
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
    return judge_canary(*arms, config, step, task=task, label_conflicts=label_conflicts(feedback))


def arm_counts(rows: pd.DataFrame, feedback: pd.DataFrame, config: CanaryConfig, *, step_started: float,
               positive_class: object = None) -> ArmCounts:
    """Counts of one arm's served rows (cumulative) and of its rows in the current step."""
    requests = requests_of(rows)
    in_step = rows[rows["ts"] >= step_started]
    units = in_step["routing_key"].fillna(in_step["request_id"]) if "routing_key" in in_step else in_step["request_id"]
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
