"""Shadow analysis: the challenger predicts on mirrored live traffic next to the champion; no labels needed.

Checks: agreement of predicted labels (classifiers) or correlation / MAE of scores, PSI of the output
distribution against the champion's on the same rows, the challenger's error rate, its model time against
the champion's on the same rows, and drift of the live inputs against the training data. Rates are judged
on always-valid confidence sequences, so the analysis may be re-run at every poll.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
from scipy import stats as stats_module

from mlgate.gates.config import DriftConfig, ShadowConfig
from mlgate.gates.data.drift import drift_table, population_stability_index
from mlgate.gates.data.drift_checks import thresholds_for
from mlgate.gates.online.core import (
    AnalysisOutcome as O,
)
from mlgate.gates.online.core import (
    OnlineAnalysis,
    analysis,
    check,
    error_analysis,
    judge_at_least,
    judge_at_most,
    rate_sequence,
    skipped,
)
from mlgate.gates.online.log_frames import PREDICTION_COLUMNS, as_float, ok, require
from mlgate.gates.online.outlier_rate import outlier_rate_check
from mlgate.gates.online.shadow_stats import CallStats, ShadowScope, ShadowStats, add_row_level, shadow_stats
from mlgate.gates.online.sketch import OTHER
from mlgate.gates.result import Check

GATE = "shadow"
# Mixing variance of the rate sequences from the widest binomial variance: a challenger that is badly off
# (10% errors, half its labels different) is caught within a few hundred requests, not thousands.
PLANNING_RATE = 0.5
OUTPUT_BINS = 10  # the output PSI's bins: deciles of the champion's scores (gates.data.drift.output_psi)


def shadow_analysis(
    preds: pd.DataFrame, config: ShadowConfig, training_reference: pd.DataFrame | None, *, task: str,
    numeric: Sequence[str] = (), categorical: Sequence[str] = (), drift: DriftConfig | None = None,
    champion: str = "champion", challenger: str = "challenger", shed: Mapping[str, int] | None = None,
    outlier_share: float | None = None,
) -> OnlineAnalysis:
    """Judge the challenger's shadow predictions in `preds` (the log since shadowing started).

    `shed` counts, by reason, the mirrors the server chose not to run (queue full, CPU budget, ...):
    they were never attempted, so they lower the coverage, never the error rate.
    """
    started = time.perf_counter()
    try:
        require(preds, PREDICTION_COLUMNS, "the prediction log")
    except ValueError as exc:
        return error_analysis(GATE, str(exc))
    scope = ShadowScope(task, tuple(numeric), tuple(categorical), config.max_latency_ratio, champion, challenger,
                        config.latency_slack_ms)
    stats = shadow_stats(preds, scope)
    add_row_level(stats, preds, scope)
    return judge_shadow(stats, config, training_reference, scope, drift=drift, shed=shed,
                        settled=settled_requests(preds, scope, stats.newest_attempted), started=started,
                        outlier_share=outlier_share)


def judge_shadow(stats: ShadowStats, config: ShadowConfig, training_reference: pd.DataFrame | None,
                 scope: ShadowScope, *, settled: int, drift: DriftConfig | None = None,
                 shed: Mapping[str, int] | None = None, started: float | None = None,
                 outlier_share: float | None = None) -> OnlineAnalysis:
    """The shadow decision from the sums over the log (`ShadowStats`); `settled`: served requests logged
    no later than the newest attempted mirror (coverage leaves the newer ones out: still in flight);
    `outlier_share`: the share of training rows the challenger's outlier detector flags (None: it has none)."""
    started = time.perf_counter() if started is None else started
    shed = {reason: int(n) for reason, n in (shed or {}).items() if n}
    counts = {"requests": stats.served, "attempted": stats.attempted, "shed": sum(shed.values()),
              "challenger_rows": stats.challenger_rows, "min_requests": config.min_requests}
    if stats.forced:
        counts["forced_requests"] = stats.forced
    coverage = coverage_check(stats, settled, shed, config)
    if stats.attempted < config.min_requests:
        wait = check("min_requests", O.INCONCLUSIVE, f"{stats.attempted} of {config.min_requests} mirrored requests "
                     f"attempted so far ({stats.served} served)", value=stats.attempted,
                     threshold=config.min_requests, expected="enough attempted mirrors")
        return analysis(GATE, [wait, coverage], started, counts)
    checks = [coverage, error_rate_check(stats, config), *agreement_checks(stats, scope.task, config),
              output_psi_check(stats, scope.task, config), latency_check(stats.calls, config)]
    live = live_inputs(stats, scope, (drift or DriftConfig()).max_rows)
    checks.append(input_drift_check(training_reference, live, scope.numeric, scope.categorical, drift, config))
    checks.append(outlier_rate_check(stats.outliers_flagged, stats.outliers_checked, outlier_share, config.outliers,
                                     config.alpha))
    counts["paired_rows"] = stats.pairs
    return analysis(GATE, checks, started, counts, headline=("agreement", "score_correlation"))


