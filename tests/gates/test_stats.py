"""mlgate.gates.stats: metrics equal sklearn's, CIs cover the truth, and the decision rules say what they decide."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from mlgate.gates.stats import (
    METRICS,
    Interval,
    Predictions,
    bonferroni_level,
    delong_roc_auc_test,
    expected_calibration_error,
    hodges_lehmann_shift,
    holm_adjust,
    mcnemar_accuracy_test,
    mcnemar_mid_p,
    metrics_for_task,
    non_inferiority,
    paired_bootstrap_ci,
    paired_bootstrap_cis,
    rank_judge,
    required_improvement,
    srm_chi_square,
)

# ---------------------------------------------------------------- metrics equal sklearn's


def _binary_data(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    proba = np.clip(0.5 + 0.2 * (2 * y - 1) + rng.normal(0, 0.25, n), 0.0, 1.0)
    proba = np.round(proba, 2)  # ties, and exact 0 and 1, as tree models produce
    return y, proba, (proba > 0.5).astype(int)


BINARY_REFERENCES = {
    "roc_auc": ("scores", skm.roc_auc_score),
    "pr_auc": ("scores", skm.average_precision_score),
    "f1": ("labels", skm.f1_score),
    "precision": ("labels", lambda y, p: skm.precision_score(y, p, zero_division=0)),
    "recall": ("labels", skm.recall_score),
    "accuracy": ("labels", skm.accuracy_score),
    "log_loss": ("proba", skm.log_loss),
    "brier": ("proba", skm.brier_score_loss),
}


@pytest.mark.parametrize("name", sorted(BINARY_REFERENCES))
@pytest.mark.parametrize("seed", [0, 1])
def test_binary_metrics_equal_sklearn(name: str, seed: int) -> None:
    y, proba, labels = _binary_data(seed)
    needs, reference = BINARY_REFERENCES[name]
    predicted = labels if needs == "labels" else proba
    assert METRICS[name].needs == needs
    assert METRICS[name](y, predicted) == pytest.approx(reference(y, predicted), rel=1e-12, abs=1e-12)


def test_multiclass_and_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 2000)
    proba = rng.dirichlet(np.ones(4), 2000)
    labels = proba.argmax(axis=1)
    macro_f1 = skm.f1_score(y, labels, average="macro")
    assert METRICS["macro_f1"](y, labels) == pytest.approx(macro_f1, rel=1e-12)
    assert METRICS["accuracy"](y, labels) == pytest.approx(skm.accuracy_score(y, labels), rel=1e-12)
    assert METRICS["log_loss"](y, proba) == pytest.approx(skm.log_loss(y, proba), rel=1e-12)
    string_y, string_pred = np.array(list("abcab")), np.array(list("abbaa"))
    assert METRICS["macro_f1"](string_y, string_pred) == pytest.approx(
        skm.f1_score(string_y, string_pred, average="macro"))
    target = rng.normal(size=2000)
    pred = target + rng.normal(0, 0.7, 2000)
    rmse = skm.root_mean_squared_error(target, pred)
    assert METRICS["rmse"](target, pred) == pytest.approx(rmse, rel=1e-12)
    assert METRICS["mae"](target, pred) == pytest.approx(skm.mean_absolute_error(target, pred), rel=1e-12)
    assert METRICS["r2"](target, pred) == pytest.approx(skm.r2_score(target, pred), rel=1e-10)


def test_registry_directions_and_task_lists() -> None:
    assert not METRICS["log_loss"].greater_is_better and METRICS["roc_auc"].greater_is_better
    assert set(metrics_for_task("multiclass")) == {"accuracy", "macro_f1", "log_loss"}
    assert set(metrics_for_task("regression")) == {"rmse", "mae", "r2"}


def test_config_metric_names_are_the_registry() -> None:
    """params.yaml validation (gates/config.py) must accept exactly the metrics this registry computes."""
    from mlgate.gates.config import TASK_METRICS

    for task, names in TASK_METRICS.items():
        assert set(names) == set(metrics_for_task(task)), task


def test_metric_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0 and 1"):
        METRICS["roc_auc"](np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        METRICS["brier"](np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="binary"):
        METRICS["f1"](np.array([0, 1, 2]), np.array([0, 2, 1]))


def test_expected_calibration_error() -> None:
    rng = np.random.default_rng(11)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, p**2) > 0.1  # systematically under-confident
    # hand-computed: bins (0, .5] and (.5, 1] with n_bins=2
    y_small, p_small = np.array([0, 1, 1, 1]), np.array([0.2, 0.4, 0.6, 0.8])
    expected = (2 * abs(0.5 - 0.3) + 2 * abs(1.0 - 0.7)) / 4
    assert expected_calibration_error(y_small, p_small, n_bins=2) == pytest.approx(expected)


# ---------------------------------------------------------------- paired bootstrap


def test_bootstrap_estimate_is_the_metric_difference_and_identical_models_give_zero() -> None:
    y, proba, labels = _binary_data(3, 4000)
    rng = np.random.default_rng(4)
    other = np.clip(proba + rng.normal(0, 0.05, proba.size), 0, 1)
    a = Predictions(labels=labels, scores=proba, proba=proba)
    b = Predictions(labels=(other > 0.5).astype(int), scores=other, proba=other)
    cis = paired_bootstrap_cis(list(BINARY_REFERENCES), y, a, b, n_boot=300)
    for name, (needs, _) in BINARY_REFERENCES.items():
        truth = METRICS[name](y, getattr(b, needs)) - METRICS[name](y, getattr(a, needs))
        assert cis[name].estimate == pytest.approx(truth, abs=1e-12), name
        assert cis[name].low <= cis[name].estimate <= cis[name].high, name
    same = paired_bootstrap_ci("log_loss", y, proba, proba, n_boot=200)
    assert (same.low, same.high, same.p_value) == (0.0, 0.0, 1.0)


def test_bootstrap_is_seeded_and_names_its_method() -> None:
    y, proba, _ = _binary_data(6)
    rng = np.random.default_rng(7)
    other = np.clip(proba + rng.normal(0, 0.1, proba.size), 0, 1)
    first = paired_bootstrap_ci("pr_auc", y, proba, other, seed=3)
    assert first == paired_bootstrap_ci("pr_auc", y, proba, other, seed=3)
    assert first != paired_bootstrap_ci("pr_auc", y, proba, other, seed=4)
    capped = paired_bootstrap_ci("pr_auc", y, proba, other, max_rows=1000)
    assert "stratified subsample of 1000 of 3000 rows" in capped.method
    assert capped.estimate == first.estimate  # the point estimate always uses every row


def test_bootstrap_rejects_unknown_metric_and_missing_predictions() -> None:
    y, proba, _ = _binary_data(8, 200)
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap_ci("auc", y, proba, proba)
    with pytest.raises(ValueError, match="needs predicted labels"):
        paired_bootstrap_cis(["f1"], y, Predictions(scores=proba), Predictions(scores=proba))


def _correlated_correct(rng, n: int, acc_a: float, acc_b: float, rho: float = 0.5):
    z1 = rng.normal(size=n)
    z2 = rho * z1 + math.sqrt(1 - rho**2) * rng.normal(size=n)
    return sps.norm.cdf(z1) < acc_a, sps.norm.cdf(z2) < acc_b


def _accuracy_sample(seed: int, n: int = 1000):
    """Two classifiers whose accuracies are exactly 0.80 and 0.84 in the population (delta 0.04)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    right_a, right_b = _correlated_correct(rng, n, 0.80, 0.84)
    return y, np.where(right_a, y, 1 - y), np.where(right_b, y, 1 - y)


