"""Models for the router tests, saved as real MLflow models (skops or models-from-code, no pickle).

- a tiny classifier (logistic regression on two numbers): cheap enough to push tens of thousands
  of routed requests through a real server within a test;
- a failing twin of the churn pipeline: trained with a column its signature does not have, so
  every prediction raises, as a challenger with train/serve skew would;
- a sleeping model: a models-from-code pyfunc that takes 2 s (or any given time) per call.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TINY_COLUMNS = ["total_day_minutes", "number_customer_service_calls"]

SLEEPING_CODE = """
import time

import mlflow
from mlflow.pyfunc import PythonModel


class Sleeper(PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep({seconds})
        return ["no"] * len(model_input)


mlflow.models.set_model(Sleeper())
"""

BUSY_CODE = """
import mlflow
from mlflow.pyfunc import PythonModel


class Busy(PythonModel):
    def predict(self, context, model_input, params=None):
        total = 0
        for i in range({iterations}):  # a fixed amount of CPU work: a busy machine slows it as it slows others
            total += i & 7
        return ["no"] * len(model_input)


mlflow.models.set_model(Busy())
"""


def save_sklearn(model: object, x: pd.DataFrame, y: pd.Series, path: Path) -> Path:
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.sklearn.save_model(model, str(path), serialization_format="skops", skops_trusted_types=trusted,
                                  signature=infer_signature(x, y), pip_requirements=["scikit-learn"])
    return path


def tiny_model(churn: pd.DataFrame, target: str, path: Path) -> Path:
    """Logistic regression on two numeric columns of the real data."""
    x = churn[TINY_COLUMNS].astype(float)
    return save_sklearn(LogisticRegression(max_iter=1000).fit(x, churn[target]), x, churn[target], path)


def raising_model(churn: pd.DataFrame, features: list[str], categorical: list[str], target: str, path: Path) -> Path:
    """The churn pipeline fitted with an extra column `tenure_days` that the signature does not list:
    the server sends the signature's columns, so every prediction raises (missing column)."""
    x = churn[features].assign(tenure_days=np.arange(len(churn), dtype=float))
    numeric = [c for c in x.columns if c not in categorical]
    columns = ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                                 ("numeric", StandardScaler(), numeric)])
    pipeline = Pipeline([("features", columns), ("model", LogisticRegression(max_iter=500))])
    pipeline.fit(x.fillna(0), churn[target])
    return save_sklearn(pipeline, churn[features], churn[target], path)


def sleeping_model(churn: pd.DataFrame, features: list[str], root: Path, seconds: float = 2.0) -> Path:
    """A models-from-code pyfunc that sleeps `seconds` per call, then answers 'no'."""
    return _code_model(churn, features, root, SLEEPING_CODE.format(seconds=seconds))


def busy_model(churn: pd.DataFrame, features: list[str], root: Path, iterations: int) -> Path:
    """A models-from-code pyfunc that spends a fixed amount of CPU per call, then answers 'no'."""
    return _code_model(churn, features, root, BUSY_CODE.format(iterations=iterations))


def _code_model(churn: pd.DataFrame, features: list[str], root: Path, source: str) -> Path:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    code = root / "model_code.py"
    code.write_text(source, encoding="utf-8")
    x = churn[features].head(50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(str(root / "m"), python_model=str(code), pip_requirements=["pandas"],
                                 signature=infer_signature(x, pd.Series(["no"] * len(x))))
    return root / "m"
