"""The served feature step in numpy (issue 18): for the pipelines `mlgate train` builds, on the real churn
data, the server's answers must be scikit-learn's own, bit for bit, whatever the batch holds (nulls, unseen
categories, absurd numbers, number-coded categories with NaN); a pipeline with a part it does not know is
served by scikit-learn's transform, and says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from mlgate.pipelines.params import Params
from mlgate.pipelines.stages.train import build_pipeline
from mlgate.serving.fast_features import compile_features
from mlgate.serving.fast_trees import FlatBoosting
from mlgate.serving.frames import build_columns
from mlgate.serving.protocol import ParsedInput
from mlgate.serving.validation import InputSchema, validate
from mlgate.serving.variants import Variant


def _fitted(churn_frame: pd.DataFrame, base_params: dict, estimator: str, coded: bool):
    raw = {**base_params, "train": {**base_params["train"], "estimator": estimator, "hyperparams": {}}}
    if estimator == "hist_gradient_boosting":
        raw["train"]["hyperparams"] = {"max_iter": 20}
    params = Params.model_validate(raw)
    frame = churn_frame.sample(600, random_state=3).reset_index(drop=True)
    if coded:  # area_code as numbers: a number-coded category goes to the encoder with NaN as its own value
        frame["area_code"] = frame["area_code"].str.extract(r"(\d+)$")[0].astype(float)
        frame.loc[::17, "area_code"] = np.nan
    frame.loc[::13, "total_day_minutes"] = np.nan
    frame.loc[::11, "state"] = np.nan  # as a data file's missing text reads
    features = frame[params.data.features]
    model = build_pipeline(params, features).fit(features, frame[params.model.target])
    signature = infer_signature(features, model.predict(features))
    schema = InputSchema.from_signature_inputs(signature.inputs.to_dict())
    return model, schema, features


def _batches(schema: InputSchema, features: pd.DataFrame, rng: np.random.Generator, size: int):
    """A batch of real rows with nulls, unseen categories and absurd numbers mixed in, checked as served."""
    rows = features.sample(size, random_state=int(rng.integers(1 << 30))).astype(object)
    for column in features.columns:
        kind = rng.random(size)
        rows.loc[kind < 0.1, column] = None
        if features[column].dtype == object:
            rows.loc[(kind >= 0.1) & (kind < 0.15), column] = "never-seen"
        else:
            rows.loc[(kind >= 0.1) & (kind < 0.15), column] = float(rng.choice([-1e9, 1e9, 0.0]))
    data = [[None if pd.isna(v) else v for v in rows[c].tolist()] for c in rows.columns]
    parsed = ParsedInput(tuple(rows.columns), tuple(data), size)
    return validate(parsed, schema, 10_000, "reject")


@pytest.mark.parametrize(("estimator", "coded"), [("hist_gradient_boosting", False),
                                                  ("hist_gradient_boosting", True),
                                                  ("logistic_regression", True)])
def test_numpy_feature_step_equals_scikit_learns(churn_frame, base_params, estimator: str, coded: bool) -> None:
    model, schema, features = _fitted(churn_frame, base_params, estimator, coded)
    compiled, how = compile_features(model, schema)
    assert compiled is not None, how
    assert "equal to scikit-learn's" in how
    fast = Variant("fast", "uri", "1", "sklearn", schema, model, tuple(model.classes_.tolist()),
                   features=compiled, trees=FlatBoosting.of(compiled.estimator))
    assert (fast.trees is not None) == (estimator == "hist_gradient_boosting")
    slow = Variant("slow", "uri", "1", "sklearn", schema, model, tuple(model.classes_.tolist()))
    rng = np.random.default_rng(11)
    for size in (1, 2, 7, 32, 200):
        batches = [_batches(schema, features, rng, size) for _ in range(3)]
        columns = build_columns(schema, batches)
        expected = model.steps[0][1].transform(pd.DataFrame(columns, copy=False))
        got = compiled.transform(columns)
        assert got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=True)
        for method in ("predict_scored", "predict", "predict_proba"):
            assert fast.predict_rows(method, batches) == slow.predict_rows(method, batches)


def test_a_part_it_does_not_know_keeps_scikit_learns_transform(churn_frame, base_params) -> None:
    model, schema, features = _fitted(churn_frame, base_params, "hist_gradient_boosting", False)
    numeric = [c for c in features.columns if features[c].dtype != object]
    logged = ColumnTransformer([("log", FunctionTransformer(np.log1p), numeric),
                                ("text", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                 ["international_plan"])]).fit(features)
    other = Pipeline([("features", logged), ("estimator", model.steps[-1][1])])
    compiled, how = compile_features(other, schema)
    assert compiled is None
    assert "'log'" in how and "FunctionTransformer" in how
    strict = ColumnTransformer([("text", Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="?")),
        ("onehot", OneHotEncoder(handle_unknown="error", sparse_output=False))]), ["international_plan"])]).fit(features)
    compiled, how = compile_features(Pipeline([("f", strict), ("e", model.steps[-1][1])]), schema)
    assert compiled is None and "unknown ignored" in how
    compiled, how = compile_features(model, None)
    assert compiled is None and "no signature" in how


def test_a_missing_column_is_refused_like_scikit_learn(churn_frame, base_params) -> None:
    model, schema, features = _fitted(churn_frame, base_params, "hist_gradient_boosting", False)
    compiled, _ = compile_features(model, schema)
    with pytest.raises(ValueError, match="columns are missing: \\['state'\\]"):
        compiled.transform({c: features[c].to_numpy()[:1] for c in features.columns if c != "state"})


@pytest.mark.parametrize("numpy_step", [True, False])
def test_a_null_category_gets_the_same_answer_alone_as_batched(churn_frame, base_params, numpy_step: bool) -> None:
    """pandas keeps a column of nulls only as None, which scikit-learn's imputer does not count as missing:
    a lone request with a null state was encoded as an unseen state, batched with others as a missing one."""
    model, schema, features = _fitted(churn_frame, base_params, "hist_gradient_boosting", False)
    compiled, _ = compile_features(model, schema) if numpy_step else (None, "")

    def encoded(batches) -> np.ndarray:
        columns = build_columns(schema, batches)
        return compiled.transform(columns) if compiled else model.steps[0][1].transform(pd.DataFrame(columns))

    def request(state: str | None):
        first = features.head(1).astype(object)
        data = tuple([state] if c == "state" else [first[c].iloc[0]] for c in first.columns)
        return validate(ParsedInput(tuple(first.columns), data, 1), schema, 10)

    alone = encoded([request(None)])
    batched = encoded([request("KS"), request(None)])[1:]
    assert np.array_equal(alone, batched)
    expected = model.steps[0][1].transform(features.head(1).assign(state=np.nan))  # as training read nulls
    assert np.array_equal(alone, expected)


def test_numbers_passed_through_as_a_team_pipeline_does(churn_frame, base_params) -> None:
    """The LightGBM example's shape: categories imputed and one-hot encoded, numbers 'passthrough'."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model, schema, features = _fitted(churn_frame, base_params, "hist_gradient_boosting", True)
    numeric = [c for c in features.columns if features[c].dtype != object and c != "area_code"]
    text = [c for c in features.columns if features[c].dtype == object]
    categories = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                           ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    team = Pipeline([("features", ColumnTransformer([("categorical", categories, text),
                                                     ("numeric", "passthrough", numeric)])),
                     ("classifier", HistGradientBoostingClassifier(max_iter=10))])
    team.fit(features, model.classes_[np.arange(len(features)) % 2])
    compiled, how = compile_features(team, schema)
    assert compiled is not None, how
    rng = np.random.default_rng(4)
    for size in (1, 32):
        columns = build_columns(schema, [_batches(schema, features, rng, size)])
        expected = team.steps[0][1].transform(pd.DataFrame(columns, copy=False))
        assert np.array_equal(compiled.transform(columns), expected, equal_nan=True)
