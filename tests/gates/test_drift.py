"""mlgate.gates.data.drift: effect-size verdicts with a p-value guard, stable across sizes, NaN- and unseen-safe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlgate.gates.data.drift import (
    DriftThresholds,
    drift_table,
    feature_drift,
    output_psi,
    population_stability_index,
)

CATEGORIES = np.array(["basic", "plus", "pro", "enterprise"])
SHARES = [0.4, 0.3, 0.2, 0.1]


def _normal(seed: int, n: int, shift: float = 0.0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(10.0 + shift, 1.0, n), name="x")


def _plans(seed: int, n: int) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).choice(CATEGORIES, n, p=SHARES), name="plan")


def test_psi_hand_computed() -> None:
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert population_stability_index([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0


def test_identical_distributions_at_a_million_rows_are_not_drifted() -> None:
    numeric = feature_drift(_normal(1, 1_000_000), _normal(2, 1_000_000), "numeric")
    assert numeric.drifted is False, numeric.message
    assert numeric.psi < 0.01 and numeric.statistic < 0.02
    categorical = feature_drift(_plans(3, 1_000_000), _plans(4, 1_000_000), "categorical")
    assert categorical.drifted is False, categorical.message
    assert categorical.unseen_share == 0.0 and categorical.test == "chi2"


@pytest.mark.parametrize("n", [2_000, 1_000_000])
def test_one_sd_mean_shift_is_drifted_at_any_size(n: int) -> None:
    result = feature_drift(_normal(5, n), _normal(6, n, shift=1.0), "numeric")
    assert result.drifted is True, result.message
    assert result.psi > 0.5 and result.statistic > 0.3 and result.p_value < 1e-10
    assert result.message.startswith("x drifted: PSI")


@pytest.mark.parametrize("n", [2_000, 50_000, 1_000_000])
def test_trivial_shift_is_stable_at_every_size(n: int) -> None:
    """0.05 sd is significant at 1M rows, but below the effect thresholds: the verdict must not flip."""
    result = feature_drift(_normal(7, n), _normal(8, n, shift=0.05), "numeric")
    assert result.drifted is False, result.message


def test_large_effect_on_a_tiny_batch_needs_significance() -> None:
    thresholds = DriftThresholds(alpha=0.01)
    result = feature_drift(_normal(9, 5_000), _normal(10, 12, shift=0.3), "numeric", thresholds=thresholds)
    assert result.psi >= thresholds.psi_threshold or result.statistic >= thresholds.statistic_threshold
    assert result.p_value >= 0.01 and result.drifted is False
    assert "effect not significant" in result.message


def test_renamed_category_is_drifted_and_reports_unseen_share() -> None:
    ref, batch = _plans(11, 20_000), _plans(12, 20_000).replace("pro", "professional")
    result = feature_drift(ref, batch, "categorical")
    assert result.drifted is True
    assert result.unseen_share == pytest.approx(0.2, abs=0.01)
    assert "unseen categories 20." in result.message


def test_nan_is_a_null_share_for_numeric_and_a_category_for_categorical() -> None:
    ref = _normal(13, 10_000)
    batch = _normal(14, 10_000)
    batch[::4] = np.nan  # 25 % missing, the rest from the same distribution
    numeric = feature_drift(ref, batch, "numeric")
    assert numeric.null_share_ref == 0.0 and numeric.null_share_batch == pytest.approx(0.25)
    assert numeric.drifted is False and "nulls 0.0% -> 25.0%" in numeric.message
    plans = _plans(15, 10_000).astype(object)
    with_nulls = _plans(16, 10_000).astype(object)
    with_nulls[::2] = None
    categorical = feature_drift(plans, with_nulls, "categorical")
    assert categorical.null_share_batch == pytest.approx(0.5)
    assert categorical.drifted is True and categorical.unseen_share == pytest.approx(0.5)


def test_feature_without_values_or_column_is_undecided_not_passed() -> None:
    empty = feature_drift(_normal(17, 100), pd.Series([np.nan] * 50, name="x"), "numeric")
    assert empty.drifted is None and "cannot compare" in empty.message
    ref_df = pd.DataFrame({"x": _normal(18, 500), "plan": _plans(19, 500)})
    batch_df = pd.DataFrame({"x": _normal(20, 500)})
    table = drift_table(ref_df, batch_df, numeric=["x"], categorical=["plan"])
    assert [r.feature for r in table] == ["x", "plan"]
    assert table[0].drifted is False
    assert table[1].drifted is None and "missing from batch" in table[1].message


def test_drift_table_applies_per_feature_overrides() -> None:
    ref_df = pd.DataFrame({"x": _normal(21, 5_000), "y": _normal(22, 5_000)})
    batch_df = pd.DataFrame({"x": _normal(23, 5_000, 0.15), "y": _normal(24, 5_000, 0.15)})
    strict = DriftThresholds(psi_threshold=0.01, statistic_threshold=0.03)
    table = drift_table(ref_df, batch_df, ["x", "y"], [], overrides={"y": strict})
    assert [r.drifted for r in table] == [False, True]


def test_discrete_numeric_with_point_masses() -> None:
    rng = np.random.default_rng(25)
    calls = lambda n: pd.Series(rng.poisson(1.2, n), name="calls")  # noqa: E731 - many ties, 30 % zeros
    assert feature_drift(calls(20_000), calls(20_000), "numeric").drifted is False
    more = pd.Series(rng.poisson(2.5, 20_000), name="calls")
    assert feature_drift(calls(20_000), more, "numeric").drifted is True


def test_output_psi_for_prediction_distributions() -> None:
    rng = np.random.default_rng(26)
    ref = rng.beta(2, 5, 50_000)
    assert output_psi(ref, rng.beta(2, 5, 50_000)) < 0.01
    assert output_psi(ref, rng.beta(5, 2, 50_000)) > 1.0
