"""The scikit-learn explainers: Tree SHAP and the linear closed form on a Pipeline's final step.

Both work in the space of the preceding steps' output (one-hot columns, scaled numbers); each transformed
column is traced back to the input column it came from (mlgate.serving.explain_columns) and the
contributions of one input's columns are summed: a sum of Shapley values is the Shapley value of the
group. A pipeline whose columns cannot be traced, an estimator these do not fit, or an ensemble SHAP
cannot read makes this module decline (None), and the model-agnostic explainer answers instead.

Tree SHAP runs in its exact path-dependent mode (no background: the trees' own training counts give
the expectation). Its interventional mode, measured on mlgate's gradient-boosting model, was off by a
constant 0.0027 log-odds on every row, beyond the 1e-6 the answers promise.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np
import pandas as pd

from mlgate.serving.explain import ExplainOptions, Explanation
from mlgate.serving.explain_columns import grouped_by_source, source_columns

log = logging.getLogger(__name__)

_PROBABILITY_TREES = {"RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier"}
_MARGIN_TREES = {"HistGradientBoostingClassifier", "GradientBoostingClassifier"}
_VALUE_TREES = {"HistGradientBoostingRegressor", "GradientBoostingRegressor", "RandomForestRegressor",
                "ExtraTreesRegressor", "DecisionTreeRegressor"}
# Building a TreeExplainer converts every tree (0.3 s for a 200-tree forest): once per loaded model.
_TREE_EXPLAINERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def sklearn_explanation(model: Any, frame: pd.DataFrame, background: pd.DataFrame | None,
                        options: ExplainOptions) -> Explanation | None:
    """Tree SHAP or the linear closed form when `model` is an sklearn Pipeline/estimator they fit, with
    traceable columns (and, for the linear one, a background); None when they do not apply."""
    steps, final = _steps_and_final(model)
    kind = _kind(final)
    if kind is None or (kind.startswith("linear") and background is None):
        return None
    sources = source_columns(steps, list(frame.columns))
    if sources is None:
        return None
    options.check_deadline()
    z = transformed(steps, frame)
    if z is None:
        return None
    if kind.startswith("linear"):
        z_background = transformed(steps, background[frame.columns])
        if z_background is None:
            return None
        base, contributions, outputs = _linear(final, z, z_background, _as_fitted(z, steps, frame), kind)
        name, details = "linear", {"background_rows": len(background)}
    else:
        found = _tree(final, z, _as_fitted(z, steps, frame), kind, options.positive_index)
        if found is None:
            return None
        (base, contributions, outputs), name, details = found, "tree_path_dependent", {}
    pos = options.positive_index
    if kind in ("linear_logit", "tree_margin") and pos == 0:  # log-odds of classes_[0]: the margin negated
        base, contributions, outputs = -base, -contributions, -outputs
    scale = {"tree_margin": "log_odds", "linear_logit": "log_odds", "tree_proba": "probability"}.get(kind, "value")
    classes = getattr(final, "classes_", None)
    explained = [classes[pos]] * len(frame) if classes is not None else None
    grouped = grouped_by_source(contributions, sources, list(frame.columns))
    return Explanation(list(frame.columns), np.full(len(frame), float(base)) if np.ndim(base) == 0 else base,
                       grouped, outputs, scale, name, explained, details)  # type: ignore[arg-type]


def sklearn_explainer(model: Any, columns: list[str], has_background: bool) -> str | None:
    """The explainer `sklearn_explanation` would use for `model` on `columns` (None: it declines)."""
    steps, final = _steps_and_final(model)
    kind = _kind(final)
    if kind is None or (kind.startswith("linear") and not has_background) or source_columns(steps, columns) is None:
        return None
    return "linear" if kind.startswith("linear") else "tree_path_dependent"


def _steps_and_final(model: Any) -> tuple[list[Any], Any]:
    if hasattr(model, "steps") and hasattr(model, "named_steps"):
        return [step for _, step in model.steps[:-1]], model.steps[-1][1]
    return [], model


def _kind(final: Any) -> str | None:
    """Which sklearn explainer fits the final estimator (binary classifiers and single-output regressors)."""
    name = type(final).__name__
    if not type(final).__module__.startswith("sklearn."):
        return None
    classes = getattr(final, "classes_", None)
    binary = classes is not None and len(classes) == 2
    if name in _MARGIN_TREES and binary:
        return "tree_margin"
    if name in _PROBABILITY_TREES and binary:
        return "tree_proba"
    if name in _VALUE_TREES and getattr(final, "n_outputs_", 1) == 1:
        return "tree_value"
    coef = getattr(final, "coef_", None)
    if name == "LogisticRegression" and binary and coef is not None and coef.shape[0] == 1:
        return "linear_logit"
    if type(final).__module__.startswith("sklearn.linear_model") and classes is None \
            and coef is not None and np.ndim(coef) == 1:
        return "linear_value"
    return None


def transformed(steps: list[Any], frame: pd.DataFrame) -> np.ndarray | None:
    """`frame` through the preceding steps, as a dense float64 array (None when it is not numeric: a bare
    estimator given text columns is left to the model-agnostic explainer)."""
    data: Any = frame
    for step in steps:
        if step is not None and step != "passthrough":
            data = step.transform(data)
    if hasattr(data, "toarray"):  # a sparse matrix (OneHotEncoder's default output)
        data = data.toarray()
    try:
        return np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _as_fitted(z: np.ndarray, steps: list[Any], frame: pd.DataFrame) -> Any:
    """What the final estimator was fitted on: the array after a pipeline's steps, or, for a bare
    estimator, a frame with the input's column names (sklearn checks them)."""
    return z if steps else pd.DataFrame(z, columns=frame.columns, index=frame.index)


