"""Public data sets mlgate was never tuned for, through every stage with nothing but params.yaml.

`examples/public_datasets/run.py` (also `make datasets`, the full runs with `mlgate demo`) on the
multiclass and the regression data set: a new git repository, `mlgate init`, the edits a user makes,
`dvc repro`. The binary one with string labels (credit_data) runs the same way from the installed
wheel in tests/test_wheel.py. Every gate must decide (no ERROR from mlgate's defaults), the verdict must
let the good candidate through, and the reports must fit the task.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _runner() -> Any:
    spec = importlib.util.spec_from_file_location("public_datasets", ROOT / "examples" / "public_datasets" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def _checks(repo: Path, gate: str) -> list[dict[str, Any]]:
    return json.loads((repo / "reports" / "gates" / f"{gate}.json").read_text())["checks"]


@pytest.mark.slow
@pytest.mark.deepchecks
@pytest.mark.parametrize("name", ["penguins", "boston"])
def test_a_public_dataset_goes_through_every_stage_and_every_gate_decides(name: str, tmp_path: Path) -> None:
    spec = next(d for d in RUNNER.DATASETS if d.name == name)
    result = RUNNER.run_dataset(spec, tmp_path, rows=None, offline_only=True, fast=True)
    log = (tmp_path / f"{name}.log").read_text()[-4000:]
    assert result["errors"] == [], result["errors"]
    assert set(result["gates"]) == {"data", "quality", "edge_cases", "latency"}, log
    assert RUNNER.passed(result, offline_only=True), (result["gates"], result["verdict"], log)
    repo = Path(result["repo"])
    quality = _checks(repo, "quality")
    deepchecks = {c["details"]["check"] for c in quality if c["name"].startswith("deepchecks.")
                  and c["status"] != "SKIP"}
    assert {"SimpleModelComparison", "TrainTestPerformance"} <= deepchecks  # run and decided for this task
    plots = {p.name for p in (repo / "plots" / "quality").glob("*.png")}
    if name == "boston":
        assert "residuals.png" in plots and not plots & {"roc.png", "pr.png"}
        edge = {c["name"]: c for c in _checks(repo, "edge_cases")}
        assert edge["case.feature.chas.unseen_category"]["status"] == "PASS"  # a 0/1 flag kept as a category
    else:
        assert {"roc.png", "pr.png", "confusion.png"} <= plots
