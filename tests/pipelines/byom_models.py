"""Models a team brings instead of mlgate's own, saved as real MLflow models in a test's directory.

- `save_code_model`: a models-from-code PythonModel wrapping an MLflow model (by default with mlgate's
  score contract, `classes_` and `predict_proba(model_input)`; `scores=False` gives labels only);
- `save_lightgbm_pipeline`: an sklearn Pipeline ending in LightGBM's LGBMClassifier, saved with skops;
- `save_cloudpickle_model`: a cloudpickle PythonModel whose unpickling writes a marker file (and which
  predicts with the wrapped estimator), the attack a pickle-based model is.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

SCORED_CODE = '''
import mlflow
from mlflow.pyfunc import PythonModel


class Wrapped(PythonModel):
    """The wrapped MLflow model, with scores: classes_ and predict_proba (mlgate's contract)."""

    def load_context(self, context):
        from mlgate.serving.loading import load_model

        self.model = load_model(context.artifacts["model"]).model
        self.classes_ = self.model.classes_

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)

    def predict_proba(self, model_input):
        return self.model.predict_proba(model_input)


mlflow.models.set_model(Wrapped())
'''

LABELS_CODE = '''
import mlflow
from mlflow.pyfunc import PythonModel


class LabelsOnly(PythonModel):
    """The wrapped MLflow model's labels, nothing else."""

    def load_context(self, context):
        from mlgate.serving.loading import load_model

        self.model = load_model(context.artifacts["model"]).model

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)


mlflow.models.set_model(LabelsOnly())
'''

LIGHTGBM_TYPES = ["lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"]


def _signature(model_dir: Path) -> Any:
    from mlflow.models import Model

    return Model.load(str(model_dir / "MLmodel")).signature


def save_code_model(wrapped: Path, destination: Path, *, scores: bool = True, source: str | None = None) -> Path:
    """A models-from-code pyfunc at `destination` wrapping the MLflow model at `wrapped` (same signature);
    `source` replaces the model's code."""
    import mlflow.pyfunc

    code = destination.parent / f"{destination.name}_model.py"
    code.parent.mkdir(parents=True, exist_ok=True)
    code.write_text(source or (SCORED_CODE if scores else LABELS_CODE), encoding="utf-8")
    shutil.rmtree(destination, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(str(destination), python_model=str(code), artifacts={"model": str(wrapped)},
                                 signature=_signature(wrapped), pip_requirements=["scikit-learn", "skops"])
    return destination


def save_lightgbm_pipeline(train: pd.DataFrame, params: dict, signature_from: Path, destination: Path) -> Path:
    """One-hot categories, then LGBMClassifier; saved with skops and the LightGBM types it needs."""
    import lightgbm as lgb
    import mlflow.sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from mlgate.serving.settings import DEFAULT_TRUSTED_TYPES
    from mlgate.serving.skops_trust import trusted_types_for

    data = params["data"]
    features = ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore"), data["categorical"]),
                                  ("numeric", "passthrough", data["numeric"])])
    model = Pipeline([("features", features),
                      ("model", lgb.LGBMClassifier(n_estimators=60, num_leaves=15, n_jobs=1, verbose=-1))])
    model.fit(train[data["categorical"] + data["numeric"]], train[params["model"]["target"]])
    shutil.rmtree(destination, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(model, str(destination), serialization_format="skops",
                                  skops_trusted_types=trusted_types_for(model, [*DEFAULT_TRUSTED_TYPES, *LIGHTGBM_TYPES]),
                                  signature=_signature(signature_from), pip_requirements=["scikit-learn", "lightgbm"])
    return destination


def save_cloudpickle_model(wrapped: Path, destination: Path, marker: Path) -> Path:
    """A cloudpickle PythonModel predicting with the sklearn model at `wrapped`; unpickling it writes
    `marker` (code from the model file running in whoever loads it)."""
    import mlflow.pyfunc
    from mlflow.pyfunc import PythonModel

    from mlgate.serving.loading import load_model

    class Pickled(PythonModel):  # defined here, so cloudpickle stores the class itself in the file
        def __init__(self, model: Any, marker: str) -> None:
            self.model, self.marker = model, marker

        def __setstate__(self, state: dict) -> None:
            Path(state["marker"]).write_text("code from the model file ran")
            self.__dict__.update(state)

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return self.model.predict(model_input)

    shutil.rmtree(destination, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(str(destination), python_model=Pickled(load_model(str(wrapped)).model, str(marker)),
                                 signature=_signature(wrapped), pip_requirements=["scikit-learn"])
    marker.unlink(missing_ok=True)  # saving may have loaded it (MLflow validates); start clean
    return destination
