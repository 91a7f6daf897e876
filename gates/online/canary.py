"""Canary analysis of one traffic step: SRM, error rate and label metrics (mSPRT), latency, step progress.

`mlgate.gates.online.canary_data` reduces the prediction log and the feedback to counts per arm; `judge_canary` decides
on those counts alone, so the decision rule is the same function whether it runs on a live log or in
a simulation of a thousand rollouts. Error rate and label metrics are tested on the cumulative data
since the canary started with always-valid tests: proven harm fails at any look, and non-inferiority
must be proven before promotion (`prove_non_inferiority`). SRM is tested on randomisation units
(routing keys, else requests) of the current step against its configured weights, or, when the log
says which route-table version routed each row, per version against that version's weights
(`SplitStratum`): replicas adopt a new table a few seconds apart, and the rows the old table routed in
the meantime are no mismatch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from mlgate.gates.config import CANARY_LABEL_METRICS, CanaryConfig
from mlgate.gates.online.binned_rank import judge_rank, sketch_rank_test
from mlgate.gates.online.core import AnalysisOutcome as O
from mlgate.gates.online.core import OnlineAnalysis, analysis, check, skipped
from mlgate.gates.online.outlier_rate import outlier_rate_check
from mlgate.gates.online.sequential import (
    SequentialResult,
    msprt_two_means,
    msprt_two_proportions,
    tau2_for_horizon,
    tau2_for_proportions,
)
from mlgate.gates.online.sketch import Moments, ValueSketch
from mlgate.gates.online.srm_sequential import stratified_srm_p
from mlgate.gates.result import Check
from mlgate.gates.stats import rank_judge, srm_chi_square

GATE = "canary"


@dataclass(frozen=True)
class ArmCounts:
    """One arm since the canary started; `step_*` only since the current step started."""

    requests: int = 0
    errors: int = 0
    step_units: int = 0
    step_requests: int = 0
    step_labels: int = 0
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # metric -> (successes, trials)
    latency_ms: np.ndarray | None = None
    abs_errors: np.ndarray | None = None  # regression: |prediction - label| of each labelled row
    latency: ValueSketch | None = None  # the latencies as a sketch (the incremental analysis), else latency_ms
    abs_error_moments: Moments | None = None  # regression: n, sum and sum of squares of |prediction - label|
    outliers_checked: int = 0  # answered rows the arm's outlier detector checked
    outliers_flagged: int = 0


@dataclass(frozen=True)
class SplitStratum:
    """Units of the current step routed by one route-table version (None: rows logged without a version),
    and that version's weights (champion, challenger)."""

    version: int | None
    champion_units: int
    challenger_units: int
    weights: tuple[float, float]

    @property
    def units(self) -> int:
        return self.champion_units + self.challenger_units

    def describe(self) -> str:
        where = f"v{self.version}" if self.version is not None else "rows without a route version"
        return (f"{where} at {self.weights[0]:g}/{self.weights[1]:g}: champion {self.champion_units} / "
                f"challenger {self.challenger_units}")


@dataclass(frozen=True)
class CanaryStep:
    """Where the rollout is: index into `steps`, the challenger's weight there, time spent in the step."""

    index: int
    weight: int
    elapsed_s: float = 0.0

    @classmethod
    def of(cls, config: CanaryConfig, index: int, elapsed_s: float = 0.0) -> CanaryStep:
        if not 0 <= index < len(config.steps):
            raise ValueError(f"step index {index} outside rollout.canary.steps {config.steps}")
        return cls(index, config.steps[index], elapsed_s)


def must_prove(config: CanaryConfig, index: int) -> bool:
    """Non-inferiority must be proven here: at every step if so configured, at the last step, and before
    a step that gives the challenger all traffic (the champion arm stops growing there)."""
    steps = config.steps
    last = index == len(steps) - 1
    return config.prove_non_inferiority == "every_step" or last or steps[index + 1] == 100


