"""Labels with scores from one pass over a gradient-boosting model's trees (issue 18): the served answer
must equal what the model's own predict and predict_proba give, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlgate.serving.variants import labels_and_probabilities, labels_with_scores


def _data(classes: int, rows: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "y": rng.normal(size=rows),
                          "c": rng.choice(["a", "b", "c"], size=rows)})
    frame.loc[::9, "x"] = np.nan  # the trees route missing values too
    score = frame["x"].fillna(0) + frame["y"] + (frame["c"] == "b")
    labels = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return frame, np.array(["no", "yes", "maybe"])[labels]


def _pipeline(estimator: object) -> Pipeline:
    features = ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["c"])],
                                 remainder="passthrough")
    return Pipeline([("features", features), ("estimator", estimator)])


@pytest.mark.parametrize("classes", [2, 3])
def test_one_pass_equals_predict_and_predict_proba(classes: int) -> None:
    frame, target = _data(classes)
    model = _pipeline(HistGradientBoostingClassifier(max_iter=30, random_state=0)).fit(frame, target)
    features = model[:-1].transform(frame)
    labels, probabilities = labels_and_probabilities(model[-1], features)
    assert np.array_equal(labels, model.predict(frame))
    assert np.array_equal(probabilities, model.predict_proba(frame))


def test_served_labels_and_scores_are_the_pipelines_own() -> None:
    frame, target = _data(2)
    for estimator in (HistGradientBoostingClassifier(max_iter=30, random_state=0), LogisticRegression()):
        model = _pipeline(estimator).fit(frame.fillna(0), target)
        rows = labels_with_scores(model, frame.fillna(0), positive_index=1)
        assert [label for label, _ in rows] == model.predict(frame.fillna(0)).tolist()
        assert [score for _, score in rows] == model.predict_proba(frame.fillna(0))[:, 1].tolist()


@pytest.mark.parametrize("classes", [2, 3])
def test_one_predict_proba_gives_a_forests_and_lightgbms_own_labels(classes: int) -> None:
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import RandomForestClassifier

    frame, target = _data(classes)
    for estimator in (RandomForestClassifier(n_estimators=30, random_state=0),
                      LGBMClassifier(n_estimators=30, verbose=-1, random_state=0)):
        model = _pipeline(estimator).fit(frame, target)
        features = model[:-1].transform(frame)
        labels, probabilities = labels_and_probabilities(model[-1], features)
        assert np.array_equal(labels, model.predict(frame)) and labels.dtype == model.predict(frame).dtype
        assert np.array_equal(probabilities, model.predict_proba(frame))
