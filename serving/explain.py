"""Per-row feature contributions of any served model: which explainer, and the answer they add up to.

`explain_frame(model, frame, background, options)` returns, per row, a base value, one contribution per
original input column and the model output they add up to (base + sum == output within `TOLERANCE`,
checked here against what the model itself computes), on a named scale (docs/EXPLANATIONS.md):

- an sklearn Pipeline (or estimator) ending in a tree ensemble SHAP's TreeExplainer supports: exact
  path-dependent Tree SHAP on the final step, in the space of the preceding steps' output; binary
  gradient boosting on the raw margin (`log_odds`), forests on the probability, regressors on the value.
- ending in a binary LogisticRegression or a linear regressor: the closed form coef_j * (z_j - mean z_j)
  over the background rows, on the decision function (`log_odds`) or the value. Needs a background.
- anything else (pyfunc models, LightGBM through pyfunc, multiclass models, unknown estimators, or a
  pipeline whose transformed columns cannot be traced back to inputs): sampled-permutation Shapley
  values on the original columns (mlgate.serving.explain_permutation). Needs a background.

Transformed columns are traced back to input columns (mlgate.serving.explain_models) and summed, so a
one-hot encoded column has one contribution. A binary classifier is explained for its positive class
(`positive_index` into `classes_`); a multiclass one for each row's predicted class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Scale = Literal["probability", "log_odds", "value"]
TOLERANCE = 1e-6  # |base + sum(contributions) - output| allowed on every row


class ExplainError(Exception):
    """An explanation this model or bundle cannot give, answered with `status` and `code` (never a wrong
    number): 409 when the bundle lacks a background sample or the model gives labels only."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ExplainTimeout(TimeoutError):
    """The explanation passed its deadline; the work stops at its next check."""


@dataclass(frozen=True)
class ExplainOptions:
    """The bounds of one explanation: permutations sampled per row (model-agnostic explainer), the seed
    of that sampling, and a `time.monotonic()` deadline (None: no limit)."""

    permutations: int = 10
    seed: int = 0
    positive_index: int = 1
    deadline: float | None = None

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise ExplainTimeout("the explanation passed its deadline")


@dataclass(frozen=True)
class Explanation:
    """Contributions per row (n rows x len(columns)), each row's base value and model output."""

    columns: list[str]
    base_values: np.ndarray
    contributions: np.ndarray
    outputs: np.ndarray
    scale: Scale
    explainer: str
    explained_classes: list[Any] | None = None  # per row, for classifiers
    details: dict[str, Any] = field(default_factory=dict)  # background_rows, permutations

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: base_value, contributions {column: value}, output (and class)."""
        out = []
        for i in range(len(self.outputs)):
            row: dict[str, Any] = {
                "base_value": float(self.base_values[i]),
                "contributions": dict(zip(self.columns, map(float, self.contributions[i]), strict=True)),
                "output": float(self.outputs[i])}
            if self.explained_classes is not None:
                row["class"] = _native(self.explained_classes[i])
            out.append(row)
        return out

    def mean_abs(self) -> dict[str, float]:
        """Mean absolute contribution per column over the rows (the quality report's figure)."""
        means = np.abs(self.contributions).mean(axis=0) if len(self.outputs) else np.zeros(len(self.columns))
        return dict(zip(self.columns, map(float, means), strict=True))


def explain_frame(model: Any, frame: pd.DataFrame, background: pd.DataFrame | None,
                  options: ExplainOptions) -> Explanation:
    """Explain every row of `frame` (the model's input columns) with the explainer that fits `model`;
    `background` is the bundle's sample of training rows (None for a bundle without one). Raises
    ExplainError, ExplainTimeout, or whatever the model raises."""
    from mlgate.serving.explain_models import sklearn_explanation
    from mlgate.serving.explain_permutation import permutation_explanation

    found = sklearn_explanation(model, frame, background, options)
    if found is None or not additive(found):
        if background is None:
            raise _no_background(model)
        found = permutation_explanation(model, frame, background, options)
    if not additive(found):  # never answer numbers that do not add up
        raise ExplainError(500, "explanation_inexact",
                           f"the {found.explainer} explanation does not add up to the model output within {TOLERANCE}")
    return found


def explainer_for(model: Any, columns: list[str], has_background: bool) -> str:
    """Which explainer `explain_frame` uses for `model` (before computing anything): to size the work."""
    from mlgate.serving.explain_models import sklearn_explainer

    return sklearn_explainer(model, columns, has_background) or "permutation"


def additive(explanation: Explanation) -> bool:
    """Whether base + sum(contributions) equals the output on every row, within TOLERANCE."""
    total = explanation.base_values + explanation.contributions.sum(axis=1)
    return bool(np.all(np.abs(total - explanation.outputs) <= TOLERANCE))


def _no_background(model: Any) -> ExplainError:
    return ExplainError(409, "no_background", f"this model's bundle has no background sample, which explaining "
                        f"a {type(model).__name__} needs; retrain it with this mlgate (its train stage writes "
                        "mlgate/background.parquet into the model directory)")


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
