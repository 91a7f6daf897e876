"""Slice checks: the baseline comparison repeated per data slice, with Holm correction across slices.

Slices are each value of the configured categorical columns and quantile bins of the configured
numeric columns; slices smaller than `min_slice_size` are listed but not judged. Each slice x metric
uses the metric's own test (DeLong, McNemar, bootstrap) and its margin (`max_regression`; 0 when the
metric asks for an improvement: a slice must not get worse). Three outcomes per slice, family-wise
controlled by Holm over all slice comparisons (one-sided at (1 - level) / 2, as the overall CI rule):
PASS non-inferiority shown, FAIL a regression beyond the margin shown, else inconclusive (WARN, or
FAIL with `inconclusive: fail`) - a 60-row slice rarely shows non-inferiority within 1 point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from mlgate.gates.config import MetricThreshold, QualityGateConfig
from mlgate.gates.quality.model_comparison import (
    MetricComparison,
    compare_models,
    comparison_details,
    labels_only,
    metric_value,
    p_text,
)
from mlgate.gates.result import Check, Status, worst
from mlgate.gates.stats import Interval, Predictions, holm_adjust

MISSING = "<missing>"


@dataclass(frozen=True)
class Slice:
    name: str
    column: str
    mask: np.ndarray


def define_slices(frame: pd.DataFrame, categorical: list[str], numeric: dict[str, int]) -> list[Slice]:
    """Categorical values and numeric quantile bins (plus a missing-value slice). Raises ValueError."""
    missing = [c for c in [*categorical, *numeric] if c not in frame.columns]
    if missing:
        raise ValueError(f"slice column(s) {missing} not in the holdout data")
    slices = [s for column in categorical for s in _categorical_slices(column, frame[column])]
    return slices + [s for column, bins in numeric.items() for s in _quantile_slices(column, frame[column], bins)]


def _categorical_slices(column: str, values: pd.Series) -> list[Slice]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # one pass; NaN gets code -1
    named = [(str(value), codes == i) for i, value in enumerate(uniques)]
    if (codes < 0).any():
        named.append((MISSING, codes < 0))
    return [Slice(f"{column}={name}", column, mask) for name, mask in sorted(named, key=lambda pair: pair[0])]


def _quantile_slices(column: str, values: pd.Series, bins: int) -> list[Slice]:
    if not pd.api.types.is_numeric_dtype(values):
        raise ValueError(f"slices.numeric.{column}: column is {values.dtype}, not numeric")
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    present = ~np.isnan(numbers)
    if not present.any():
        return [Slice(f"{column} is {MISSING}", column, ~present)]
    edges = np.unique(np.quantile(numbers[present], np.linspace(0.0, 1.0, bins + 1)))
    codes = np.clip(np.searchsorted(edges, numbers, side="left") - 1, 0, max(edges.size - 2, 0))
    slices = []
    for i in range(max(edges.size - 1, 1)):
        low, high = edges[i], edges[min(i + 1, edges.size - 1)]
        name = f"{column} in {'[' if i == 0 else '('}{low:.4g}, {high:.4g}]"
        slices.append(Slice(name, column, present & (codes == i)))
    if not present.all():
        slices.append(Slice(f"{column} is {MISSING}", column, ~present))
    return slices


def subset(predictions: Predictions, mask: np.ndarray) -> Predictions:
    """The predictions of the rows in `mask`."""
    arrays = {k: getattr(predictions, k) for k in ("labels", "scores", "proba", "values")}
    return Predictions(**{k: None if v is None else np.asarray(v)[mask] for k, v in arrays.items()})


def margin_p_values(interval: Interval, margin: float, greater_is_better: bool) -> tuple[float, float]:
    """One-sided p-values (non-inferiority shown, regression beyond margin shown) from a CI.

    The standard error is read off the CI's half-width on the side that decides each test, so a single
    comparison at (1 - level) / 2 reproduces the CI rule exactly; exact for DeLong's normal interval.
    """
    sign = 1.0 if greater_is_better else -1.0
    est, low, high = sign * interval.estimate, *sorted((sign * interval.low, sign * interval.high))
    z = float(sps.norm.ppf(0.5 + interval.level / 2))
    distance = est + margin  # > 0: the estimate is better than the margin
    return _one_sided(distance, (est - low) / z, upper=True), _one_sided(distance, (high - est) / z, upper=False)


def _one_sided(distance: float, se: float, upper: bool) -> float:
    if se <= 0:
        return 0.0 if (distance > 0 if upper else distance < 0) else 1.0
    return float(sps.norm.sf(distance / se) if upper else sps.norm.cdf(distance / se))


@dataclass(frozen=True)
class _Judged:
    slice: Slice
    comparison: MetricComparison
    rule: MetricThreshold
    one_class: bool


def slice_checks(
    task: str, y: np.ndarray, candidate: Predictions, baseline: Predictions | None, missing_baseline: str,
    frame: pd.DataFrame | None, config: QualityGateConfig, absent: Status, unscored: tuple[str, str] = ("", ""),
) -> list[Check]:
    """One check per judged slice x metric and a `slices` summary listing the worst slices. A metric that
    needs probabilities is one SKIP check when a model gives labels only (`unscored`: the candidate's
    and the baseline's reasons)."""
    cfg = config.slices
    if not cfg.categorical and not cfg.numeric:
        return []
    if frame is None:
        return [Check("slices", Status.ERROR, None, "slice columns", "no slice columns were given to the gate")]
    try:
        slices = define_slices(frame, cfg.categorical, cfg.numeric)
    except ValueError as exc:
        return [Check("slices", Status.ERROR, None, "slice columns", f"gates.quality.slices: {exc}")]
    unruled = [m for m in cfg.metrics if m not in config.metrics]
    if unruled:
        return [Check("slices", Status.ERROR, None, "slice metrics with rules",
                      f"gates.quality.slices.metrics {unruled} have no rule under gates.quality.metrics")]
    skipped = [Check(f"slice.{m}", Status.SKIP, None, "per-slice comparison", reason)
               for m in cfg.metrics if (reason := labels_only(m, *unscored))]
    metrics = [m for m in cfg.metrics if not labels_only(m, *unscored)]
    if not metrics:
        return skipped
    large = [s for s in slices if s.mask.sum() >= cfg.min_slice_size]
    small = {s.name: int(s.mask.sum()) for s in slices if s.mask.sum() < cfg.min_slice_size}
    if baseline is None:
        values = _candidate_values(large, y, candidate, metrics)
        return [*skipped, Check("slices", absent, None, "per-slice comparison with the baseline",
                                f"slices not compared: {missing_baseline}", {"candidate": values, "too_small": small})]
    classes = task != "regression"
    judged = [_Judged(s, _compare(s, m, y, candidate, baseline, config), config.metrics[m],
                      classes and np.unique(y[s.mask]).size < 2)
              for s in large for m in metrics]
    checks = _judge(judged, config)
    return [*skipped, *checks, _summary(checks, judged, small, config, len(metrics))]


def _compare(s: Slice, metric: str, y, candidate, baseline, config: QualityGateConfig) -> MetricComparison:
    return compare_models([metric], y[s.mask], subset(candidate, s.mask), subset(baseline, s.mask),
                          config.bootstrap)[metric]


def _candidate_values(slices: list[Slice], y, candidate: Predictions, metrics: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in slices:
        for m in metrics:
            try:
                out[f"{m}|{s.name}"] = metric_value(m, y[s.mask], subset(candidate, s.mask))
            except ValueError as exc:
                out[f"{m}|{s.name}"] = str(exc)
    return out


def _margin(rule: MetricThreshold) -> float:
    return rule.max_regression if rule.max_regression is not None else 0.0


def _judge(judged: list[_Judged], config: QualityGateConfig) -> list[Check]:
    """Holm over every slice comparison that has an interval, then one check each."""
    decided = [j for j in judged if j.comparison.interval is not None]
    pairs = [margin_p_values(j.comparison.interval, _margin(j.rule), j.rule.greater_is_better) for j in decided]
    ni_adj = holm_adjust([p[0] for p in pairs]) if pairs else np.array([])
    worse_adj = holm_adjust([p[1] for p in pairs]) if pairs else np.array([])
    adjusted = {id(j): (float(a), float(b)) for j, a, b in zip(decided, ni_adj, worse_adj, strict=True)}
    alpha = (1.0 - config.bootstrap.level) / 2.0
    return [_slice_check(j, adjusted.get(id(j)), alpha, len(decided), config) for j in judged]


def _slice_check(j: _Judged, adjusted: tuple[float, float] | None, alpha: float, family: int,
                 config: QualityGateConfig) -> Check:
    metric, margin, n = j.comparison.metric, _margin(j.rule), int(j.slice.mask.sum())
    name, expected = f"slice.{metric}.{j.slice.name}", f"non-inferior within margin {margin:.3f} (Holm)"
    base = {"slice": j.slice.name, "column": j.slice.column, "n": n, "margin": margin}
    if adjusted is None:
        status = Status.SKIP if j.one_class else Status.ERROR  # e.g. AUC is undefined on one class
        reason = "only one class in this slice; " if j.one_class else ""
        return Check(name, status, None, expected, f"{j.slice.name} (n={n}): {reason}{j.comparison.error}", base)
    p_ni, p_worse = adjusted
    if p_ni < alpha:
        status, verdict = Status.PASS, "non-inferior within"
    elif p_worse < alpha:
        status, verdict = Status.FAIL, "worse than"
    else:
        status = Status.FAIL if config.slices.inconclusive == "fail" else Status.WARN
        verdict = "inconclusive against"
    interval = j.comparison.interval
    message = (f"{interval.describe(metric)} on {j.slice.name} (n={n}) {verdict} margin {margin:.3f} "
               f"({j.comparison.method} test of no difference: {p_text(interval.p_value)}; Holm over {family} "
               f"slices: {p_text(p_ni, 'p_noninferior')} against H0 worse by the margin, "
               f"{p_text(p_worse, 'p_worse')} against H0 not worse by it)")
    details = {**base, **comparison_details(j.comparison, j.rule), "verdict": verdict.split()[0],
               "p_noninferior_holm": p_ni, "p_worse_holm": p_worse, "family_size": family}
    return Check(name, status, interval.estimate, expected, message, details)


def _summary(checks: list[Check], judged: list[_Judged], small: dict[str, int], config: QualityGateConfig,
             n_metrics: int) -> Check:
    cfg = config.slices
    expected = f"every slice with n >= {cfg.min_slice_size} non-inferior (Holm-corrected)"
    if not checks:
        return Check("slices", Status.WARN, 0, expected,
                     f"no slice has at least {cfg.min_slice_size} rows; none could be judged", {"too_small": small})
    verdicts = [c.details.get("verdict", "undecided") for c in checks]
    counts = {v: verdicts.count(v) for v in ("non-inferior", "inconclusive", "worse", "undecided")}
    ranked = sorted((c for c in checks if c.observed is not None), key=_badness, reverse=True)
    listed = [_listing(c) for c in ranked[: cfg.max_listed]]
    worst_text = f"; worst: {listed[0]['message']}" if listed else ""
    message = (f"{len(checks)} slice comparisons ({len(judged) // max(n_metrics, 1)} slices x "
               f"{n_metrics} metrics): " + ", ".join(f"{n} {v}" for v, n in counts.items()) + worst_text)
    details = {"worst": listed, "too_small": small, "counts": counts, "inconclusive_status": cfg.inconclusive}
    return Check("slices", worst(c.status for c in checks), len(checks), expected, message, details)


def _badness(c: Check) -> tuple[float, float]:
    """How much worse the candidate is on a slice (then its CI's worst bound), in the metric's good direction."""
    low, high = c.details.get("ci", [c.observed, c.observed])
    if c.details.get("greater_is_better", True):
        return -c.observed, -low
    return c.observed, high


def _listing(c: Check) -> dict[str, Any]:
    keys = ("slice", "metric", "n", "delta", "ci", "candidate", "baseline", "p_value", "verdict")
    return {"check": c.name, "status": str(c.status), **{k: c.details.get(k) for k in keys}, "message": c.message}
