"""The real server: uvicorn in a subprocess on 127.0.0.1, started once for the session."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate.serving.runtime import ServerProcess, ServerStartError, probe
from mlgate.serving.settings import PredictionLogConfig, ServingConfig
from mlgate.serving.variants import parse_model_args


def _counter(base_url: str, name: str, **labels: str) -> float:
    text = httpx.get(base_url + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def test_server_predictions_equal_offline_on_the_holdout(server: ServerProcess, holdout: pd.DataFrame,
                                                         offline_model, as_split) -> None:
    body = as_split(holdout)
    labels = httpx.post(server.url + "/invocations", json=body, timeout=30)
    probas = httpx.post(server.url + "/invocations", params={"proba": "true"}, json=body, timeout=30)
    assert labels.status_code == probas.status_code == 200
    assert labels.json()["predictions"] == offline_model.predict(holdout).tolist()
    difference = np.abs(np.array(probas.json()["predictions"]) - offline_model.predict_proba(holdout))
    assert difference.max() <= 1e-9


def test_concurrent_single_rows_are_coalesced(server: ServerProcess, row: dict) -> None:
    calls_before = _counter(server.url, "mlgate_predict_calls_total", variant="default")
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda _: client.post("/invocations", json={"inputs": [row]}), range(64)))
    calls = _counter(server.url, "mlgate_predict_calls_total", variant="default") - calls_before
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["predictions"][0] for a in answers} <= {"yes", "no"}
    assert calls < 64, f"64 concurrent single-row requests took {calls} predict calls"


def test_a_raising_model_gives_500_and_the_server_stays_healthy(server: ServerProcess, row: dict) -> None:
    broken = {"X-Target-Variant": "broken", "X-Request-Id": "boom-1"}
    answer = httpx.post(server.url + "/invocations", json={"inputs": [{**row, "total_intl_calls": None}]},
                        headers=broken, timeout=30)
    assert answer.status_code == 500
    assert answer.json()["error"]["request_id"] == "boom-1" == answer.headers["x-request-id"]
    assert server.is_alive()
    assert probe(server.url + "/healthz")[0] == 200
    again = httpx.post(server.url + "/invocations", json={"inputs": [row]}, headers=broken, timeout=30)
    assert again.status_code == 200 and again.headers["x-model-variant"] == "broken"


def test_declared_oversized_body_is_refused_before_it_is_read(server: ServerProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(10**9))
    connection.endheaders()
    connection.send(b'{"inputs": ')  # a gigabyte announced, a few bytes sent
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "body_too_large"
    connection.close()
    assert probe(server.url + "/readyz")[0] == 200


def test_garbage_requests_never_give_5xx(server: ServerProcess, row: dict) -> None:
    bodies = [b"", b"null", b"{}", b"\x00\xff", b'{"inputs": {"state": [[1, 2]]}}', b"[" * 50_000,
              json.dumps({"inputs": [{**row, "account_length": 10**400}]}).encode()]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        statuses = [client.post("/invocations", content=b, headers={"content-type": "application/json"}).status_code
                    for b in bodies]
    assert all(400 <= s < 500 for s in statuses), statuses


def test_server_that_cannot_load_its_model_fails_fast_and_is_stopped(tmp_path: Path) -> None:
    config = ServingConfig(prediction_log=PredictionLogConfig(url=f"sqlite:///{tmp_path / 'predictions.db'}"))
    process = ServerProcess(str(tmp_path / "missing-model"), config, startup_timeout_s=60)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="missing-model"):
        process.start()
    assert time.monotonic() - started < 30
    assert not process.is_alive()


def test_model_arguments_name_variants() -> None:
    assert parse_model_args(["models/candidate"]) == {"default": "models/candidate"}
    assert parse_model_args(["champion=models:/churn@champion", "challenger=models:/churn/4"]) == {
        "champion": "models:/churn@champion", "challenger": "models:/churn/4"}
    with pytest.raises(ValueError, match="twice"):
        parse_model_args(["a", "b"])
