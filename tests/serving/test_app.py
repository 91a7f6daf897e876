"""The app in process (ASGI, real model): protocol formats, errors, readiness, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate.serving.settings import ServingConfig
from mlgate.serving.variants import load_variant

JSON = {"content-type": "application/json"}


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_every_input_format_gives_the_offline_labels(in_app, holdout: pd.DataFrame, offline_model, as_split) -> None:
    rows = holdout.head(5)
    expected = offline_model.predict(rows).tolist()
    split = as_split(rows)["dataframe_split"]
    records = [dict(zip(split["columns"], values, strict=True)) for values in split["data"]]
    bodies = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [r[c] for r in records] for c in split["columns"]}},
    }

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        answers = {name: (await client.post("/invocations", json=body)) for name, body in bodies.items()}
        answers["csv"] = await client.post("/invocations", content=rows.to_csv(index=False),
                                           headers={"content-type": "text/csv"})
        return {name: (r.status_code, r.json()) for name, r in answers.items()}

    for name, (status, body) in in_app(scenario).items():
        assert status == 200, (name, body)
        assert body == {"predictions": expected}, name


def test_probabilities_match_offline_within_1e9(in_app, holdout: pd.DataFrame, offline_model, as_split) -> None:
    rows = holdout.head(40)
    expected = offline_model.predict_proba(rows)

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        by_query = await client.post("/invocations?proba=true", json=as_split(rows))
        by_header = await client.post("/invocations", json=as_split(rows), headers={"X-Predict-Proba": "true"})
        return by_query, by_header

    for response in in_app(scenario):
        assert response.status_code == 200
        body = response.json()
        assert body["classes"] == offline_model.classes_.tolist()
        assert np.max(np.abs(np.array(body["predictions"]) - expected)) <= 1e-9


def test_headers_echo_the_request_id_and_name_the_variant(in_app, row: dict) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        body = {"dataframe_records": [row]}
        return (await client.post("/invocations", json=body, headers={"X-Request-Id": "req-42"}),
                await client.post("/invocations", json=body),
                await client.post("/invocations", json=body, headers={"X-Request-Id": "bad id\t!"}))

    echoed, generated, invalid = in_app(scenario)
    assert echoed.headers["x-request-id"] == "req-42"
    assert echoed.headers["x-model-variant"] == "default" and echoed.headers["x-model-version"] == "local"
    assert len(generated.headers["x-request-id"]) == 32
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_header"
    assert invalid.headers["x-request-id"] == invalid.json()["error"]["request_id"] != "bad id\t!"


def _error_cases(row: dict) -> dict[str, tuple[dict[str, Any], int, str, str | None]]:
    """name -> (request kwargs, status, error code, column named)."""
    without = {k: v for k, v in row.items() if k != "total_day_calls"}
    many = [row] * 301
    return {
        "missing column": ({"json": {"dataframe_records": [without]}}, 400, "missing_column", "total_day_calls"),
        "string in numeric": ({"json": {"dataframe_records": [{**row, "total_day_minutes": "abc"}]}},
                              400, "wrong_type", "total_day_minutes"),
        "number in string": ({"json": {"dataframe_records": [{**row, "state": 7}]}}, 400, "wrong_type", "state"),
        "infinity": ({"content": json.dumps({"dataframe_records": [{**row, "total_eve_minutes": float("inf")}]}),
                      "headers": JSON}, 400, "non_finite", "total_eve_minutes"),
        "duplicate column": ({"json": {"dataframe_split": {"columns": [*row, "state"], "data": [[*row.values(), "KS"]]}}},
                             400, "duplicate_column", "state"),
        "empty batch": ({"json": {"dataframe_records": []}}, 400, "empty_batch", None),
        "malformed json": ({"content": b'{"dataframe_records": [', "headers": JSON}, 400, "malformed_json", None),
        "too many rows": ({"json": {"dataframe_records": many}}, 413, "too_many_rows", None),
        "body too large": ({"content": b" " * 200_001, "headers": JSON}, 413, "body_too_large", None),
        "wrong content type": ({"content": b"<xml/>", "headers": {"content-type": "application/xml"}},
                               415, "unsupported_media_type", None),
        "bad proba flag": ({"json": {"dataframe_records": [row]}, "params": {"proba": "maybe"}},
                           400, "invalid_parameter", None),
        "unknown variant": ({"json": {"dataframe_records": [row]}, "headers": {"X-Target-Variant": "nope"}},
                            400, "unknown_variant", None),
    }


def test_bad_requests_get_4xx_json_errors_naming_the_column(in_app, row: dict) -> None:
    cases = _error_cases(row)

    async def scenario(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        answers = {name: await client.post("/invocations", **kwargs) for name, (kwargs, *_) in cases.items()}
        answers["after all that"] = await client.post("/invocations", json={"dataframe_records": [row]})
        return answers

    answers = in_app(scenario)
    for name, (_, status, code, column) in cases.items():
        response = answers[name]
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (status, code), (name, error)
        assert error.get("column") == column, name
        assert error["message"] and error["request_id"] == response.headers["x-request-id"]
    assert answers["after all that"].status_code == 200


def test_body_over_the_limit_is_refused_while_streaming(in_app) -> None:
    async def chunks():
        for _ in range(30):
            yield b" " * 10_000

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", content=chunks(), headers=JSON)

    response = in_app(scenario)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_nulls_unseen_categories_and_odd_strings_reach_the_model(in_app, holdout: pd.DataFrame,
                                                                 offline_model, as_split) -> None:
    rows = holdout.head(4).astype(object)
    rows.loc[0, :] = None
    rows.loc[1, "state"] = "Zürich-日本"
    rows.loc[2, "area_code"] = "x" * 10_000
    rows.loc[3, "international_plan"] = ""
    expected = offline_model.predict_proba(rows.replace({None: np.nan}).infer_objects())

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations?proba=true", json=as_split(rows))

    response = in_app(scenario)
    assert response.status_code == 200, response.json()
    assert np.max(np.abs(np.array(response.json()["predictions"]) - expected)) <= 1e-9


def test_extra_columns_and_shuffled_order_change_nothing(in_app, row: dict) -> None:
    shuffled = dict(reversed(list(row.items())))

    async def scenario(client: httpx.AsyncClient) -> list[Any]:
        bodies = [[row], [{**row, "not_a_feature": 1}], [shuffled]]
        return [(await client.post("/invocations", json={"dataframe_records": b})).json() for b in bodies]

    plain, extra, reordered = in_app(scenario)
    assert plain == extra == reordered and "predictions" in plain


def test_extra_columns_can_be_rejected_by_config(in_app, row: dict) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", json={"dataframe_records": [{**row, "zz": 1}]})

    response = in_app(scenario, config=ServingConfig(extra_columns="reject"))
    assert response.status_code == 400 and response.json()["error"]["column"] == "zz"


def test_readyz_is_503_until_the_model_is_loaded(in_app, row: dict) -> None:
    release = threading.Event()

    def slow_loader(name: str, uri: str):
        release.wait(10)
        return load_variant(name, uri)

    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, Any]]:
        seen = [(r.status_code, r.json()) for r in (await client.get("/readyz"), await client.get("/healthz"),
                                                     await client.post("/invocations", json={"inputs": [row]}))]
        release.set()
        for _ in range(500):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.02)
        answer = await client.post("/invocations", json={"inputs": [row]})
        return [*seen, (answer.status_code, answer.json())]

    readyz, healthz, early, later = in_app(scenario, loader=slow_loader, wait_ready=False)
    assert readyz == (503, {"status": "loading", "variants": {"default": readyz[1]["variants"]["default"]},
                            "routes": {"source": "arguments", "version": 1}})
    assert readyz[1]["variants"]["default"]["state"] == "loading"
    assert healthz == (200, {"status": "ok"})
    assert early[0] == 503 and early[1]["error"]["code"] == "not_ready"
    assert later[0] == 200


def test_a_model_that_cannot_load_is_reported_not_served(in_app, tmp_path: Path, row: dict) -> None:
    missing = tmp_path / "no-model"

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.get("/readyz"), await client.post("/invocations", json={"inputs": [row]})

    readyz, answer = in_app(scenario, uris={"default": str(missing)})
    assert readyz.status_code == 503 and readyz.json()["status"] == "failed"
    assert str(missing) in readyz.json()["variants"]["default"]["error"]
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "variant_failed"


def test_a_model_that_raises_is_a_500_with_request_id_and_others_are_unharmed(
        in_app, broken_model_dir: Path, row: dict) -> None:
    bad = {**row, "total_day_minutes": None}

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], str]:
        sends = [client.post("/invocations", json={"inputs": [bad if i == 3 else row]},
                             headers={"X-Request-Id": f"r{i}"}) for i in range(8)]
        answers = await asyncio.gather(*sends)
        return answers, (await client.get("/metrics")).text

    answers, metrics = in_app(scenario, uris={"default": str(broken_model_dir)})
    assert [r.status_code for r in answers] == [200, 200, 200, 500, 200, 200, 200, 200]
    error = answers[3].json()["error"]
    assert error["code"] == "prediction_failed" and error["request_id"] == "r3" and "NaN" in error["message"]
    assert _metric(metrics, "mlgate_requests_total", variant="default", status_class="5xx") == 1
    assert _metric(metrics, "mlgate_request_errors_total", code="prediction_failed") == 1


def test_metrics_count_requests_errors_latency_and_coalesced_calls(in_app, row: dict) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[str, str]:
        before = (await client.get("/metrics")).text
        await asyncio.gather(*[client.post("/invocations", json={"inputs": [row]}) for _ in range(32)])
        await client.post("/invocations", json={"inputs": []})
        return before, (await client.get("/metrics")).text

    before, after = in_app(scenario)

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("mlgate_requests_total", variant="default", status_class="2xx") == 32
    assert delta("mlgate_requests_total", variant="default", status_class="4xx") == 1
    assert delta("mlgate_request_errors_total", variant="default", code="empty_batch") == 1
    assert delta("mlgate_request_latency_seconds_count", variant="default") == 33
    assert 1 <= delta("mlgate_predict_calls_total", variant="default") < 32
    assert delta("mlgate_predict_batch_rows_sum", variant="default") == 32
    assert _metric(after, "mlgate_variant_ready", variant="default", version="local") == 1


def test_openapi_documents_the_protocol_and_proba(in_app) -> None:
    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        return (await client.get("/openapi.json")).json()

    operation = in_app(scenario)["paths"]["/invocations"]["post"]
    assert {"application/json", "text/csv"} <= set(operation["requestBody"]["content"])
    assert "proba" in {p["name"] for p in operation["parameters"]}
    assert {"200", "400", "413", "415", "500", "503"} <= set(operation["responses"])


def test_unknown_paths_and_methods_are_json_errors(in_app) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.get("/nope"), await client.get("/invocations")

    missing, wrong_method = in_app(scenario)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("target", ["default", "broken"])
def test_x_target_variant_picks_the_variant(in_app, model_dir: Path, broken_model_dir: Path, row: dict,
                                            target: str) -> None:
    uris = {"default": str(model_dir), "broken": str(broken_model_dir)}

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/invocations", json={"inputs": [row]}, headers={"X-Target-Variant": target})

    response = in_app(scenario, uris=uris)
    assert response.status_code == 200 and response.headers["x-model-variant"] == target


class SlowModel:
    """The real pipeline, answering only after `delay_s` (a model too slow for the request timeout)."""

    def __init__(self, model: Any, delay_s: float) -> None:
        self.model, self.delay_s = model, delay_s

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        threading.Event().wait(self.delay_s)
        return self.model.predict(frame)


def test_a_model_slower_than_the_timeout_gives_504_and_the_server_recovers(in_app, row: dict) -> None:
    def slow_loader(name: str, uri: str):
        variant = load_variant(name, uri)
        return dataclasses.replace(variant, model=SlowModel(variant.model, 0.5))

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        late = await client.post("/invocations", json={"inputs": [row]})
        await asyncio.sleep(0.6)  # the worker thread finishes the abandoned call
        return late, await client.get("/healthz")

    config = ServingConfig(request_timeout_s=0.1)
    late, health = in_app(scenario, loader=slow_loader, config=config)
    assert (late.status_code, late.json()["error"]["code"]) == (504, "prediction_timeout")
    assert health.status_code == 200


def test_a_pyfunc_model_is_served_and_its_integer_columns_are_checked_first(in_app, pyfunc_model_dir: Path,
                                                                           row: dict) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        bodies = [row, {**row, "total_day_minutes": None}, {**row, "account_length": None},
                  {**row, "account_length": 3.5}]
        answers = [await client.post("/invocations", json={"inputs": [b]}) for b in bodies]
        return [*answers, await client.post("/invocations?proba=true", json={"inputs": [row]})]

    plain, null_float, null_integer, fraction, proba = in_app(scenario, uris={"default": str(pyfunc_model_dir)})
    assert plain.status_code == 200
    assert plain.json()["predictions"] == [pytest.approx(row["total_day_minutes"] + row["account_length"])]
    assert null_float.status_code == 200 and null_float.json()["predictions"] == [None]
    assert (null_integer.status_code, null_integer.json()["error"]["code"]) == (400, "null_not_allowed")
    assert (fraction.status_code, fraction.json()["error"]["column"]) == (400, "account_length")
    assert (proba.status_code, proba.json()["error"]["code"]) == (400, "proba_unsupported")
