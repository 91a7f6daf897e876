"""Quality gate: the candidate against the production model (alias champion) on the same holdout.

Stage `evaluate` of dvc.yaml runs `mlgate gate quality --report-only`. Reads data/train.parquet and
data/test.parquet, the candidate model directory and the baseline from the MLflow registry; writes
reports/gates/quality.json (via the gate command), metrics/quality.json, plots/quality/ and
reports/quality/ (predictions as Parquet, the deepchecks HTML report).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate.gates.quality import decide as quality
from mlgate.gates.result import GateResult
from mlgate.pipelines.checks.quality import outputs as quality_metrics
from mlgate.pipelines.checks.quality import plots as quality_plots
from mlgate.pipelines.checks.quality.model_outputs import (
    ModelOutputs,
    class_list,
    encode_outputs,
    encode_target,
    predict_outputs,
)
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import check_dataset, load_split, require_columns, split_path
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import relative

REPORT_DIR, PLOT_DIR, METRICS_FILE = Path("reports/quality"), Path("plots/quality"), Path("metrics/quality.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidate", help="candidate model directory or MLflow model URI (default: train.model_dir)")


@dataclass(frozen=True)
class BaselineModel:
    """The resolved production model, or why there is none (`failed`: one exists but is unusable)."""

    ref: Any = None  # mlgate.pipelines.registry.mlflow_io.ModelVersionRef
    model: Any = None
    lineage: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    failed: bool = False


def run(ctx: RunContext, args: argparse.Namespace) -> GateResult:
    started = time.perf_counter()
    params = ctx.params
    train, test = _load_splits(ctx)
    candidate = _load_candidate(args.candidate or str(ctx.path(params.train.model_dir)))
    baseline = resolve_baseline(ctx)
    x_train, x_test = (frame.drop(columns=[params.model.target]) for frame in (train, test))
    try:
        cand_test, cand_train = (predict_outputs(candidate.model, x, params.model.task) for x in (x_test, x_train))
    except ValueError as exc:
        return GateResult.error(quality.GATE, f"the candidate cannot predict the holdout: {exc}",
                                time.perf_counter() - started, name="candidate")
    base_test, baseline = _baseline_outputs(baseline, x_test, params.model.task)
    inputs = build_inputs(ctx, test, train, cand_test, cand_train, base_test, baseline)
    result = quality.check(inputs, params.gates.quality)
    artifacts = _write_predictions(ctx, test, train, cand_test, cand_train, base_test)
    checks = list(result.checks)
    if params.gates.quality.deepchecks.enabled:
        from mlgate.pipelines.checks.quality.deepchecks_check import deepchecks_checks

        deep, html = deepchecks_checks(params, train, test, cand_train, cand_test, ctx.path(REPORT_DIR))
        checks += deep
        artifacts |= {"deepchecks_report": _rel(ctx, html)} if html else {}
    artifacts |= {k: _rel(ctx, p) for k, p in quality_plots.write_plots(
        ctx.path(PLOT_DIR), result, inputs.y_test, inputs.candidate,
        inputs.baseline.predictions if inputs.baseline else None, params.model.task).items()}
    artifacts |= _baseline_artifacts(baseline) | {"metrics": METRICS_FILE.as_posix()}
    final = GateResult.from_checks(quality.GATE, checks, time.perf_counter() - started, artifacts)
    quality_metrics.write(ctx.path(METRICS_FILE), final, baseline_info(baseline), candidate_info(ctx, candidate))
    return final


def _load_splits(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    params, cfg = ctx.params, ctx.params.gates.quality
    frames = []
    for split in ("train", "test"):
        frame, where = load_split(params.data, split, ctx.base_dir), str(split_path(params.data, split, ctx.base_dir))
        check_dataset(frame, params.model, params.data, where)
        require_columns(frame, [*cfg.slices.categorical, *cfg.slices.numeric], where,
                        "slice column (gates.quality.slices)")
        frames.append(frame)
    return frames[0], frames[1]


def _load_candidate(uri: str) -> Any:
    from mlgate.serving.loading import ModelLoadError, load_sklearn_model

    try:
        return load_sklearn_model(uri)
    except ModelLoadError as exc:
        raise UsageError(f"candidate model: {exc}; run `mlgate train` (dvc stage train) first") from None


def resolve_baseline(ctx: RunContext) -> BaselineModel:
    """The version behind `baseline_alias` of `model.name`, loaded; a registry failure is `failed`."""
    from mlgate.pipelines.registry import mlflow_io as registry
    from mlgate.serving.loading import ModelLoadError, load_sklearn_model

    name, alias = ctx.params.model.name, ctx.params.gates.quality.baseline_alias
    try:
        ref = registry.version_by_alias(ctx.tracking_uri, name, alias)
    except Exception as exc:  # noqa: BLE001 - any registry failure means the gate cannot decide
        return BaselineModel(problem=f"cannot read alias '{alias}' of model '{name}' at {ctx.tracking_uri}: "
                             f"{type(exc).__name__}: {_first_line(exc)}", failed=True)
    if ref is None:
        return BaselineModel(problem=f"no version of model '{name}' has alias '{alias}' in {ctx.tracking_uri}")
    try:
        registry.client(ctx.tracking_uri)  # models:/ URIs resolve against the current tracking URI
        model = load_sklearn_model(ref.uri).model
    except ModelLoadError as exc:
        return BaselineModel(ref=ref, problem=f"baseline {ref.uri} cannot be loaded: {exc}", failed=True)
    return BaselineModel(ref=ref, model=model, lineage=_lineage(ctx.tracking_uri, ref))


def _lineage(tracking_uri: str, ref: Any) -> dict[str, str]:
    """mlgate.* tags of the baseline's training run, overridden by those of the registered version."""
    from mlgate.pipelines.registry import mlflow_io as registry

    run_tags: dict[str, str] = {}
    if ref.run_id:
        try:
            run_tags = registry.run_tags(tracking_uri, ref.run_id)
        except Exception:  # noqa: BLE001 - lineage is informative; the version's own tags still apply
            run_tags = {}
    tags = {**run_tags, **ref.tags}
    return {k: v for k, v in sorted(tags.items()) if k.startswith("mlgate.")}


