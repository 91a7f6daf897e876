"""Online/offline consistency: the server's predictions on the holdout against the offline model's.

Labels must be equal exactly and probabilities within a tolerance (1e-9 by default): the server must
not change the model's answers through parsing, column order, dtypes or batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlgate.gates.result import Check, Status

_LISTED = 10


@dataclass(frozen=True)
class ServerPredictions:
    """What the server answered for the holdout; None with `problem` when it could not answer."""

    labels: list[Any] | None
    proba: list[Any] | None = None
    problem: str = ""


def consistency_checks(
    server: ServerPredictions,
    offline_labels: Sequence[Any],
    offline_proba: np.ndarray | None,
    tolerance: float,
    row_ids: Sequence[Any] | None = None,
) -> list[Check]:
    """Two checks: labels equal on every row; probabilities within `tolerance` (SKIP without them)."""
    ids = list(row_ids) if row_ids is not None else list(range(len(offline_labels)))
    return [label_check(server, list(offline_labels), ids), proba_check(server, offline_proba, tolerance, ids)]


def label_check(server: ServerPredictions, offline: list[Any], ids: list[Any]) -> Check:
    name, expected = "consistency.labels", f"the server's label equals the offline model's on all {len(offline)} rows"
    if server.labels is None:
        return Check(name, Status.FAIL, None, expected, f"the server gave no holdout labels: {server.problem}")
    if len(server.labels) != len(offline):
        return Check(name, Status.FAIL, len(server.labels), expected,
                     f"the server returned {len(server.labels)} labels for {len(offline)} holdout rows")
    differing = [i for i, (a, b) in enumerate(zip(server.labels, offline, strict=True)) if a != b]
    examples = [{"row": _native(ids[i]), "server": server.labels[i], "offline": _native(offline[i])}
                for i in differing[:_LISTED]]
    if differing:
        return Check(name, Status.FAIL, len(differing), expected,
                     f"{len(differing)} of {len(offline)} holdout labels differ from the offline model's "
                     f"(first rows: {[e['row'] for e in examples]})", {"examples": examples})
    return Check(name, Status.PASS, 0, expected, f"all {len(offline)} holdout labels equal the offline model's",
                 {"rows": len(offline)})


def proba_check(server: ServerPredictions, offline: np.ndarray | None, tolerance: float, ids: list[Any]) -> Check:
    name, expected = "consistency.probabilities", f"max |server - offline| <= {tolerance:g}"
    if offline is None:
        return Check(name, Status.SKIP, None, expected, "the model has no predict_proba; labels are compared only")
    if server.proba is None:
        return Check(name, Status.FAIL, None, expected, f"the server gave no holdout probabilities: {server.problem}")
    try:
        online = np.asarray(server.proba, dtype=float)
    except (TypeError, ValueError):
        return Check(name, Status.FAIL, None, expected, "the server's probabilities are not a table of numbers")
    if online.shape != offline.shape:
        return Check(name, Status.FAIL, list(online.shape), expected,
                     f"the server's probabilities have shape {online.shape}, the offline model's {offline.shape}")
    gap = np.abs(online - offline)
    difference = np.where(np.isnan(gap), np.inf, gap).max(axis=1, initial=0.0)  # a NaN never passes
    worst = float(difference.max(initial=0.0))
    over = np.flatnonzero(difference > tolerance)
    details = {"rows": int(offline.shape[0]), "max_abs_difference": worst,
               "rows_over_tolerance": [_native(ids[i]) for i in over[:_LISTED]]}
    if len(over):
        return Check(name, Status.FAIL, worst, expected,
                     f"{len(over)} of {offline.shape[0]} holdout rows differ by more than {tolerance:g} "
                     f"(max {worst:.3g}, rows {details['rows_over_tolerance']})", details)
    return Check(name, Status.PASS, worst, expected,
                 f"all {offline.shape[0]} holdout probability rows within {tolerance:g} (max {worst:.3g})", details)


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
