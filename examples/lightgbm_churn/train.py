"""Train the churn model with LightGBM: a team's own training code, run by `mlgate train` (train.command).

mlgate runs this script in the project root (this directory) with the contract's environment variables
(mlgate's README, "Your own training code") and expects an MLflow model with a signature at
MLGATE_MODEL_DIR. It fits a scikit-learn Pipeline (categories imputed and one-hot encoded, numbers passed
through: LightGBM handles their missing values itself) ending in LightGBM's LGBMClassifier, and saves it
with skops, not pickle. mlgate loads it trusting only the types in params.yaml's serving.trusted_types,
which lists LightGBM's two on top of the defaults. It reads its settings from params.yaml's train section.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version

import lightgbm as lgb
import mlflow.sklearn
import pandas as pd
import skops.io as sio
import yaml
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

REQUIREMENTS = ("lightgbm", "scikit-learn", "skops", "numpy", "pandas", "scipy")


def build_model(categorical: list[str], numeric: list[str], hyperparams: dict, seed: int) -> Pipeline:
    """Missing and unseen categories are valid input (the edge-case gate sends both)."""
    categories = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                           ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    features = ColumnTransformer([("categorical", categories, categorical), ("numeric", "passthrough", numeric)])
    classifier = lgb.LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1, **hyperparams)
    return Pipeline([("features", features), ("classifier", classifier)])


def as_served(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as doubles: the signature then accepts a null in them, as a request may carry."""
    return frame.astype({c: "float64" for c in frame.select_dtypes(include="integer").columns})


def main() -> None:
    with open(os.environ["MLGATE_PARAMS"], encoding="utf-8") as handle:
        params = yaml.safe_load(handle)
    target, features = os.environ["MLGATE_TARGET"], json.loads(os.environ["MLGATE_FEATURES"])
    categorical = [c for c in features if c in params["data"]["categorical"]]
    numeric = [c for c in features if c not in categorical]
    train = pd.read_parquet(os.environ["MLGATE_TRAIN_DATA"])
    test = pd.read_parquet(os.environ["MLGATE_TEST_DATA"])
    x_train = as_served(train[features])
    model = build_model(categorical, numeric, params["train"].get("hyperparams") or {}, params["train"].get("seed", 42))
    model.fit(x_train, train[target])
    accuracy = accuracy_score(test[target], model.predict(as_served(test[features])))
    print(f"train.py: LGBMClassifier on {len(train)} rows, test accuracy {accuracy:.4f}")
    mlflow.sklearn.save_model(
        model, os.environ["MLGATE_MODEL_DIR"], serialization_format="skops",
        skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(model)),  # for MLflow's own loader
        signature=infer_signature(x_train, model.predict(x_train)),
        pip_requirements=[f"{name}=={version(name)}" for name in REQUIREMENTS],
    )


if __name__ == "__main__":
    main()
