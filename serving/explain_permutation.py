"""Model-agnostic explanations: sampled-permutation Shapley values on the original input columns.

For each explained row x, each sampled order of the columns and each background row b, the columns
are switched from b's values to x's one at a time in that order; each column's contribution is the
change of the model output when it switched, averaged over orders and background rows. Along one walk
the changes telescope to f(x) - f(b), so over every walk they add up exactly to f(x) - mean f(b): the
base value is the model's mean output on the background, and additivity holds to float rounding, not
only in expectation. Orders come in antithetic pairs (an order and its reverse), seeded per request.

Cost per row: about `permutations` x (columns - 1) x `background_rows` model rows, evaluated in chunks
of about `CHUNK_ROWS`, with the deadline checked between chunks (a timed-out request stops its work).
The output is the positive class's probability for a binary classifier with `predict_proba`, the
predicted class's probability for a multiclass one, else the model's numeric prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlgate.serving.explain import ExplainError, ExplainOptions, Explanation, Scale
from mlgate.serving.explain_background import conform_background

CHUNK_ROWS = 20_000
Scorer = Callable[[pd.DataFrame], np.ndarray]  # (rows, outputs): one column, or one per class


def permutation_explanation(model: Any, frame: pd.DataFrame, background: pd.DataFrame,
                            options: ExplainOptions) -> Explanation:
    """Explain every row of `frame` against `background` (training rows of the same columns)."""
    columns = list(frame.columns)
    bg = conform_background(background, frame)
    score, scale, classes = _scorer(model, frame, options.positive_index)
    outputs_all, bg_outputs = score(frame), score(bg)
    picked = outputs_all.argmax(axis=1) if outputs_all.shape[1] > 1 else np.zeros(len(frame), dtype=int)
    rng = np.random.default_rng(options.seed)
    contributions = np.zeros((len(frame), len(columns)))
    for i in range(len(frame)):
        orders = _orders(rng, len(columns), options.permutations)
        contributions[i] = _row_contributions(score, frame, bg, i, orders, int(picked[i]), bg_outputs[:, picked[i]],
                                              outputs_all[i, picked[i]], options)
    base = bg_outputs.mean(axis=0)[picked]
    outputs = outputs_all[np.arange(len(frame)), picked]
    explained = None if classes is None else [classes[c] for c in picked]
    return Explanation(columns, base, contributions, outputs, scale, "permutation", explained,
                       {"background_rows": len(bg), "permutations": options.permutations})


def _scorer(model: Any, frame: pd.DataFrame, positive_index: int) -> tuple[Scorer, Scale, list[Any] | None]:
    """The model output explained: P(positive) (binary), P(each class) (multiclass) or the value."""
    classes = getattr(model, "classes_", None)
    if hasattr(model, "predict_proba") and classes is not None and len(classes) >= 2:
        classes = list(classes)
        if len(classes) == 2:
            return lambda x: np.asarray(model.predict_proba(x), dtype=np.float64)[:, [positive_index]], \
                "probability", [classes[positive_index]]
        return lambda x: np.asarray(model.predict_proba(x), dtype=np.float64), "probability", classes

    def value(x: pd.DataFrame) -> np.ndarray:
        predicted = model.predict(x)
        predicted = predicted.to_numpy() if isinstance(predicted, (pd.DataFrame, pd.Series)) else predicted
        try:
            values = np.asarray(predicted, dtype=np.float64).reshape(len(x), -1)
        except (TypeError, ValueError):
            raise ExplainError(409, "explain_unsupported", "the model answers with labels and no predict_proba: "
                               "it has no numeric output to explain") from None
        if values.shape[1] != 1:
            raise ExplainError(409, "explain_unsupported", f"the model answers {values.shape[1]} values per row; "
                               "only one output per row can be explained")
        return values

    return value, "value", None


def _orders(rng: np.random.Generator, k: int, count: int) -> np.ndarray:
    """`count` column orders: random ones, each followed by its reverse (antithetic sampling)."""
    orders = []
    while len(orders) < count:
        order = rng.permutation(k)
        orders += [order, order[::-1]]
    return np.asarray(orders[:count])


def _row_contributions(score: Scorer, frame: pd.DataFrame, bg: pd.DataFrame, i: int, orders: np.ndarray,
                       output: int, f_bg: np.ndarray, f_x: float, options: ExplainOptions) -> np.ndarray:
    """Mean change of output column `output` as each column switches from background to row `i`, over
    every walk."""
    k, n_bg = len(frame.columns), len(bg)
    positions = np.argsort(orders, axis=1)  # positions[p, j]: the step at which column j switches
    totals = np.zeros(k)
    per_chunk = max(1, CHUNK_ROWS // max(1, (k - 1) * n_bg))
    for start in range(0, len(orders), per_chunk):
        options.check_deadline()
        chunk = positions[start:start + per_chunk]
        steps = np.empty((len(chunk), k + 1, n_bg))
        steps[:, 0, :], steps[:, k, :] = f_bg, f_x  # all background, all of row i: known already
        if k > 1:
            # switched[p, s, j]: column j has switched after step s+1 (s = 0 .. k-2)
            switched = chunk[:, None, :] < np.arange(1, k)[None, :, None]
            hybrid = _hybrid_frame(frame, bg, i, switched)
            steps[:, 1:k, :] = score(hybrid)[:, output].reshape(len(chunk), k - 1, n_bg)
        changes = np.diff(steps, axis=1)  # (orders, k steps, background rows)
        order_chunk = orders[start:start + per_chunk]
        for p in range(len(chunk)):
            totals[order_chunk[p]] += changes[p].sum(axis=1)
    return totals / (len(orders) * n_bg)


def _hybrid_frame(frame: pd.DataFrame, bg: pd.DataFrame, i: int, switched: np.ndarray) -> pd.DataFrame:
    """Rows (order, step, background row): row i's value where the column has switched, else b's."""
    data = {}
    for j, name in enumerate(frame.columns):
        x_value = frame[name].to_numpy()[i:i + 1].reshape(1, 1, 1)
        values = np.where(switched[:, :, j][:, :, None], x_value, bg[name].to_numpy().reshape(1, 1, -1))
        data[name] = _as_dtype(values.reshape(-1), frame[name].dtype)
    return pd.DataFrame(data, copy=False)


def _as_dtype(values: np.ndarray, dtype: Any) -> Any:
    """`values` in the request frame's dtype when they fit it (integers without nulls), else as they are."""
    if values.dtype == dtype:
        return values
    try:
        return pd.array(values, dtype=dtype)
    except (TypeError, ValueError):
        return values
