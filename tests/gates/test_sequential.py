"""mlgate.gates.online.sequential: the mSPRT keeps its error rate under continuous peeking, and detects a real drop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlgate.gates.online.sequential import (
    always_valid_p_value,
    confidence_sequence,
    msprt_two_means,
    msprt_two_proportions,
    proportion_difference,
    tau2_for_horizon,
    tau2_for_proportions,
)

ALPHA = 0.05
Z_975 = 1.959963984540054


def _cumulative_successes(rng, runs: int, horizon: int, rate: float, looks: np.ndarray) -> np.ndarray:
    return np.cumsum(rng.random((runs, horizon)) < rate, axis=1, dtype=np.int64)[:, looks - 1]


@pytest.mark.slow
def test_peeking_every_50_keeps_the_msprt_at_alpha_but_not_the_z_test() -> None:
    rng = np.random.default_rng(2024)
    runs, horizon, rate = 1000, 2000, 0.85
    looks = np.arange(50, horizon + 1, 50)
    x_a = _cumulative_successes(rng, runs, horizon, rate, looks)
    x_b = _cumulative_successes(rng, runs, horizon, rate, looks)
    diff, variance = proportion_difference(x_a, looks, x_b, looks)
    tau2 = tau2_for_proportions(rate, horizon, horizon, ALPHA)
    msprt_rate = np.mean((always_valid_p_value(diff, variance, tau2) <= ALPHA).any(axis=1))
    pooled = (x_a + x_b) / (2 * looks)
    z = diff / np.sqrt(pooled * (1 - pooled) * 2 / looks)
    peeked_z_rate = np.mean((np.abs(z) > Z_975).any(axis=1))
    print(f"false rejections over {runs} runs, {looks.size} looks: mSPRT {msprt_rate:.3f}, "
          f"peeked fixed-horizon z-test {peeked_z_rate:.3f} (alpha {ALPHA})")
    assert msprt_rate <= ALPHA + 0.01
    assert peeked_z_rate > 0.10


@pytest.mark.slow
def test_five_point_accuracy_drop_is_detected_early() -> None:
    rng = np.random.default_rng(7)
    runs, horizon, margin = 1000, 3000, 0.01
    looks = np.arange(50, horizon + 1, 50)
    x_a = _cumulative_successes(rng, runs, horizon, 0.85, looks)
    x_b = _cumulative_successes(rng, runs, horizon, 0.80, looks)
    diff, variance = proportion_difference(x_a, looks, x_b, looks)
    tau2 = tau2_for_proportions(0.85, horizon, horizon, ALPHA)
    _, high = confidence_sequence(diff, variance, tau2, ALPHA)
    inferior = high < -margin
    detected = inferior.any(axis=1)
    first = looks[inferior.argmax(axis=1)][detected]
    median = float(np.median(first))
    print(f"0.85 -> 0.80: detected in {detected.mean():.1%} of {runs} runs within {horizon} labels per arm; "
          f"median labelled requests per arm to detection {median:.0f}")
    assert detected.mean() >= 0.8
    assert median < horizon
    run = int(np.flatnonzero(detected)[0])
    look = int(np.flatnonzero(inferior[run])[0])
    n = int(looks[look])
    result = msprt_two_proportions(int(x_a[run, look]), n, int(x_b[run, look]), n,
                                   margin=margin, tau2=tau2, alpha=ALPHA, name="accuracy")
    assert result.decision == "inferior" and result.ci_high < -margin


def test_tau2_for_horizon_minimises_the_width_at_the_horizon() -> None:
    variance = 0.3 / 2000
    tau2 = tau2_for_horizon(variance, ALPHA)

    def width(t2: float) -> float:
        low, high = confidence_sequence(0.0, variance, t2, ALPHA)
        return float(high - low)

    assert width(tau2) < width(tau2 * 0.7) and width(tau2) < width(tau2 * 1.4)
    ratio = tau2 / variance
    assert ratio == pytest.approx(2 * math.log(1 / ALPHA) + math.log1p(ratio))


def test_confidence_sequence_is_the_set_the_test_does_not_reject() -> None:
    diff, variance, tau2 = -0.03, 1e-4, 1e-3
    low, high = confidence_sequence(diff, variance, tau2, ALPHA)
    at_bounds = always_valid_p_value(diff, variance, tau2, theta0=np.array([low, high]))
    assert at_bounds == pytest.approx([ALPHA, ALPHA])
    assert always_valid_p_value(diff, variance, tau2, theta0=diff) == 1.0


def test_decisions_in_both_directions() -> None:
    tau2 = tau2_for_proportions(0.85, 5000, 5000)
    same = msprt_two_proportions(8500, 10_000, 8510, 10_000, margin=0.02, tau2=tau2, name="accuracy")
    assert same.decision == "non_inferior" and same.p_value > 0.5
    assert same.message.startswith("accuracy delta +0.0010 [always-valid 95% CI")
    early = msprt_two_proportions(42, 50, 40, 50, margin=0.02, tau2=tau2)
    assert early.decision == "continue"
    rare = tau2_for_proportions(0.01, 5000, 5000)
    errors_up = msprt_two_proportions(50, 10_000, 150, 10_000, margin=0.005, tau2=rare,
                                      greater_is_better=False, name="error_rate")
    assert errors_up.decision == "inferior" and errors_up.ci_low > 0.005
    errors_same = msprt_two_proportions(100, 20_000, 98, 20_000, margin=0.005, tau2=rare,
                                        greater_is_better=False)
    assert errors_same.decision == "non_inferior"
    with pytest.raises(ValueError):
        msprt_two_proportions(0, 0, 1, 1, margin=0.0, tau2=tau2)


def test_means_version_decides_on_the_same_boundary() -> None:
    tau2 = tau2_for_horizon(2 * 4.0 / 2000)
    slower = msprt_two_means(100.0, 4.0, 2000, 101.0, 4.0, 2000, margin=0.2, tau2=tau2,
                             greater_is_better=False, name="latency_ms")
    assert slower.decision == "inferior" and slower.ci_low > 0.2
    same = msprt_two_means(100.0, 4.0, 2000, 100.02, 4.0, 2000, margin=0.5, tau2=tau2, greater_is_better=False)
    assert same.decision == "non_inferior"
    diff, variance = 1.0, 2 * 4.0 / 2000
    low, high = confidence_sequence(diff, variance, tau2, ALPHA)
    assert (slower.ci_low, slower.ci_high) == pytest.approx((float(low), float(high)))
