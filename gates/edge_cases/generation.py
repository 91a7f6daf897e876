"""Generating the edge cases of a model from its data schema, each with the outcome a correct server gives.

Per feature: null, NaN, +/-inf, below min, above max, zero, unseen category, empty string, a
10,000-character string, non-ASCII text and a wrong type, expected `ok` where the value is valid for
the column's kind and `client_error` naming the column where it is not. Per request: empty batch,
1 row, `max_batch_rows` rows, one row too many, missing, extra, shuffled and duplicate columns,
malformed JSON, wrong content type, an oversized body, each scoring format, CSV and probabilities.
Then the property-based rows (gates/edge_cases/property_rows.py). Bodies are MLflow's `dataframe_split` unless the case is about format.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mlgate.gates.config import EdgeCasesConfig
from mlgate.gates.edge_cases.data_schema import DataSchema, FeatureSpec
from mlgate.gates.edge_cases.decide import Case, Expect, HttpRequest
from mlgate.gates.edge_cases.property_rows import property_rows

LONG_STRING = "x" * 10_000
NON_ASCII = "Zürich – Ωμέγα – 東京 – 🚀"
UNSEEN_CATEGORY = "__mlgate_unseen_category__"
EXTRA_COLUMN = "mlgate_extra_column"
MAX_OVERSIZED_BODY = 64 * 1024 * 1024  # above this the oversized-body case is not built in memory


@dataclass(frozen=True)
class ServerLimits:
    """What the served configuration allows (the `serving:` section)."""

    max_batch_rows: int
    max_body_bytes: int
    extra_columns: Literal["ignore", "reject"] = "ignore"


def generate_cases(schema: DataSchema, limits: ServerLimits, config: EdgeCasesConfig) -> list[Case]:
    """Every case of the gate, in a stable order (the same inputs give the same cases)."""
    build = _CaseBuilder(schema)
    cases = [case for spec in schema.features for case in feature_cases(build, spec)]
    cases += request_cases(build, limits, config.seed)
    output, query = ("proba", "proba=true") if schema.proba else ("labels", "")
    for number, row in enumerate(property_rows(schema, config.property_rows, config.seed)):
        cases.append(build.case(f"property.row_{number:03d}", build.split(schema.names, [row], query), "ok",
                                "a valid row drawn at random (seeded), boundary values mixed in",
                                output=output, sent={"row": row}))
    return cases


class _CaseBuilder:
    """Bodies built from the schema's base row; `case` fills in the model's classes."""

    def __init__(self, schema: DataSchema) -> None:
        self.schema = schema

    def split(self, columns: list[str], rows: list[dict[str, Any]] | list[list[Any]], query: str = "") -> HttpRequest:
        data = [row if isinstance(row, list) else [row[c] for c in columns] for row in rows]
        return HttpRequest(_json_bytes({"dataframe_split": {"columns": columns, "data": data}}), query=query)

    def with_value(self, column: str, value: Any) -> HttpRequest:
        return self.split(self.schema.names, [{**self.schema.base_row, column: value}])

    def case(self, name: str, request: HttpRequest, expect: Expect, description: str, **fields: Any) -> Case:
        return Case(name, request, expect, description, classes=self.schema.classes, **fields)


# (case suffix, description, value of a spec) for the per-feature cases, in the order.
_VALUES: list[tuple[str, str, Callable[[FeatureSpec], Any]]] = [
    ("null", "null", lambda spec: None),
    ("nan", "NaN (a JSON NaN literal, as Python and MLflow write it)", lambda spec: float("nan")),
    ("pos_inf", "+Infinity", lambda spec: float("inf")),
    ("neg_inf", "-Infinity", lambda spec: float("-inf")),
    ("below_min", "below the training minimum by the observed range", lambda spec: _outside(spec, -1)),
    ("above_max", "above the training maximum by the observed range", lambda spec: _outside(spec, +1)),
    ("zero", "zero", lambda spec: spec.as_type(0)),
    ("unseen_category", "a category never seen in training", lambda spec: _unseen(spec)),
    ("empty_string", "an empty string", lambda spec: ""),
    ("long_string", "a 10,000-character string", lambda spec: LONG_STRING),
    ("non_ascii", "non-ASCII text", lambda spec: NON_ASCII),
    ("wrong_type", "a value of the wrong JSON type", lambda spec: _wrong_type(spec)),
]
# Which cases apply to a kind, and whether the value is valid for it.
_VALID = {
    "number": {"null": True, "nan": True, "pos_inf": False, "neg_inf": False, "below_min": True, "above_max": True,
               "zero": True, "empty_string": False, "long_string": False, "non_ascii": False, "wrong_type": False},
    "string": {"null": True, "nan": True, "pos_inf": False, "neg_inf": False, "unseen_category": True,
               "empty_string": True, "long_string": True, "non_ascii": True, "wrong_type": False},
    "boolean": {"null": True, "pos_inf": False, "neg_inf": False, "empty_string": False, "wrong_type": False},
    "other": {"null": True, "wrong_type": False},
}


def feature_cases(build: _CaseBuilder, spec: FeatureSpec) -> list[Case]:
    """The per-feature value cases that apply to the column's kind (and to a number-coded category)."""
    applicable = _VALID[spec.kind]
    if spec.kind == "number" and spec.categorical and spec.categories:
        applicable = {**applicable, "unseen_category": True}
    cases = []
    for suffix, description, value_of in _VALUES:
        if suffix not in applicable or (suffix in ("below_min", "above_max") and spec.minimum is None):
            continue
        value = value_of(spec)
        expect: Expect = "ok" if applicable[suffix] else "client_error"
        cases.append(build.case(f"feature.{spec.name}.{suffix}", build.with_value(spec.name, value), expect,
                                f"{spec.name} ({spec.type}) = {description}",
                                column=spec.name if expect == "client_error" else None,
                                sent={"column": spec.name, "value": shown_value(value)}))
    return cases


