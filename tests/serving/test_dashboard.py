"""deploy/grafana/mlgate.json and deploy/prometheus.yml against a live local server.

Grafana itself is not run here. The dashboard is checked as Grafana reads it (a Prometheus
datasource variable, every panel and query on it), every metric its queries name is checked in the
/metrics of a server that served routed, shadowed, failing and fed-back traffic, and, when the
Prometheus server is installed (Debian package `prometheus`), every panel query is evaluated by a
real Prometheus that scraped that server, and must return data.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlgate.serving.runtime import ServerProcess, free_port
from mlgate.serving.settings import PredictionLogConfig, ProbingConfig, ServingConfig
from tests.serving.conftest import FEEDBACK_TOKEN, LABELS
from tests.serving.prometheus_binary import prometheus_bin_dir
from tests.serving.traffic import send

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "mlgate.json"
PROMETHEUS_CONFIG = PROJECT_ROOT / "deploy" / "prometheus.yml"
METRIC_NAME = re.compile(r"\bmlgate_[a-z0-9_]+\b")
TOKEN = "dashboard-token"
ROUTES = {"mode": "weighted", "variants": [
    {"name": "champion", "weight": 70}, {"name": "challenger", "weight": 30},
    {"name": "shadow", "weight": 0, "shadow": True}]}


def _panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def _expressions() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def test_the_dashboard_is_grafana_json_on_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] and t["datasource"] == panel["datasource"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    titles = " ".join(p["title"].lower() for p in _panels())
    for topic in ("traffic split", "latency", "error", "agreement", "accuracy", "reward"):
        assert topic in titles, f"no panel about {topic}"


def test_prometheus_config_scrapes_the_server_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mlgate")
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
    bin_dir, why = prometheus_bin_dir()
    if bin_dir is None:
        pytest.skip(f"the scrape job is as expected; promtool unavailable: {why}")
    checked = subprocess.run([str(bin_dir / "promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def live_server(detector_model_dir: Path, broken_model_dir: Path, model_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """champion 70 (with an outlier detector) / challenger 30 (fails on nulls) / a shadow, with the prediction log
    in tmp; every client counts for probing."""
    log = PredictionLogConfig(url=f"sqlite:///{tmp_path_factory.mktemp('dash') / 'predictions.db'}", flush_interval_s=0.1)
    models = {"champion": str(detector_model_dir), "challenger": str(broken_model_dir), "shadow": str(model_dir)}
    with ServerProcess(models, ServingConfig(prediction_log=log, probing=ProbingConfig(min_requests=1)),
                       env={"MLGATE_ADMIN_TOKEN": TOKEN, "MLGATE_FEEDBACK_TOKEN": FEEDBACK_TOKEN}) as server:
        response = httpx.put(server.url + "/routes", json=ROUTES, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        yield server


def _traffic(server: ServerProcess, holdout: pd.DataFrame, rounds: int) -> None:
    """Routed requests (some with a null the challenger fails on), feedback with labels, rewards
    and an unknown request id."""
    records = json.loads(holdout.to_json(orient="records"))
    rows = [{**r, "total_day_minutes": None} if i % 10 == 0 else r for i, r in enumerate(records)]
    bodies = [json.dumps({"dataframe_records": [r]}).encode() for r in rows]
    for number in range(rounds):
        answers = send(server.url + "/invocations", bodies, 120, concurrency=4,
                       headers_for=lambda i, n=number: {"X-Request-Id": f"dash-{n}-{i}", "X-Routing-Key": f"user-{i}"})
        feedback = [{"request_id": a.request_id, "label": "no", "reward": 1.0 if i % 2 else 0.0}
                    for i, a in enumerate(answers) if a.status == 200]
        httpx.post(server.url + "/feedback", json=[*feedback, {"request_id": "not-a-request", "label": "yes"}],
                   headers=LABELS)


def _scraped_names(server: ServerProcess) -> set[str]:
    text = httpx.get(server.url + "/metrics").text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.mark.slow
def test_every_metric_the_dashboard_queries_is_served_after_traffic(live_server: ServerProcess,
                                                                   holdout: pd.DataFrame) -> None:
    _traffic(live_server, holdout, rounds=2)
    time.sleep(1.0)  # the shadow and the log writer work off the response path
    queried = {name for expr in _expressions() for name in METRIC_NAME.findall(expr)}
    missing = sorted(queried - _scraped_names(live_server))
    assert not missing, f"the dashboard queries metrics the server does not expose: {missing}"


def test_every_metric_the_alert_rules_query_is_served_after_traffic(live_server: ServerProcess,
                                                                     holdout: pd.DataFrame) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    rule_files = [PROMETHEUS_CONFIG.parent / name for name in config["rule_files"]]
    rules = [rule for path in rule_files for group in yaml.safe_load(path.read_text())["groups"]
             for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {"MlgateProbingSuspected", "MlgateOutlierRateHigh"}
    for rule in rules:
        assert rule["expr"] and rule["for"] and rule["annotations"]["summary"], rule["alert"]
    _traffic(live_server, holdout, rounds=1)
    queried = {name for rule in rules for name in METRIC_NAME.findall(rule["expr"])}
    missing = sorted(queried - _scraped_names(live_server))
    assert not missing, f"the alert rules query metrics the server does not expose: {missing}"
    bin_dir, why = prometheus_bin_dir()
    if bin_dir is None:
        pytest.skip(f"every queried metric is served; promtool unavailable: {why}")
    for path in rule_files:
        checked = subprocess.run([str(bin_dir / "promtool"), "check", "rules", str(path)], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def _prometheus_config(target: str) -> str:
    """deploy/prometheus.yml pointed at the test server, scraping every second."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / name) for name in config.get("rule_files", [])]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mlgate")
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [target]
    config["global"]["scrape_interval"] = "1s"
    return yaml.safe_dump(config)


@pytest.fixture()
def prometheus(live_server: ServerProcess, tmp_path: Path) -> Iterator[str]:
    bin_dir, why = prometheus_bin_dir()
    if bin_dir is None:
        pytest.skip(f"no Prometheus server: {why}")
    (tmp_path / "prometheus.yml").write_text(_prometheus_config(live_server.url.removeprefix("http://")))
    port = free_port()
    command = [str(bin_dir / "prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{port}"]
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


def _query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    promql = expr.replace("$__rate_interval", "15s").replace('instance=~"$instance"', 'instance=~".+"')
    body = httpx.get(prometheus_url + "/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


@pytest.mark.slow
def test_every_dashboard_query_returns_live_data_from_prometheus(live_server: ServerProcess, holdout: pd.DataFrame,
                                                                prometheus: str) -> None:
    traffic = threading.Thread(target=_traffic, args=(live_server, holdout, 8))
    traffic.start()
    traffic.join(120)
    # A rate needs two scrapes of a series; the traffic can end within a second of Prometheus' first scrape
    # (it did once the server got faster), so wait for the scrapes, up to 30 s, rather than a fixed time.
    deadline = time.monotonic() + 30
    while True:
        empty = [expr for expr in _expressions() if not _query(prometheus, expr)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not empty, f"dashboard queries without data after live traffic: {empty}"
    instances = httpx.get(prometheus + "/api/v1/label/instance/values",
                          params={"match[]": "mlgate_route_version"}).json()["data"]
    assert instances == [live_server.url.removeprefix("http://")]
