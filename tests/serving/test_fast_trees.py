"""Gradient-boosting trees walked all at once in numpy (issue 18): the served numbers must be the model's
own, bit for bit, for binary, multiclass and regression models, with missing values and values on the
split thresholds; a model with categorical splits keeps scikit-learn's walk."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from mlgate.serving.fast_trees import FlatBoosting
from mlgate.serving.variants import boosting_output


def _data(rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 6))
    x[rng.random(x.shape) < 0.08] = np.nan  # missing values take each node's learned side
    score = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + rng.normal(0, .3, rows)
    return x, score


def _rows_to_check(model, x: np.ndarray) -> np.ndarray:
    """Unseen rows, and rows exactly on the thresholds the trees compare against."""
    rng = np.random.default_rng(9)
    fresh = rng.normal(size=(300, x.shape[1])) * 2
    fresh[rng.random(fresh.shape) < 0.1] = np.nan
    cuts = np.concatenate([p.nodes["num_threshold"][~p.nodes["is_leaf"].astype(bool)]
                           for it in model._predictors for p in it])
    on_cut = rng.choice(cuts, size=(100, x.shape[1]))
    return np.vstack([fresh, on_cut, x[:50]])


@pytest.mark.parametrize("classes", [2, 3])
def test_flat_trees_give_the_classifiers_own_labels_and_probabilities(classes: int) -> None:
    x, score = _data()
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    model = HistGradientBoostingClassifier(max_iter=40, max_depth=5, random_state=0).fit(x, np.array(["a", "b", "c"])[y])
    trees = FlatBoosting.of(model)
    assert trees is not None and trees.checked_rows > 0
    rows = _rows_to_check(model, x)
    for batch in (rows[:1], rows[:32], rows):
        assert np.array_equal(trees.raw_predict(batch), model._raw_predict(batch))
        assert np.array_equal(boosting_output(trees, "predict", batch), model.predict(batch))
        assert np.array_equal(boosting_output(trees, "predict_proba", batch), model.predict_proba(batch))


def test_flat_trees_give_the_regressors_own_predictions() -> None:
    x, score = _data()
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(x, score)  # depth not capped
    trees = FlatBoosting.of(model)
    assert trees is not None and trees.depth > 4
    rows = _rows_to_check(model, x)
    assert np.array_equal(boosting_output(trees, "predict", rows), model.predict(rows))
    with pytest.raises(ValueError, match="expects 6"):
        trees.raw_predict(rows[:, :5])


def test_categorical_splits_or_other_models_keep_scikit_learns_walk() -> None:
    x, score = _data()
    x[:, 5] = np.random.default_rng(1).integers(0, 4, len(x))
    categorical = HistGradientBoostingClassifier(max_iter=20, categorical_features=[5], random_state=0)
    assert FlatBoosting.of(categorical.fit(x, score > 0)) is None
    assert FlatBoosting.of(LogisticRegression().fit(np.nan_to_num(x), score > 0)) is None
