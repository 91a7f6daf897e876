"""POST /explain and the explainers behind it: contributions add up to the model's own output, equal the
closed form for a linear model, and the endpoint answers bad bodies with 4xx only (docs/EXPLANATIONS.md)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import expit

from mlgate.pipelines.params import Params
from mlgate.pipelines.stages.train import build_pipeline
from mlgate.serving.explain import TOLERANCE, ExplainError, ExplainOptions, explain_frame
from mlgate.serving.explain_background import BUNDLE_FOLDER, read_background, write_background
from mlgate.serving.frames import build_frame
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import ExplainConfig
from mlgate.serving.validation import FeatureBatch
from mlgate.serving.variants import load_variant
from tests.pipelines.byom_models import save_code_model
from tests.serving.conftest import CATEGORICAL, TARGET, TEST_CONFIG, TRAIN_ROWS, _save, logged_to, split_body
from tests.serving.test_fuzz import FUZZ, _bodies, _row_of

REPO = Path(__file__).resolve().parents[2]
MAX_ROWS = 5
JSON_TYPE = {"content-type": "application/json"}


def _with_background(model_dir: Path, train: pd.DataFrame, destination: Path) -> Path:
    """A copy of `model_dir` whose bundle holds 50 training rows, as `mlgate train` writes them."""
    shutil.copytree(model_dir, destination)
    write_background(destination / BUNDLE_FOLDER, train, 50, seed=0)
    return destination


@pytest.fixture(scope="module")
def train_x(churn: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    return churn.iloc[:TRAIN_ROWS][features]


@pytest.fixture(scope="module")
def hgb_dir(churn: pd.DataFrame, train_x: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlgate's default candidate: the params.yaml HistGradientBoosting pipeline, with its background."""
    params = Params.model_validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    pipeline = build_pipeline(params, train_x).fit(train_x, churn.iloc[:TRAIN_ROWS][TARGET])
    root = tmp_path_factory.mktemp("explain-hgb")
    _save(pipeline, train_x, churn.iloc[:TRAIN_ROWS][TARGET], root / "bare")
    return _with_background(root / "bare", train_x, root / "m")


