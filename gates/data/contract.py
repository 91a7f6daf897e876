"""The data contract: derive an expectation suite from training data, and judge validation results.

The suite is plain Great Expectations 1.x JSON ({"name", "expectations": [{"type", "kwargs", "meta"}]}).
GX 1.x has no profiler, so `suggest_suite` writes the rules itself from a DataFrame. Running GX is the
stage's job; `contract_checks` turns GX's result dictionaries into Checks named
`contract.<split>.<expectation>.<column>`, with observed vs expected and bounded examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlgate.gates.config import DataGateConfig
from mlgate.gates.data.contract_results import expectation_check
from mlgate.gates.result import Check

# GX 1.x's in_type_list does not recognise pandas 3's default `str` dtype (StringDtype(na_value=nan)):
# it reports "str" yet never matches. `expect_column_values_to_be_of_type` with "str" accepts both that
# dtype and object columns holding str values, so text columns use it; numeric ones use the type list.
TEXT_TYPE = "str"
NUMERIC_TYPES = ["int64", "int32", "float64", "float32"]


@dataclass(frozen=True)
class ColumnRoles:
    """What each column is for: features by kind, the target, and key columns (ids, not features)."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    target: str | None = None
    keys: tuple[str, ...] = ()


def suggest_suite(frame: pd.DataFrame, roles: ColumnRoles, config: DataGateConfig, name: str,
                  batch_rows: int | None = None) -> dict[str, Any]:
    """A suite derived from `frame` (the training split): columns, types, null rates, value sets, ranges.

    `batch_rows`: rows of the smallest batch the suite will judge. A range lets `range_outlier_share`
    of rows fall outside it, and at least one row: in a batch under 1 / share rows, one rare value
    would otherwise be a whole failed expectation.
    """
    expectations = [
        _expectation("expect_table_columns_to_match_ordered_list", column_list=[str(c) for c in frame.columns]),
        _expectation("expect_table_row_count_to_be_between", min_value=config.min_batch_rows,
                     max_value=config.max_batch_rows),
    ]
    for column in frame.columns:
        expectations.extend(column_expectations(frame[column], roles, config, batch_rows))
    meta = {"generated_by": "mlgate gate data --suggest", "rows": int(len(frame))}
    if batch_rows:
        meta["smallest_batch_rows"] = int(batch_rows)
    return {"name": name, "expectations": expectations, "meta": meta}


def outlier_share(config: DataGateConfig, batch_rows: int | None) -> float:
    """The share of a batch a suggested range tolerates outside it: the configured share, one row at least."""
    share = config.range_outlier_share
    return max(share, 1.0 / batch_rows) if batch_rows and share > 0 else share


def column_expectations(series: pd.Series, roles: ColumnRoles, config: DataGateConfig,
                        batch_rows: int | None = None) -> list[dict[str, Any]]:
    """The rules of one column: present, typed, bounded null share, then its values by role."""
    column = str(series.name)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    rules = [_expectation("expect_column_to_exist", column=column), _type_rule(column, series, numeric)]
    is_key = column in roles.keys
    null_share = float(series.isna().mean()) if len(series) else 0.0
    allowed_nulls = 0.0 if is_key else min(1.0, null_share + config.null_rate_slack)
    rules.append(_expectation("expect_column_values_to_not_be_null", column=column,
                              mostly=_round(1.0 - allowed_nulls)))
    if is_key:
        rules.append(_expectation("expect_column_values_to_be_unique", column=column))
    elif column in roles.numeric or (column == roles.target and numeric):
        rules.extend(_range_rule(column, series, config.range_tolerance, outlier_share(config, batch_rows)))
    elif column in roles.categorical or column == roles.target:
        values = sorted({_plain(v) for v in series.dropna().unique()}, key=str)
        rules.append(_expectation("expect_column_values_to_be_in_set", column=column, value_set=values))
    return rules


def _type_rule(column: str, series: pd.Series, numeric: bool) -> dict[str, Any]:
    if numeric:
        return _expectation("expect_column_values_to_be_in_type_list", column=column, type_list=NUMERIC_TYPES)
    if pd.api.types.is_bool_dtype(series):
        return _expectation("expect_column_values_to_be_of_type", column=column, type_="bool")
    return _expectation("expect_column_values_to_be_of_type", column=column, type_=TEXT_TYPE)


def _range_rule(column: str, series: pd.Series, tolerance: float, share: float) -> list[dict[str, Any]]:
    """Observed [min, max] widened by `tolerance` x range (never below 0 for a column that never was),
    with `share` of rows allowed outside: real batches hold rare values beyond training's."""
    values = pd.to_numeric(series, errors="coerce").dropna()
    if values.empty:
        return []
    low, high = float(values.min()), float(values.max())
    pad = tolerance * (high - low if high > low else max(abs(high), 1.0))
    lower = low - pad if low < 0 else max(0.0, low - pad)
    return [_expectation("expect_column_values_to_be_between", column=column,
                         min_value=_round(lower), max_value=_round(high + pad),
                         mostly=_floor(1.0 - share) if share > 0 else None)]


def _expectation(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": {k: v for k, v in kwargs.items() if v is not None}, "meta": {}}


def _round(value: float) -> float | int:
    rounded = round(value, 6)
    return int(rounded) if float(rounded).is_integer() else rounded


def _floor(value: float) -> float | int:
    """Rounded down to 6 decimals: a `mostly` never stricter than the share it was derived from."""
    floored = math.floor(value * 1e6) / 1e6
    return int(floored) if floored.is_integer() else floored


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy scalars to Python)."""
    return value.item() if hasattr(value, "item") else value


def contract_checks(split: str, results: Sequence[dict[str, Any]], max_examples: int,
                    frame: pd.DataFrame | None = None) -> list[Check]:
    """One Check per evaluated expectation of `split`; a result GX could not evaluate is ERROR.

    Expectations on a column that is missing or of the wrong type cannot be evaluated, and that is a
    contract failure already reported by the structural check, so they are FAIL with a pointer to it.
    """
    broken = _structurally_broken_columns(results)
    return [expectation_check(split, result, broken, max_examples, frame) for result in results]


def _structurally_broken_columns(results: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Columns whose existence or type expectation failed -> the reason, in words."""
    broken: dict[str, str] = {}
    for result in results:
        config = result.get("expectation_config") or {}
        column = (config.get("kwargs") or {}).get("column")
        if column is None or result.get("success"):
            continue
        kind = config.get("type", "")
        if kind == "expect_column_to_exist":
            broken[column] = f"column '{column}' is missing"
        elif kind in ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"):
            observed = (result.get("result") or {}).get("observed_value")
            broken.setdefault(column, f"column '{column}' has type {observed}, not the contract's type")
    return broken
