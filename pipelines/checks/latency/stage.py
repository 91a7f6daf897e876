"""Latency gate: candidate and production model under the same locust load, in alternating rounds.

Stage `stress` of dvc.yaml runs `mlgate gate latency --report-only`. Starts the candidate
(train.model_dir) and the baseline (the version behind alias `champion`) in two servers with the
same `serving` settings on 127.0.0.1, drives them with holdout payloads, and writes
reports/gates/latency.json (via the gate command), metrics/latency.json, plots/latency/ and
reports/latency/ (every request as Parquet, locust's HTML report of each model). Both servers are
stopped whatever happens.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pandas as pd

from mlgate.gates.latency import decide as latency
from mlgate.gates.result import GateResult
from mlgate.pipelines.checks.latency import outputs as latency_outputs
from mlgate.pipelines.checks.latency import plots as latency_plots
from mlgate.pipelines.checks.latency.load_test import (
    LoadTestError,
    LoadTestRun,
    payload_bodies,
    run_load_test,
)
from mlgate.pipelines.checks.models import Baseline, candidate_location, find_baseline
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import check_dataset, load_split, split_path
from mlgate.pipelines.files import relative
from mlgate.serving.runtime import DockerServer, ServerProcess, ServerStartError, server_for
from mlgate.serving.settings import ServingConfig

REPORT_DIR, PLOT_DIR, METRICS_FILE = Path("reports/latency"), Path("plots/latency"), Path("metrics/latency.json")


def run(ctx: RunContext, *, model: str | None = None) -> GateResult:
    """The gate on the candidate `model` (a model directory or MLflow model URI; default: train.model_dir)."""
    started = time.perf_counter()
    cfg = ctx.params.gates.latency
    bodies = payload_bodies(_holdout_features(ctx), list(cfg.batch_mix), cfg.payloads_per_size, cfg.seed)
    candidate_uri = candidate_location(ctx, model)
    baseline = find_baseline(ctx, cfg.baseline_alias)
    with tempfile.TemporaryDirectory(prefix="mlgate-latency-") as tmp, ExitStack() as stack:
        servers, baseline, problem = _start_servers(ctx, candidate_uri, baseline, Path(tmp), stack)
        if problem:
            return _finish(ctx, GateResult.error(latency.GATE, problem, name="candidate"), None, baseline, started)
        try:
            load = run_load_test({name: s.url for name, s in servers.items()}, cfg, bodies, ctx.path(REPORT_DIR))
        except LoadTestError as exc:
            failed = GateResult.error(latency.GATE, f"the load test could not run: {exc}", name="load_test")
            return _finish(ctx, failed, None, baseline, started)
    inputs = latency.LatencyInputs(load.samples("candidate"), load.samples("baseline") if baseline.usable else None,
                                   baseline.problem or "no baseline", baseline.failed, baseline.details)
    return _finish(ctx, latency.check(inputs, cfg), load, baseline, started)


def _holdout_features(ctx: RunContext) -> pd.DataFrame:
    params = ctx.params
    frame = load_split(params.data, "test", ctx.base_dir)
    check_dataset(frame, params.model, params.data, str(split_path(params.data, "test", ctx.base_dir)))
    return frame[params.data.features]


def _start_servers(ctx: RunContext, candidate_uri: str, baseline: Baseline, tmp: Path, stack: ExitStack
                   ) -> tuple[dict[str, ServerProcess | DockerServer], Baseline, str]:
    """Start both servers at once with the same settings; (servers, baseline, candidate problem)."""
    uris = {"candidate": candidate_uri, **({"baseline": baseline.uri} if baseline.usable and baseline.uri else {})}
    servers = {name: _server(ctx, uri, tmp / name) for name, uri in uris.items()}
    for server in servers.values():
        stack.callback(server.stop)
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        failures = dict(zip(servers, pool.map(_start, servers.values()), strict=True))
    if failures["candidate"]:
        return servers, baseline, f"the candidate server did not start: {failures['candidate']}"
    if failures.get("baseline"):
        baseline = baseline.unusable(f"the baseline server ({baseline.uri}) did not start: {failures['baseline']}")
        servers.pop("baseline").stop()
    return servers, baseline, ""


def _server(ctx: RunContext, uri: str, work: Path) -> ServerProcess | DockerServer:
    """A server in the project's runtime with its serving settings; its prediction log goes to a
    throwaway file, so load-test traffic never lands in the production prediction log."""
    serving: ServingConfig = ctx.params.serving
    log = serving.prediction_log.model_copy(update={"url": f"sqlite:///{work}-predictions.db"})
    config = serving.model_copy(update={"prediction_log": log})
    return server_for(uri, config, env={"MLFLOW_TRACKING_URI": ctx.tracking_uri})


def _start(server: ServerProcess | DockerServer) -> str:
    try:
        server.start()
    except ServerStartError as exc:
        return str(exc)[:3000]
    return ""


def _finish(ctx: RunContext, result: GateResult, load: LoadTestRun | None, baseline: Baseline,
            started: float) -> GateResult:
    """Write plots, metrics and request tables; the result with its duration and artifacts."""
    cfg = ctx.params.gates.latency
    models = {name: load.samples(name) for name in ("candidate", "baseline")} if load else {}
    models = {name: rounds for name, rounds in models.items() if rounds}
    requests = _requests_table(load)
    artifacts: dict[str, str] = {}
    if load is not None and requests is not None:
        artifacts |= {f"locust_report_{m}": _rel(ctx, p) for m, p in load.html_reports.items()}
        table = latency_outputs.write_requests(ctx.path(REPORT_DIR) / "requests.parquet", requests)
        artifacts["requests"] = _rel(ctx, table)
    limits = {"SLO p95": cfg.slo.p95_ms}
    artifacts |= {k: _rel(ctx, p) for k, p in latency_plots.write_plots(ctx.path(PLOT_DIR), models, limits).items()}
    artifacts["metrics"] = METRICS_FILE.as_posix()
    final = GateResult.from_checks(latency.GATE, result.checks, time.perf_counter() - started, artifacts)
    payload = latency_outputs.metrics(final, models, cfg, requests, baseline.details or None)
    latency_outputs.write_metrics(ctx.path(METRICS_FILE), payload)
    return final


def _requests_table(load: LoadTestRun | None) -> pd.DataFrame | None:
    if load is None:
        return None
    tables = [r.requests.assign(model=r.model, round=r.index + 1) for r in load.rounds]
    return pd.concat(tables, ignore_index=True) if tables else None


def _rel(ctx: RunContext, path: Path) -> str:
    return relative(path, ctx.base_dir)
