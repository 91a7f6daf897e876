"""Turning checked request batches into one model input frame, and model output back into rows.

The frame is built once per predict call (not per request): columns are concatenated as lists and
converted to numpy arrays in one step each, which is where micro-batching saves pandas overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlgate.serving.validation import NUMERIC_TYPES, ColumnSpec, FeatureBatch, InputSchema

_INTEGER_DTYPES = {"integer": np.int32, "long": np.int64}
_FLOAT_DTYPES = {"float": np.float32, "double": np.float64}


def build_frame(schema: InputSchema | None, batches: Sequence[FeatureBatch]) -> pd.DataFrame:
    """One DataFrame holding every row of `batches`, in signature column order."""
    return pd.DataFrame(build_columns(schema, batches), copy=False)


def build_columns(schema: InputSchema | None, batches: Sequence[FeatureBatch]) -> dict[str, np.ndarray]:
    """`build_frame`'s columns as arrays, in signature column order."""
    specs = _specs_present(schema, batches)
    return {spec.name: column_array(spec, _concat(spec.name, batches)) for spec in specs}


def _specs_present(schema: InputSchema | None, batches: Sequence[FeatureBatch]) -> list[ColumnSpec]:
    present = {name for batch in batches for name in batch.columns}
    if schema is None:
        ordered = dict.fromkeys(name for batch in batches for name in batch.columns)
        return [ColumnSpec(name, "any") for name in ordered]
    return [spec for spec in schema.columns if spec.name in present]


def _concat(name: str, batches: Sequence[FeatureBatch]) -> list[Any]:
    if len(batches) == 1:
        return batches[0].columns[name]
    values: list[Any] = []
    for batch in batches:
        values.extend(batch.columns.get(name, [None] * batch.n_rows))  # an absent optional column
    return values


def column_array(spec: ColumnSpec, values: list[Any]) -> np.ndarray:
    """Numbers as float64 (null -> NaN), narrowed to the signature's integer type when lossless."""
    if spec.type in NUMERIC_TYPES:
        array = np.asarray(values, dtype=np.float64)
        if spec.type in _FLOAT_DTYPES:
            return array.astype(_FLOAT_DTYPES[spec.type], copy=False)
        return _as_integers(array, _INTEGER_DTYPES[spec.type])
    if spec.type == "boolean" and None not in values:
        return np.asarray(values, dtype=bool)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    if spec.type == "string":
        # Null text as NaN, always: pandas turns None into NaN in a column that also holds text, but keeps a
        # column of nulls only as None, which scikit-learn's imputer does not see as missing, so a lone
        # request's null got another answer than the same request batched with others.
        array[array == None] = np.nan  # noqa: E711 - elementwise comparison with None
    return array


def _as_integers(array: np.ndarray, dtype: type[np.integer]) -> np.ndarray:
    """The integer column as the signature's dtype, or float64 when it holds nulls or fractions."""
    limit = float(np.iinfo(dtype).max)
    if not np.isfinite(array).all() or (np.abs(array) >= limit).any() or (array != np.trunc(array)).any():
        return array
    return array.astype(dtype)


def output_rows(output: Any, n_rows: int) -> list[Any]:
    """Model output as one JSON-ready entry per input row, like `mlflow models serve` returns it."""
    if isinstance(output, pd.DataFrame):
        rows: Any = output.to_dict(orient="records")
    elif isinstance(output, (pd.Series, np.ndarray)):
        rows = output.tolist()
    elif isinstance(output, list):
        rows = output
    else:
        raise TypeError(f"the model returned {type(output).__name__}, not an array, Series or DataFrame")
    if len(rows) != n_rows:
        raise ValueError(f"the model returned {len(rows)} predictions for {n_rows} rows")
    return rows


def split_rows(rows: list[Any], sizes: Sequence[int]) -> list[list[Any]]:
    """Cut the rows of a combined batch back into one list per request."""
    parts, start = [], 0
    for size in sizes:
        parts.append(rows[start:start + size])
        start += size
    return parts
