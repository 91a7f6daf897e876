"""The demo's second candidate: a degraded model that a lenient config lets through the offline gates,
so that the online rollout has to catch it (DESIGN §8: the offline gates are not the last line).

It lives in its own project directory (reports/demo/degraded/params.yaml) that reuses the repository's
data splits and expectation suite, so its reports never overwrite those of the real pipeline run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from gates.result import ExitCode
from pipelines.cli import main as mlgate
from pipelines.context import RunContext
from pipelines.errors import GateRefused

DEGRADED_DIR = Path("reports/demo/degraded")
# A logistic regression regularised until it almost never predicts churn: accuracy ~0.87 against the
# gradient-boosting champion's ~0.95 on the production split.
DEGRADED_TRAIN = {"estimator": "logistic_regression", "hyperparams": {"C": 0.01}}
OFFLINE_GATES = ("data", "quality", "edge_cases", "latency")


def lenient_params(ctx: RunContext, project: Path) -> dict[str, Any]:
    """params.yaml of the degraded run: every relative quality rule relaxed, slices and deepchecks off."""
    raw = ctx.params.model_dump(mode="json", exclude_none=True)
    back = Path(os.path.relpath(ctx.base_dir, project))
    raw["data"]["dir"] = str(back / ctx.params.data.dir)
    suite = ctx.params.gates.data.suite or f"expectations/{ctx.params.model.name}.json"
    raw["gates"]["data"]["suite"] = str(back / suite)
    raw["train"].update(DEGRADED_TRAIN)
    quality = raw["gates"]["quality"]
    quality["metrics"] = {name: {"greater_is_better": rule["greater_is_better"], "max_regression": 1.0}
                          for name, rule in quality["metrics"].items()}
    quality["slices"] = {**quality["slices"], "categorical": [], "numeric": {}}
    quality["max_gap"] = {}
    quality["deepchecks"] = {**quality["deepchecks"], "enabled": False}
    return raw


def write_project(ctx: RunContext) -> Path:
    project = ctx.base_dir / DEGRADED_DIR
    project.mkdir(parents=True, exist_ok=True)
    path = project / "params.yaml"
    header = "# Written by `mlgate demo`: a deliberately degraded candidate under a lenient config.\n"
    path.write_text(header + yaml.safe_dump(lenient_params(ctx, project), sort_keys=False))
    return path


def register_degraded(ctx: RunContext, log: Any) -> str:
    """Train the degraded model, run every offline gate and the verdict, register it; its version."""
    params = str(write_project(ctx))
    tracking = ["--tracking-uri", ctx.tracking_uri]
    log(f"demo: degraded candidate ({DEGRADED_TRAIN}) under a lenient config: {params}")
    _must(mlgate(["train", "--params", params, *tracking]), "train")
    for gate in OFFLINE_GATES:
        _must(mlgate(["gate", gate, "--params", params, "--report-only", *tracking]), f"gate {gate}")
    if mlgate(["verdict", "--params", params]) != ExitCode.OK:
        raise GateRefused("the lenient offline gates blocked the degraded candidate; see its report.md")
    _must(mlgate(["register", "--params", params, *tracking]), "register")
    registration = RunContext.load(params, ctx.tracking_uri).base_dir / "reports" / "registration.json"
    return str(yaml.safe_load(registration.read_text())["version"])


def _must(code: int, what: str) -> None:
    if code != ExitCode.OK:
        raise GateRefused(f"demo: `mlgate {what}` for the degraded candidate exited {code}")
