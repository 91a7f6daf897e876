"""Quality gate: the candidate against the production model (alias champion) on the same holdout.

Stage `evaluate` of dvc.yaml runs `mlgate gate quality --report-only`. Reads data/train.parquet and
data/test.parquet, the candidate model directory and the baseline from the MLflow registry; writes
reports/gates/quality.json (via the gate command), metrics/quality.json, plots/quality/ and
reports/quality/ (predictions as Parquet, the deepchecks HTML report).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate.gates.quality import decide as quality
from mlgate.gates.result import GateResult
from mlgate.pipelines.checks.models import Baseline, find_baseline, load_baseline, load_candidate
from mlgate.pipelines.checks.quality import outputs as quality_metrics
from mlgate.pipelines.checks.quality import plots as quality_plots
from mlgate.pipelines.checks.quality.explanations import quality_reasons
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


def run(ctx: RunContext, *, model: str | None = None) -> GateResult:
    """The gate on the candidate `model` (a model directory or MLflow model URI; default: train.model_dir)."""
    started = time.perf_counter()
    params = ctx.params
    train, test = _load_splits(ctx)
    candidate = load_candidate(ctx, model)
    baseline = load_baseline(ctx, find_baseline(ctx, params.gates.quality.baseline_alias))
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
    checks = [*result.checks, quality_reasons(ctx, candidate, baseline, test)]  # information, never fails
    if params.gates.quality.deepchecks.enabled:
        from mlgate.pipelines.checks.quality.deepchecks_check import deepchecks_checks

        deep, html = deepchecks_checks(params, train, test, cand_train, cand_test, ctx.path(REPORT_DIR))
        checks += deep
        artifacts |= {"deepchecks_report": _rel(ctx, html)} if html else {}
    target, task = params.model.target, params.model.task
    classes = None if task == "regression" else class_list(  # as in build_inputs: names the encoded labels
        params.model, pd.concat([test[target], train[target]]),
        *(o for o in (cand_test, cand_train, base_test) if o is not None))
    artifacts |= {k: _rel(ctx, p) for k, p in quality_plots.write_plots(
        ctx.path(PLOT_DIR), result, inputs.y_test, inputs.candidate,
        inputs.baseline.predictions if inputs.baseline else None, task,
        has_slices=quality_plots.slices_configured(params.gates.quality.slices), classes=classes).items()}
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


def _baseline_outputs(baseline: Baseline, x_test: pd.DataFrame, task: str):
    if baseline.model is None:
        return None, baseline
    try:
        return predict_outputs(baseline.model, x_test, task), baseline
    except ValueError as exc:
        problem = f"baseline {baseline.ref.uri} cannot predict the holdout: {exc}"
        return None, baseline.unusable(problem)


def build_inputs(ctx: RunContext, test: pd.DataFrame, train: pd.DataFrame, cand_test: ModelOutputs,
                 cand_train: ModelOutputs, base_test: ModelOutputs | None, baseline: Baseline
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
            base = quality.BaselineOutputs(model_cfg.name, baseline.ref.version, baseline.ref.uri,
                                    encode_outputs(base_test, model_cfg, classes), baseline.ref.run_id,
                                    baseline.lineage, base_test.no_scores)
        except ValueError as exc:
            problem, failed = f"baseline {baseline.ref.uri}: {exc}", True
    slice_cols = [*ctx.params.gates.quality.slices.categorical, *ctx.params.gates.quality.slices.numeric]
    return quality.QualityInputs(model_cfg.task, y_test, candidate, base, problem or "no baseline", failed,
                                 test[slice_cols].reset_index(drop=True), y_train, candidate_train,
                                 cand_test.no_scores)


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


def baseline_info(baseline: Baseline) -> dict[str, Any] | None:
    if baseline.ref is None:
        return None
    ref = baseline.ref
    return {"name": ref.name, "version": ref.version, "uri": ref.uri, "run_id": ref.run_id,
            "lineage": baseline.lineage, "usable": not baseline.failed, "problem": baseline.problem or None}


def candidate_info(ctx: RunContext, candidate: Any) -> dict[str, Any]:
    return {"path": _rel(ctx, candidate.path), "run_id": candidate.run_id, "model_id": candidate.model_id,
            "flavor": candidate.flavor, "skops_flagged_types": list(candidate.flagged_types),
            "scores": not candidate.no_scores}


def _baseline_artifacts(baseline: Baseline) -> dict[str, str]:
    if baseline.ref is None:
        return {}
    return {"baseline_model": baseline.ref.uri, "baseline_version": str(baseline.ref.version)}


def _rel(ctx: RunContext, path: Path) -> str:
    return relative(path, ctx.base_dir)


