"""The data schema edge cases are generated from: the model signature plus the training data's ranges.

The signature says which columns a request must carry and their MLflow types; the training data says
what normal looks like (numeric min/max, observed categories) and gives a real row to mutate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

NUMERIC_TYPES = frozenset({"integer", "long", "float", "double"})
INTEGER_TYPES = frozenset({"integer", "long"})

Kind = Literal["number", "string", "boolean", "other"]


@dataclass(frozen=True)
class FeatureSpec:
    """One input column: its signature type and what the training data showed for it."""

    name: str
    type: str
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[Any, ...] = ()
    categorical: bool = False  # declared categorical: a category whatever its type (0/1 flags, codes)

    @property
    def kind(self) -> Kind:
        if self.type in NUMERIC_TYPES:
            return "number"
        if self.type in ("string", "boolean"):
            return self.type  # type: ignore[return-value]
        return "other"

    @property
    def integer(self) -> bool:
        return self.type in INTEGER_TYPES

    def as_type(self, value: float) -> int | float:
        """A number in this column's JSON form: whole for integer columns."""
        return int(round(value)) if self.integer else float(value)


@dataclass(frozen=True)
class DataSchema:
    """Every input column in signature order, a real row to mutate, and the model's output classes."""

    features: tuple[FeatureSpec, ...]
    base_row: dict[str, Any]
    classes: tuple[Any, ...] | None = None  # None for a regressor: predictions are finite numbers
    proba: bool = False  # the model has predict_proba: probability cases are generated
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.features]


def schema_from_frame(
    frame: pd.DataFrame,
    signature_columns: Sequence[Mapping[str, Any]],
    classes: Sequence[Any] | None,
    proba: bool | None = None,
    categorical: Sequence[str] = (),
) -> DataSchema:
    """Build the schema from the signature's input columns and the training rows; `proba` defaults
    to whether there are classes. Columns in `categorical` are categories whatever their type: a
    number-coded one gets its observed values (for an unseen-category case) besides its range.

    Raises ValueError naming the problem when the signature is empty, not column-based, or names a
    column the training data does not have.
    """
    if not signature_columns:
        raise ValueError("the model has no input signature; edge cases are generated from it")
    specs = tuple(_feature_spec(frame, column, set(categorical)) for column in signature_columns)
    base_row, note = _base_row(frame, specs)
    labels = tuple(_native(c) for c in classes) if classes is not None else None
    has_proba = labels is not None if proba is None else proba
    return DataSchema(specs, base_row, labels, has_proba, (note,) if note else ())


def _feature_spec(frame: pd.DataFrame, column: Mapping[str, Any], categorical: set[str]) -> FeatureSpec:
    name, kind = column.get("name"), column.get("type")
    if not name or kind in (None, "tensor"):
        raise ValueError(f"signature input {dict(column)} is not a named column; only column signatures are supported")
    if name not in frame.columns:
        raise ValueError(f"signature column {name!r} is not in the training data")
    spec = FeatureSpec(str(name), str(kind), bool(column.get("required", True)), categorical=name in categorical)
    values = frame[name].dropna()
    if spec.kind == "number" and len(values):
        numbers = pd.to_numeric(values, errors="coerce").dropna()
        numbers = numbers[np.isfinite(numbers.to_numpy(dtype=float))]
        if len(numbers):
            codes = tuple(sorted({spec.as_type(v) for v in numbers.unique()})) if spec.categorical else ()
            return replace(spec, minimum=float(numbers.min()), maximum=float(numbers.max()), categories=codes)
    if spec.kind == "string":
        return replace(spec, categories=tuple(sorted(map(str, values.unique()))))
    return spec


def _base_row(frame: pd.DataFrame, specs: tuple[FeatureSpec, ...]) -> tuple[dict[str, Any], str]:
    """The first training row without nulls; else each column's median or most frequent value."""
    names = [spec.name for spec in specs]
    complete = frame[names].dropna()
    if len(complete):
        row = complete.iloc[0]
        return {spec.name: json_value(row[spec.name], spec) for spec in specs}, ""
    typical = {}
    for spec in specs:
        values = frame[spec.name].dropna()
        if spec.kind == "number" and len(values):
            typical[spec.name] = json_value(float(values.median()), spec)
        else:
            typical[spec.name] = json_value(values.mode().iloc[0], spec) if len(values) else None
    return typical, "no training row is complete: the base row uses each column's median or most frequent value"


def json_value(value: Any, spec: FeatureSpec | None = None) -> Any:
    """A value as JSON carries it: null for missing, int for integer columns, plain Python scalars."""
    value = _native(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec is not None and spec.kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return spec.as_type(value) if math.isfinite(value) else float(value)
    if spec is not None and spec.kind == "string" and not isinstance(value, str):
        return str(value)
    return value


def _native(value: Any) -> Any:
    if value is pd.NA or value is pd.NaT:
        return None
    return value.item() if isinstance(value, np.generic) else value