def _tree(final: Any, z: np.ndarray, fitted: Any, kind: str, pos: int) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """Tree SHAP values, base and the model's own output; None when SHAP cannot read this ensemble
    (e.g. native categorical splits): the model-agnostic explainer answers instead."""
    try:
        explainer = _TREE_EXPLAINERS.get(final)
        if explainer is None:
            explainer = _shap().TreeExplainer(final, feature_perturbation="tree_path_dependent", model_output="raw")
            _TREE_EXPLAINERS[final] = explainer
        values = np.asarray(explainer.shap_values(z, check_additivity=False), dtype=np.float64)
        expected = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    except Exception:  # noqa: BLE001 - SHAP raises many types for models it cannot convert
        log.info("shap.TreeExplainer cannot explain this %s; using the permutation explainer", type(final).__name__,
                 exc_info=True)
        return None
    if kind == "tree_proba":  # (rows, columns, classes): the positive class's probability
        return expected[pos], values[:, :, pos], final.predict_proba(fitted)[:, pos]
    if kind == "tree_margin":
        return expected[0], values, np.asarray(final.decision_function(fitted), dtype=np.float64).ravel()
    return expected[0], values, np.asarray(final.predict(fitted), dtype=np.float64).ravel()


def _shap() -> Any:
    """shap, imported on first use (it takes seconds), without its plotting module's deprecation noise."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap
    return shap


def _linear(final: Any, z: np.ndarray, z_background: np.ndarray, fitted: Any,
            kind: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """coef_j * (z_j - mean z_j) over the background; the base is the model's mean over the background."""
    coef = np.ravel(final.coef_).astype(np.float64)
    mean = z_background.mean(axis=0)
    base = float(np.ravel(final.intercept_)[0] if np.ndim(final.intercept_) else final.intercept_) + float(mean @ coef)
    output = final.decision_function(fitted) if kind == "linear_logit" else final.predict(fitted)
    return base, (z - mean) * coef, np.asarray(output, dtype=np.float64).ravel()
