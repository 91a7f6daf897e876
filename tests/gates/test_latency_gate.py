"""Latency gate logic on latency samples: SLOs, the p95 ratio, the rank judge, missing baselines."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydantic import ValidationError

from mlgate.gates.config import LatencyGateConfig, RankTestConfig
from mlgate.gates.latency.decide import LatencyInputs, RoundSamples, check, summarize
from mlgate.gates.result import GateResult, Status

CONFIG = LatencyGateConfig(users=8, user_rps=5.0, slo={"min_rps": 20.0})  # 40 requests/s offered


def rounds(model: str, *, median_ms: float = 20.0, n: int = 300, k: int = 4, errors: int = 0, seed: int = 0,
           shift_ms: float = 0.0, duration_s: float = 1.0) -> tuple[RoundSamples, ...]:
    """`k` rounds of right-skewed latencies (log-normal, like service times) plus a constant shift."""
    rng = np.random.default_rng(seed)
    return tuple(RoundSamples(model, i, rng.lognormal(np.log(median_ms), 0.35, n) + shift_ms, errors, duration_s)
                 for i in range(k))


def by_name(result: GateResult) -> dict:
    return {c.name: c for c in result.checks}


def test_same_distribution_passes_every_check():
    inputs = LatencyInputs(rounds("candidate", seed=1), rounds("baseline", seed=2), baseline_details={"uri": "models:/m/1"})
    result = check(inputs, CONFIG)
    checks = by_name(result)
    assert result.status is Status.PASS, [c.message for c in result.checks]
    assert set(checks) == {"slo.p95_ms", "slo.p99_ms", "slo.error_rate", "slo.throughput", "baseline", "load",
                           "ratio.p95", "rank_test"}
    assert 0.9 < checks["ratio.p95"].observed < 1.1
    assert abs(checks["rank_test"].details["superiority"] - 0.5) < 0.05


def test_a_20ms_slowdown_fails_with_both_p95s_the_ratio_and_the_rank_test():
    inputs = LatencyInputs(rounds("candidate", seed=1, shift_ms=20.0), rounds("baseline", seed=2))
    result = check(inputs, CONFIG)
    checks = by_name(result)
    assert result.status is Status.FAIL
    assert checks["ratio.p95"].status is Status.FAIL and checks["rank_test"].status is Status.FAIL
    cand, base = summarize(inputs.candidate).p95_ms, summarize(inputs.baseline).p95_ms
    message = checks["rank_test"].message
    assert f"p95 candidate {cand:.1f} ms vs baseline {base:.1f} ms" in message
    assert f"(ratio {cand / base:.2f})" in message
    assert re.search(r"median shift \+\d\d\.\d ms = \+\d+% of the baseline median \d\d\.\d ms vs allowed \+25% \(or \+2 ms\), "
                     r"Mann-Whitney one-sided p \S+ vs alpha 0\.01, P\(candidate > baseline\) 0\.9\d\d", message)
    ratio = checks["ratio.p95"]
    assert re.fullmatch(rf"p95 candidate {cand:.1f} ms vs baseline {base:.1f} ms: ratio {cand / base:.2f} "
                        r"\[95% CI (\d\.\d\d), (\d\.\d\d)\] above max 1\.25 \(limit \d+\.\d ms\)", ratio.message)
    low, high = ratio.details["ci"]
    assert 1.25 < low <= cand / base <= high
    assert ratio.details["candidate_round_p95_ms"] and ratio.details["baseline_round_p95_ms"]


def test_a_significant_but_small_difference_is_within_the_tolerance():
    """Kayenta's point: with enough samples any difference is significant; the effect size decides."""
    inputs = LatencyInputs(rounds("candidate", seed=1, n=5000, shift_ms=0.5), rounds("baseline", seed=2, n=5000))
    judged = by_name(check(inputs, CONFIG))["rank_test"]
    assert judged.details["p_greater"] < CONFIG.rank_test.alpha
    assert judged.status is Status.PASS and judged.message.startswith("difference within tolerance")


def test_a_doubling_behind_a_noisy_baseline_tail_fails_on_the_median_shift():
    """A baseline with 7% slow outliers (a busy machine) keeps P(candidate slower) near 0.94 even when the
    typical request takes 2.5x as long: the magnitude (median shift) decides, the consistency does not."""
    rng = np.random.default_rng(5)

    def noisy(median_ms: float, model: str) -> tuple[RoundSamples, ...]:
        out = []
        for i in range(6):
            values = rng.lognormal(np.log(median_ms), 0.2, 20)
            values[rng.random(20) < 0.07] = rng.uniform(150.0, 270.0)
            out.append(RoundSamples(model, i, values, 0, 1.0))
        return tuple(out)

    inputs = LatencyInputs(noisy(65.0, "candidate"), noisy(25.0, "baseline"))
    rank = by_name(check(inputs, CONFIG))["rank_test"]
    assert rank.details["superiority"] < 0.96 and rank.details["shift_ratio"] > 1.0
    assert rank.status is Status.FAIL and rank.message.startswith("candidate slower than baseline: median shift +")
    consistency = CONFIG.model_copy(update={"rank_test": RankTestConfig(effect="superiority", tolerance=0.45)})
    assert by_name(check(inputs, consistency))["rank_test"].status is Status.PASS


