"""Checking parsed request columns against the model signature, before anything reaches the model.

Nulls (and NaN) pass: the model pipeline imputes them. Unseen categories pass: the encoder ignores
them. What the pipeline cannot take is refused with a 400 naming the column: a missing required
column, a value of the wrong type, a non-finite number (sklearn rejects inf), an empty batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from mlgate.serving.protocol import ParsedInput, lone_surrogate_at
from mlgate.serving.request_errors import RequestError, bad_request, preview, shown, too_large

NUMERIC_TYPES = frozenset({"integer", "long", "float", "double"})
INTEGER_TYPES = frozenset({"integer", "long"})
_KINDS = {**dict.fromkeys(NUMERIC_TYPES, "number"), "string": "string", "boolean": "boolean"}
_CSV_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
_SCALARS = (str, int, float, bool, type(None))

Kind = Literal["number", "string", "boolean", "any"]


@dataclass(frozen=True)
class ColumnSpec:
    """One named input of the model signature, with its MLflow data type."""

    name: str
    type: str
    required: bool = True

    @property
    def kind(self) -> Kind:
        """How values are checked: binary and datetime columns are passed through as given."""
        return _KINDS.get(self.type, "any")  # type: ignore[return-value]


@dataclass(frozen=True)
class InputSchema:
    """The model's column-based input signature."""

    columns: tuple[ColumnSpec, ...]

    @classmethod
    def from_signature_inputs(cls, inputs: list[dict[str, Any]]) -> InputSchema:
        """Build from MLflow's `signature.inputs` JSON entries; tensor signatures are refused."""
        specs = []
        for entry in inputs:
            if "name" not in entry or entry.get("type") in (None, "tensor"):
                raise ValueError("only column-based signatures with named inputs are supported")
            specs.append(ColumnSpec(str(entry["name"]), str(entry["type"]), bool(entry.get("required", True))))
        return cls(tuple(specs))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.columns)


@dataclass(frozen=True)
class FeatureBatch:
    """One request's rows, checked and normalised: each column a list of n_rows values (None = null)."""

    columns: dict[str, list[Any]]
    n_rows: int


def validate(
    parsed: ParsedInput,
    schema: InputSchema | None,
    max_rows: int,
    extra_columns: Literal["ignore", "reject"] = "ignore",
    strict_integers: bool = False,
) -> FeatureBatch:
    """Check a parsed request against the signature; raise RequestError (400/413) naming the problem.

    `strict_integers` refuses nulls and fractions in integer columns: MLflow's pyfunc schema
    enforcement rejects them, whereas an sklearn pipeline imputes them like any number.
    """
    if parsed.n_rows == 0:
        raise bad_request("empty_batch", "the request has no rows")
    if parsed.n_rows > max_rows:
        raise too_large("too_many_rows", f"{parsed.n_rows} rows exceed the limit of {max_rows} per request")
    given = dict(zip(parsed.columns, parsed.data, strict=True))
    if schema is None:
        specs = [ColumnSpec(name, "any") for name in parsed.columns]
    else:
        _check_columns(given, schema, extra_columns)
        specs = [spec for spec in schema.columns if spec.name in given]
    columns = {spec.name: check_values(spec, given[spec.name], parsed.from_text) for spec in specs}
    if strict_integers:
        for spec in specs:
            if spec.type in INTEGER_TYPES:
                _check_whole_numbers(spec, columns[spec.name])
    return FeatureBatch(columns, parsed.n_rows)


def _check_whole_numbers(spec: ColumnSpec, values: list[Any]) -> None:
    for row, value in enumerate(values):
        if value is None or value != value:
            message = f"column {spec.name!r} is {spec.type}: this model's flavor takes no nulls there (row {row})"
            raise bad_request("null_not_allowed", message, spec.name)
        if type(value) is float and not value.is_integer():
            message = f"column {spec.name!r} expects {spec.type} (a whole number); got {preview(value)} at row {row}"
            raise bad_request("wrong_type", message, spec.name)


