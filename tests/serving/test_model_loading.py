"""mlgate's one model loader on real MLflow models saved in tmp_path: which models are pickle-based
(decided from MLmodel before loading), consent, the skops trust list, and scores per flavor."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow.lightgbm
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.models import infer_signature
from pydantic import ValidationError
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from mlgate.serving.loading import LoadPolicy, ModelLoadError, load_model, read_mlmodel
from mlgate.serving.pickle_guard import MLFLOW_FLAG, mlflow_pickle_flag, pickle_use
from mlgate.serving.pyfunc_scores import PyfuncLabels, PyfuncScores
from mlgate.serving.settings import DEFAULT_TRUSTED_TYPES, ServingConfig
from mlgate.serving.skops_trust import trusted_types_for
from tests.pipelines.byom_models import LIGHTGBM_TYPES, SCORED_CODE, save_code_model

LIGHTGBM_TRUST = LoadPolicy(trusted_types=(*DEFAULT_TRUSTED_TYPES, *LIGHTGBM_TYPES))


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    x, y = make_classification(300, 5, random_state=0)
    return pd.DataFrame(x, columns=list("abcde")), np.where(y == 1, "yes", "no")


def _quiet(save, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return save(*args, **kwargs)


def _sklearn(model: Any, data, path: Path, fmt: str = "skops", trusted=DEFAULT_TRUSTED_TYPES) -> Path:
    x, y = data
    model.fit(x, y)
    extra = {"skops_trusted_types": trusted_types_for(model, trusted)} if fmt == "skops" else {}
    _quiet(mlflow.sklearn.save_model, model, str(path), serialization_format=fmt,
           signature=infer_signature(x, y), pip_requirements=["scikit-learn"], **extra)
    return path


def _with_marker(marker: Path) -> Any:
    """A LogisticRegression whose unpickling writes `marker` (cloudpickle stores this class by value)."""
    class Marked(LogisticRegression):
        def __setstate__(self, state: dict) -> None:
            Path(marker).write_text("code from the model file ran")
            super().__setstate__(state)

    return Marked()


def _drop_sklearn_flavor(path: Path) -> Path:
    meta = read_mlmodel(path)
    del meta["flavors"]["sklearn"]
    (path / "MLmodel").write_text(yaml.safe_dump(meta))
    return path


def _cloudpickle_pyfunc(path: Path, marker: Path) -> Path:
    class Pickled(mlflow.pyfunc.PythonModel):
        def __setstate__(self, state: dict) -> None:
            Path(marker).write_text("code from the model file ran")
            self.__dict__.update(state)

        def predict(self, context, model_input, params=None):
            return np.zeros(len(model_input))

    _quiet(mlflow.pyfunc.save_model, str(path), python_model=Pickled(), pip_requirements=["cloudpickle"])
    marker.unlink(missing_ok=True)
    return path


def test_pickle_is_found_in_the_mlmodel_before_anything_loads(data, tmp_path):
    marker = tmp_path / "marker"
    skops = _sklearn(LogisticRegression(), data, tmp_path / "skops")
    pickled = _sklearn(LogisticRegression(), data, tmp_path / "pickled", fmt="pickle")
    edited = _drop_sklearn_flavor(_sklearn(_with_marker(marker), data, tmp_path / "edited", fmt="cloudpickle"))
    cloud = _cloudpickle_pyfunc(tmp_path / "cloud", marker)
    code = save_code_model(skops, tmp_path / "code")
    code_around_pickle = save_code_model(cloud, tmp_path / "code_around_pickle")
    found = {p.name: pickle_use(p, read_mlmodel(p)) for p in (skops, pickled, edited, cloud, code, code_around_pickle)}
    assert found["skops"] is None and found["code"] is None
    assert found["pickled"] == f"{pickled / 'model.pkl'}: an sklearn model serialized with 'pickle'"
    assert found["edited"].startswith(f"{edited / 'model.pkl'}: an sklearn pyfunc without its sklearn flavor")
    assert found["cloud"] == f"{cloud / 'python_model.pkl'}: a PythonModel saved with cloudpickle"
    assert found["code_around_pickle"].startswith(str(code_around_pickle / "artifacts"))
    assert "python_model.pkl: a PythonModel saved with cloudpickle" in found["code_around_pickle"]
    unknown = {"flavors": {"python_function": {"loader_module": "mlflow.pytorch"}}}
    assert "'mlflow.pytorch', which mlgate cannot vouch for" in pickle_use(tmp_path, unknown)
    assert not marker.exists()


def test_a_pickled_model_loads_only_with_consent_and_mlflow_refuses_it_too(data, tmp_path):
    marker = tmp_path / "marker"
    edited = _drop_sklearn_flavor(_sklearn(_with_marker(marker), data, tmp_path / "edited", fmt="cloudpickle"))
    marker.unlink(missing_ok=True)
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(edited))
    message = str(refused.value)
    assert str(edited / "model.pkl") in message and "serving.allow_pickle: true" in message
    assert "mlgate --allow-pickle" in message
    with mlflow_pickle_flag(False), pytest.raises(Exception, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.pyfunc.load_model(str(edited))  # what a model's own code would try: MLflow's flag holds too
    assert not marker.exists()
    loaded = load_model(str(edited), LoadPolicy(allow_pickle=True))
    assert marker.exists() and loaded.pickled.startswith(str(edited / "model.pkl"))
    assert list(loaded.model.predict(data[0].head(3))) == list(loaded.model.pyfunc.predict(data[0].head(3)))


def test_mlflow_flag_is_set_for_a_load_and_restored(monkeypatch):
    monkeypatch.setenv(MLFLOW_FLAG, "true")
    with mlflow_pickle_flag(False):
        import os

        assert os.environ[MLFLOW_FLAG] == "false"
    assert os.environ[MLFLOW_FLAG] == "true"


def test_skops_trust_list_is_configured_and_names_the_types_skops_flags(data, tmp_path):
    hgb = load_model(str(_sklearn(HistGradientBoostingClassifier(max_iter=5), data, tmp_path / "hgb")))
    assert hgb.flagged_types == ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)
    narrow = LoadPolicy(trusted_types=("numpy.", "builtins.", "sklearn.linear_model."))
    with pytest.raises(ModelLoadError, match="refusing types outside serving.trusted_types: sklearn.ensemble"):
        load_model(str(hgb.path), narrow)
    with pytest.raises(ValidationError, match="module prefix ending in '.'"):
        ServingConfig(trusted_types=["sklearn"])
    assert ServingConfig().trusted_types == list(DEFAULT_TRUSTED_TYPES) and ServingConfig().allow_pickle is False


def test_lightgbm_scikit_learn_model_loads_natively_with_scores_once_its_types_are_trusted(data, tmp_path):
    import lightgbm as lgb

    x, y = data
    model = lgb.LGBMClassifier(n_estimators=10, n_jobs=1, verbose=-1).fit(x, y)
    _quiet(mlflow.lightgbm.save_model, model, str(tmp_path / "lgbm"), signature=infer_signature(x, y))
    with pytest.raises(ModelLoadError, match="lightgbm.basic.Booster, lightgbm.sklearn.LGBMClassifier"):
        load_model(str(tmp_path / "lgbm"))
    loaded = load_model(str(tmp_path / "lgbm"), LIGHTGBM_TRUST)
    assert loaded.flavor == "lightgbm" and list(loaded.model.classes_) == ["no", "yes"]
    assert loaded.model.predict_proba(x.head(4)).shape == (4, 2) and not loaded.no_scores
    with mlflow_pickle_flag(False), pytest.raises(Exception, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.pyfunc.load_model(str(tmp_path / "lgbm"))  # MLflow's loader would trust the file's own list


def test_lightgbm_booster_goes_through_pyfunc_and_gives_no_scores_without_class_names(data, tmp_path):
    import lightgbm as lgb

    x, y = data
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(x, (y == "yes") * 1), 5)
    _quiet(mlflow.lightgbm.save_model, booster, str(tmp_path / "booster"), signature=infer_signature(x))
    loaded = load_model(str(tmp_path / "booster"))
    assert loaded.flavor == "python_function" and isinstance(loaded.model, PyfuncLabels)
    assert loaded.no_scores == "its Booster gives no scores (no predict_proba)"


def test_models_from_code_scores_follow_the_documented_contract(data, tmp_path):
    base = _sklearn(LogisticRegression(), data, tmp_path / "base")
    scored = load_model(str(save_code_model(base, tmp_path / "scored")))
    labels = load_model(str(save_code_model(base, tmp_path / "labels", scores=False)))
    x = data[0].head(5)
    assert isinstance(scored.model, PyfuncScores) and list(scored.model.classes_) == ["no", "yes"]
    expected = load_model(str(base)).model.predict_proba(x)
    np.testing.assert_allclose(scored.model.predict_proba(x), expected)
    assert scored.model.score_source == "the PythonModel's predict_proba" and not scored.no_scores
    assert not hasattr(labels.model, "predict_proba") and "classes_` and `predict_proba(model_input)`" in labels.no_scores
    one_column = SCORED_CODE.replace("return self.model.predict_proba(model_input)",
                                     "return self.model.predict_proba(model_input)[:, 1]")
    wrong = load_model(str(save_code_model(base, tmp_path / "wrong", source=one_column)))
    with pytest.raises(ValueError, match=r"returned an array of shape \(5,\), expected \(5, 2\)"):
        wrong.model.predict_proba(x)
