"""Signature checks: what reaches the model (nulls, NaN, integers as floats) and what is refused."""

from __future__ import annotations

import math

import pytest

from mlgate.serving.protocol import ParsedInput, parse_csv
from mlgate.serving.request_errors import RequestError
from mlgate.serving.validation import ColumnSpec, InputSchema, validate

SCHEMA = InputSchema((
    ColumnSpec("minutes", "double"),
    ColumnSpec("calls", "long"),
    ColumnSpec("plan", "string"),
    ColumnSpec("active", "boolean"),
    ColumnSpec("note", "string", required=False),
))


def _input(**columns: list) -> ParsedInput:
    n_rows = len(next(iter(columns.values()))) if columns else 0
    return ParsedInput(tuple(columns), tuple(columns.values()), n_rows)


def _good(**overrides: list) -> ParsedInput:
    base = {"minutes": [1.5, 2.0], "calls": [3, 4], "plan": ["yes", "no"], "active": [True, False]}
    return _input(**{**base, **overrides})


def _refusal(parsed: ParsedInput, **options) -> RequestError:
    with pytest.raises(RequestError) as caught:
        validate(parsed, SCHEMA, options.pop("max_rows", 100), **options)
    return caught.value


def test_valid_rows_pass_in_signature_order_without_extra_columns() -> None:
    batch = validate(_good(extra=["x", "y"]), SCHEMA, max_rows=100)
    assert list(batch.columns) == ["minutes", "calls", "plan", "active"]
    assert batch.n_rows == 2


def test_integers_in_a_float_column_and_nulls_and_nan_reach_the_model() -> None:
    batch = validate(_good(minutes=[3, None], calls=[None, float("nan")], plan=[None, float("nan")],
                           active=[None, True]), SCHEMA, max_rows=100)
    assert batch.columns["minutes"] == [3, None]
    assert batch.columns["calls"][0] is None and math.isnan(batch.columns["calls"][1])
    assert batch.columns["plan"] == [None, None]


def test_unseen_categories_and_odd_text_are_just_strings() -> None:
    batch = validate(_good(plan=["", "x" * 10_000]), SCHEMA, max_rows=100)
    assert batch.columns["plan"][1] == "x" * 10_000


def test_missing_required_column_is_named() -> None:
    parsed = _input(minutes=[1.0], plan=["yes"], active=[True])
    error = _refusal(parsed)
    assert (error.status, error.code, error.column) == (400, "missing_column", "calls")
    assert "calls" in error.message


def test_missing_optional_column_is_fine() -> None:
    assert "note" not in validate(_good(), SCHEMA, max_rows=100).columns


@pytest.mark.parametrize(("column", "values", "expected_type"), [
    ("minutes", [1.0, "abc"], "double"),
    ("calls", ["3", 4], "long"),
    ("calls", [True, 4], "long"),
    ("minutes", [[1.0], 2.0], "double"),
    ("plan", ["yes", 5], "string"),
    ("plan", [{"a": 1}, "no"], "string"),
    ("active", ["true", False], "boolean"),
])
def test_wrong_type_names_the_column_and_expected_type(column: str, values: list, expected_type: str) -> None:
    error = _refusal(_good(**{column: values}))
    assert (error.status, error.code, error.column) == (400, "wrong_type", column)
    assert expected_type in error.message and repr(column) in error.message


@pytest.mark.parametrize("value", [math.inf, -math.inf, 10**400])
def test_non_finite_numbers_are_refused_with_the_column(value: float) -> None:
    error = _refusal(_good(minutes=[1.0, value]))
    assert (error.status, error.code, error.column) == (400, "non_finite", "minutes")


def test_extra_columns_can_be_rejected() -> None:
    error = _refusal(_good(extra=["x", "y"]), extra_columns="reject")
    assert (error.status, error.code, error.column) == (400, "extra_column", "extra")


def test_empty_batch_is_a_400_and_too_many_rows_a_413() -> None:
    empty = _refusal(_input(minutes=[], calls=[], plan=[], active=[]))
    assert (empty.status, empty.code) == (400, "empty_batch")
    big = _refusal(_good(), max_rows=1)
    assert (big.status, big.code) == (413, "too_many_rows")


def test_csv_text_is_converted_by_column_type() -> None:
    parsed = parse_csv("minutes,calls,plan,active\n1.5,3,yes,true\n,NaN,,0\n")
    batch = validate(parsed, SCHEMA, max_rows=100)
    assert batch.columns["minutes"] == [1.5, None]
    assert batch.columns["calls"] == [3.0, None]  # "NaN" is one of pandas' null tokens
    assert batch.columns["plan"] == ["yes", None]
    assert batch.columns["active"] == [True, False]


@pytest.mark.parametrize(("text", "code"), [("abc", "wrong_type"), ("inf", "non_finite")])
def test_csv_bad_number_names_the_column(text: str, code: str) -> None:
    parsed = parse_csv(f"minutes,calls,plan,active\n{text},3,yes,true\n")
    with pytest.raises(RequestError) as caught:
        validate(parsed, SCHEMA, max_rows=100)
    assert (caught.value.code, caught.value.column) == (code, "minutes")


def test_without_a_signature_columns_pass_through_but_must_be_scalars() -> None:
    batch = validate(_input(a=[1, "x"]), None, max_rows=10)
    assert batch.columns == {"a": [1, "x"]}
    with pytest.raises(RequestError):
        validate(_input(a=[[1], 2]), None, max_rows=10)


def test_tensor_signatures_are_refused_when_loading() -> None:
    with pytest.raises(ValueError, match="column-based"):
        InputSchema.from_signature_inputs([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}])