def settled_requests(preds: pd.DataFrame, scope: ShadowScope, newest: float) -> int:
    """Served requests (first answered row of each) logged at or before `newest`."""
    rows = preds
    champ = ok(rows[(rows["variant"] == scope.champion) & (rows["shadow"].astype(int) == 0)])
    served = champ.sort_values(["ts", "row_index"], kind="stable").drop_duplicates("request_id")
    return int((served["ts"] <= newest).sum())


def coverage_check(stats: ShadowStats, settled: int, shed: Mapping[str, int], config: ShadowConfig) -> Check:
    """Share of served requests the challenger was actually run on (attempted / served).

    Too little coverage is never a verdict on the model: it keeps the analysis Inconclusive (and the
    rollout pauses at `max_duration_s` with this reason). Requests newer than the challenger's last
    logged row are still in flight and left out.
    """
    done = stats.done
    rate = done / settled if settled else 0.0
    reasons = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in sorted(shed.items(), key=lambda i: -i[1]))
    message = (f"shadow coverage {rate:.3f} ({done} of {settled} served requests mirrored and attempted; "
               f"{sum(shed.values())} shed{': ' + reasons if reasons else ''}) vs min {config.min_coverage:g}")
    outcome = O.SUCCESSFUL if settled and rate >= config.min_coverage else O.INCONCLUSIVE
    return check("coverage", outcome, message, value=rate, threshold=config.min_coverage,
                 expected=f"coverage >= {config.min_coverage:g}", attempted=done, served=settled, shed=dict(shed))


def error_rate_check(stats: ShadowStats, config: ShadowConfig) -> Check:
    """Share of the mirrors the challenger was run on that it did not answer with 200 (shed mirrors
    are not attempts); the message names the most frequent failure."""
    n, failed = stats.attempted, stats.failures
    interval = rate_sequence(failed, max(n, 1), planned_n=config.planned_requests, planning_rate=PLANNING_RATE,
                             alpha=config.alpha)
    outcome = judge_at_most(interval, config.max_error_rate) if n else O.INCONCLUSIVE
    message = f"challenger error rate {interval.describe(config.alpha)} vs max {config.max_error_rate:g}"
    dominant = dominant_failure(stats.failure_kinds)
    if dominant:
        message += f"; most frequent failure: {dominant}"
    return check("error_rate", outcome, message, value=interval.rate, threshold=config.max_error_rate,
                 expected=f"error rate <= {config.max_error_rate:g}", ci=[interval.low, interval.high], n=n,
                 failures=failed)


def dominant_failure(kinds: Mapping[str, int]) -> str | None:
    """'HTTP 400 missing_column: ... (31 of 40 failures)' for the most frequent status and error."""
    if not kinds:
        return None
    top, count = min(kinds.items(), key=lambda item: (-item[1], item[0]))
    label = "other failures" if top == OTHER else top
    return f"{label} ({count} of {sum(kinds.values())} failures)"


def agreement_checks(stats: ShadowStats, task: str, config: ShadowConfig) -> list[Check]:
    """Label agreement for classifiers; score correlation and MAE when both variants logged scores."""
    checks = []
    if task != "regression":
        checks.append(label_agreement_check(stats, config))
    if not _scored(stats):
        checks.append(skipped("score_correlation", "no scores logged for both variants (labels only)"))
        return checks
    checks.append(correlation_check(stats, config))
    checks.append(mae_check(stats, config))
    return checks


def label_agreement_check(stats: ShadowStats, config: ShadowConfig) -> Check:
    n = stats.pairs
    if n == 0:
        return check("agreement", O.INCONCLUSIVE, "no row predicted by both variants yet", value=None,
                     threshold=config.min_agreement, expected=f"agreement >= {config.min_agreement:g}")
    interval = rate_sequence(stats.agree, n, planned_n=config.planned_requests, planning_rate=PLANNING_RATE,
                             alpha=config.alpha)
    outcome = judge_at_least(interval, config.min_agreement)
    message = f"label agreement with the champion {interval.describe(config.alpha)} vs min {config.min_agreement:g}"
    return check("agreement", outcome, message, value=interval.rate, threshold=config.min_agreement,
                 expected=f"agreement >= {config.min_agreement:g}", ci=[interval.low, interval.high], n=n)


