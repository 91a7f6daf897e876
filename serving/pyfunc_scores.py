"""A pyfunc model with scikit-learn's calls, so the server and the gates treat every flavor alike.

`predict` is the pyfunc's own (MLflow's schema enforcement included). A frame is first given the
signature's columns, as the server gives them: only those columns, and integer columns the signature
declares as doubles cast to float64 (MLflow refuses int64 for a double column).
Scores come, when the model has them, from the first of:
- the PythonModel's own `predict_proba(model_input)` with a `classes_` attribute (models-from-code or
  any PythonModel; mlgate's documented contract: one row per input row, one column per entry of
  `classes_`, in that order);
- the flavor's underlying model (`get_raw_model()`, e.g. an XGBClassifier) when it has `predict_proba`
  and `classes_`.
Otherwise the model gives labels only: `predict_proba` is absent (as on an sklearn regressor) and
`no_scores` says why, for the gates to report. A LightGBM or XGBoost Booster's pyfunc returns bare
probabilities without class names; mlgate does not guess them (wrap it as above).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

PYTHON_MODEL_CONTRACT = "a PythonModel with `classes_` and `predict_proba(model_input)`"


class PyfuncLabels:
    """A pyfunc model that gives labels (or values) only; `no_scores` says why it has no scores."""

    def __init__(self, pyfunc: Any, no_scores: str) -> None:
        self.pyfunc = pyfunc
        self.no_scores = no_scores
        self._columns, self._doubles = _signature_columns(pyfunc)

    def predict(self, frame: Any) -> Any:
        return self.pyfunc.predict(self.conform(frame))

    def conform(self, frame: Any) -> Any:
        """`frame` with the signature's columns only (when it has them all), integers declared as double
        or float cast to float64; anything else unchanged, for MLflow to judge."""
        if not isinstance(frame, pd.DataFrame) or not self._columns or not set(self._columns) <= set(frame.columns):
            return frame
        frame = frame[self._columns]
        ints = [c for c in self._doubles if pd.api.types.is_integer_dtype(frame[c])]
        return frame.astype({c: "float64" for c in ints}) if ints else frame


class PyfuncScores(PyfuncLabels):
    """A pyfunc model with scores: `predict_proba` columns follow `classes_`; `score_source` names them."""

    def __init__(self, pyfunc: Any, scorer: Callable[[Any], Any], classes: Any, score_source: str) -> None:
        super().__init__(pyfunc, "")
        self._scorer = scorer
        self.classes_ = np.asarray(list(classes))
        self.score_source = score_source

    def predict_proba(self, frame: Any) -> np.ndarray:
        """Probabilities as an (n rows, n classes) array; ValueError when the model returns another shape."""
        proba = np.asarray(self._scorer(self.conform(frame)), dtype=float)
        expected = (len(frame), len(self.classes_))
        if proba.shape != expected:
            raise ValueError(f"{self.score_source} returned an array of shape {proba.shape}, expected {expected} "
                             "(one column per entry of classes_)")
        return proba


def wrap_pyfunc(pyfunc: Any) -> PyfuncLabels:
    """`pyfunc` (an mlflow.pyfunc.PyFuncModel) with scores when its PythonModel or flavor model has them."""
    python_model = _python_model(pyfunc)
    if python_model is not None:
        found = _scores_of(python_model, "the PythonModel's predict_proba")
        if isinstance(found, tuple):
            return PyfuncScores(pyfunc, *found)
        return PyfuncLabels(pyfunc, f"a PythonModel without scores ({found}; mlgate reads {PYTHON_MODEL_CONTRACT})")
    raw = _raw_model(pyfunc)
    if raw is not None:
        found = _scores_of(raw, f"{type(raw).__name__}.predict_proba")
        if isinstance(found, tuple):
            return PyfuncScores(pyfunc, *found)
        return PyfuncLabels(pyfunc, f"its {type(raw).__name__} gives no scores ({found})")
    return PyfuncLabels(pyfunc, f"a pyfunc model without scores (not {PYTHON_MODEL_CONTRACT})")


def _scores_of(model: Any, source: str) -> tuple[Callable[[Any], Any], Any, str] | str:
    """(predict_proba, classes, source) when `model` has both, else what it lacks."""
    scorer, classes = getattr(model, "predict_proba", None), getattr(model, "classes_", None)
    if not callable(scorer):
        return "no predict_proba"
    if classes is None or len(classes) == 0:
        return "predict_proba without classes_, the class of each column"
    return scorer, classes, source


def _signature_columns(pyfunc: Any) -> tuple[list[str], list[str]]:
    """The signature's input column names, and those declared double or float ([] without names)."""
    try:
        schema = pyfunc.metadata.get_input_schema()
    except Exception:  # noqa: BLE001 - a pyfunc without metadata has no signature to follow
        return [], []
    if schema is None or not schema.has_input_names():
        return [], []
    doubles = [c.name for c in schema.inputs if getattr(c.type, "name", "") in ("double", "float")]
    return [c.name for c in schema.inputs], doubles


def _python_model(pyfunc: Any) -> Any:
    try:
        return pyfunc.unwrap_python_model()
    except Exception:  # noqa: BLE001 - MLflow raises when the pyfunc is not a PythonModel
        return None


def _raw_model(pyfunc: Any) -> Any:
    try:
        return pyfunc.get_raw_model()
    except Exception:  # noqa: BLE001 - NotImplementedError, or a flavor's own error
        return None
