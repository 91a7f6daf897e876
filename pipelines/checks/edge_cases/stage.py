"""Edge-case gate: the real server with the candidate, attacked with cases generated from the data schema.

Stage `edge_cases` of dvc.yaml runs `mlgate gate edge_cases --report-only`. Reads the candidate model
directory (its signature), data/train.parquet (ranges, categories, a base row) and data/test.parquet
(the holdout for online/offline consistency); starts `python -m mlgate.serving` on a free 127.0.0.1 port;
writes reports/gates/edge_cases.json (via the gate command) with every case, and the server's log
to reports/edge_cases/server.log.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate.gates.config import EdgeCasesConfig
from mlgate.gates.edge_cases import decide as edge_cases
from mlgate.gates.edge_cases.consistency import ServerPredictions, consistency_checks
from mlgate.gates.edge_cases.data_schema import DataSchema, schema_from_frame
from mlgate.gates.edge_cases.generation import ServerLimits, generate_cases
from mlgate.gates.edge_cases.outlier_cases import outlier_check
from mlgate.gates.result import Check, GateResult, Status
from mlgate.pipelines.checks.edge_cases.client import get, predict_holdout, send_cases
from mlgate.pipelines.checks.models import load_candidate
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import check_dataset, load_split, require_columns, split_path
from mlgate.pipelines.params import ModelConfig
from mlgate.serving.frames import output_rows
from mlgate.serving.runtime import ServerStartError, server_for
from mlgate.serving.settings import ServingConfig

REPORT_DIR = Path("reports/edge_cases")


def run(ctx: RunContext, *, model: str | None = None) -> GateResult:
    """The gate on the candidate `model` (a model directory or MLflow model URI; default: train.model_dir)."""
    started = time.perf_counter()
    params, config = ctx.params, ctx.params.gates.edge_cases
    candidate = load_candidate(ctx, model)
    train, test = (_split(ctx, name) for name in ("train", "test"))
    try:
        schema = schema_from_frame(train, candidate.input_columns, _classes(candidate.model, train, params.model),
                                   proba=hasattr(candidate.model, "predict_proba"),
                                   categorical=params.data.categorical)
    except ValueError as exc:
        return GateResult.error(edge_cases.GATE, f"{candidate.path}: {exc}", time.perf_counter() - started, "schema")
    require_columns(test, schema.names, str(split_path(params.data, "test", ctx.base_dir)), "signature column")
    serving = params.serving
    cases = generate_cases(schema, ServerLimits(serving.max_batch_rows, serving.max_body_bytes,
                                                serving.extra_columns), config)
    log_path = ctx.path(REPORT_DIR) / "server.log"
    try:
        served = _against_server(ctx, str(candidate.path), cases, schema, test[schema.names], log_path)
    except ServerStartError as exc:
        return GateResult.error(edge_cases.GATE, f"the server did not start with {candidate.path}: {exc}",
                                time.perf_counter() - started, "server.start")
    consistency = _consistency(candidate.model, test, schema, served.online, config.proba_tolerance)
    judged = [edge_cases.judge(case, answer) for case, answer in zip(cases, served.answers, strict=True)]
    artifacts = {"server_log": log_path.relative_to(ctx.base_dir).as_posix()}
    others = [served.health, *consistency, outlier_check(cases, served.answers)]
    return edge_cases.assemble(judged, others, time.perf_counter() - started, artifacts)


@dataclass(frozen=True)
class ServedOutcome:
    """What the running server answered: one answer per case, its health after them, the holdout."""

    answers: list[edge_cases.Answer]
    health: Check
    online: ServerPredictions


def _against_server(ctx: RunContext, model_uri: str, cases: list[edge_cases.Case], schema: DataSchema,
                    holdout: pd.DataFrame, log_path: Path) -> ServedOutcome:
    """Start the server (ServerStartError if it cannot), send every case, check health, predict, stop."""
    config, serving = ctx.params.gates.edge_cases, ctx.params.serving
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlgate-edge-cases-") as scratch, \
            server_for(model_uri, gate_serving_config(serving, Path(scratch)), log_path=log_path) as server:
        answers = send_cases(server.url, cases, config.request_timeout_s, server.is_alive)
        health = edge_cases.health_check(get(server.url + "/healthz", config.request_timeout_s), server.is_alive())
        return ServedOutcome(answers, health, _online_predictions(server.url, holdout, schema, serving, config))


def gate_serving_config(serving: ServingConfig, scratch: Path) -> ServingConfig:
    """The project's serving settings, with the gate's traffic logged to a scratch store, not production's.
    Always the `process` runtime: the gate reads that store and the server's log from this machine."""
    log = serving.prediction_log.model_copy(update={"url": f"sqlite:///{scratch / 'predictions.db'}"})
    return serving.model_copy(update={"prediction_log": log, "runtime": "process"})


def _online_predictions(url: str, holdout: pd.DataFrame, schema: DataSchema, serving: ServingConfig,
                        config: EdgeCasesConfig) -> ServerPredictions:
    chunk = min(config.holdout_batch_rows, serving.max_batch_rows)
    options = (url, holdout, schema.names, chunk, serving.max_body_bytes, config.request_timeout_s)
    labels = predict_holdout(*options, proba=False)
    proba = predict_holdout(*options, proba=True) if schema.proba else ServerPredictions(None)
    problem = "; ".join(p for p in (labels.problem, proba.problem) if p)
    return ServerPredictions(labels.labels, proba.proba, problem)


def _consistency(model: Any, test: pd.DataFrame, schema: DataSchema, online: ServerPredictions,
                 tolerance: float) -> list[Check]:
    """Server vs offline on the holdout; ERROR when the offline model itself cannot predict it."""
    holdout = test[schema.names]
    try:
        labels = output_rows(model.predict(holdout), len(holdout))  # as the server turns them into JSON
        proba = model.predict_proba(holdout) if schema.proba else None
    except Exception as exc:  # noqa: BLE001 - any model failure means consistency cannot be decided
        message = f"the offline model cannot predict the holdout: {type(exc).__name__}: {str(exc)[:300]}"
        return [Check("consistency", Status.ERROR, None, "offline predictions on the holdout", message)]
    row_ids = test["row_id"].tolist() if "row_id" in test.columns else None
    return consistency_checks(online, labels, proba, tolerance, row_ids)


def _classes(model: Any, train: pd.DataFrame, model_cfg: ModelConfig) -> Any:
    """The valid labels: the model's `classes_`; for a classifier that gives labels only (a pyfunc), the
    target's classes in the training data; None for a regression (any finite number)."""
    classes = getattr(model, "classes_", None)
    if classes is not None or model_cfg.task == "regression":
        return classes
    return sorted(train[model_cfg.target].dropna().unique().tolist(), key=str)


def _split(ctx: RunContext, name: str) -> pd.DataFrame:
    params = ctx.params
    frame = load_split(params.data, name, ctx.base_dir)
    check_dataset(frame, params.model, params.data, str(split_path(params.data, name, ctx.base_dir)))
    return frame