def correlation_check(stats: ShadowStats, config: ShadowConfig) -> Check:
    """Pearson r of the two variants' scores with a Fisher-z interval at 1 - alpha."""
    expected, minimum = f"score correlation >= {config.min_score_correlation:g}", config.min_score_correlation
    n = stats.scores.n
    r = stats.scores.correlation() if n >= 4 else math.nan
    if n < 4 or stats.score_a.single_value() or stats.score_b.single_value() or not math.isfinite(r):
        return check("score_correlation", O.INCONCLUSIVE, f"correlation undefined on {n} rows (constant "
                     "scores or too few rows)", value=None, threshold=minimum, expected=expected)
    r = float(np.clip(r, -0.999999, 0.999999))
    half = stats_module.norm.ppf(1 - config.alpha / 2) / math.sqrt(n - 3)
    low, high = math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)
    outcome = O.SUCCESSFUL if low >= minimum else O.FAILED if high < minimum else O.INCONCLUSIVE
    message = f"score correlation r {r:.4f} [{1 - config.alpha:.0%} CI {low:.4f}, {high:.4f}] vs min {minimum:g}"
    return check("score_correlation", outcome, message, value=r, threshold=minimum, expected=expected,
                 ci=[low, high], n=n)


def mae_check(stats: ShadowStats, config: ShadowConfig) -> Check:
    n = stats.scores.n
    mae, spread = stats.scores.mean_abs_difference()
    half = float(stats_module.t.ppf(1 - config.alpha / 2, max(n - 1, 1)) * spread / math.sqrt(n)) \
        if n > 1 else math.inf
    described = f"mean |score difference| {mae:.4f} [{1 - config.alpha:.0%} CI {mae - half:.4f}, {mae + half:.4f}]"
    if config.max_score_mae is None:
        return skipped("score_mae", f"{described}; not judged (set rollout.shadow.max_score_mae)")
    limit = config.max_score_mae
    outcome = O.SUCCESSFUL if mae + half <= limit else O.FAILED if mae - half > limit else O.INCONCLUSIVE
    return check("score_mae", outcome, f"{described} vs max {limit:g}", value=mae, threshold=limit,
                 expected=f"MAE <= {limit:g}", ci=[mae - half, mae + half])


def output_psi_check(stats: ShadowStats, task: str, config: ShadowConfig) -> Check:
    """PSI of the challenger's outputs against the champion's on the same rows (scores, else labels)."""
    limit, expected = config.max_output_psi, f"output PSI <= {config.max_output_psi:g}"
    if stats.pairs == 0:
        return check("output_psi", O.INCONCLUSIVE, "no paired rows yet", value=None, threshold=limit,
                     expected=expected)
    if _scored(stats):
        edges = np.unique([stats.score_a.quantile(q) for q in np.linspace(0, 1, OUTPUT_BINS + 1)[1:-1]])
        psi, basis = population_stability_index(stats.score_a.shares(edges), stats.score_b.shares(edges)), "scores"
    else:
        labels = sorted(set(stats.labels_a) | set(stats.labels_b))
        shares = [np.array([side.get(label, 0) for label in labels]) / stats.pairs
                  for side in (stats.labels_a, stats.labels_b)]
        psi, basis = population_stability_index(*shares), "predicted labels"
    outcome = O.FAILED if psi > limit else O.SUCCESSFUL
    return check("output_psi", outcome, f"PSI of {basis} vs the champion's {psi:.3f} (max {limit:g})",
                 value=psi, threshold=limit, expected=expected, basis=basis)


def latency_check(calls: CallStats, config: ShadowConfig) -> Check:
    """The challenger's model time over the champion's on the same rows, one pair per shadow model call
    (the shadow worker times both back to back, so a busy machine slows both alike). An always-valid
    sign test on the share of calls beyond `max_latency_ratio` and more than `latency_slack_ms` slower:
    Failed when most calls are, Successful when most are not, else Inconclusive.

    The challenger's shadow time is never compared with the champion's request latency: a shadow
    call is a batch of many requests, paced by a CPU budget and queued behind the request path.
    """
    limit = config.max_latency_ratio
    expected = f"median model-time ratio <= {limit:g} (or within {config.latency_slack_ms:g} ms)"
    if calls.calls == 0:
        return check("latency", O.INCONCLUSIVE, "no shadow model call timed beside the champion's yet "
                     "(the prediction log has no baseline_ms on the challenger's rows)", value=None,
                     threshold=limit, expected=expected, metric="latency ratio")
    interval = rate_sequence(calls.over, calls.calls, planned_n=config.planned_latency_calls,
                             planning_rate=PLANNING_RATE, alpha=config.latency_alpha)
    outcome = judge_at_most(interval, 0.5)
    median = calls.ratios.quantile(0.5)
    message = (f"challenger model time / champion's on the same rows: median {median:.2f} (max {limit:g}) over "
               f"{calls.calls} model calls of {calls.rows / calls.calls:.0f} rows on average "
               f"(p95 {calls.latency.quantile(0.95):.1f} vs {calls.baseline.quantile(0.95):.1f} ms); "
               f"share of calls over {limit:g}x and {config.latency_slack_ms:g} ms slower "
               f"{interval.describe(config.latency_alpha)} vs max 0.5")
    return check("latency", outcome, message, value=median, threshold=limit, expected=expected,
                 metric="latency ratio", ci=[interval.low, interval.high], calls=calls.calls)


