"""The data gate: contract results of every split + drift of the batch + train/serving skew -> GateResult.

Pure: it takes DataFrames, GX result dictionaries and `DataGateConfig`, never paths. The stage
(pipelines/checks/data/stage.py) reads the files, runs Great Expectations and writes the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlgate.gates.config import DataGateConfig
from mlgate.gates.data.contract import contract_checks
from mlgate.gates.data.drift import FeatureDrift
from mlgate.gates.data.drift_checks import drift_checks, thresholds_for
from mlgate.gates.result import Check, GateResult, Status
from mlgate.gates.data.skew import skew_checks

GATE = "data"


@dataclass(frozen=True)
class SkewInputs:
    """Logged rows and the offline rows they should equal; `error` when the logged file was unusable."""

    logged: pd.DataFrame | None = None
    offline: pd.DataFrame | None = None
    error: str | None = None


@dataclass(frozen=True)
class DataGateInputs:
    """Everything the gate judges. `frames` are the validated splits by name (train, test, the batch);
    `contract` their GX results; `input_errors` splits that could not even be read, with the reason."""

    reference: pd.DataFrame
    numeric: Sequence[str]
    categorical: Sequence[str]
    batch_name: str
    frames: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    contract: Mapping[str, Sequence[dict[str, Any]]] = field(default_factory=dict)
    input_errors: Mapping[str, str] = field(default_factory=dict)
    skew: SkewInputs | None = None


@dataclass(frozen=True)
class DataGateOutcome:
    """The verdict, plus the per-feature drift rows the stage charts."""

    result: GateResult
    drift: tuple[FeatureDrift, ...]


def check(inputs: DataGateInputs, config: DataGateConfig) -> DataGateOutcome:
    """Judge the contract of every split, the drift of the batch and, when given, skew."""
    started = time.perf_counter()
    checks = [Check(f"input.{split}", Status.ERROR, None, "a readable data file", reason)
              for split, reason in inputs.input_errors.items()]
    for split, frame in inputs.frames.items():
        checks += frame_checks(split, frame)
    for split, results in inputs.contract.items():
        checks += contract_checks(split, results, config.max_examples, inputs.frames.get(split))
    drift_rows: list[FeatureDrift] = []
    batch = inputs.frames.get(inputs.batch_name)
    if batch is not None:
        more, drift_rows = batch_drift(inputs, batch, config)
        checks += more
    if inputs.skew is not None:
        checks += skew_section(inputs.skew, inputs, config)
    result = GateResult.from_checks(GATE, checks, time.perf_counter() - started)
    return DataGateOutcome(result, tuple(drift_rows))


def frame_checks(split: str, frame: pd.DataFrame) -> list[Check]:
    """Problems of the table itself that GX cannot report: duplicate column names."""
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if not duplicated:
        return []
    return [Check(f"contract.{split}.unique_column_names", Status.FAIL, duplicated, "unique column names",
                  f"{split}: duplicate column names: {', '.join(duplicated)}")]


def batch_drift(inputs: DataGateInputs, batch: pd.DataFrame, config: DataGateConfig
                ) -> tuple[list[Check], list[FeatureDrift]]:
    """Drift checks, or one ERROR saying why drift could not be computed on this batch."""
    expected = "a batch with rows and unique column names"
    if batch.columns.duplicated().any():
        return [Check("drift", Status.ERROR, None, expected,
                      f"{inputs.batch_name}: drift not computed, the batch has duplicate column names")], []
    if batch.empty:
        return [Check("drift", Status.ERROR, 0, expected,
                      f"{inputs.batch_name}: drift not computed, the batch has no rows")], []
    return drift_checks(inputs.reference, batch, inputs.numeric, inputs.categorical, config.drift)


def skew_section(skew: SkewInputs, inputs: DataGateInputs, config: DataGateConfig) -> list[Check]:
    if skew.error is not None or skew.logged is None or skew.offline is None:
        reason = skew.error or "logged or offline rows missing"
        return [Check("skew.keys", Status.ERROR, None, "readable logged rows", reason)]
    if skew.logged.columns.duplicated().any():
        names = sorted({str(c) for c in skew.logged.columns[skew.logged.columns.duplicated()]})
        return [Check("skew.keys", Status.ERROR, names, "unique column names",
                      f"logged rows have duplicate column names: {', '.join(names)}")]
    drift_rule, _ = thresholds_for(config.drift)
    return skew_checks(skew.logged, skew.offline, inputs.numeric, inputs.categorical, config.skew,
                       drift_rule, config.max_examples)


def summary_metrics(outcome: DataGateOutcome) -> dict[str, Any]:
    """Numbers for `metrics/data.json` (dvc metrics): counts by status and section, drift figures."""
    result = outcome.result
    by_section: dict[str, dict[str, int]] = {}
    for item in result.checks:
        section = item.name.split(".")[0]
        counts = by_section.setdefault(section, {"checks": 0, "failed": 0, "errors": 0, "warnings": 0})
        counts["checks"] += 1
        counts["failed"] += item.status is Status.FAIL
        counts["errors"] += item.status is Status.ERROR
        counts["warnings"] += item.status is Status.WARN
    decided = [r for r in outcome.drift if r.drifted is not None]
    drift = {"features": len(outcome.drift), "drifted": sum(bool(r.drifted) for r in decided),
             "max_psi": max((r.psi for r in decided), default=None)}
    return {"status": str(result.status), "checks": len(result.checks), "sections": by_section, "drift": drift}
