"""MLflow scoring-protocol parsing: every format gives the same columns; bad bodies are 400/415."""

from __future__ import annotations

import json

import pytest

from mlgate.serving.protocol import parse_body, parse_csv, parse_json
from mlgate.serving.request_errors import RequestError

COLUMNS = ("a", "b")
ROWS = [[1, "x"], [2.5, None]]
EXPECTED = {"a": [1, 2.5], "b": ["x", None]}

EQUIVALENT_BODIES = {
    "dataframe_split": {"dataframe_split": {"columns": ["a", "b"], "data": ROWS}},
    "dataframe_split with index": {"dataframe_split": {"columns": ["a", "b"], "data": ROWS, "index": [7, 8]}},
    "dataframe_records": {"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2.5, "b": None}]},
    "records with a key left out": {"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2.5}]},
    "instances as records": {"instances": [{"a": 1, "b": "x"}, {"a": 2.5, "b": None}]},
    "inputs as records": {"inputs": [{"a": 1, "b": "x"}, {"a": 2.5, "b": None}]},
    "inputs as columns": {"inputs": {"a": [1, 2.5], "b": ["x", None]}},
    "instances as columns": {"instances": {"a": [1, 2.5], "b": ["x", None]}},
    "params are ignored like MLflow": {"inputs": {"a": [1, 2.5], "b": ["x", None]}, "params": {"k": 1}},
}


def _columns(parsed) -> dict:
    return dict(zip(parsed.columns, parsed.data, strict=True))


@pytest.mark.parametrize("name", list(EQUIVALENT_BODIES))
def test_every_json_format_parses_to_the_same_columns(name: str) -> None:
    parsed = parse_body(json.dumps(EQUIVALENT_BODIES[name]).encode(), "application/json")
    assert parsed.n_rows == 2
    assert _columns(parsed) == EXPECTED
    assert not parsed.from_text


def test_csv_parses_with_pandas_null_tokens_and_keeps_text() -> None:
    parsed = parse_body(b'a,b\n1,x\n2.5,NA\n"3","a, quoted"\n', "text/csv; charset=utf-8")
    assert parsed.from_text
    assert _columns(parsed) == {"a": ["1", "2.5", "3"], "b": ["x", None, "a, quoted"]}


def test_scalar_columns_are_one_row_like_mlflow() -> None:
    parsed = parse_json('{"inputs": {"a": 1, "b": "x"}}')
    assert parsed.n_rows == 1 and _columns(parsed) == {"a": [1], "b": ["x"]}


def test_nan_and_infinity_literals_are_read_like_python_json() -> None:
    parsed = parse_json('{"inputs": {"a": [NaN, Infinity, -Infinity]}}')
    values = parsed.data[0]
    assert values[0] != values[0] and values[1] == float("inf") and values[2] == float("-inf")


def _refusal(body: str | bytes, content_type: str | None = "application/json") -> RequestError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(RequestError) as caught:
        parse_body(raw, content_type)
    return caught.value


@pytest.mark.parametrize(("body", "code"), [
    ('{"dataframe_split": {"columns": ["a"], "data": [[1]}', "malformed_json"),
    ("", "malformed_json"),
    ("[1, 2]", "invalid_format"),
    ('{"data": [[1]]}', "invalid_format"),
    ('{"inputs": {"a": [1]}, "instances": [{"a": 1}]}', "invalid_format"),
    ('{"dataframe_split": {"data": [[1]]}}', "invalid_format"),
    ('{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}', "invalid_format"),
    ('{"dataframe_split": {"columns": ["a"], "data": [[1]], "extra": 1}}', "invalid_format"),
    ('{"dataframe_records": {"a": 1}}', "invalid_format"),
    ('{"dataframe_records": [1, 2]}', "invalid_format"),
    ('{"instances": [[1, 2], [3, 4]]}', "invalid_format"),
    ('{"inputs": {"a": [1, 2], "b": [1]}}', "invalid_format"),
    ('{"inputs": {"a": [1, 2], "b": 3}}', "invalid_format"),
    ("[" * 100_000 + "]" * 100_000, "malformed_json"),
])
def test_malformed_or_unknown_json_is_a_400(body: str, code: str) -> None:
    error = _refusal(body)
    assert (error.status, error.code) == (400, code)
    assert error.message


def test_duplicate_column_is_named_in_split_records_and_csv() -> None:
    split = _refusal('{"dataframe_split": {"columns": ["a", "b", "a"], "data": [[1, 2, 3]]}}')
    records = _refusal('{"dataframe_records": [{"a": 1, "b": 2, "a": 3}]}')
    csv = _refusal(b"a,b,b\n1,2,3\n", "text/csv")
    for error in (split, records, csv):
        assert (error.status, error.code) == (400, "duplicate_column")
    assert (split.column, records.column, csv.column) == ("a", "a", "b")


def test_invalid_utf8_is_a_400() -> None:
    error = _refusal(b'{"inputs": {"a": ["\xff"]}}')
    assert (error.status, error.code) == (400, "invalid_encoding")


@pytest.mark.parametrize("content_type", [
    None, "", "text/plain", "application/xml", "application/json; charset=latin-1",
    "application/json; format=pandas-split", "application/vnd.apache.parquet",
])
def test_unsupported_content_types_are_a_415(content_type: str | None) -> None:
    error = _refusal('{"inputs": {"a": [1]}}', content_type)
    assert (error.status, error.code) == (415, "unsupported_media_type")


def test_content_type_is_case_insensitive_and_allows_utf8_charset() -> None:
    parsed = parse_body(b'{"inputs": {"a": [1]}}', "Application/JSON; Charset=UTF-8")
    assert parsed.n_rows == 1


@pytest.mark.parametrize(("body", "code"), [
    (b"a,b\n1,2,3\n", "malformed_csv"),
    (b"", "empty_batch"),
])
def test_bad_csv_is_a_400(body: bytes, code: str) -> None:
    error = _refusal(body, "text/csv")
    assert (error.status, error.code) == (400, code)


def test_csv_header_only_has_no_rows() -> None:
    parsed = parse_csv("a,b\n")
    assert parsed.n_rows == 0 and parsed.columns == COLUMNS and parsed.data == ([], [])