def judge_canary(champion: ArmCounts, challenger: ArmCounts, config: CanaryConfig, step: CanaryStep,
                 *, task: str = "binary", label_conflicts: int = 0,
                 split: Sequence[SplitStratum] | None = None, outlier_share: float | None = None) -> OnlineAnalysis:
    """The canary decision for one look, from counts alone; `label_conflicts` (labels that differ from
    the first label of their row, which stands) are reported as a warning, never used. `split`: the step's
    units per route-table version (None: the arms' `step_units` against the step's weights); `outlier_share`:
    the share of training rows the challenger's outlier detector flags (None: it has none)."""
    started = time.perf_counter()
    prove = must_prove(config, step.index)
    checks = [srm_check(champion, challenger, config, step, split),
              error_rate_check(champion, challenger, config, prove)]
    checks += [label_metric_check(m, margin, champion, challenger, config, prove, task)
               for m, margin in config.metric_margins.items()]
    checks += [latency_check(champion, challenger, config), progress_check(challenger, config),
               outlier_rate_check(challenger.outliers_flagged, challenger.outliers_checked, outlier_share,
                                  config.outliers, config.alpha)]
    if label_conflicts:
        checks.append(check("label_conflicts", O.SUCCESSFUL, f"{label_conflicts} label(s) differ from the first label "
                            "of their row and were not used (the first label stands; correct one with "
                            "\"correction\": true)", value=label_conflicts, threshold=0, expected="no conflicting labels",
                            warn=True))
    counts = {"weight": step.weight, "champion_requests": champion.requests,
              "challenger_requests": challenger.requests, "step_requests": challenger.step_requests,
              "step_labels": challenger.step_labels, "elapsed_s": round(step.elapsed_s, 1),
              "label_conflicts": label_conflicts}
    return analysis(GATE, checks, started, counts, headline=(*config.metric_margins, "error_rate"))


def srm_check(champion: ArmCounts, challenger: ArmCounts, config: CanaryConfig, step: CanaryStep,
              split: Sequence[SplitStratum] | None = None) -> Check:
    """Units per arm in this step against the weights that routed them, by an always-valid test (re-run at
    every look); p < srm_alpha means the assignment is broken, so no comparison can be trusted (Error).
    With `split`, each route-table version's units are judged against that version's weights and the
    evidence is combined (`stratified_srm_p`); without it, all units against the step's weights."""
    weights = (100 - step.weight, step.weight)
    if 0 in weights:
        return skipped("srm", f"one variant takes all traffic at {step.weight}%; no ratio to test")
    strata = list(split) if split else [SplitStratum(None, champion.step_units, challenger.step_units, weights)]
    expected = f"p >= {config.srm_alpha:g} for counts matching the weights of the table that routed them"
    if sum(s.units for s in strata) == 0:
        return check("srm", O.INCONCLUSIVE, "no traffic in this step yet", value=None,
                     threshold=config.srm_alpha, expected=expected)
    p = stratified_srm_p([((s.champion_units, s.challenger_units), s.weights) for s in strata])
    facts = f"{_split_facts(strata, weights)}, always-valid p {p:.2g} (halt below {config.srm_alpha:g})"
    per_version = [{"version": s.version, "champion": s.champion_units, "challenger": s.challenger_units,
                    "weights": list(s.weights)} for s in strata]
    if p >= config.srm_alpha:
        return check("srm", O.SUCCESSFUL, f"assignment matches the weights: {facts}", value=p,
                     threshold=config.srm_alpha, expected=expected, strata=per_version)
    chi2, df, chi2_p = summed_chi_square(strata)
    message = (f"sample ratio mismatch, assignment is broken and no comparison can be trusted: {facts}; "
               f"chi-square {chi2:.2f} on {df} df, p {chi2_p:.2g}")
    return check("srm", O.ERROR, message, value=p, threshold=config.srm_alpha, expected=expected,
                 metric="srm p-value", chi2=chi2, chi2_df=df, chi2_p=chi2_p, strata=per_version)


def _split_facts(strata: list[SplitStratum], step_weights: tuple[int, int]) -> str:
    if len(strata) == 1 and strata[0].version is None:
        s = strata[0]
        return (f"units champion {s.champion_units} / challenger {s.challenger_units} at weights "
                f"{step_weights[0]}/{step_weights[1]}")
    shown = sorted(strata, key=lambda s: -s.units)[:4]
    more = f"; {len(strata) - len(shown)} more version(s)" if len(strata) > len(shown) else ""
    return "units by route-table version: " + "; ".join(s.describe() for s in shown) + more


