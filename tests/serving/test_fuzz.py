"""Property-based requests to the real server (hypothesis, seeded, bounded): never a 5xx."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.serving.runtime import ServerProcess

SPECIAL = st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -0.0, 10**30, 10**400, "", "NaN", "ü" * 3])
SCALARS = SPECIAL | st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http_client:
        yield http_client


@st.composite
def mutated_rows(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A real row with some values replaced by arbitrary JSON, some keys dropped or added."""
    row = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=4, unique=True)):
        row[name] = draw(JSON_VALUES)
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=1)):
        row.pop(name, None)
    row.update(draw(st.dictionaries(st.text(max_size=8), SCALARS, max_size=2)))
    return row


def _bodies(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    rows = st.lists(mutated_rows(base), min_size=0, max_size=4)
    documents = st.one_of(
        rows.map(lambda r: {"dataframe_records": r}),
        rows.map(lambda r: {"instances": r}),
        rows.map(lambda r: {"dataframe_split": {"columns": sorted({k for x in r for k in x}),
                                                "data": [[x.get(k) for k in sorted({k for x in r for k in x})]
                                                         for x in r]}}),
        st.dictionaries(st.sampled_from(["inputs", "instances", "dataframe_split", "params", "x"]),
                        JSON_VALUES, max_size=2),
        JSON_VALUES,
    )
    return documents.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=64)


def _row_of(model_dir: Path) -> dict[str, Any]:
    example = json.loads((model_dir / "serving_input_example.json").read_text())["dataframe_split"]
    return dict(zip(example["columns"], example["data"][0], strict=True))


def test_no_generated_body_gives_a_5xx(client: httpx.Client, model_dir: Path) -> None:
    @FUZZ
    @given(body=_bodies(_row_of(model_dir)), csv=st.booleans())
    def check(body: bytes, csv: bool) -> None:
        content_type = "text/csv" if csv else "application/json"
        response = client.post("/invocations", content=body, headers={"content-type": content_type})
        assert response.status_code < 500, (body[:300], response.text[:300])
        payload = response.json()
        if response.status_code == 200:
            assert all(p in ("yes", "no") for p in payload["predictions"])
        else:
            assert payload["error"]["code"] and payload["error"]["message"]

    check()
    assert client.get("/healthz").status_code == 200


def test_one_edited_value_gives_200_or_a_400_naming_that_column(client: httpx.Client, model_dir: Path) -> None:
    base = _row_of(model_dir)

    @FUZZ
    @given(column=st.sampled_from(sorted(base)), value=SCALARS)
    def check(column: str, value: Any) -> None:
        body = json.dumps({"dataframe_records": [{**base, column: value}]})
        response = client.post("/invocations", content=body, headers={"content-type": "application/json"})
        assert response.status_code in (200, 400), (column, value, response.text[:300])
        if response.status_code == 400:
            assert response.json()["error"]["column"] == column

    check()


def test_valid_rows_with_generated_numbers_always_predict(client: httpx.Client, model_dir: Path) -> None:
    base = _row_of(model_dir)
    numeric = sorted(k for k, v in base.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    finite = st.floats(allow_nan=True, allow_infinity=False) | st.integers(-10**12, 10**12) | st.none()

    @FUZZ
    @given(values=st.fixed_dictionaries({name: finite for name in numeric}))
    def check(values: dict[str, Any]) -> None:
        body = json.dumps({"inputs": [{**base, **values}]})  # NaN as the literal MLflow accepts (httpx refuses it)
        response = client.post("/invocations?proba=true", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text[:300]
        probabilities = response.json()["predictions"][0]
        assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probabilities)
        assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-9)

    check()
