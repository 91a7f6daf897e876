"""gates.online: shadow and canary analyses on prediction-log frames, and the canary decision's error rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from mlgate.gates.config import CanaryConfig, ShadowConfig
from mlgate.gates.online import (
    AnalysisOutcome,
    ArmCounts,
    CanaryStep,
    canary_analysis,
    judge_canary,
    shadow_analysis,
)
from mlgate.gates.online.canary import SplitStratum, srm_check
from mlgate.gates.online.canary_data import split_strata, weights_by_version
from mlgate.gates.online.srm_sequential import srm_sequential_p, stratified_srm_p
from mlgate.gates.result import Status

NUMERIC = ["total_day_minutes", "total_eve_minutes", "number_customer_service_calls", "account_length"]
CATEGORICAL = ["international_plan", "voice_mail_plan"]
FEATURES = NUMERIC + CATEGORICAL


@pytest.fixture(scope="module")
def churn(churn_frame: pd.DataFrame) -> pd.DataFrame:
    return churn_frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def model(churn: pd.DataFrame) -> LogisticRegression:
    x = pd.get_dummies(churn[FEATURES].iloc[:2000], dtype=float)
    return LogisticRegression(max_iter=2000).fit(x, churn["churn"].iloc[:2000])


def predict(model: LogisticRegression, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x = pd.get_dummies(rows[FEATURES], dtype=float).reindex(columns=model.feature_names_in_, fill_value=0.0)
    return model.predict(x), model.predict_proba(x)[:, list(model.classes_).index("yes")]


def log_rows(rows: pd.DataFrame, variant: str, labels, scores, *, shadow: bool, latency: float = 2.0,
             status: np.ndarray | None = None, ts0: float = 1000.0, prefix: str = "r",
             slowdown: float | None = None, per_call: int = 20) -> pd.DataFrame:
    """Rows as the prediction log holds them: one per input row and variant. With `slowdown`, the rows
    are a shadow's: model calls of `per_call` requests, each timed (`latency_ms`) beside the champion's
    model on the same rows (`baseline_ms`), `slowdown` times as fast, with noise."""
    n = len(rows)
    status = np.full(n, 200) if status is None else status
    rng = np.random.default_rng(len(variant) + n)
    frame = pd.DataFrame({
        "request_id": [f"{prefix}{i}" for i in range(n)], "row_index": 0, "routing_key": [str(i) for i in range(n)],
        "variant": variant, "model_version": "1", "shadow": int(shadow), "ts": ts0 + np.arange(n) * 0.01,
        "latency_ms": latency + rng.exponential(0.3, n), "status": status, "error": None,
        "features": rows[FEATURES].to_dict("records"),
        "prediction": [None if s != 200 else p for p, s in zip(labels, status, strict=True)],
        "score": [None if s != 200 else float(v) for v, s in zip(scores, status, strict=True)],
    })
    if slowdown is not None:
        call = np.arange(n) // per_call
        baseline = latency + rng.exponential(0.5, call.max() + 1)
        frame["baseline_ms"] = baseline[call]
        frame["latency_ms"] = (baseline * slowdown * rng.lognormal(0.0, 0.1, baseline.size))[call]
    return frame


def shadow_log(churn, model, n=400, *, flip=False, status=None, live=None, slowdown=1.0, shadow_latency=2.0,
               per_call=20) -> pd.DataFrame:
    live = churn.iloc[3000:3000 + n] if live is None else live
    labels, scores = predict(model, live)
    champion = log_rows(live, "champion", labels, scores, shadow=False)
    other = np.where(labels == "yes", "no", "yes") if flip else labels
    challenger = log_rows(live, "challenger", other, 1 - scores if flip else scores, shadow=True, status=status,
                          slowdown=slowdown, latency=shadow_latency, per_call=per_call)
    return pd.concat([champion, challenger], ignore_index=True)


def run_shadow(preds, churn, config=None):
    config = config or ShadowConfig()
    return shadow_analysis(preds, config, churn.iloc[:2000], task="binary", numeric=NUMERIC, categorical=CATEGORICAL)


def test_shadow_waits_for_min_requests_and_never_passes_undecided(churn, model):
    result = run_shadow(shadow_log(churn, model, n=150), churn)
    assert result.outcome is AnalysisOutcome.INCONCLUSIVE
    assert result.result.status is Status.ERROR
    assert "150 of 200 mirrored requests attempted" in result.reason


def test_shed_mirrors_are_not_challenger_failures(churn, model):
    """The server ran the challenger on 350 of 400 requests and shed 50 (queue full under load): no
    error, coverage 0.875, and the analysis decides on the rows it has."""
    preds = shadow_log(churn, model)
    shed_ids = {f"r{i}" for i in range(0, 400, 8)}
    preds = preds[~((preds["variant"] == "challenger") & preds["request_id"].isin(shed_ids))]
    result = shadow_analysis(preds, ShadowConfig(), churn.iloc[:2000], task="binary", numeric=NUMERIC,
                             categorical=CATEGORICAL, shed={"queue_full": 40, "cpu_budget": 10})
    checks = {c.name: c for c in result.result.checks}
    assert result.outcome is AnalysisOutcome.SUCCESSFUL, result.result.to_json()
    assert checks["error_rate"].observed == 0.0 and checks["error_rate"].details["n"] == 350
    assert checks["coverage"].observed == pytest.approx(350 / 400, abs=0.01)
    assert "50 shed: queue full 40, cpu budget 10" in checks["coverage"].message


@pytest.mark.parametrize("flip", [False, True])
def test_too_little_coverage_is_inconclusive_never_failed_or_successful(churn, model, flip):
    """Only one request in four attempted: a perfect or a disagreeing challenger alike stays
    Inconclusive on coverage while the attempted rows are too few to judge, never Failed or Successful."""
    preds = shadow_log(churn, model, n=600, flip=flip)
    skipped_ids = {f"r{i}" for i in range(600) if i % 4}
    preds = preds[~((preds["variant"] == "challenger") & preds["request_id"].isin(skipped_ids))]
    result = shadow_analysis(preds, ShadowConfig(), churn.iloc[:2000], task="binary", numeric=NUMERIC,
                             categorical=CATEGORICAL, shed={"cpu_budget": 450})
    assert result.outcome is AnalysisOutcome.INCONCLUSIVE
    assert "150 of 200 mirrored requests attempted" in result.reason
    coverage = next(c for c in result.result.checks if c.name == "coverage")
    assert coverage.details["outcome"] == "Inconclusive" and coverage.observed == pytest.approx(0.25, abs=0.01)


def test_low_coverage_with_enough_rows_keeps_a_good_challenger_inconclusive(churn, model):
    """Enough attempted rows to judge (200) but only 40% coverage: the good challenger is not passed."""
    preds = shadow_log(churn, model, n=500)
    dropped = {f"r{i}" for i in range(500) if i % 5 not in (0, 1)}
    preds = preds[~((preds["variant"] == "challenger") & preds["request_id"].isin(dropped))]
    result = run_shadow(preds, churn)
    assert result.outcome is AnalysisOutcome.INCONCLUSIVE
    assert result.reason.startswith("inconclusive: shadow coverage 0.40")


def test_shadow_of_an_identical_model_is_successful(churn, model):
    result = run_shadow(shadow_log(churn, model), churn)
    assert result.outcome is AnalysisOutcome.SUCCESSFUL, result.result.to_json()
    checks = {c.name: c for c in result.result.checks}
    assert checks["agreement"].observed == 1.0 and checks["score_correlation"].observed > 0.999
    assert checks["output_psi"].observed < 0.01 and checks["input_drift"].status is Status.PASS


def test_shadow_fails_a_challenger_that_disagrees_and_says_why(churn, model):
    result = run_shadow(shadow_log(churn, model, flip=True), churn)
    assert result.outcome is AnalysisOutcome.FAILED
    reason = result.rollback_reason()
    assert reason["metric"] in ("agreement", "score_correlation", "output_psi")
    assert reason["value"] is not None and reason["threshold"] is not None
    agreement = next(c for c in result.result.checks if c.name == "agreement")
    assert agreement.status is Status.FAIL and "vs min 0.9" in agreement.message


def test_shadow_fails_a_challenger_that_errors(churn, model):
    status = np.where(np.arange(400) % 10 == 0, 500, 200)
    result = run_shadow(shadow_log(churn, model, status=status), churn)
    errors = next(c for c in result.result.checks if c.name == "error_rate")
    assert result.outcome is AnalysisOutcome.FAILED and errors.status is Status.FAIL
    assert errors.observed == pytest.approx(0.1)


def test_shadow_error_rate_names_the_dominant_failure(churn, model):
    status = np.where(np.arange(400) % 5 == 0, 400, 200)
    preds = shadow_log(churn, model, status=status)
    failed = (preds["variant"] == "challenger") & (preds["status"] == 400)
    preds.loc[failed, "error"] = "missing_column: the input has no column 'tenure_months'"
    result = run_shadow(preds, churn)
    errors = next(c for c in result.result.checks if c.name == "error_rate")
    assert errors.status is Status.FAIL
    assert "most frequent failure: HTTP 400 missing_column: the input has no column 'tenure_months' (80 of 80" \
        in errors.message


def test_input_drift_of_live_traffic_warns_or_fails_as_configured(churn, model):
    live = churn.iloc[3000:3400].copy()
    live["total_day_minutes"] *= 1.6
    live["number_customer_service_calls"] += 3
    preds = shadow_log(churn, model, live=live)
    warned = run_shadow(preds, churn)
    drift = next(c for c in warned.result.checks if c.name == "input_drift")
    assert drift.status is Status.WARN and "total_day_minutes" in drift.message
    failed = run_shadow(preds, churn, ShadowConfig(input_drift="fail"))
    assert failed.outcome is AnalysisOutcome.FAILED and failed.decisive.name == "input_drift"


def test_shadow_latency_compares_model_times_on_the_same_rows_not_the_champions_request_latency(churn, model):
    # A busy machine: the shadow's batched calls take 60 ms against the champion's 2 ms requests, but the
    # champion's model timed beside each call took as long. Same speed: not a slowdown.
    busy = run_shadow(shadow_log(churn, model, shadow_latency=60.0), churn)
    latency = next(c for c in busy.result.checks if c.name == "latency")
    assert busy.outcome is AnalysisOutcome.SUCCESSFUL and latency.status is Status.PASS, latency.message
    assert latency.observed == pytest.approx(1.0, abs=0.1) and "over 20 model calls of 20 rows" in latency.message

    slow = run_shadow(shadow_log(churn, model, slowdown=4.0), churn)
    assert slow.outcome is AnalysisOutcome.FAILED and slow.decisive.name == "latency"
    reason = slow.rollback_reason()
    assert reason["metric"] == "latency ratio" and reason["threshold"] == 1.5
    assert reason["value"] == pytest.approx(4.0, rel=0.1)
    # Just within the limit passes; a few calls decide nothing either way.
    assert run_shadow(shadow_log(churn, model, slowdown=1.3), churn).outcome is AnalysisOutcome.SUCCESSFUL
    few = run_shadow(shadow_log(churn, model, slowdown=4.0, per_call=150), churn)
    assert few.outcome is AnalysisOutcome.INCONCLUSIVE and few.decisive.name == "latency"


def test_a_fixed_millisecond_on_a_sub_millisecond_champion_call_is_not_a_slowdown(churn, model):
    """4x of a 0.5 ms call is 1.5 ms more: within latency_slack_ms (5 ms), as a wrapper's overhead is; with
    no slack it fails, and 4x of a 2 ms call (6 ms more) fails with the default slack (above)."""
    tiny = shadow_log(churn, model, slowdown=4.0, shadow_latency=0.5)
    judged = run_shadow(tiny, churn)
    latency = next(c for c in judged.result.checks if c.name == "latency")
    assert judged.outcome is AnalysisOutcome.SUCCESSFUL and latency.status is Status.PASS, latency.message
    assert "(or within 5 ms)" in latency.expected and "5 ms slower" in latency.message
    strict = run_shadow(tiny, churn, ShadowConfig(latency_slack_ms=0.0))
    assert strict.outcome is AnalysisOutcome.FAILED and strict.decisive.name == "latency"


def test_shadow_latency_without_paired_timings_is_never_a_pass(churn, model):
    result = run_shadow(shadow_log(churn, model).drop(columns=["baseline_ms"]), churn)
    latency = next(c for c in result.result.checks if c.name == "latency")
    assert result.outcome is AnalysisOutcome.INCONCLUSIVE and latency.status is Status.ERROR
    assert "baseline_ms" in latency.message


def test_a_log_without_required_columns_is_an_error(churn, model):
    result = run_shadow(shadow_log(churn, model).drop(columns=["status"]), churn)
    assert result.outcome is AnalysisOutcome.ERROR and "no column(s) status" in result.reason


# ---- canary ----

CANARY = CanaryConfig(steps=[50, 100], min_requests_per_step=100, min_labels_per_step=50,
                      metric_margins={"accuracy": 0.05}, planned_labels=1500, latency_tolerance=0.1)


def canary_log(churn, model, *, weight=50, n=2800, worse=0.0, seed=0):
    """A weighted canary: each request goes to one arm by weight; the challenger is wrong on `worse` of rows."""
    rng = np.random.default_rng(seed)
    rows = churn.iloc[2000:2000 + n]
    labels, scores = predict(model, rows)
    arm = rng.random(n) < weight / 100
    wrong = rng.random(n) < worse
    challenger_labels = np.where(arm & wrong, np.where(labels == "yes", "no", "yes"), labels)
    frame = log_rows(rows, "champion", challenger_labels, scores, shadow=False)
    frame.loc[arm, "variant"] = "challenger"
    feedback = pd.DataFrame({"request_id": frame["request_id"], "row_index": 0, "label": rows["churn"].to_numpy(),
                             "ts": frame["ts"] + 1.0})
    return frame, feedback


def test_canary_promotes_an_equal_challenger_once_non_inferiority_is_proven(churn, model):
    preds, feedback = canary_log(churn, model)
    result = canary_analysis(preds, feedback, CANARY, CanaryStep.of(CANARY, 0), step_started=0.0,
                             task="binary", positive_class="yes")
    assert result.outcome is AnalysisOutcome.SUCCESSFUL, result.result.to_json()
    accuracy = next(c for c in result.result.checks if c.name == "accuracy")
    assert accuracy.details["decision"] == "non_inferior" and accuracy.details["ci"][0] > -0.05


def test_canary_fails_a_much_worse_challenger_with_metric_value_and_threshold(churn, model):
    preds, feedback = canary_log(churn, model, worse=0.3)
    result = canary_analysis(preds, feedback, CANARY, CanaryStep.of(CANARY, 0), step_started=0.0,
                             task="binary", positive_class="yes")
    assert result.outcome is AnalysisOutcome.FAILED
    reason = result.rollback_reason()
    assert reason["metric"] == "accuracy delta" and reason["threshold"] == -0.05 and reason["value"] < -0.1
    assert "inferior" in reason["message"]


def test_canary_waits_for_labels_and_reports_inconclusive(churn, model):
    preds, feedback = canary_log(churn, model, n=150)
    result = canary_analysis(preds, feedback.iloc[:0], CANARY, CanaryStep.of(CANARY, 0), step_started=0.0,
                             task="binary", positive_class="yes")
    assert result.outcome is AnalysisOutcome.INCONCLUSIVE and result.result.status is Status.ERROR


def test_sample_ratio_mismatch_halts_as_error():
    arm = ArmCounts(requests=1000, step_units=1000, step_requests=1000, step_labels=1000,
                    labels={"accuracy": (850, 1000)}, latency_ms=None)
    skewed = ArmCounts(requests=800, step_units=800, step_requests=800, step_labels=800,
                       labels={"accuracy": (680, 800)}, latency_ms=None)
    result = judge_canary(arm, skewed, CANARY, CanaryStep.of(CANARY, 0))
    assert result.outcome is AnalysisOutcome.ERROR and result.decisive.name == "srm"
    assert "sample ratio mismatch" in result.reason and "chi-square" in result.reason


def test_sequential_srm_is_calm_on_a_fair_split_and_detects_a_skewed_one():
    rng = np.random.default_rng(3)
    fair = [srm_sequential_p((n - k, k), (90, 10)) for n, k in ((n, rng.binomial(n, 0.1)) for n in (50, 500, 5000))]
    assert min(fair) > 0.01
    assert srm_sequential_p((4600, 400), (90, 10)) < 0.001  # 8% instead of 10%


def _switch_log(churn, model, *, lagging: int = 800, switched: int = 1200, seed: int = 4) -> pd.DataFrame:
    """A step at 50%: `lagging` units still routed by version 1 (90/10: replicas not yet switched), then
    `switched` units by version 2 (50/50); one request per routing key."""
    rng = np.random.default_rng(seed)
    rows = churn.iloc[:lagging + switched]
    labels, scores = predict(model, rows)
    frame = log_rows(rows, "champion", labels, scores, shadow=False, ts0=0.0)
    version = np.r_[np.full(lagging, 1), np.full(switched, 2)]
    to_challenger = rng.random(len(frame)) < np.where(version == 1, 0.1, 0.5)
    return frame.assign(variant=np.where(to_challenger, "challenger", "champion"), route_version=version)


SWITCH_TABLES = {1: {"mode": "weighted", "variants": [{"name": "champion", "weight": 90},
                                                      {"name": "challenger", "weight": 10}]},
                 2: {"mode": "weighted", "variants": [{"name": "champion", "weight": 50},
                                                      {"name": "challenger", "weight": 50}]}}


def _srm_of(preds, weights):
    feedback = pd.DataFrame({"request_id": [], "row_index": [], "label": []})
    result = canary_analysis(preds, feedback, CANARY, CanaryStep.of(CANARY, 0), step_started=0.0, task="binary",
                             positive_class="yes", route_weights=weights)
    return next(c for c in result.result.checks if c.name == "srm")


def test_rows_the_old_table_routed_during_a_switch_are_no_sample_ratio_mismatch(churn, model):
    preds = _switch_log(churn, model)
    weights = weights_by_version(SWITCH_TABLES)
    judged = _srm_of(preds, weights)
    assert judged.details["outcome"] == "Successful", judged.message
    assert "v1 at 90/10" in judged.message and "v2 at 50/50" in judged.message
    pooled = _srm_of(preds.assign(route_version=None), weights)  # a log without versions, judged as before
    assert pooled.details["outcome"] == "Error" and "weights 50/50" in pooled.message


def test_a_broken_split_within_a_route_version_is_still_flagged(churn, model):
    preds = _switch_log(churn, model)
    late = preds["route_version"] == 2
    broken = preds[~(late & (preds["variant"] == "challenger") & (np.arange(len(preds)) % 3 == 0))]  # lose 1/3
    judged = _srm_of(broken, weights_by_version(SWITCH_TABLES))
    assert judged.details["outcome"] == "Error" and judged.details["chi2_df"] == 2, judged.message
    impossible = [SplitStratum(3, 40, 2, (100.0, 0.0)), SplitStratum(4, 500, 510, (50.0, 50.0))]
    assert stratified_srm_p([((40, 2), (100, 0)), ((500, 510), (50, 50))]) == 0.0  # the 0% variant got units
    flagged = srm_check(ArmCounts(), ArmCounts(), CANARY, CanaryStep.of(CANARY, 0), impossible)
    assert flagged.details["outcome"] == "Error" and "v3 at 100/0: champion 40 / challenger 2" in flagged.message


def test_a_key_counts_once_under_the_version_of_its_first_row_in_the_step():
    rows = pd.DataFrame({"request_id": ["a", "b", "c", "d", "e"], "routing_key": ["k1", "k1", "k2", "k3", None],
                         "variant": ["champion", "challenger", "challenger", "champion", "champion"],
                         "ts": [1.0, 2.0, 3.0, 0.5, 4.0], "route_version": [1, 2, 2, 2, None], "shadow": 0})
    strata = split_strata(rows, "champion", "challenger", CanaryStep.of(CANARY, 0), 1.0, {1: (90.0, 10.0)})
    assert strata == (SplitStratum(None, 1, 0, (50.0, 50.0)), SplitStratum(1, 1, 0, (90.0, 10.0)),
                      SplitStratum(2, 0, 1, (50.0, 50.0)))  # k3 is before the step; v2 has no known table
    assert split_strata(rows.assign(route_version=None), "champion", "challenger", CanaryStep.of(CANARY, 0), 1.0,
                        {}) is None


def test_latency_slowdown_beyond_tolerance_fails_the_step():
    rng = np.random.default_rng(5)
    fast = ArmCounts(requests=400, step_units=200, step_requests=200, step_labels=200,
                     labels={"accuracy": (170, 200)}, latency_ms=rng.exponential(2.0, 400) + 1)
    slow = ArmCounts(requests=400, step_units=200, step_requests=200, step_labels=200,
                     labels={"accuracy": (170, 200)}, latency_ms=rng.exponential(2.0, 400) + 6)
    result = judge_canary(fast, slow, CANARY, CanaryStep.of(CANARY, 0))
    assert result.outcome is AnalysisOutcome.FAILED and result.decisive.name == "latency"


def test_a_consistent_shift_within_the_latency_slack_passes_the_step():
    """+1.5 ms on every request is consistent (P(slower) near 1) but within latency_slack_ms (2 ms); with no
    slack it fails; +5 ms (above) fails with the default slack."""
    rng = np.random.default_rng(6)
    base = rng.exponential(0.5, 400) + 2.0
    fast = ArmCounts(requests=400, step_units=200, step_requests=200, step_labels=200,
                     labels={"accuracy": (170, 200)}, latency_ms=base)
    shifted = ArmCounts(requests=400, step_units=200, step_requests=200, step_labels=200,
                        labels={"accuracy": (170, 200)}, latency_ms=rng.exponential(0.5, 400) + 3.5)
    result = judge_canary(fast, shifted, CANARY, CanaryStep.of(CANARY, 0))
    latency = next(c for c in result.result.checks if c.name == "latency")
    assert latency.status is Status.PASS and "or a shift within 2 ms" in latency.message, latency.message
    strict = CANARY.model_copy(update={"latency_slack_ms": 0.0})
    failed = judge_canary(fast, shifted, strict, CanaryStep.of(strict, 0))
    assert failed.outcome is AnalysisOutcome.FAILED and failed.decisive.name == "latency"


def test_precision_needs_a_positive_class(churn, model):
    preds, feedback = canary_log(churn, model)
    config = CANARY.model_copy(update={"metric_margins": {"precision": 0.05}})
    result = canary_analysis(preds, feedback, config, CanaryStep.of(config, 0), step_started=0.0, task="binary")
    assert result.outcome is AnalysisOutcome.ERROR and "positive_class" in result.reason


# ---- the decision's error rates under continuous monitoring (simulated rollouts) ----

LOOK_EVERY = 50


def simulate_rollouts(runs: int, p_champion: float, p_challenger: float, config: CanaryConfig, horizon: int,
                      seed: int) -> dict:
    """Drive `judge_canary` as the controller does: look every 50 labelled requests, advance on Successful,
    roll back on Failed/Error, stop at the horizon. Alongside, a fixed-horizon Wald test peeked at the same
    looks rolls back when its 95% CI lies below -margin."""
    rng = np.random.default_rng(seed)
    z = stats.norm.ppf(1 - config.alpha / 2)
    margin = config.metric_margins["accuracy"]
    ends, peeked, looks_to_rollback = [], 0, []
    for _ in range(runs):
        step, x, n, units = 0, np.zeros(2, int), np.zeros(2, int), np.zeros(2, int)
        end, fixed_rolled_back = "horizon", False
        for _look in range(horizon // LOOK_EVERY):
            to_challenger = int(rng.binomial(LOOK_EVERY, config.steps[step] / 100))
            for arm, (k, p) in enumerate(((LOOK_EVERY - to_challenger, p_champion), (to_challenger, p_challenger))):
                x[arm] += rng.binomial(k, p)
                n[arm] += k
                units[arm] += k
            arms = [ArmCounts(requests=int(n[a]), errors=0, step_units=int(units[a]), step_requests=int(units[a]),
                              step_labels=int(units[a]), labels={"accuracy": (int(x[a]), int(n[a]))})
                    for a in (0, 1)]
            outcome = judge_canary(*arms, config, CanaryStep.of(config, step)).outcome
            if n.min() > 0 and not fixed_rolled_back:
                rate = x / n
                half = z * np.sqrt((rate * (1 - rate) / n).sum())
                fixed_rolled_back = (rate[1] - rate[0]) + half < -margin
            if outcome in (AnalysisOutcome.FAILED, AnalysisOutcome.ERROR):
                end = "rollback" if outcome is AnalysisOutcome.FAILED else "srm_error"
                looks_to_rollback.append(int(n.sum()))
                break
            if outcome is AnalysisOutcome.SUCCESSFUL:
                if step == len(config.steps) - 1:
                    end = "promoted"
                    break
                step, units = step + 1, np.zeros(2, int)
        ends.append(end)
        peeked += fixed_rolled_back
    counts = pd.Series(ends).value_counts().to_dict()
    return {"ends": counts, "rolled_back": (counts.get("rollback", 0) + counts.get("srm_error", 0)) / runs,
            "fixed_peeked": peeked / runs, "labelled_to_rollback": looks_to_rollback}


@pytest.mark.slow
def test_no_true_difference_keeps_false_rollbacks_at_alpha_while_a_peeked_fixed_test_exceeds_it():
    # Zero margin: "no true difference" is exactly the boundary, the hardest case for false rollbacks.
    config = CanaryConfig(steps=[10, 50, 100], min_requests_per_step=100, min_labels_per_step=100,
                          metric_margins={"accuracy": 0.0}, planned_labels=2000, latency_tolerance=None)
    result = simulate_rollouts(1000, 0.85, 0.85, config, horizon=3000, seed=11)
    print(f"\nno true difference, 1000 rollouts, look every {LOOK_EVERY} labels up to 3000: "
          f"false rollbacks {result['rolled_back']:.3f} (ends {result['ends']}); fixed-horizon Wald test peeked "
          f"at the same looks {result['fixed_peeked']:.3f}; alpha {config.alpha}")
    assert result["rolled_back"] <= config.alpha
    assert result["fixed_peeked"] > config.alpha


@pytest.mark.slow
def test_a_five_point_accuracy_drop_is_rolled_back_and_the_labels_needed_are_reported():
    config = CanaryConfig(steps=[50, 100], min_requests_per_step=100, min_labels_per_step=100,
                          metric_margins={"accuracy": 0.01}, planned_labels=3000, latency_tolerance=None)
    horizon = 6000
    result = simulate_rollouts(500, 0.85, 0.80, config, horizon=horizon, seed=12)
    needed = np.array(result["labelled_to_rollback"])
    median = float(np.median(needed))
    print(f"\n0.85 -> 0.80 accuracy, 500 rollouts at 50%: rolled back in {result['rolled_back']:.1%} "
          f"within {horizon} labelled requests (ends {result['ends']}); median labelled requests to rollback "
          f"{median:.0f} (quartiles {np.percentile(needed, 25):.0f}-{np.percentile(needed, 75):.0f})")
    assert result["rolled_back"] >= 0.8
    assert result["ends"].get("promoted", 0) == 0
    assert median < horizon


@pytest.mark.parametrize(("extra", "expected"), [(0.0, AnalysisOutcome.SUCCESSFUL), (0.5, AnalysisOutcome.FAILED)])
def test_regression_canary_judges_mae_against_a_relative_margin(extra, expected):
    """MAE rising by half the champion's MAE (over 3x the 15% margin) fails; equal errors prove non-inferiority."""
    rng = np.random.default_rng(7)
    champion_err = np.abs(rng.normal(0.0, 1.0, 1500))
    challenger_err = np.abs(rng.normal(0.0, 1.0, 1500)) * (1 + extra)
    config = CanaryConfig(steps=[50, 100], metric_margins={"mae": 0.15}, planned_labels=1500,
                          min_requests_per_step=10, min_labels_per_step=10, latency_tolerance=None)
    arm = dict(requests=1500, errors=0, step_units=1500, step_requests=1500, step_labels=1500)
    result = judge_canary(ArmCounts(**arm, abs_errors=champion_err), ArmCounts(**arm, abs_errors=challenger_err),
                          config, CanaryStep.of(config, 1), task="regression")
    mae = next(c for c in result.result.checks if c.name == "mae")
    assert mae.details["outcome"] == str(expected), mae.message
    assert mae.message.startswith("mae delta")


def test_accuracy_margin_is_refused_for_a_regression_canary():
    config = CanaryConfig(metric_margins={"accuracy": 0.02})
    arm = ArmCounts(requests=10, labels={"accuracy": (8, 10)})
    result = judge_canary(arm, arm, config, CanaryStep.of(config, 0), task="regression")
    assert result.outcome is AnalysisOutcome.ERROR and "not a canary metric for task regression" in result.reason