def test_a_superiority_tolerance_beyond_one_half_is_refused():
    with pytest.raises(ValidationError, match="with effect superiority it is P"):
        RankTestConfig(effect="superiority", tolerance=0.6)
    assert RankTestConfig(tolerance=0.6).effect == "shift_ratio"


def test_a_ratio_above_the_limit_whose_ci_reaches_below_it_is_inconclusive():
    """One noisy round pair (a burst of other work) cannot fail the ratio on its own."""
    steady = rounds("baseline", seed=2, k=6)
    burst = rounds("candidate", seed=1, k=6)
    burst = (*burst[:5], RoundSamples("candidate", 5, burst[5].latencies_ms * 4.0, 0, 1.0))
    ratio = by_name(check(LatencyInputs(burst, steady), CONFIG))["ratio.p95"]
    low, high = ratio.details["ci"]
    assert ratio.observed > 1.25 and low < 1.25 < high
    assert ratio.status is Status.WARN and "(inconclusive)" in ratio.message


def test_ratio_of_tiny_latencies_is_forgiven_within_the_slack():
    small = LatencyInputs(rounds("candidate", median_ms=1.5, seed=1), rounds("baseline", median_ms=1.0, seed=2))
    ratio = by_name(check(small, CONFIG.model_copy(update={"p95_slack_ms": 2.0})))["ratio.p95"]
    assert ratio.observed > 1.25 and ratio.status is Status.PASS
    strict = by_name(check(small, CONFIG.model_copy(update={"p95_slack_ms": 0.0})))["ratio.p95"]
    assert strict.status is Status.FAIL


def test_slo_breaches_fail_with_observed_and_limit():
    slow = rounds("candidate", median_ms=270.0, errors=3, duration_s=20.0)
    checks = by_name(check(LatencyInputs(slow), CONFIG))
    assert checks["slo.p95_ms"].status is Status.FAIL and "above SLO 250 ms" in checks["slo.p95_ms"].message
    assert checks["slo.p99_ms"].status is Status.FAIL
    assert checks["slo.error_rate"].status is Status.FAIL and "(12/1212)" in checks["slo.error_rate"].message
    throughput = checks["slo.throughput"]
    assert throughput.status is Status.FAIL and "15.0 successful requests/s over 80.0 s below SLO" in throughput.message


def test_a_p99_over_the_slo_from_one_burst_round_is_inconclusive_not_a_failure():
    """Four slow requests in one round put p99 of 240 requests above the SLO; its CI reaches below it."""
    steady = rounds("candidate", median_ms=20.0, n=20, k=12, seed=3)
    burst = steady[5].latencies_ms.copy()
    burst[:4] = [505.0, 520.0, 540.0, 560.0]
    inputs = LatencyInputs((*steady[:5], RoundSamples("candidate", 5, burst, 0, 1.0), *steady[6:]))
    p99 = by_name(check(inputs, CONFIG.model_copy(update={"min_samples": 100})))["slo.p99_ms"]
    low, high = p99.details["ci"]
    assert p99.observed > 500.0 and low < 500.0 < high
    assert p99.status is Status.WARN and "above SLO 500 ms but the CI reaches below it (inconclusive" in p99.message
    slow_everywhere = rounds("candidate", median_ms=400.0, n=20, k=12, seed=3)
    assert by_name(check(LatencyInputs(slow_everywhere), CONFIG))["slo.p99_ms"].status is Status.FAIL


def test_without_a_champion_relative_checks_skip_with_the_reason():
    reason = "no version of model 'churn' has alias 'champion' in sqlite:///mlflow.db"
    result = check(LatencyInputs(rounds("candidate"), None, reason), CONFIG)
    checks = by_name(result)
    assert result.status is Status.PASS
    for name in ("baseline", "ratio.p95", "rank_test"):
        assert checks[name].status is Status.SKIP and reason in checks[name].message
    assert checks["slo.p95_ms"].status is Status.PASS


@pytest.mark.parametrize("failed, required", [(True, False), (False, True)])
def test_a_broken_or_required_baseline_is_an_error(failed, required):
    config = CONFIG.model_copy(update={"require_baseline": required})
    result = check(LatencyInputs(rounds("candidate"), None, "baseline server did not start", failed), config)
    checks = by_name(result)
    assert result.status is Status.ERROR
    assert checks["baseline"].status is Status.ERROR and checks["rank_test"].status is Status.ERROR
    assert ("require_baseline" in checks["baseline"].message) is required