def summed_chi_square(strata: Sequence[SplitStratum]) -> tuple[float, int, float]:
    """The fixed-sample chi-square, reported beside the always-valid p: per-version statistics summed,
    with their degrees of freedom (a unit in a weight-0 arm makes it infinite)."""
    total, df = 0.0, 0
    for s in strata:
        counts, weights = np.array([s.champion_units, s.challenger_units], float), np.array(s.weights, float)
        if (counts[weights == 0] > 0).any():
            return float("inf"), max(df, 1), 0.0
        if (weights > 0).all() and counts.sum() > 0:
            total += srm_chi_square(counts, weights)[0]
            df += 1
    return total, df, float(stats.chi2.sf(total, df)) if df else 1.0


def error_rate_check(champion: ArmCounts, challenger: ArmCounts, config: CanaryConfig, prove: bool) -> Check:
    """Server errors (5xx) per request: sequential non-inferiority within `error_rate_margin`."""
    margin = config.error_rate_margin
    if champion.requests == 0 or challenger.requests == 0:
        return _waiting("error_rate", f"requests so far {challenger.requests} challenger / {champion.requests} "
                        "champion", margin, "error_rate")
    tau2 = _tau2(config.planning_rate("error_rate"), config.planned_requests, config.alpha)
    result = msprt_two_proportions(champion.errors, champion.requests, challenger.errors, challenger.requests,
                                   margin=margin, tau2=tau2, alpha=config.alpha, greater_is_better=False,
                                   name="error_rate")
    return _sequential_check("error_rate", result, margin, prove, greater_is_better=False)


def label_metric_check(metric: str, margin: float, champion: ArmCounts, challenger: ArmCounts,
                       config: CanaryConfig, prove: bool, task: str) -> Check:
    """A label metric from feedback (a proportion): sequential non-inferiority within `margin`."""
    if task not in CANARY_LABEL_METRICS.get(metric, ()):
        return check(metric, O.ERROR, f"{metric} is not a canary metric for task {task} (rollout.canary."
                     "metric_margins)", value=None, threshold=-margin, expected="a metric of this task")
    if metric == "mae":
        return mae_check(margin, champion, challenger, config, prove)
    (x_a, n_a), (x_b, n_b) = champion.labels.get(metric, (0, 0)), challenger.labels.get(metric, (0, 0))
    if n_a == 0 or n_b == 0:
        return _waiting(metric, f"labelled rows so far {n_b} challenger / {n_a} champion", -margin, metric)
    tau2 = _tau2(config.planning_rate(metric), config.planned_labels, config.alpha)
    result = msprt_two_proportions(x_a, n_a, x_b, n_b, margin=margin, tau2=tau2, alpha=config.alpha, name=metric)
    return _sequential_check(metric, result, margin, prove, greater_is_better=True,
                             rates=[x_a / n_a, x_b / n_b])


def mae_check(margin: float, champion: ArmCounts, challenger: ArmCounts, config: CanaryConfig,
              prove: bool) -> Check:
    """Regression: sequential non-inferiority of the mean absolute error (mSPRT on two means). The margin
    is relative (`margin` x the champion's MAE), so it reads the same whatever the target's unit."""
    a, b = _error_moments(champion), _error_moments(challenger)
    if a.n < 2 or b.n < 2:
        return _waiting("mae", f"labelled rows so far {b.n} challenger / {a.n} champion", margin, "mae")
    allowed = margin * a.mean_a
    pooled = Moments().merge(a).merge(b).var_a() or 1e-12
    tau2 = tau2_for_horizon(pooled * 2 / config.planned_labels, config.alpha)
    result = msprt_two_means(a.mean_a, a.var_a(), a.n, b.mean_a, b.var_a(), b.n, margin=allowed, tau2=tau2,
                             alpha=config.alpha, greater_is_better=False, name="mae")
    return _sequential_check("mae", result, allowed, prove, greater_is_better=False, rates=[a.mean_a, b.mean_a])


def _error_moments(arm: ArmCounts) -> Moments:
    if arm.abs_error_moments is not None:
        return arm.abs_error_moments
    return Moments().add(_finite(arm.abs_errors))