@pytest.fixture(scope="module")
def scored_pyfunc_dir(hgb_dir: Path, train_x: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-sklearn model: a models-from-code PythonModel with classes_ and predict_proba."""
    root = tmp_path_factory.mktemp("explain-pyfunc")
    return _with_background(save_code_model(hgb_dir, root / "bare"), train_x, root / "m")


def _frame(variant: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """The model input the server builds for these rows (signature types, nulls as None/NaN)."""
    split = split_body(rows)["dataframe_split"]
    columns = {c: [r[i] for r in split["data"]] for i, c in enumerate(split["columns"])}
    return build_frame(variant.schema, [FeatureBatch(columns, len(rows))])


def _adds_up(found: Any) -> float:
    return float(np.abs(found.base_values + found.contributions.sum(axis=1) - found.outputs).max())


def test_default_candidate_adds_up_to_its_own_log_odds(hgb_dir: Path, holdout: pd.DataFrame) -> None:
    variant = load_variant("default", str(hgb_dir))
    frame = _frame(variant, holdout.head(40))
    found = explain_frame(variant.model, frame, read_background(hgb_dir), ExplainOptions())
    assert (found.explainer, found.scale) == ("tree_path_dependent", "log_odds")
    assert _adds_up(found) <= TOLERANCE
    assert found.columns == list(frame.columns)  # one contribution per input column, one-hot parts summed
    np.testing.assert_allclose(expit(found.outputs), variant.model.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)
    assert found.rows()[0]["class"] == "yes"
    assert found.mean_abs()["total_day_minutes"] > 0


def test_a_pyfunc_model_adds_up_to_its_probability(scored_pyfunc_dir: Path, holdout: pd.DataFrame) -> None:
    variant = load_variant("pyfunc", str(scored_pyfunc_dir))
    assert variant.flavor == "python_function"
    frame = _frame(variant, holdout.head(3))
    found = explain_frame(variant.model, frame, read_background(scored_pyfunc_dir), ExplainOptions(permutations=4))
    assert (found.explainer, found.scale) == ("permutation", "probability")
    assert found.details == {"background_rows": 50, "permutations": 4}
    assert _adds_up(found) <= TOLERANCE
    np.testing.assert_allclose(found.outputs, variant.model.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)


def test_a_pyfunc_sum_of_two_columns_gets_exactly_their_deviations(pyfunc_model_dir: Path, train_x: pd.DataFrame,
                                                                   holdout: pd.DataFrame) -> None:
    """The model total_day_minutes + account_length: Shapley values are x - mean(background), others 0."""
    variant = load_variant("sum", str(pyfunc_model_dir))
    frame, background = _frame(variant, holdout.head(4)), train_x.head(20)
    found = explain_frame(variant.model, frame, background, ExplainOptions(permutations=3))
    assert found.scale == "value" and found.explainer == "permutation"
    for i, row in enumerate(found.rows()):
        for column in ("total_day_minutes", "account_length"):
            expected = frame[column].iloc[i] - background[column].mean()
            assert row["contributions"][column] == pytest.approx(expected, abs=1e-9)
        assert all(abs(v) < 1e-12 for c, v in row["contributions"].items()
                   if c not in ("total_day_minutes", "account_length"))


def test_linear_contributions_are_coefficient_times_deviation_summed_per_column(
        offline_model: Any, train_x: pd.DataFrame, holdout: pd.DataFrame) -> None:
    rows, background = holdout.head(10), train_x.head(30)
    found = explain_frame(offline_model, rows, background, ExplainOptions())
    assert (found.explainer, found.scale) == ("linear", "log_odds")
    features, final = offline_model.named_steps["features"], offline_model[-1]
    z, z_bg = (np.asarray(features.transform(x).toarray(), dtype=float) for x in (rows, background))
    per_transformed = final.coef_[0] * (z - z_bg.mean(axis=0))
    # The ColumnTransformer's blocks: the one-hot block is CATEGORICAL's categories in order, then numbers.
    encoder = features.named_transformers_["categorical"][-1]
    owners = [c for c, cats in zip(CATEGORICAL, encoder.categories_, strict=True) for _ in cats]
    owners += list(features.transformers_[1][2])
    assert len(owners) == z.shape[1]
    for column in rows.columns:
        expected = per_transformed[:, [i for i, o in enumerate(owners) if o == column]].sum(axis=1)
        np.testing.assert_allclose(found.contributions[:, found.columns.index(column)], expected, atol=1e-12)
    np.testing.assert_allclose(found.outputs, offline_model.decision_function(rows), atol=1e-12)
    assert _adds_up(found) <= TOLERANCE


def test_a_step_that_cannot_be_traced_is_explained_on_the_original_columns(
        churn: pd.DataFrame, train_x: pd.DataFrame, holdout: pd.DataFrame) -> None:
    """A custom transformer names no output columns: no guessing, the permutation explainer answers."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    numeric = ["total_day_minutes", "total_eve_minutes", "number_customer_service_calls"]
    squares = ColumnTransformer([("squares", FunctionTransformer(np.square), numeric)])
    model = make_pipeline(squares, LogisticRegression(max_iter=1000)).fit(train_x, churn.iloc[:TRAIN_ROWS][TARGET])
    found = explain_frame(model, holdout.head(3), train_x.head(10), ExplainOptions(permutations=2))
    assert (found.explainer, found.scale) == ("permutation", "probability")
    assert _adds_up(found) <= TOLERANCE
    assert all(found.contributions[:, found.columns.index(c)].any() for c in numeric)
    assert not found.contributions[:, found.columns.index("state")].any()  # a column the model drops


def test_a_bundle_without_background_is_409_for_a_linear_model(offline_model: Any, holdout: pd.DataFrame) -> None:
    with pytest.raises(ExplainError) as caught:
        explain_frame(offline_model, holdout.head(2), None, ExplainOptions())
    assert caught.value.status == 409 and caught.value.code == "no_background"
    assert "retrain" in caught.value.message


@pytest.fixture(scope="module")
def explain_server(hgb_dir: Path, scored_pyfunc_dir: Path, model_dir: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real uvicorn: the default candidate, a pyfunc, and a model from before background samples."""
    config = logged_to(TEST_CONFIG.model_copy(update={"explain": ExplainConfig(max_rows=MAX_ROWS, permutations=2)}),
                       tmp_path_factory.mktemp("explain-log"))
    uris = {"default": str(hgb_dir), "pyfunc": str(scored_pyfunc_dir), "old": str(model_dir)}
    with ServerProcess(uris, config) as process:
        yield process


@pytest.fixture(scope="module")
def client(explain_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=explain_server.url, timeout=60) as http_client:
        yield http_client


def test_the_endpoint_explains_the_champion_or_the_named_variant(client: httpx.Client, holdout: pd.DataFrame) -> None:
    body = split_body(holdout.head(3))
    answer = client.post("/explain", json=body)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert (payload["variant"], payload["explainer"], payload["scale"]) == ("default", "tree_path_dependent", "log_odds")
    assert answer.headers["x-model-variant"] == "default" and len(payload["explanations"]) == 3
    for row in payload["explanations"]:
        assert set(row["contributions"]) == set(holdout.columns)
        assert abs(row["base_value"] + sum(row["contributions"].values()) - row["output"]) <= TOLERANCE
    pyfunc = client.post("/explain", json=body, headers={"X-Target-Variant": "pyfunc"}).json()
    assert (pyfunc["explainer"], pyfunc["scale"], pyfunc["background_rows"], pyfunc["permutations"]) == \
        ("permutation", "probability", 50, 2)
    old = client.post("/explain", json=body, headers={"X-Target-Variant": "old"})
    assert old.status_code == 409 and old.json()["error"]["code"] == "no_background"


def test_the_endpoint_bounds_rows_and_refuses_what_invocations_refuses(client: httpx.Client,
                                                                      holdout: pd.DataFrame) -> None:
    too_many = client.post("/explain", json=split_body(holdout.head(MAX_ROWS + 1)))
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_rows"
    missing = client.post("/explain", json=split_body(holdout.head(2).drop(columns=["state"])))
    assert missing.status_code == 400 and missing.json()["error"]["column"] == "state"
    assert client.post("/explain", content=b"{", headers=JSON_TYPE).status_code == 400
    assert client.post("/explain", content=b"a", headers={"content-type": "text/plain"}).status_code == 415


def test_no_generated_body_gives_a_5xx(client: httpx.Client, hgb_dir: Path) -> None:
    @FUZZ
    @given(body=_bodies(_row_of(hgb_dir)), csv=st.booleans())
    def check(body: bytes, csv: bool) -> None:
        response = client.post("/explain", content=body, headers={"content-type": "text/csv" if csv else "application/json"})
        assert response.status_code < 500, (body[:300], response.text[:300])
        payload = response.json()
        if response.status_code == 200:
            assert all(abs(r["base_value"] + sum(r["contributions"].values()) - r["output"]) <= TOLERANCE
                       for r in payload["explanations"])
        else:
            assert payload["error"]["code"] and payload["error"]["message"]

    check()
    assert client.get("/healthz").status_code == 200


def test_disabled_is_404_and_a_slow_explanation_is_504(in_app, scored_pyfunc_dir: Path, hgb_dir: Path,
                                                        holdout: pd.DataFrame) -> None:
    slow = ExplainConfig(timeout_s=0.3, permutations=1000)
    body = split_body(holdout.head(MAX_ROWS))

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        answer = await client.post("/explain", json=body, headers={"X-Target-Variant": "pyfunc"})
        return answer, await client.get("/healthz")

    timed_out, health = in_app(scenario, {"default": str(hgb_dir), "pyfunc": str(scored_pyfunc_dir)},
                               TEST_CONFIG.model_copy(update={"explain": slow}))
    assert timed_out.status_code == 504 and timed_out.json()["error"]["code"] == "explain_timeout"
    assert timed_out.headers["x-request-id"] and health.status_code == 200

    async def disabled(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/explain", json=body)

    off = in_app(disabled, config=TEST_CONFIG.model_copy(update={"explain": ExplainConfig(enabled=False)}))
    assert off.status_code == 404 and off.json()["error"]["code"] == "explain_disabled"