def test_nothing_measured_is_an_error_never_a_pass():
    empty = (RoundSamples("candidate", 0, np.empty(0), 0, 1.0),)
    result = check(LatencyInputs(empty, rounds("baseline")), CONFIG)
    checks = by_name(result)
    assert result.status is Status.ERROR
    assert all(checks[f"slo.{n}"].status is Status.ERROR for n in ("p95_ms", "p99_ms", "error_rate", "throughput"))
    assert checks["ratio.p95"].status is Status.ERROR and "min_samples" in checks["ratio.p95"].message


def test_only_failures_fail_the_error_rate_and_leave_percentiles_undecided():
    failing = (RoundSamples("candidate", 0, np.empty(0), 50, 1.0),)
    checks = by_name(check(LatencyInputs(failing), CONFIG))
    assert checks["slo.error_rate"].status is Status.FAIL and checks["slo.error_rate"].observed == 1.0
    assert checks["slo.p95_ms"].status is Status.ERROR and checks["slo.throughput"].status is Status.FAIL


def test_too_few_candidate_answers_leave_the_percentiles_undecided():
    few = rounds("candidate", n=20, k=2)
    checks = by_name(check(LatencyInputs(few, rounds("baseline")), CONFIG))
    assert checks["slo.p95_ms"].status is Status.ERROR and "only 40 successful" in checks["slo.p95_ms"].message
    assert checks["slo.error_rate"].status is Status.PASS and checks["ratio.p95"].status is Status.ERROR


def test_a_baseline_with_too_few_answers_cannot_be_compared():
    result = check(LatencyInputs(rounds("candidate"), rounds("baseline", n=10, k=2)), CONFIG)
    checks = by_name(result)
    assert checks["baseline"].status is Status.ERROR and "only 20 measured requests" in checks["baseline"].message
    assert checks["rank_test"].status is Status.ERROR


def test_an_overloaded_machine_is_an_error_not_a_verdict_on_the_model():
    """40 requests/s offered; the baseline served 20/s: the machine, not the model, was measured."""
    starved = rounds("baseline", n=20, k=6, duration_s=1.0)
    result = check(LatencyInputs(rounds("candidate", n=40, k=6), starved), CONFIG.model_copy(update={"min_samples": 50}))
    load = by_name(result)["load"]
    assert result.status is Status.ERROR and load.status is Status.ERROR
    assert load.message.startswith("the baseline served only 20.0 of 40 offered requests/s")
    assert "quieter machine" in load.message


def test_a_candidate_alone_short_of_the_offered_load_is_a_warning():
    """Its slowness is judged by the SLO, ratio and rank checks; a machine hiccup must not fail it alone."""
    slow = rounds("candidate", n=20, k=6, duration_s=1.0)
    config = CONFIG.model_copy(update={"min_samples": 50})
    load = by_name(check(LatencyInputs(slow, rounds("baseline", n=40, k=6)), config))["load"]
    assert load.status is Status.WARN and load.message.startswith("the candidate served only 20.0 of 40")
    assert by_name(check(LatencyInputs(slow), config))["load"].status is Status.WARN
    closed_loop = config.model_copy(update={"user_rps": None})
    assert by_name(check(LatencyInputs(slow), closed_loop))["load"].status is Status.SKIP


def test_result_survives_a_json_round_trip():
    result = check(LatencyInputs(rounds("candidate", seed=1, shift_ms=20.0), rounds("baseline", seed=2)), CONFIG)
    assert GateResult.from_json(result.to_json()) == result


def test_an_slo_throughput_above_the_offered_load_is_refused_up_front():
    with pytest.raises(ValidationError, match="slo.min_rps 30 exceeds the offered load users x user_rps = 20"):
        LatencyGateConfig(users=8, user_rps=2.5, slo={"min_rps": 30})


@pytest.mark.parametrize("mix", [{}, {0: 1.0}, {1: 0.0}])
def test_batch_mix_must_name_positive_sizes_and_shares(mix):
    with pytest.raises(ValidationError, match="batch_mix"):
        LatencyGateConfig(batch_mix=mix)


def test_a_sub_millisecond_shift_of_a_fast_baseline_passes_the_rank_test() -> None:
    """+60% of a 1.5 ms median is 0.9 ms: within rank_test.slack_ms (2 ms), as a p95 difference within
    p95_slack_ms is; the same relative shift of a 15 ms median (9 ms) still fails."""
    from mlgate.gates.stats.rank import rank_judge

    rng = np.random.default_rng(3)
    for median, fails in ((1.5, False), (15.0, True)):
        baseline = rng.gamma(20.0, median / 20.0, 1500)
        candidate = rng.gamma(20.0, 1.6 * median / 20.0, 1500)
        judged = rank_judge(baseline, candidate, tolerance=0.5, alpha=0.01, effect="shift_ratio", slack=2.0)
        assert judged.test.p_greater < 0.01 and judged.test.shift_ratio > 0.5
        assert judged.passed is not fails, judged.message
        assert "(or +2 ms)" in judged.message
