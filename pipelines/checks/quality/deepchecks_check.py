"""The quality gate's deepchecks part: the candidate's train/test data and predictions to the side env.

Data goes as Parquet under reports/quality/, predictions as arrays (mlgate.pipelines.deepchecks.suites saves
them as .npy); no model crosses environments (DESIGN §9). Each deepchecks condition becomes a Check.
When the environment cannot be built, `deepchecks.on_unavailable` decides: error (default), warn, skip.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from mlgate.gates.result import Check, Status
from mlgate.pipelines import console
from mlgate.pipelines.checks.quality.model_outputs import ModelOutputs
from mlgate.pipelines.deepchecks.suites import DeepchecksRequest, Predictions, run_suites
from mlgate.pipelines.params import Params

ENVIRONMENT_CHECK = "deepchecks.environment"
_ON_UNAVAILABLE = {"error": Status.ERROR, "warn": Status.WARN, "skip": Status.SKIP}


def deepchecks_checks(
    params: Params, train: pd.DataFrame, test: pd.DataFrame, cand_train: ModelOutputs, cand_test: ModelOutputs,
    out_dir: Path,
) -> tuple[list[Check], Path | None]:
    """Run the configured suites on the candidate; returns their checks and the HTML report."""
    cfg = params.gates.quality.deepchecks
    request = build_request(params, train, test, cand_train, cand_test, Path(out_dir))
    outcome = run_suites(request, out_dir=Path(out_dir) / "deepchecks", timeout_s=cfg.timeout_s, log=console.info)
    checks = [on_unavailable(c, cfg.on_unavailable) for c in outcome.checks]
    return checks, outcome.html_report


def build_request(
    params: Params, train: pd.DataFrame, test: pd.DataFrame, cand_train: ModelOutputs, cand_test: ModelOutputs,
    out_dir: Path,
) -> DeepchecksRequest:
    """Write the train and test frames (features, label, row id) as Parquet and describe the run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = "row_id" if "row_id" in test.columns and "row_id" in train.columns else None
    columns = [*([index] if index else []), *params.data.features, params.model.target]
    paths = {}
    for name, frame in (("train", train), ("test", test)):
        paths[name] = out_dir / f"deepchecks_{name}.parquet"
        frame[columns].to_parquet(paths[name], index=False)
    predictions = Predictions(train=cand_train.labels, test=cand_test.labels, train_proba=cand_train.proba,
                              test_proba=cand_test.proba, classes=cand_test.classes)
    return DeepchecksRequest(
        train_path=paths["train"], test_path=paths["test"], label=params.model.target, task=params.model.task,
        cat_features=list(params.data.categorical), features=list(params.data.features), predictions=predictions,
        suites=list(params.gates.quality.deepchecks.suites), index_column=index,
        exclude_checks=list(params.gates.quality.deepchecks.exclude_checks),
    )


def on_unavailable(check: Check, policy: str) -> Check:
    """An environment that cannot be built is ERROR unless the config says warn or skip."""
    if check.name != ENVIRONMENT_CHECK or policy == "error":
        return check
    note = f" (gates.quality.deepchecks.on_unavailable: {policy})"
    return replace(check, status=_ON_UNAVAILABLE[policy], message=check.message + note)
