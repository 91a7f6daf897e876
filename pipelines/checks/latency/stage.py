"""Latency gate: candidate and production model under the same locust load, in alternating rounds.

Stage `stress` of dvc.yaml runs `mlgate gate latency --report-only`. Starts the candidate
(train.model_dir) and the baseline (the version behind alias `champion`) in two servers with the
same `serving` settings on 127.0.0.1, drives them with holdout payloads, and writes
reports/gates/latency.json (via the gate command), metrics/latency.json, plots/latency/ and
reports/latency/ (every request as Parquet, locust's HTML report of each model). Both servers are
stopped whatever happens.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import check_dataset, load_split, split_path
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import relative
from mlgate.serving.runtime import DockerServer, ServerProcess, ServerStartError, server_for
from mlgate.serving.settings import ServingConfig

REPORT_DIR, PLOT_DIR, METRICS_FILE = Path("reports/latency"), Path("plots/latency"), Path("metrics/latency.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidate", help="candidate model directory or MLflow model URI (default: train.model_dir)")


@dataclass(frozen=True)
class Baseline:
    """The production model's URI and registry facts, or why there is none (`failed`: it exists but broke)."""

    uri: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    failed: bool = False


def run(ctx: RunContext, args: argparse.Namespace) -> GateResult:
    started = time.perf_counter()
    cfg = ctx.params.gates.latency
    bodies = payload_bodies(_holdout_features(ctx), list(cfg.batch_mix), cfg.payloads_per_size, cfg.seed)
    candidate_uri = _candidate_uri(ctx, args.candidate)
    baseline = resolve_baseline(ctx)
    with tempfile.TemporaryDirectory(prefix="mlgate-latency-") as tmp, ExitStack() as stack:
        servers, baseline, problem = _start_servers(ctx, candidate_uri, baseline, Path(tmp), stack)
        if problem:
            return _finish(ctx, GateResult.error(latency.GATE, problem, name="candidate"), None, baseline, started)
        try:
            load = run_load_test({name: s.url for name, s in servers.items()}, cfg, bodies, ctx.path(REPORT_DIR))
        except LoadTestError as exc:
            failed = GateResult.error(latency.GATE, f"the load test could not run: {exc}", name="load_test")
            return _finish(ctx, failed, None, baseline, started)
    inputs = latency.LatencyInputs(load.samples("candidate"), load.samples("baseline") if baseline.uri else None,
                                   baseline.problem or "no baseline", baseline.failed, baseline.details)
    return _finish(ctx, latency.check(inputs, cfg), load, baseline, started)


def _holdout_features(ctx: RunContext) -> pd.DataFrame:
    params = ctx.params
    frame = load_split(params.data, "test", ctx.base_dir)
    check_dataset(frame, params.model, params.data, str(split_path(params.data, "test", ctx.base_dir)))
    return frame[params.data.features]


def _candidate_uri(ctx: RunContext, given: str | None) -> str:
    uri = given or str(ctx.path(ctx.params.train.model_dir))
    if "://" not in uri and not uri.startswith("models:/") and not (Path(uri) / "MLmodel").is_file():
        raise UsageError(f"candidate model: {uri} is not an MLflow model directory; run `mlgate train` "
                         "(dvc stage train) first")
    return uri


def resolve_baseline(ctx: RunContext) -> Baseline:
    """The version behind `gates.latency.baseline_alias`; a registry failure is `failed` (ERROR)."""
    from mlgate.pipelines.registry import mlflow_io as registry

    name, alias = ctx.params.model.name, ctx.params.gates.latency.baseline_alias
    try:
        ref = registry.version_by_alias(ctx.tracking_uri, name, alias)
    except Exception as exc:  # noqa: BLE001 - any registry failure means the gate cannot compare
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return Baseline(problem=f"cannot read alias '{alias}' of model '{name}' at {ctx.tracking_uri}: {first}",
                        failed=True)
    if ref is None:
        return Baseline(problem=f"no version of model '{name}' has alias '{alias}' in {ctx.tracking_uri}")
    return Baseline(ref.uri, {"name": ref.name, "version": ref.version, "uri": ref.uri, "run_id": ref.run_id})


def _start_servers(ctx: RunContext, candidate_uri: str, baseline: Baseline, tmp: Path, stack: ExitStack
                   ) -> tuple[dict[str, ServerProcess | DockerServer], Baseline, str]:
    """Start both servers at once with the same settings; (servers, baseline, candidate problem)."""
    uris = {"candidate": candidate_uri, **({"baseline": baseline.uri} if baseline.uri else {})}
    servers = {name: _server(ctx, uri, tmp / name) for name, uri in uris.items()}
    for server in servers.values():
        stack.callback(server.stop)
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        failures = dict(zip(servers, pool.map(_start, servers.values()), strict=True))
    if failures["candidate"]:
        return servers, baseline, f"the candidate server did not start: {failures['candidate']}"
    if failures.get("baseline"):
        baseline = Baseline(None, baseline.details, f"the baseline server ({baseline.uri}) did not start: "
                            f"{failures['baseline']}", failed=True)
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
