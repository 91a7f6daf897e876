"""Shadow analysis: the challenger predicts on mirrored live traffic next to the champion; no labels needed.

Checks: agreement of predicted labels (classifiers) or correlation / MAE of scores, PSI of the output
distribution against the champion's on the same rows, the challenger's error rate, its model time against
the champion's on the same rows, and drift of the live inputs against the training data. Rates are judged
on always-valid confidence sequences, so the analysis may be re-run at every poll.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mlgate.gates.config import DriftConfig, ShadowConfig
from mlgate.gates.data.drift import drift_table, output_psi, population_stability_index
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
from mlgate.gates.online.log_frames import (
    PREDICTION_COLUMNS,
    as_float,
    canonical_series,
    features_frame,
    ok,
    paired,
    requests_of,
    require,
    variant_rows,
)
from mlgate.gates.result import Check

GATE = "shadow"
# Mixing variance of the rate sequences from the widest binomial variance: a challenger that is badly off
# (10% errors, half its labels different) is caught within a few hundred requests, not thousands.
PLANNING_RATE = 0.5


def shadow_analysis(
    preds: pd.DataFrame, config: ShadowConfig, training_reference: pd.DataFrame | None, *, task: str,
    numeric: Sequence[str] = (), categorical: Sequence[str] = (), drift: DriftConfig | None = None,
    champion: str = "champion", challenger: str = "challenger", shed: Mapping[str, int] | None = None,
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
    champ = variant_rows(preds, champion, shadow=False)
    chall = variant_rows(preds, challenger, shadow=True)
    served, attempted = requests_of(ok(champ)), requests_of(chall)
    shed = {reason: int(n) for reason, n in (shed or {}).items() if n}
    counts = {"requests": len(served), "attempted": len(attempted), "shed": sum(shed.values()),
              "challenger_rows": len(chall), "min_requests": config.min_requests}
    coverage = coverage_check(served, attempted, shed, config)
    if len(attempted) < config.min_requests:
        wait = check("min_requests", O.INCONCLUSIVE, f"{len(attempted)} of {config.min_requests} mirrored requests "
                     f"attempted so far ({len(served)} served)", value=len(attempted),
                     threshold=config.min_requests, expected="enough attempted mirrors")
        return analysis(GATE, [wait, coverage], started, counts)
    pairs = paired(champ, chall)
    checks = [coverage, error_rate_check(attempted, config), *agreement_checks(pairs, task, config),
              output_psi_check(pairs, task, config), latency_check(ok(chall), config)]
    live = features_frame(served)
    checks.append(input_drift_check(training_reference, live, numeric, categorical, drift, config))
    counts["paired_rows"] = len(pairs)
    return analysis(GATE, checks, started, counts, headline=("agreement", "score_correlation"))


def coverage_check(served: pd.DataFrame, attempted: pd.DataFrame, shed: Mapping[str, int],
                   config: ShadowConfig) -> Check:
    """Share of served requests the challenger was actually run on (attempted / served).

    Too little coverage is never a verdict on the model: it keeps the analysis Inconclusive (and the
    rollout pauses at `max_duration_s` with this reason). Requests newer than the challenger's last
    logged row are still in flight and left out.
    """
    newest = attempted["ts"].max() if len(attempted) else -math.inf
    settled = int((served["ts"] <= newest).sum())
    done = int(attempted["request_id"].isin(served["request_id"]).sum())
    rate = done / settled if settled else 0.0
    reasons = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in sorted(shed.items(), key=lambda i: -i[1]))
    message = (f"shadow coverage {rate:.3f} ({done} of {settled} served requests mirrored and attempted; "
               f"{sum(shed.values())} shed{': ' + reasons if reasons else ''}) vs min {config.min_coverage:g}")
    outcome = O.SUCCESSFUL if settled and rate >= config.min_coverage else O.INCONCLUSIVE
    return check("coverage", outcome, message, value=rate, threshold=config.min_coverage,
                 expected=f"coverage >= {config.min_coverage:g}", attempted=done, served=settled, shed=dict(shed))


def error_rate_check(attempted: pd.DataFrame, config: ShadowConfig) -> Check:
    """Share of the mirrors the challenger was run on that it did not answer with 200 (shed mirrors
    are not in `attempted`); the message names the most frequent failure."""
    n = len(attempted)
    failed = attempted[attempted["status"] != 200]
    interval = rate_sequence(len(failed), max(n, 1), planned_n=config.planned_requests, planning_rate=PLANNING_RATE,
                             alpha=config.alpha)
    outcome = judge_at_most(interval, config.max_error_rate) if n else O.INCONCLUSIVE
    message = f"challenger error rate {interval.describe(config.alpha)} vs max {config.max_error_rate:g}"
    dominant = dominant_failure(failed)
    if dominant:
        message += f"; most frequent failure: {dominant}"
    return check("error_rate", outcome, message, value=interval.rate, threshold=config.max_error_rate,
                 expected=f"error rate <= {config.max_error_rate:g}", ci=[interval.low, interval.high], n=n,
                 failures=len(failed))


def dominant_failure(failed: pd.DataFrame) -> str | None:
    """'HTTP 400 missing_column: ... (31 of 40 failures)' for the most frequent status and error."""
    if failed.empty:
        return None
    errors = failed["error"] if "error" in failed.columns else pd.Series([None] * len(failed), index=failed.index)
    keys = [f"HTTP {int(status)} {str(error or 'no message')[:160]}" for status, error in zip(failed["status"], errors,
                                                                                              strict=True)]
    top, count = Counter(keys).most_common(1)[0]
    return f"{top} ({count} of {len(keys)} failures)"


def agreement_checks(pairs: pd.DataFrame, task: str, config: ShadowConfig) -> list[Check]:
    """Label agreement for classifiers; score correlation and MAE when both variants logged scores."""
    checks = []
    if task != "regression":
        checks.append(label_agreement_check(pairs, config))
    a, b = _scores(pairs, task)
    if a is None:
        checks.append(skipped("score_correlation", "no scores logged for both variants (labels only)"))
        return checks
    checks.append(correlation_check(a, b, config))
    checks.append(mae_check(a, b, config))
    return checks


def label_agreement_check(pairs: pd.DataFrame, config: ShadowConfig) -> Check:
    n = len(pairs)
    if n == 0:
        return check("agreement", O.INCONCLUSIVE, "no row predicted by both variants yet", value=None,
                     threshold=config.min_agreement, expected=f"agreement >= {config.min_agreement:g}")
    same = int((canonical_series(pairs["prediction_a"]) == canonical_series(pairs["prediction_b"])).sum())
    interval = rate_sequence(same, n, planned_n=config.planned_requests, planning_rate=PLANNING_RATE,
                             alpha=config.alpha)
    outcome = judge_at_least(interval, config.min_agreement)
    message = f"label agreement with the champion {interval.describe(config.alpha)} vs min {config.min_agreement:g}"
    return check("agreement", outcome, message, value=interval.rate, threshold=config.min_agreement,
                 expected=f"agreement >= {config.min_agreement:g}", ci=[interval.low, interval.high], n=n)


def correlation_check(a: np.ndarray, b: np.ndarray, config: ShadowConfig) -> Check:
    """Pearson r of the two variants' scores with a Fisher-z interval at 1 - alpha."""
    expected, minimum = f"score correlation >= {config.min_score_correlation:g}", config.min_score_correlation
    if a.size < 4 or np.std(a) == 0 or np.std(b) == 0:
        return check("score_correlation", O.INCONCLUSIVE, f"correlation undefined on {a.size} rows (constant "
                     "scores or too few rows)", value=None, threshold=minimum, expected=expected)
    r = float(np.clip(np.corrcoef(a, b)[0, 1], -0.999999, 0.999999))
    half = stats.norm.ppf(1 - config.alpha / 2) / math.sqrt(a.size - 3)
    low, high = math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)
    outcome = O.SUCCESSFUL if low >= minimum else O.FAILED if high < minimum else O.INCONCLUSIVE
    message = f"score correlation r {r:.4f} [{1 - config.alpha:.0%} CI {low:.4f}, {high:.4f}] vs min {minimum:g}"
    return check("score_correlation", outcome, message, value=r, threshold=minimum, expected=expected,
                 ci=[low, high], n=int(a.size))


