"""The feature step of a served scikit-learn pipeline, done in numpy: the model's fixed cost per call (issue 18).

A fitted `ColumnTransformer` of imputers, scalers and one-hot encoders (what `mlgate train` builds) costs
about 4 ms per call in scikit-learn whatever the batch size: input checks, pandas indexing and output
wrapping, per step. The same arithmetic on the batch's column arrays takes tens of microseconds.
`compile_features` builds that arithmetic from the fitted attributes of the parts it knows, then
transforms probe rows both ways (every category, nulls, unseen values, extremes, in the column types the
server builds) and keeps the result only when it equals scikit-learn's bit for bit. Any other part, or
any difference, and the server keeps scikit-learn's own transform; `reason` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlgate.serving.validation import NUMERIC_TYPES, ColumnSpec, InputSchema

log = logging.getLogger(__name__)

UNSEEN_TEXT = "__mlgate_unseen_category__"
_IMPUTE = {"mean", "median", "most_frequent", "constant"}


class Unsupported(Exception):
    """A part of the pipeline this module does not reproduce (the message says which)."""


@dataclass(frozen=True)
class _Numbers:
    """SimpleImputer, then StandardScaler when fitted with one: `X[nan] = fill; X -= mean; X /= scale`
    (neither: 'passthrough')."""

    columns: tuple[str, ...]
    fill: np.ndarray | None
    mean: np.ndarray | None
    scale: np.ndarray | None

    def apply(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        block = np.column_stack([data[name] for name in self.columns])
        if block.dtype.kind != "f":
            block = block.astype(np.float64)
        if self.fill is not None:
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, self.fill.astype(block.dtype), block)
        if self.mean is not None:
            block -= self.mean
        if self.scale is not None:
            block /= self.scale
        return block


@dataclass(frozen=True)
class _OneHot:
    """OneHotEncoder(handle_unknown='ignore'), after a constant imputer of text columns when there is one:
    each value's position among its column's categories; a value not among them is a row of zeros."""

    columns: tuple[str, ...]
    tables: tuple[dict[Any, int], ...]  # value -> index within the column's block
    nan_index: tuple[int, ...]  # the index of NaN (None/NaN) per column; -1 when NaN is not a category
    widths: tuple[int, ...]
    dtype: Any

    def apply(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        n_rows = len(data[self.columns[0]])
        out = np.zeros((n_rows, sum(self.widths)), dtype=self.dtype)
        offset = 0
        for name, table, nan_index, width in zip(self.columns, self.tables, self.nan_index, self.widths,
                                                  strict=True):
            codes = [table.get(value, -1) if value is not None and value == value else nan_index
                     for value in data[name].tolist()]
            for row, code in enumerate(codes):
                if code >= 0:
                    out[row, offset + code] = 1
            offset += width
        return out


@dataclass(frozen=True)
class CompiledFeatures:
    """The pipeline's feature steps as numpy (`transform`) and the estimator they feed (`estimator`)."""

    parts: tuple[_Numbers | _OneHot, ...]
    estimator: Any
    probe_rows: int  # rows checked against scikit-learn's transform at load

    def transform(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [name for part in self.parts for name in part.columns if name not in data]
        if missing:
            raise ValueError(f"columns are missing: {sorted(set(missing))}")
        blocks = [part.apply(data) for part in self.parts]
        return blocks[0] if len(blocks) == 1 else np.hstack(blocks)


def compile_features(model: Any, schema: InputSchema | None) -> tuple[CompiledFeatures | None, str]:
    """The numpy feature step of `model` and why; (None, reason) when scikit-learn's must stay."""
    try:
        parts = _parts_of(model, schema)
        compiled = CompiledFeatures(parts, model.steps[-1][1], 0)
        rows = _verify(compiled, model.steps[0][1], schema)
    except Unsupported as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, scikit-learn's own path still serves
        return None, f"the check against scikit-learn failed: {type(exc).__name__}: {exc}"
    return CompiledFeatures(parts, compiled.estimator, rows), f"numpy, equal to scikit-learn's on {rows} probe rows"


def _parts_of(model: Any, schema: InputSchema | None) -> tuple[_Numbers | _OneHot, ...]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(model) is not Pipeline or len(model.steps) != 2 or type(model.steps[0][1]) is not ColumnTransformer:
        raise Unsupported("not a two-step Pipeline(ColumnTransformer, estimator)")
    if schema is None:
        raise Unsupported("the model has no signature (column types unknown)")
    specs = {spec.name: spec for spec in schema.columns}
    step = model.steps[0][1]
    if getattr(step, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
        raise Unsupported("the ColumnTransformer's output is set to a DataFrame")
    parts: list[_Numbers | _OneHot] = []
    for name, transformer, columns in step.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise Unsupported(f"transformer {name!r}: columns not given as a list of names")
        if not columns:
            continue
        kinds = {_kind(specs.get(column)) for column in columns}
        if len(kinds) != 1 or None in kinds:
            raise Unsupported(f"transformer {name!r}: columns of mixed or unknown types")
        kind = kinds.pop()
        if _passthrough(transformer) and kind == "number":
            parts.append(_Numbers(tuple(columns), None, None, None))  # the numbers as given, NaN kept
            continue
        steps = transformer.steps if type(transformer) is Pipeline else [(name, transformer)]
        parts.append(_part(name, [s for _, s in steps], tuple(columns), kind))
    if not parts:
        raise Unsupported("the ColumnTransformer outputs no column")
    return tuple(parts)


def _passthrough(transformer: Any) -> bool:
    """'passthrough', as given or as fitted (an identity FunctionTransformer)."""
    if isinstance(transformer, str):
        return transformer == "passthrough"
    return type(transformer).__name__ == "FunctionTransformer" and transformer.func is None


def _kind(spec: ColumnSpec | None) -> str | None:
    if spec is None:
        return None
    return "number" if spec.type in NUMERIC_TYPES else "text" if spec.type == "string" else None


def _part(name: str, steps: Sequence[Any], columns: tuple[str, ...], kind: str) -> _Numbers | _OneHot:
    kinds = [type(s).__name__ for s in steps]
    if kinds in (["SimpleImputer"], ["SimpleImputer", "StandardScaler"], ["StandardScaler"]) and kind == "number":
        imputer = steps[0] if kinds[0] == "SimpleImputer" else None
        scaler = steps[-1] if kinds[-1] == "StandardScaler" else None
        return _Numbers(columns, _fill(name, imputer), *_scaling(scaler))
    if kinds == ["SimpleImputer", "OneHotEncoder"] and kind == "text":
        return _one_hot(name, steps[1], columns, _text_fill(name, steps[0]))
    if kinds == ["OneHotEncoder"] and kind == "number":
        return _one_hot(name, steps[0], columns, None)
    raise Unsupported(f"transformer {name!r}: steps {' -> '.join(kinds)} on {kind} columns")


def _fill(name: str, imputer: Any) -> np.ndarray | None:
    if imputer is None:
        return None
    if imputer.strategy not in _IMPUTE or imputer.add_indicator or not _is_nan(imputer.missing_values):
        raise Unsupported(f"transformer {name!r}: SimpleImputer settings other than NaN -> a statistic")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(statistics).any():
        raise Unsupported(f"transformer {name!r}: a column was empty in training (the imputer drops it)")
    return statistics


def _scaling(scaler: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    if scaler is None:
        return None, None
    return (scaler.mean_ if scaler.with_mean else None), (scaler.scale_ if scaler.with_std else None)


def _text_fill(name: str, imputer: Any) -> str:
    if imputer.strategy != "constant" or imputer.add_indicator or not _is_nan(imputer.missing_values) \
            or not isinstance(imputer.fill_value, str):
        raise Unsupported(f"transformer {name!r}: a text imputer other than NaN -> a constant text")
    return imputer.fill_value


def _one_hot(name: str, encoder: Any, columns: tuple[str, ...], fill: str | None) -> _OneHot:
    if encoder.handle_unknown != "ignore" or encoder.drop is not None or encoder.sparse_output \
            or getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported(f"transformer {name!r}: a OneHotEncoder other than dense, no drop, unknown ignored")
    tables, nan_index, widths = [], [], []
    for categories in encoder.categories_:
        values = categories.tolist()
        if any(value is None for value in values):
            raise Unsupported(f"transformer {name!r}: None is a category (nulls were not imputed in training)")
        table = {value: i for i, value in enumerate(values) if not _is_nan(value)}
        nans = [i for i, value in enumerate(values) if _is_nan(value)]
        tables.append(table)
        nan_index.append(table.get(fill, -1) if fill is not None else nans[0] if nans else -1)
        widths.append(len(values))
    return _OneHot(columns, tuple(tables), tuple(nan_index), tuple(widths), encoder.dtype)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _verify(compiled: CompiledFeatures, step: Any, schema: InputSchema) -> int:
    """Transform probe batches both ways; raise Unsupported on the first difference; the rows checked."""
    import pandas as pd

    from mlgate.serving.frames import column_array

    specs = {spec.name: spec for spec in schema.columns}
    checked = 0
    for with_nulls in (True, False):
        values = _probe_values(compiled.parts, with_nulls)
        n_rows = max(len(v) for v in values.values())
        columns = {name: column_array(specs[name], [v[i % len(v)] for i in range(n_rows)])
                   for name, v in values.items()}
        for start, stop in ((0, n_rows), (0, 1)):  # the whole probe and a single row
            batch = {name: array[start:stop] for name, array in columns.items()}
            expected = step.transform(pd.DataFrame(batch, copy=False))
            got = compiled.transform(batch)
            if type(expected) is not np.ndarray or expected.dtype != got.dtype or expected.shape != got.shape \
                    or not np.array_equal(expected, got, equal_nan=True):
                raise Unsupported(f"differs from scikit-learn's transform on probe rows {start}..{stop - 1}")
            checked += stop - start
    return checked


def _probe_values(parts: Sequence[_Numbers | _OneHot], with_nulls: bool) -> dict[str, list[Any]]:
    """Per column: values that reach every branch of its part (cycled to the longest list)."""
    values: dict[str, list[Any]] = {}
    for part in parts:
        if isinstance(part, _Numbers):
            for i, name in enumerate(part.columns):
                centre = float(part.fill[i]) if part.fill is not None else 0.0
                values[name] = [round(centre), round(centre) + 1, 0, -3, 10**6] + ([None] if with_nulls else [])
            continue
        for name, table in zip(part.columns, part.tables, strict=True):
            seen = list(table)
            unseen: Any = UNSEEN_TEXT if all(isinstance(v, str) for v in seen) else max(seen, default=0) + 1
            values[name] = seen + [unseen] + ([None] if with_nulls else [])
    return values