def _mae_sample(seed: int, n: int):
    """Regression errors N(0, 1.0) vs N(0, 0.9), correlated: true MAE delta = -0.1 * sqrt(2/pi)."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=n)
    e1 = rng.normal(size=n)
    e2 = 0.6 * e1 + 0.8 * rng.normal(size=n)
    return target, target + 1.0 * e1, target + 0.9 * e2


MAE_DELTA = -0.1 * math.sqrt(2 / math.pi)


def _binormal_sample(seed: int, n: int = 1000):
    """Scores N(mu * y, 1) with mu 1.0 (a) and 1.4 (b), correlated: true AUC = Phi(mu / sqrt(2))."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    z1 = rng.normal(size=n)
    z2 = 0.5 * z1 + math.sqrt(0.75) * rng.normal(size=n)
    return y, 1.0 * y + z1, 1.4 * y + z2


AUC_DELTA = sps.norm.cdf(1.4 / math.sqrt(2)) - sps.norm.cdf(1.0 / math.sqrt(2))


def _coverage(make_interval, truth: float, reps: int = 400) -> float:
    return float(np.mean([make_interval(seed).covers(truth) for seed in range(reps)]))


@pytest.mark.slow
def test_bootstrap_ci_covers_true_accuracy_delta() -> None:
    def interval(seed: int) -> Interval:
        y, a, b = _accuracy_sample(seed)
        return paired_bootstrap_ci("accuracy", y, a, b, seed=seed)

    coverage = _coverage(interval, 0.04)
    print(f"paired bootstrap accuracy coverage: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.98


@pytest.mark.slow
def test_bootstrap_ci_covers_true_mae_delta() -> None:
    def interval(seed: int) -> Interval:
        target, a, b = _mae_sample(seed, 1000)
        return paired_bootstrap_ci("mae", target, a, b, n_boot=500, seed=seed)

    coverage = _coverage(interval, MAE_DELTA)
    print(f"paired bootstrap MAE coverage: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.98


@pytest.mark.slow
def test_subsampled_bootstrap_rescaled_to_full_data_still_covers() -> None:
    """The m-out-of-n path: 10,000 rows, bootstrap on 1,000, spread rescaled by sqrt(m/n)."""
    def interval(seed: int) -> Interval:
        target, a, b = _mae_sample(seed, 10_000)
        return paired_bootstrap_ci("mae", target, a, b, n_boot=500, seed=seed, max_rows=1000)

    coverage = _coverage(interval, MAE_DELTA)
    full = paired_bootstrap_ci("mae", *_mae_sample(0, 10_000), n_boot=500, max_rows=None)
    capped = interval(0)
    print(f"subsampled bootstrap MAE coverage: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.98
    assert capped.high - capped.low == pytest.approx(full.high - full.low, rel=0.15)


@pytest.mark.slow
def test_bootstrap_ci_covers_true_auc_delta() -> None:
    def interval(seed: int) -> Interval:
        y, a, b = _binormal_sample(seed)
        return paired_bootstrap_ci("roc_auc", y, a, b, n_boot=500, seed=seed)

    coverage = _coverage(interval, AUC_DELTA)
    print(f"paired bootstrap ROC AUC coverage: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.98


# ---------------------------------------------------------------- DeLong and McNemar


@pytest.mark.slow
def test_delong_ci_covers_true_auc_delta() -> None:
    coverage = _coverage(lambda seed: delong_roc_auc_test(*_binormal_sample(seed)), AUC_DELTA)
    print(f"DeLong coverage: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.98


def test_delong_agrees_with_bootstrap() -> None:
    y, a, b = _binormal_sample(99, 5000)
    delong = delong_roc_auc_test(y, a, b)
    boot = paired_bootstrap_ci("roc_auc", y, a, b, n_boot=2000)
    assert delong.estimate == pytest.approx(skm.roc_auc_score(y, b) - skm.roc_auc_score(y, a), abs=1e-12)
    assert delong.low == pytest.approx(boot.low, abs=0.004)
    assert delong.high == pytest.approx(boot.high, abs=0.004)
    assert (delong.p_value < 0.05) == (boot.p_value < 0.05)


def test_delong_single_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        delong_roc_auc_test(np.ones(10, int), np.arange(10.0), np.arange(10.0))


def test_mcnemar_mid_p_matches_binomial_computation() -> None:
    for only_b, only_a in [(15, 5), (3, 9), (40, 41), (0, 6)]:
        n = only_b + only_a
        exact = sps.binomtest(only_b, n, 0.5).pvalue
        expected = exact - sps.binom.pmf(min(only_b, only_a), n, 0.5)
        assert mcnemar_mid_p(only_b, only_a) == pytest.approx(expected, rel=1e-12)
    assert mcnemar_mid_p(0, 0) == 1.0


@pytest.mark.slow
def test_mcnemar_interval_counts_and_coverage() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    a = np.array([1, 1, 0, 0, 1, 1, 1, 0])  # right on rows 0,1,3,6,7
    b = np.array([1, 0, 1, 0, 0, 0, 1, 0])  # right on rows 0,2,3,4,5,6,7
    result = mcnemar_accuracy_test(y, a, b)
    assert result.estimate == pytest.approx(2 / 8)
    assert "3 pairs only b right, 1 only a right" in result.method
    assert result.p_value == pytest.approx(mcnemar_mid_p(3, 1))
    coverage = _coverage(lambda seed: mcnemar_accuracy_test(*_accuracy_sample(seed)), 0.04)
    print(f"Newcombe paired CI coverage: {coverage:.3f}")
    assert 0.93 <= coverage <= 0.98


def test_mcnemar_agrees_with_bootstrap_on_the_same_data() -> None:
    y, a, b = _accuracy_sample(123, 5000)
    closed = mcnemar_accuracy_test(y, a, b)
    boot = paired_bootstrap_ci("accuracy", y, a, b, n_boot=2000)
    assert closed.estimate == pytest.approx(boot.estimate)
    assert closed.low == pytest.approx(boot.low, abs=0.004)
    assert closed.high == pytest.approx(boot.high, abs=0.004)


# ---------------------------------------------------------------- decision rules


def test_holm_against_hand_computed_values() -> None:
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]).size == 0
    assert bonferroni_level(0.95, 5) == pytest.approx(0.99)
    with pytest.raises(ValueError):
        holm_adjust([0.1, float("nan")])


def test_non_inferiority_decides_on_the_ci_bound_with_the_rule_in_words() -> None:
    regression = Interval(-0.021, -0.034, -0.008, 0.95, 0.001, "test")
    decision = non_inferiority("roc_auc", regression, 0.01, greater_is_better=True)
    assert not decision.passed
    expected = ("roc_auc delta -0.021 [95% CI -0.034, -0.008]: CI lower bound -0.034 <= margin -0.010: "
                "non-inferiority not shown; the estimate itself is beyond the margin")
    assert decision.message == expected
    identical = non_inferiority("accuracy", Interval(0.0, -0.041, 0.041, 0.95, 1.0, "test"), 0.02,
                                greater_is_better=True)
    assert not identical.passed
    assert "CI lower bound -0.041 <= margin -0.020" in identical.message and "too wide" in identical.message
    straddles = Interval(-0.002, -0.012, 0.008, 0.95, 0.6, "test")
    assert not non_inferiority("roc_auc", straddles, 0.01, greater_is_better=True).passed
    assert non_inferiority("roc_auc", straddles, 0.02, greater_is_better=True).passed
    worse_loss = Interval(0.015, 0.005, 0.025, 0.95, 0.01, "test")
    loss = non_inferiority("log_loss", worse_loss, 0.02, greater_is_better=False)
    assert not loss.passed and "CI upper bound +0.025 >= margin +0.020" in loss.message
    assert non_inferiority("log_loss", worse_loss, 0.03, greater_is_better=False).passed
    per_slice = Interval(0.01, -0.002, 0.022, bonferroni_level(0.95, 4), None, "test")
    assert "[98.75% CI -0.002, +0.022]" in per_slice.describe("accuracy")


def test_required_improvement_needs_the_whole_ci_beyond_it() -> None:
    better = Interval(0.03, 0.015, 0.045, 0.95, 0.001, "test")
    assert required_improvement("f1", better, 0.01, greater_is_better=True).passed
    assert not required_improvement("f1", better, 0.02, greater_is_better=True).passed
    lower_loss = Interval(-0.03, -0.045, -0.015, 0.95, 0.001, "test")
    decision = required_improvement("log_loss", lower_loss, 0.02, greater_is_better=False)
    assert not decision.passed and "does not clear required improvement -0.020" in decision.message


# ---------------------------------------------------------------- rank test and SRM


def _latencies(rng, n: int, shift_ms: float = 0.0) -> np.ndarray:
    return rng.gamma(4.0, 2.5, n) + shift_ms  # ~10 ms, right-skewed


def test_rank_judge_passes_same_distribution_and_fails_a_real_slowdown() -> None:
    rng = np.random.default_rng(21)
    same = rank_judge(_latencies(rng, 20_000), _latencies(rng, 20_000), tolerance=0.1, alpha=0.01)
    assert same.passed, same.message
    assert abs(same.test.superiority - 0.5) < 0.02
    slow = rank_judge(_latencies(rng, 20_000), _latencies(rng, 20_000, 20.0), tolerance=0.1, alpha=0.01)
    assert not slow.passed and slow.message.startswith("candidate slower")
    assert slow.test.shift == pytest.approx(20.0, abs=0.3)
    assert slow.test.superiority > 0.95


def test_rank_judge_ignores_a_significant_but_negligible_shift() -> None:
    rng = np.random.default_rng(22)
    base, cand = _latencies(rng, 200_000), _latencies(rng, 200_000, 0.3)
    judged = rank_judge(base, cand, tolerance=0.1, alpha=0.01)
    assert judged.test.p_greater < 0.01 and judged.test.subsampled
    assert judged.passed and "within tolerance" in judged.message


def test_mann_whitney_and_hodges_lehmann_match_brute_force() -> None:
    rng = np.random.default_rng(23)
    for _ in range(50):
        a = rng.integers(0, 6, rng.integers(1, 40)).astype(float)
        b = rng.integers(0, 8, rng.integers(1, 40)).astype(float)
        assert hodges_lehmann_shift(a, b) == np.median(np.subtract.outer(b, a))
    a, b = rng.normal(size=300), rng.normal(0.3, 1, 200)
    judged = rank_judge(a, b, tolerance=0.0, alpha=0.05)
    diff = np.subtract.outer(b, a)
    assert judged.test.superiority == pytest.approx(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))
    scipy_p = sps.mannwhitneyu(b, a, alternative="greater").pvalue
    assert judged.test.p_greater == pytest.approx(scipy_p, rel=1e-3)


def test_srm_chi_square() -> None:
    chi2, p = srm_chi_square([5000, 5500], [1, 1])
    assert chi2 == pytest.approx(2 * 250**2 / 5250)
    assert p < 0.001
    _, p_ok = srm_chi_square([9030, 970], [90, 10])
    assert p_ok > 0.05
    with pytest.raises(ValueError, match="no traffic"):
        srm_chi_square([0, 0], [1, 1])