def mae_check(a: np.ndarray, b: np.ndarray, config: ShadowConfig) -> Check:
    diff = np.abs(b - a)
    mae = float(diff.mean())
    half = float(stats.t.ppf(1 - config.alpha / 2, max(diff.size - 1, 1)) * diff.std(ddof=1) / math.sqrt(diff.size)) \
        if diff.size > 1 else math.inf
    described = f"mean |score difference| {mae:.4f} [{1 - config.alpha:.0%} CI {mae - half:.4f}, {mae + half:.4f}]"
    if config.max_score_mae is None:
        return skipped("score_mae", f"{described}; not judged (set rollout.shadow.max_score_mae)")
    limit = config.max_score_mae
    outcome = O.SUCCESSFUL if mae + half <= limit else O.FAILED if mae - half > limit else O.INCONCLUSIVE
    return check("score_mae", outcome, f"{described} vs max {limit:g}", value=mae, threshold=limit,
                 expected=f"MAE <= {limit:g}", ci=[mae - half, mae + half])


def output_psi_check(pairs: pd.DataFrame, task: str, config: ShadowConfig) -> Check:
    """PSI of the challenger's outputs against the champion's on the same rows (scores, else labels)."""
    limit, expected = config.max_output_psi, f"output PSI <= {config.max_output_psi:g}"
    if len(pairs) == 0:
        return check("output_psi", O.INCONCLUSIVE, "no paired rows yet", value=None, threshold=limit,
                     expected=expected)
    a, b = _scores(pairs, task)
    if a is not None:
        psi, basis = output_psi(a, b), "scores"
    else:
        psi, basis = _label_psi(pairs), "predicted labels"
    outcome = O.FAILED if psi > limit else O.SUCCESSFUL
    return check("output_psi", outcome, f"PSI of {basis} vs the champion's {psi:.3f} (max {limit:g})",
                 value=psi, threshold=limit, expected=expected, basis=basis)


