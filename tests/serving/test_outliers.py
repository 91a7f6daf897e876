"""Outlier flags and probing: the detector in a model's bundle, the headers and log rows of the real app, the
per-variant metrics, and a client probing the decision boundary showing up in the probing metric."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlgate.serving.log.prediction_log import read_predictions
from mlgate.serving.outliers import DETECTOR_DIR, load_detector
from mlgate.serving.probing import OTHER, ProbingWatch
from mlgate.serving.settings import (
    DEFAULT_TRUSTED_TYPES,
    OutlierConfig,
    ProbingConfig,
    RoutingConfig,
    ServingConfig,
)
from tests.serving.conftest import CATEGORICAL, DETECTOR_SHARE, TEST_CONFIG, TRAIN_ROWS


@pytest.fixture(scope="module")
def detector_model(detector_model_dir: Path) -> Path:
    return detector_model_dir


@pytest.fixture(scope="module")
def detector(detector_model: Path):
    return load_detector(detector_model, DEFAULT_TRUSTED_TYPES)


def extreme(rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Every number ten times as large: far outside anything in training."""
    numeric = [c for c in features if c not in CATEGORICAL]
    return rows.assign(**{c: rows[c] * 10 + 1000 for c in numeric})


def test_flat_scoring_equals_isolation_forest(detector, holdout: pd.DataFrame) -> None:
    from mlgate.serving.outliers import encode

    matrix, _ = encode(holdout, detector.numeric, {c: {v: float(i) for i, v in enumerate(vals)}
                                                  for c, vals in detector.categorical.items()})
    assert np.max(np.abs(detector.scores(holdout) - detector.forest.score_samples(matrix))) < 1e-12


def test_calibrated_to_the_share_of_training_rows(detector, churn: pd.DataFrame, features: list[str]) -> None:
    train = churn.iloc[:TRAIN_ROWS][features]
    flagged = detector.flags(train)
    assert abs(flagged.sum() - DETECTOR_SHARE * TRAIN_ROWS) <= 1
    assert detector.training_rate == pytest.approx(flagged.mean())


def test_an_extreme_row_is_flagged_and_a_typical_one_is_not(detector, holdout: pd.DataFrame,
                                                             features: list[str]) -> None:
    typical = holdout.iloc[[int(np.argmax(detector.scores(holdout)))]]
    assert detector.flags(typical).tolist() == [False]
    assert detector.flags(extreme(typical, features)).tolist() == [True]
    one_number = typical.assign(total_day_minutes=typical["total_day_minutes"] * 50)  # one absurd value
    unseen = typical.assign(state="ZZ")  # a category never seen in training
    assert detector.flags(pd.concat([one_number, unseen])).tolist() == [True, True]
    assert holdout.pipe(detector.flags).mean() < 0.1  # ordinary rows: few flags


