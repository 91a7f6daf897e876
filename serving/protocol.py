"""MLflow's scoring protocol: a request body and its content type, parsed into named columns.

Mirrors `mlflow.pyfunc.scoring_server`: JSON with exactly one of `dataframe_split`,
`dataframe_records`, `instances`, `inputs` (other top-level keys such as `params` are ignored),
or CSV with a header row. JSON is read with `json.loads`, like MLflow, so the literals `NaN` and
`Infinity` are accepted; duplicate keys are an error instead of silently keeping the last one.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from mlgate.serving.request_errors import RequestError, bad_request, shown

# What a request id may be (X-Request-Id, and the request_id of feedback that refers to one).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def lone_surrogate_at(text: str) -> int | None:
    """Index of the first lone surrogate (valid JSON, invalid Unicode: models and encoders fail on it)."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")

# pandas.read_csv's default missing-value tokens, which `mlflow models serve` inherits for CSV.
CSV_NULLS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})


@dataclass(frozen=True)
class ParsedInput:
    """Request rows held by column: `data[i]` are the `n_rows` values of `columns[i]`.

    `from_text` marks CSV input, whose values are strings still to be read by column type.
    """

    columns: tuple[str, ...]
    data: tuple[list[Any], ...]
    n_rows: int
    from_text: bool = False


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


@functools.lru_cache(maxsize=64)
def media_type_of(content_type: str | None) -> str:
    """The request's media type, or a 415 RequestError for anything the protocol does not speak.
    Cached: clients send a handful of distinct values, and every request asks twice."""
    if not content_type:
        raise _unsupported(f"Content-Type is required: {JSON_TYPE} or {CSV_TYPE}")
    mime, *params = [part.strip() for part in content_type.split(";")]
    pairs = (p.partition("=") for p in params if p)
    options = {key.strip().lower(): value.strip().strip('"').lower() for key, _, value in pairs}
    if options.get("charset", "utf-8") != "utf-8":
        raise _unsupported("the server only accepts UTF-8 bodies")
    if unknown := sorted(set(options) - {"charset"}):
        raise _unsupported(f"unknown Content-Type parameters: {shown(unknown)}")
    mime = mime.lower()
    if mime not in (JSON_TYPE, CSV_TYPE):
        raise _unsupported(f"Content-Type {mime!r} is not supported; use {JSON_TYPE} or {CSV_TYPE}")
    return mime


def _unsupported(message: str) -> RequestError:
    return RequestError(415, "unsupported_media_type", message)


def parse_body(body: bytes, content_type: str | None) -> ParsedInput:
    """Parse a scoring request into named columns; raise RequestError (400/415) on any problem."""
    mime = media_type_of(content_type)
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is not content
    except UnicodeDecodeError as exc:
        raise bad_request("invalid_encoding", f"the body is not valid UTF-8 (byte {exc.start})") from None
    if mime == CSV_TYPE:
        return parse_csv(text)
    return parse_json(text)


def parse_json(text: str) -> ParsedInput:
    """Parse a JSON scoring request (one of the four MLflow input formats)."""
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as dup:
        message = f"key {dup.key!r} appears more than once in one object"
        raise bad_request("duplicate_column", message, dup.key) from None
    except (ValueError, RecursionError) as exc:
        raise bad_request("malformed_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise bad_request("invalid_format", f"the body must be a JSON object with one of {list(FORMATS)}")
    present = [key for key in FORMATS if key in document]
    if len(present) != 1:
        found = present or list(document)[:10]
        raise bad_request("invalid_format", f"the body must have exactly one of {list(FORMATS)}; found {found}")
    key = present[0]
    return _FORMAT_PARSERS[key](document[key])


def parse_csv(text: str) -> ParsedInput:
    """Parse CSV with a header row; missing-value tokens become nulls like pandas.read_csv."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise bad_request("malformed_csv", f"the body is not valid CSV: {exc}") from None
    if not rows:
        raise bad_request("empty_batch", "the CSV body has no header row and no rows")
    header, body = rows[0], rows[1:]
    _check_unique(header)
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            message = f"CSV line {number} has {len(row)} fields, the header has {len(header)}"
            raise bad_request("malformed_csv", message)
    columns = zip(*body, strict=True) if body else ([] for _ in header)
    data = tuple([None if v in CSV_NULLS else v for v in column] for column in columns)
    return ParsedInput(tuple(header), data, len(body), from_text=True)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _check_unique(columns: list[str]) -> None:
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise bad_request("duplicate_column", f"column {name!r} appears more than once", name)
        seen.add(name)


def _split(value: Any) -> ParsedInput:
    if not isinstance(value, dict):
        raise bad_request("invalid_format", "dataframe_split must be an object with 'columns' and 'data'")
    unknown = set(value) - {"columns", "data", "index"}
    if unknown or "data" not in value:
        message = f"dataframe_split needs 'data' and may have 'columns' and 'index'; got {sorted(value)}"
        raise bad_request("invalid_format", message)
    columns, rows = value.get("columns"), value["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad_request("invalid_format", "dataframe_split needs 'columns', a list of column names")
    if not isinstance(rows, list):
        raise bad_request("invalid_format", "dataframe_split 'data' must be a list of rows")
    _check_unique(columns)
    for number, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            message = f"dataframe_split row {number} must be a list of {len(columns)} values"
            raise bad_request("invalid_format", message)
    return ParsedInput(tuple(columns), _by_column(rows, len(columns)), len(rows))


def _by_column(rows: list[list[Any]], width: int) -> tuple[list[Any], ...]:
    """Rows (already checked to be `width` long) turned into columns; a single row, the common online
    request, without going through zip."""
    if len(rows) == 1:
        return tuple([value] for value in rows[0])
    return tuple(list(column) for column in zip(*rows, strict=True)) if rows else tuple([] for _ in range(width))


def _records(value: Any) -> ParsedInput:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise bad_request("invalid_format", "records must be a list of objects, one per row")
    names = list(dict.fromkeys(key for record in value for key in record))
    data = tuple([record.get(name) for record in value] for name in names)
    return ParsedInput(tuple(names), data, len(value))


def _columnar(value: dict[str, Any]) -> ParsedInput:
    if all(not isinstance(v, list) for v in value.values()):
        return ParsedInput(tuple(value), tuple([v] for v in value.values()), 1)
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if len(lengths) != 1 or -1 in lengths:
        message = "inputs given by column must all be lists of the same length"
        raise bad_request("invalid_format", message)
    return ParsedInput(tuple(value), tuple(value.values()), lengths.pop())


def _tf_serving(value: Any) -> ParsedInput:
    if isinstance(value, dict):
        return _columnar(value)
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        return _records(value)
    message = (
        "instances/inputs must be a list of objects (rows) or an object of columns;"
        " rows without column names are not accepted"
    )
    raise bad_request("invalid_format", message)


_FORMAT_PARSERS = {
    "dataframe_split": _split,
    "dataframe_records": _records,
    "instances": _tf_serving,
    "inputs": _tf_serving,
}