def _check_columns(given: dict[str, list[Any]], schema: InputSchema, extra_columns: str) -> None:
    missing = [spec.name for spec in schema.columns if spec.required and spec.name not in given]
    if missing:
        raise bad_request("missing_column", f"missing required column(s): {shown(missing)}", missing[0])
    if extra_columns == "reject":
        known = set(schema.names)
        extra = [name for name in given if name not in known]
        if extra:
            raise bad_request("extra_column", f"column(s) not in the model signature: {shown(extra)}", extra[0])


def check_values(spec: ColumnSpec, values: list[Any], from_text: bool) -> list[Any]:
    """The column's values normalised for its kind (CSV text converted); RequestError on a bad one."""
    if from_text:
        return _TEXT_READERS[spec.kind](spec, values)
    return _JSON_CHECKERS[spec.kind](spec, values)


def _json_numbers(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    for row, value in enumerate(values):
        kind = type(value)
        if kind is float:
            if math.isinf(value):
                raise _non_finite(spec, value, row)
        elif kind is int:
            if value.bit_length() > 1000 and math.isinf(_as_float(value)):
                raise _non_finite(spec, value, row)
        elif value is not None:
            raise _wrong_type(spec, value, row)
    return values


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _json_strings(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    out = values
    for row, value in enumerate(values):
        if type(value) is str:
            _check_text(spec, value, row)
            continue
        if value is None:
            continue
        if type(value) is float and math.isnan(value):
            out = out if out is not values else list(values)
            out[row] = None  # NaN in a string column is a null, as in pandas
            continue
        raise _wrong_type(spec, value, row)
    return out


def _json_booleans(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    for row, value in enumerate(values):
        if type(value) is not bool and value is not None:
            raise _wrong_type(spec, value, row)
    return values


def _json_any(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    for row, value in enumerate(values):
        if not isinstance(value, _SCALARS):
            raise _wrong_type(spec, value, row)
        if type(value) is str:
            _check_text(spec, value, row)
    return values


def _check_text(spec: ColumnSpec, value: str, row: int) -> None:
    """Text the model can encode: a lone surrogate (valid JSON, invalid Unicode) is a 400, not a 500."""
    at = lone_surrogate_at(value)
    if at is not None:
        message = (f"column {spec.name!r} has invalid Unicode at row {row} (a lone surrogate "
                   f"{ascii(value[at])} at character {at}); send valid UTF-8 text or null")
        raise bad_request("invalid_text", message, spec.name)


def _text_numbers(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for row, text in enumerate(values):
        if text is None:
            out.append(None)
            continue
        try:
            number = float(text)
        except ValueError:
            raise _wrong_type(spec, text, row) from None
        if math.isinf(number):
            raise _non_finite(spec, text, row)
        out.append(number)
    return out


def _text_booleans(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for row, text in enumerate(values):
        flag = None if text is None else _CSV_BOOLEANS.get(text.strip().lower())
        if text is not None and flag is None:
            raise _wrong_type(spec, text, row)
        out.append(flag)
    return out


def _text_as_is(spec: ColumnSpec, values: list[Any]) -> list[Any]:
    for row, value in enumerate(values):
        if type(value) is str:
            _check_text(spec, value, row)
    return values


def _wrong_type(spec: ColumnSpec, value: Any, row: int) -> RequestError:
    expected = {"number": "a number", "string": "a string", "boolean": "true or false", "any": "a scalar"}
    message = (
        f"column {spec.name!r} expects {spec.type} ({expected[spec.kind]}) or null;"
        f" got {preview(value)} ({type(value).__name__}) at row {row}"
    )
    return bad_request("wrong_type", message, spec.name)


def _non_finite(spec: ColumnSpec, value: Any, row: int) -> RequestError:
    message = f"column {spec.name!r} has the non-finite value {preview(value)} at row {row}; use a finite number or null"
    return bad_request("non_finite", message, spec.name)


_JSON_CHECKERS = {"number": _json_numbers, "string": _json_strings, "boolean": _json_booleans, "any": _json_any}
_TEXT_READERS = {"number": _text_numbers, "string": _text_as_is, "boolean": _text_booleans, "any": _text_as_is}