def test_headers_and_log_rows_flag_the_outlier_and_leave_the_answer_unchanged(
        in_app, detector_model: Path, model_dir: Path, holdout: pd.DataFrame, features: list[str], as_split,
        tmp_path: Path) -> None:
    scores = load_detector(detector_model, DEFAULT_TRUSTED_TYPES).scores(holdout)
    typical = holdout.iloc[np.argsort(-scores)[:2]]
    rows = pd.concat([typical.iloc[[0]], extreme(typical.iloc[[0]], features), typical.iloc[[1]]])
    body = as_split(rows)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, str]:
        flagged = await client.post("/invocations", json=body, headers={"X-Request-Id": "flagged"})
        clean = await client.post("/invocations", json=as_split(typical), headers={"X-Request-Id": "clean"})
        return flagged, clean, (await client.get("/metrics")).text

    flagged, clean, metrics = in_app(scenario, uris={"default": str(detector_model)})
    assert flagged.status_code == 200
    assert flagged.headers["x-outlier-count"] == "1" and flagged.headers["x-outlier-rows"] == "1"
    assert clean.headers["x-outlier-count"] == "0" and clean.headers["x-outlier-rows"] == ""

    async def plain(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", json=body)

    fresh_table = TEST_CONFIG.model_copy(update={"routing": RoutingConfig(restore_routes=False)})
    without = in_app(plain, uris={"default": str(model_dir)}, config=fresh_table)
    assert flagged.content == without.content  # the MLflow-compatible body is the same byte for byte
    assert "x-outlier-count" not in without.headers  # no detector: no claim either way

    logged = read_predictions(f"sqlite:///{tmp_path / 'predictions.db'}")
    mine = logged[logged["request_id"] == "flagged"].sort_values("row_index")
    assert mine["outlier"].tolist() == [0, 1, 0]
    assert logged[~logged["request_id"].isin(["flagged", "clean"])]["outlier"].isna().all()  # no detector
    assert 'mlgate_outlier_rows_total{variant="default"} 1.0' in metrics
    assert 'mlgate_outlier_checked_rows_total{variant="default"} 5.0' in metrics


def test_the_row_list_is_cut_and_the_count_stays_exact(in_app, detector_model: Path, holdout: pd.DataFrame,
                                                       features: list[str], as_split) -> None:
    rows = pd.concat([holdout.head(2), extreme(holdout.head(4), features)])
    config = TEST_CONFIG.model_copy(update={"outliers": OutlierConfig(max_header_rows=2)})

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", json=as_split(rows))

    answer = in_app(scenario, uris={"default": str(detector_model)}, config=config)
    assert answer.headers["x-outlier-count"] == "4" and answer.headers["x-outlier-rows"] == "2,3"


def boundary_rows(model: Any, holdout: pd.DataFrame, features: list[str], n: int) -> pd.DataFrame:
    """What a prober sends: rows bisected between two holdout rows of different predicted classes until the
    positive-class probability is within 0.01 of 0.5."""
    numeric = [c for c in features if c not in CATEGORICAL]
    p = model.predict_proba(holdout)[:, 1]
    lows, highs = holdout[p < 0.3], holdout[p > 0.7]
    found: list[pd.DataFrame] = []
    for i in range(len(lows)):
        low = lows.iloc[[i]].astype({c: float for c in numeric})
        for j in range(len(highs)):
            mix = low.copy()
            mix[numeric] = highs.iloc[[j]][numeric].to_numpy(float)
            if model.predict_proba(mix)[0, 1] <= 0.5:
                continue  # the low row's categories keep it below the boundary: no crossing on this line
            a, b = 0.0, 1.0
            for _ in range(50):
                t = (a + b) / 2
                mix[numeric] = (1 - t) * low[numeric].to_numpy(float) + t * highs.iloc[[j]][numeric].to_numpy(float)
                prob = model.predict_proba(mix)[0, 1]
                if abs(prob - 0.5) < 0.01:
                    found.append(mix)
                    break
                a, b = (t, b) if prob < 0.5 else (a, t)
            break
        if len(found) == n:
            break
    assert len(found) == n, "not enough boundary rows"
    return pd.concat(found)


def test_a_client_probing_the_boundary_shows_up_in_the_probing_metric(
        in_app, offline_model, holdout: pd.DataFrame, features: list[str], as_split) -> None:
    probes = boundary_rows(offline_model, holdout, features, 5)
    p = offline_model.predict_proba(holdout)[:, 1]
    ordinary = holdout[np.abs(p - 0.5) > 0.2]
    config = TEST_CONFIG.model_copy(update={"probing": ProbingConfig(min_requests=20, top_k=5)})

    async def scenario(client: httpx.AsyncClient) -> str:
        for i in range(25):
            await client.post("/invocations", json=as_split(probes.iloc[[i % 5]]), headers={"X-Routing-Key": "prober"})
            await client.post("/invocations", json=as_split(ordinary.iloc[[i]]), headers={"X-Routing-Key": "alice"})
        for i in range(5):  # too few requests to be ranked
            await client.post("/invocations", json=as_split(probes.iloc[[i]]), headers={"X-Routing-Key": "bob"})
        return (await client.get("/metrics")).text

    metrics = in_app(scenario, config=config)
    assert 'mlgate_probing_share{key="prober"} 1.0' in metrics
    assert 'mlgate_probing_share{key="alice"} 0.0' in metrics
    assert 'mlgate_probing_requests{key="prober"} 25.0' in metrics
    assert 'key="bob"' not in metrics


def test_probing_watch_forgets_old_buckets_and_bounds_its_keys() -> None:
    now = [0.0]
    watch = ProbingWatch(ProbingConfig(window_s=100, min_requests=1, top_k=3, max_keys=2), clock=lambda: now[0])
    watch.observe("a", 1, 1)
    watch.observe("b", 1, 0)
    watch.observe("c", 1, 1)  # a third key in the same bucket: counted as OTHER
    assert {(a.key, a.share) for a in watch.top()} == {("a", 1.0), ("b", 0.0), (OTHER, 1.0)}
    now[0] = 95.0
    watch.observe("d", 2, 1)
    assert [a.key for a in watch.top()][0] in ("a", OTHER)
    now[0] = 105.0  # the first bucket (0-10 s) has left the window
    assert [(a.key, a.share) for a in watch.top()] == [("d", 0.5)]
    many = ProbingWatch(ProbingConfig(min_requests=1, top_k=3))
    for i in range(50):
        many.observe(f"k{i}", 1, i % 2)
    assert len(many.top()) == 3  # never one series per key


def test_outlier_flags_off_by_config(in_app, detector_model: Path, holdout: pd.DataFrame, features: list[str],
                                     as_split) -> None:
    config = TEST_CONFIG.model_copy(update={"outliers": OutlierConfig(enabled=False)})

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", json=as_split(extreme(holdout.head(1), features)))

    assert "x-outlier-count" not in in_app(scenario, uris={"default": str(detector_model)}, config=config).headers


def test_a_corrupt_detector_fails_the_load_naming_the_file(detector_model: Path, tmp_path: Path) -> None:
    from mlgate.serving.loading import ModelLoadError, load_model

    broken = tmp_path / "m"
    shutil.copytree(detector_model, broken)
    (broken / DETECTOR_DIR / "outliers.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="outliers.json"):
        load_model(str(broken))


def test_serving_config_keeps_its_defaults() -> None:
    config = ServingConfig()
    assert config.outliers.enabled and config.probing.enabled and config.outliers.max_header_rows == 100