def latency_check(champion: ArmCounts, challenger: ArmCounts, config: CanaryConfig) -> Check:
    """Rank test of per-request latency; fails only on a significant slowdown beyond the tolerance. Raw
    latencies (`latency_ms`) are ranked as they are; sketches (`latency`, the incremental analysis) by their
    counts (`binned_rank`)."""
    if config.latency_tolerance is None:
        return skipped("latency", "latency check disabled (rollout.canary.latency_tolerance is null)")
    raw = champion.latency is None and challenger.latency is None
    a, b = (_finite(arm.latency_ms) for arm in (champion, challenger)) if raw else \
        (_latency_sketch(arm) for arm in (champion, challenger))
    n_a, n_b = (x.size if raw else x.total for x in (a, b))
    need = config.min_latency_samples
    if n_a < need or n_b < need:
        return check("latency", O.INCONCLUSIVE, f"latency samples {n_b} challenger / {n_a} champion "
                     f"(need {need} each)", value=None, threshold=config.latency_tolerance, expected="no slowdown")
    judged = rank_judge(a, b, tolerance=config.latency_tolerance, alpha=config.latency_alpha,
                        slack=config.latency_slack_ms) if raw else \
        judge_rank(sketch_rank_test(a, b), tolerance=config.latency_tolerance, alpha=config.latency_alpha,
                   slack=config.latency_slack_ms)
    outcome = O.SUCCESSFUL if judged.passed else O.FAILED
    return check("latency", outcome, judged.message, value=judged.test.superiority,
                 threshold=0.5 + config.latency_tolerance, expected="P(challenger slower) within tolerance",
                 metric="latency P(challenger slower)", p_value=judged.test.p_greater)


def _latency_sketch(arm: ArmCounts) -> ValueSketch:
    return arm.latency if arm.latency is not None else ValueSketch().add(_finite(arm.latency_ms))


def progress_check(challenger: ArmCounts, config: CanaryConfig) -> Check:
    """The step needs enough of its own traffic (and labels, when label metrics are judged)."""
    need_labels = config.min_labels_per_step if config.metric_margins else 0
    have = (challenger.step_requests, challenger.step_labels)
    done = have[0] >= config.min_requests_per_step and have[1] >= need_labels
    labels = (f"{have[1]} of {need_labels} labelled rows" if need_labels else
              "labels not needed (no label metric in rollout.canary.metric_margins)")
    message = f"this step: {have[0]} of {config.min_requests_per_step} challenger requests, {labels}"
    return check("step_progress", O.SUCCESSFUL if done else O.INCONCLUSIVE, message, value=have[0],
                 threshold=config.min_requests_per_step, expected="enough traffic in this step")


def _sequential_check(name: str, result: SequentialResult, margin: float, prove: bool, *,
                      greater_is_better: bool, rates: list[float] | None = None) -> Check:
    threshold = -margin if greater_is_better else margin
    if result.decision == "inferior":
        outcome = O.FAILED
    elif result.decision == "non_inferior" or not prove:
        outcome = O.SUCCESSFUL
    else:
        outcome = O.INCONCLUSIVE
    message = result.message
    if result.decision == "continue" and not prove:
        message += "; no harm proven (non-inferiority must be proven before promotion)"
    return check(name, outcome, message, value=result.estimate, threshold=threshold,
                 expected=f"delta {'>' if greater_is_better else '<'} {threshold:+g} (always-valid CI)",
                 metric=f"{name} delta", ci=[result.ci_low, result.ci_high], p_value=result.p_value,
                 n=[result.n_a, result.n_b], decision=result.decision, rates=rates)


@functools.lru_cache(maxsize=64)
def _tau2(rate: float, planned_per_arm: int, alpha: float) -> float:
    """Mixing variance fixed before the data: planning rate and horizon from the config."""
    return tau2_for_proportions(rate, planned_per_arm, planned_per_arm, alpha)


def _waiting(name: str, message: str, threshold: float, metric: str) -> Check:
    return check(name, O.INCONCLUSIVE, message, value=None, threshold=threshold, expected="data from both arms",
                 metric=f"{metric} delta")


def _finite(values: np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.empty(0)
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def server_rollback_analysis(event: Mapping[str, Any]) -> OnlineAnalysis:
    """The look after a server's guard (serving.routing.guard) already sent the challenger's traffic back to
    the champion: Failed, with the guard's metric, value, threshold and reason, so the rollout records why."""
    details = event.get("details") or {}
    message = (f"a server already rolled the challenger back (route table version {event.get('route_version')}): "
               f"{event.get('reason')}")
    item = check("server_guard", O.FAILED, message, value=details.get("value"), threshold=details.get("threshold"),
                 expected="the challenger's share of 5xx within the server's hard limit", metric="error_rate (server guard)",
                 requests=details.get("requests"), errors=details.get("errors"), window_s=details.get("window_s"))
    return analysis(GATE, [item], time.perf_counter(), {"route_version": event.get("route_version"), **details})