def latency_check(challenger: pd.DataFrame, config: ShadowConfig) -> Check:
    """The challenger's model time over the champion's on the same rows, one pair per shadow model call
    (the shadow worker times both back to back, so a busy machine slows both alike). An always-valid
    sign test on the share of calls beyond `max_latency_ratio`: Failed when most calls are, Successful
    when most are not, else Inconclusive.

    The challenger's shadow time is never compared with the champion's request latency: a shadow
    call is a batch of many requests, paced by a CPU budget and queued behind the request path.
    """
    limit = config.max_latency_ratio
    expected = f"median model-time ratio <= {limit:g}"
    calls = timed_calls(challenger)
    if calls.empty:
        return check("latency", O.INCONCLUSIVE, "no shadow model call timed beside the champion's yet "
                     "(the prediction log has no baseline_ms on the challenger's rows)", value=None,
                     threshold=limit, expected=expected, metric="latency ratio")
    ratios = calls["latency_ms"].to_numpy() / calls["baseline_ms"].to_numpy()
    over = int((ratios > limit).sum())
    interval = rate_sequence(over, len(ratios), planned_n=config.planned_latency_calls, planning_rate=PLANNING_RATE,
                             alpha=config.latency_alpha)
    outcome = judge_at_most(interval, 0.5)
    median = float(np.median(ratios))
    message = (f"challenger model time / champion's on the same rows: median {median:.2f} (max {limit:g}) over "
               f"{len(ratios)} model calls of {calls['rows'].mean():.0f} rows on average "
               f"(p95 {calls['latency_ms'].quantile(0.95):.1f} vs {calls['baseline_ms'].quantile(0.95):.1f} ms); "
               f"share of calls over {limit:g}x {interval.describe(config.latency_alpha)} vs max 0.5")
    return check("latency", outcome, message, value=median, threshold=limit, expected=expected,
                 metric="latency ratio", ci=[interval.low, interval.high], calls=len(ratios))


def timed_calls(challenger: pd.DataFrame) -> pd.DataFrame:
    """One row per timed shadow model call: latency_ms, baseline_ms and rows (the challenger's rows of
    that call). Every row of one call carries the same two timings, which identify the call."""
    if "baseline_ms" not in challenger.columns or challenger.empty:
        return pd.DataFrame(columns=["latency_ms", "baseline_ms", "rows"])
    times = pd.DataFrame({"latency_ms": as_float(challenger["latency_ms"]),
                          "baseline_ms": as_float(challenger["baseline_ms"])})
    times = times[np.isfinite(times["latency_ms"]) & np.isfinite(times["baseline_ms"]) & (times["baseline_ms"] > 0)]
    return times.groupby(["latency_ms", "baseline_ms"], sort=False).size().rename("rows").reset_index()


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


def _scores(pairs: pd.DataFrame, task: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Paired numeric outputs: regression predictions, or positive-class scores when both were logged."""
    cols = ("prediction_a", "prediction_b") if task == "regression" else ("score_a", "score_b")
    if cols[0] not in pairs.columns or len(pairs) == 0:
        return None, None
    a, b = as_float(pairs[cols[0]]), as_float(pairs[cols[1]])
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < max(4, 0.5 * len(pairs)):
        return None, None
    return a[both], b[both]


def _label_psi(pairs: pd.DataFrame) -> float:
    a, b = canonical_series(pairs["prediction_a"]), canonical_series(pairs["prediction_b"])
    labels = sorted(set(a) | set(b))
    shares = [np.array([(x == label).mean() for label in labels]) for x in (a, b)]
    return population_stability_index(*shares)