def _baseline_outputs(baseline: BaselineModel, x_test: pd.DataFrame, task: str):
    if baseline.model is None:
        return None, baseline
    try:
        return predict_outputs(baseline.model, x_test, task), baseline
    except ValueError as exc:
        problem = f"baseline {baseline.ref.uri} cannot predict the holdout: {exc}"
        return None, BaselineModel(ref=baseline.ref, lineage=baseline.lineage, problem=problem, failed=True)


def build_inputs(ctx: RunContext, test: pd.DataFrame, train: pd.DataFrame, cand_test: ModelOutputs,
                 cand_train: ModelOutputs, base_test: ModelOutputs | None, baseline: BaselineModel
                 ) -> quality.QualityInputs:
    """Encode labels and predictions for the gate; a baseline whose classes do not fit is `failed`."""
    model_cfg, target = ctx.params.model, ctx.params.model.target
    outputs = [o for o in (cand_test, cand_train, base_test) if o is not None]
    classes = class_list(model_cfg, pd.concat([test[target], train[target]]), *outputs)
    try:
        y_test, y_train = (encode_target(f[target], model_cfg, classes) for f in (test, train))
        candidate, candidate_train = (encode_outputs(o, model_cfg, classes) for o in (cand_test, cand_train))
    except ValueError as exc:
        raise UsageError(f"candidate model vs target column '{target}': {exc}") from None
    base, problem, failed = None, baseline.problem, baseline.failed
    if base_test is not None:
        try:
            base = quality.Baseline(model_cfg.name, baseline.ref.version, baseline.ref.uri,
                                    encode_outputs(base_test, model_cfg, classes), baseline.ref.run_id,
                                    baseline.lineage)
        except ValueError as exc:
            problem, failed = f"baseline {baseline.ref.uri}: {exc}", True
    slice_cols = [*ctx.params.gates.quality.slices.categorical, *ctx.params.gates.quality.slices.numeric]
    return quality.QualityInputs(model_cfg.task, y_test, candidate, base, problem or "no baseline", failed,
                                 test[slice_cols].reset_index(drop=True), y_train, candidate_train)


def _write_predictions(ctx: RunContext, test: pd.DataFrame, train: pd.DataFrame, cand_test: ModelOutputs,
                       cand_train: ModelOutputs, base_test: ModelOutputs | None) -> dict[str, str]:
    """Both models' holdout predictions (and the candidate's on train) as Parquet, for audits and reports."""
    out = ctx.path(REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    target = ctx.params.model.target
    tables = {"predictions_test": _prediction_table(test, target, {"candidate": cand_test, "baseline": base_test}),
              "predictions_train": _prediction_table(train, target, {"candidate": cand_train})}
    artifacts = {}
    for name, table in tables.items():
        table.to_parquet(out / f"{name}.parquet", index=False)
        artifacts[name] = _rel(ctx, out / f"{name}.parquet")
    return artifacts


def _prediction_table(frame: pd.DataFrame, target: str, models: dict[str, ModelOutputs | None]) -> pd.DataFrame:
    columns: dict[str, Any] = {c: frame[c].to_numpy() for c in ("row_id",) if c in frame.columns}
    columns["y_true"] = frame[target].to_numpy()
    for name, outputs in models.items():
        if outputs is None:
            continue
        columns[f"{name}_label"] = outputs.labels
        for i, cls in enumerate(outputs.classes or []):
            columns[f"{name}_proba_{cls}"] = outputs.proba[:, i]
    return pd.DataFrame(columns)


def baseline_info(baseline: BaselineModel) -> dict[str, Any] | None:
    if baseline.ref is None:
        return None
    ref = baseline.ref
    return {"name": ref.name, "version": ref.version, "uri": ref.uri, "run_id": ref.run_id,
            "lineage": baseline.lineage, "usable": not baseline.failed, "problem": baseline.problem or None}


def candidate_info(ctx: RunContext, candidate: Any) -> dict[str, Any]:
    return {"path": _rel(ctx, candidate.path), "run_id": candidate.run_id, "model_id": candidate.model_id}


def _baseline_artifacts(baseline: BaselineModel) -> dict[str, str]:
    if baseline.ref is None:
        return {}
    return {"baseline_model": baseline.ref.uri, "baseline_version": str(baseline.ref.version)}


def _rel(ctx: RunContext, path: Path) -> str:
    return relative(path, ctx.base_dir)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