def shown_value(value: Any) -> Any:
    """A value as the report shows it: JSON-safe, long strings cut with their length."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan, inf, -inf: JSON has no literal for them
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:20]}... ({len(value)} characters)"
    return value


def _outside(spec: FeatureSpec, direction: int) -> int | float:
    low, high = spec.minimum or 0.0, spec.maximum or 0.0  # only called when the range is known
    width = max(high - low, 1.0)
    return spec.as_type(high + width if direction > 0 else low - width)


def _unseen(spec: FeatureSpec) -> Any:
    """A category the training data never had: a marker string, or for a number-coded category the
    next whole number above its codes."""
    if spec.kind != "number":
        return UNSEEN_CATEGORY
    return spec.as_type(math.floor(max(spec.categories)) + 1)


def _wrong_type(spec: FeatureSpec) -> Any:
    """A JSON value no column of this kind accepts: a boolean for numbers (bool is not a number in
    JSON), a number for strings, an object otherwise."""
    return {"number": True, "string": 12345, "boolean": 1.5}.get(spec.kind, {"nested": [1, 2]})


def request_cases(build: _CaseBuilder, limits: ServerLimits, seed: int) -> list[Case]:
    """Cases about the request as a whole rather than one value."""
    schema, names, base = build.schema, build.schema.names, build.schema.base_row
    first = next((s.name for s in schema.features if s.required), names[0])
    shuffled = names[:]
    random.Random(seed).shuffle(shuffled)
    if shuffled == names:
        shuffled.reverse()  # a shuffle may leave few columns in place; the case needs another order
    extra_expect: Expect = "ok" if limits.extra_columns == "ignore" else "client_error"
    cases = [
        build.case("request.empty_batch", build.split(names, []), "client_error", "a batch with no rows"),
        build.case("request.one_row", build.split(names, [base]), "ok", "one valid row"),
        *_batch_size_cases(build, limits),
        build.case("request.missing_column", build.split([n for n in names if n != first], [base]), "client_error",
                   f"required column {first!r} left out", column=first),
        build.case("request.extra_column", build.split([*names, EXTRA_COLUMN], [[*_values(base, names), 1]]),
                   extra_expect, f"an extra column {EXTRA_COLUMN!r} (serving.extra_columns: {limits.extra_columns})",
                   column=EXTRA_COLUMN if extra_expect == "client_error" else None),
        build.case("request.shuffled_columns", build.split(shuffled, [base]), "ok", "columns in a shuffled order"),
        build.case("request.duplicate_column", build.split([*names, first], [[*_values(base, names), base[first]]]),
                   "client_error", f"column {first!r} given twice", column=first),
        build.case("request.malformed_json", HttpRequest(build.split(names, [base]).body[:-7]), "client_error",
                   "a truncated JSON body"),
        build.case("request.wrong_content_type", HttpRequest(build.split(names, [base]).body, "text/plain"),
                   "client_error", "a JSON body sent as text/plain", status=415),
    ]
    return cases + _oversized_body(build, limits) + _format_cases(build)


def _batch_size_cases(build: _CaseBuilder, limits: ServerLimits) -> list[Case]:
    names, base, size = build.schema.names, build.schema.base_row, limits.max_batch_rows
    full, over = build.split(names, [base] * size), build.split(names, [base] * (size + 1))
    if len(full.body) > limits.max_body_bytes:  # the body limit binds first: both are too large
        return [build.case("request.max_batch_rows", full, "client_error",
                           f"{size} rows, a body over serving.max_body_bytes", status=413),
                build.case("request.too_many_rows", over, "client_error", f"{size + 1} rows", status=413)]
    return [build.case("request.max_batch_rows", full, "ok", f"{size} rows (serving.max_batch_rows)", rows=size),
            build.case("request.too_many_rows", over, "client_error", f"{size + 1} rows, one over the limit",
                       status=413)]


def _oversized_body(build: _CaseBuilder, limits: ServerLimits) -> list[Case]:
    if limits.max_body_bytes >= MAX_OVERSIZED_BODY:
        return []
    body = build.split(build.schema.names, [build.schema.base_row]).body
    padded = body + b" " * (limits.max_body_bytes + 1 - len(body))  # whitespace: still valid JSON
    return [build.case("request.body_too_large", HttpRequest(padded), "client_error",
                       f"a {len(padded)}-byte body, one over serving.max_body_bytes", status=413)]


def _format_cases(build: _CaseBuilder) -> list[Case]:
    base, names = build.schema.base_row, build.schema.names
    bodies = {"dataframe_records": [base], "instances": [base], "inputs": {n: [base[n]] for n in names}}
    cases = [build.case(f"request.format_{key}", HttpRequest(_json_bytes({key: value})), "ok",
                        f"one row in MLflow's {key} format") for key, value in bodies.items()]
    cases.append(build.case("request.csv", HttpRequest(_csv_bytes(names, base), "text/csv"), "ok",
                            "one row as CSV with a header"))
    if build.schema.proba:
        cases.append(build.case("request.proba", build.split(names, [base], "proba=true"), "ok",
                                "one row with ?proba=true", output="proba"))
    return cases


def _values(row: dict[str, Any], names: list[str]) -> list[Any]:
    return [row[name] for name in names]


def _json_bytes(document: Any) -> bytes:
    # allow_nan: NaN and Infinity are written as the literals Python and MLflow clients send.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode("utf-8")


def _csv_bytes(names: list[str], row: dict[str, Any]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([names, ["" if row[n] is None else row[n] for n in names]])
    return buffer.getvalue().encode("utf-8")