def timed_calls(challenger: pd.DataFrame) -> pd.DataFrame:
    """One row per timed shadow model call: latency_ms, baseline_ms and rows (the challenger's rows of
    that call). Every row of one call carries the same two timings, which identify the call."""
    if "baseline_ms" not in challenger.columns or challenger.empty:
        return pd.DataFrame(columns=["latency_ms", "baseline_ms", "rows"])
    times = pd.DataFrame({"latency_ms": as_float(challenger["latency_ms"]),
                          "baseline_ms": as_float(challenger["baseline_ms"])})
    times = times[np.isfinite(times["latency_ms"]) & np.isfinite(times["baseline_ms"]) & (times["baseline_ms"] > 0)]
    return times.groupby(["latency_ms", "baseline_ms"], sort=False).size().rename("rows").reset_index()


def live_inputs(stats: ShadowStats, scope: ShadowScope, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """The served requests' inputs rebuilt from their sums, one column per feature any request logged: every
    value (a bin's representative once a numeric sketch is binned) and its nulls; a seeded subsample of
    `max_rows` rows when more were served (the drift tests' own sample size)."""
    n = stats.served
    if n == 0 or stats.keyed == 0:
        return pd.DataFrame()
    rows = min(n, max_rows)
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for name in (*scope.numeric, *scope.categorical):
        sums = stats.features.get(name)
        if sums is None or sums.present == 0:
            continue
        if sums.values is not None:
            values, counts = sums.values.values_counts()
            values, null = values.astype(object), np.nan
        else:
            keys = list(sums.categories or {})
            values = np.empty(len(keys), dtype=object)
            values[:] = [_decode_category(k) for k in keys]
            counts, null = np.array([(sums.categories or {})[k] for k in keys], dtype=np.int64), None
        counts = np.append(counts, max(n - int(counts.sum()), 0)).astype(np.int64)
        if rows < n:
            counts = rng.multivariate_hypergeometric(counts, rows)
        pool = np.empty(values.size + 1, dtype=object)
        pool[:-1], pool[-1] = values, null
        column = np.repeat(pool, counts)
        columns[name] = column.astype(float) if sums.values is not None else column
    frame = pd.DataFrame(columns, index=pd.RangeIndex(rows))
    if frame.columns.empty:
        frame[_NO_FEATURE] = 0  # inputs were logged, none of them a listed feature: undecided, not empty
    return frame


_NO_FEATURE = "\x00logged"


def _decode_category(text: str) -> Any:
    return "<other categories>" if text == OTHER else orjson.loads(text)


def _scored(stats: ShadowStats) -> bool:
    """Numeric outputs of both variants on enough paired rows (at least 4 and half of them)."""
    return stats.pairs > 0 and stats.scores.n >= max(4, 0.5 * stats.pairs)


def input_drift_check(reference: pd.DataFrame | None, live: pd.DataFrame, numeric: Sequence[str],
                      categorical: Sequence[str], drift: DriftConfig | None, config: ShadowConfig) -> Check:
    """Drift of live inputs vs training (the data gate's statistics); WARN unless `input_drift: fail`."""
    if config.input_drift == "off":
        return skipped("input_drift", "rollout.shadow.input_drift is off")
    drift = drift or DriftConfig()
    features = [*numeric, *categorical]
    if reference is None or live.empty or not features:
        return check("input_drift", O.INCONCLUSIVE, "no training reference or no logged features to compare",
                     value=None, threshold=drift.max_drifted_share, expected="live inputs like training")
    default, overrides = thresholds_for(drift)
    table = drift_table(reference, live, numeric, categorical, thresholds=default, overrides=overrides)
    decided = [r for r in table if r.drifted is not None]
    drifted = sorted(r.feature for r in decided if r.drifted)
    critical = sorted(set(drifted) & set(drift.critical))
    share = len(drifted) / len(features)
    bad = share > drift.max_drifted_share or bool(critical)
    outcome = O.INCONCLUSIVE if not decided else O.FAILED if bad and config.input_drift == "fail" else O.SUCCESSFUL
    listed = f": {', '.join(drifted)}" if drifted else ""
    message = (f"{len(drifted)} of {len(features)} input features drifted vs training ({share:.0%}, limit "
               f"{drift.max_drifted_share:.0%}{', critical ' + ', '.join(critical) if critical else ''}){listed}")
    return check("input_drift", outcome, message, value=share, threshold=drift.max_drifted_share,
                 expected="live inputs like training", warn=bad, drifted=drifted, undecided=len(table) - len(decided))
