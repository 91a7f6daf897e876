"""`mlgate demo`: the whole lifecycle on the bundled data, end to end, with an embedded MLflow.

1. `dvc repro prepare` (the splits); 2. bootstrap a champion when none is registered (a simpler model,
so the comparison is real); 3. `dvc repro` (every gate on the stronger candidate, then the verdict) and
print the verdict table and where report.html is; 4. register the candidate and roll it out live
(shadow, canary steps with analysis, promotion) under replayed production traffic with late labels;
5. a degraded copy of whatever is champion then (pipelines/demo/degraded.py), registered without the
offline gates and rolled back online on the task's label metric. Exit 0 only when both decisions are
right. Steps 4-5 are skipped with --offline-only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlgate.gates.result import ExitCode, Status
from mlgate.pipelines import console
from mlgate.pipelines.errors import UsageError

if TYPE_CHECKING:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.rollout.state import RolloutState



def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.pipelines.cli.main import add_params_argument

    demo = sub.add_parser("demo", help="run the whole CI pipeline on the bundled data and show the verdict")
    add_params_argument(demo)
    demo.add_argument("--champion-estimator", default="logistic_regression",
                      choices=["logistic_regression", "random_forest", "hist_gradient_boosting"],
                      help="estimator of the bootstrapped champion when none is registered")
    demo.add_argument("--offline-only", action="store_true",
                      help="stop after the verdict (no registration, no live rollout)")
    demo.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext

    ctx = _absolute_tracking(RunContext.load(args.params))
    if not (ctx.base_dir / "dvc.yaml").is_file():
        raise UsageError(f"{ctx.base_dir}: no dvc.yaml here; run `mlgate demo` from the repository root")
    if _dvc(ctx.base_dir, "repro", "prepare") != 0:
        console.error("dvc repro prepare failed; the stage output above says why")
        return int(ExitCode.GATE_FAILED)
    _ensure_champion(ctx, args.champion_estimator)
    code = _dvc(ctx.base_dir, "repro")
    verdict = ctx.base_dir / "reports" / "verdict.json"
    if not verdict.is_file():
        console.error(f"dvc repro exited {code} before the verdict stage wrote {verdict}; see the output above")
        return int(ExitCode.INTERNAL if code else ExitCode.GATE_FAILED)
    verdict_code = _print_verdict(ctx, json.loads(verdict.read_text()))
    if args.offline_only or verdict_code != ExitCode.OK:
        return verdict_code
    return _online(ctx)


def _absolute_tracking(ctx: RunContext) -> RunContext:
    """A relative sqlite URI made absolute and exported, so dvc's stages and servers share one store."""
    from dataclasses import replace

    from mlgate.pipelines.rollout.analysis import resolve_log_url

    uri = resolve_log_url(ctx.tracking_uri, ctx.base_dir)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return replace(ctx, tracking_uri=uri)


def _online(ctx: RunContext) -> int:
    """Register and roll out the gated candidate, then a degraded copy of whatever is champion then.

    Exit 0 only when the gated candidate was promoted and the degraded one rolled back; otherwise 1,
    with a last line saying which decision went wrong and why.
    """
    from mlgate.pipelines.demo.degraded import canary_metric, register_degraded
    from mlgate.pipelines.demo.lifecycle import DEMO_MARGIN, run_lifecycle_demo
    from mlgate.pipelines.registry.registration import register_candidate
    from mlgate.pipelines.rollout.report import headline

    registration = register_candidate(ctx)
    console.info(f"demo: registered {ctx.params.model.name} version {registration.version.version} (alias challenger)")
    first = run_lifecycle_demo(ctx, version=registration.version.version)
    metric = canary_metric(ctx.params.model.task)
    degraded_version = register_degraded(ctx, DEMO_MARGIN[metric], console.info)
    second = run_lifecycle_demo(ctx, version=degraded_version)
    console.table("mlgate demo: lifecycle", ["candidate", "version", "outcome", "why"], [
        ("gated candidate", registration.version.version, first.state.position.phase, headline(first.state)),
        ("degraded candidate", degraded_version, second.state.position.phase, headline(second.state)),
    ])
    wrong = []
    if not first.promoted:
        wrong.append(f"the gated candidate v{registration.version.version} was not promoted "
                     f"({first.state.position.phase}: {first.state.reason})")
    if second.state.position.phase != "rolled_back":
        wrong.append(f"the degraded candidate v{degraded_version} was not rolled back "
                     f"({second.state.position.phase}: {second.state.reason})")
    elif not _decided_on(second.state, metric):
        wrong.append(f"the degraded candidate v{degraded_version} was rolled back, but not on {metric} "
                     f"({second.state.reason})")
    if wrong:
        console.error("mlgate demo: wrong decision: " + "; ".join(wrong))
        return int(ExitCode.GATE_FAILED)
    console.info(f"mlgate demo: right decisions: gated candidate v{registration.version.version} promoted, "
                 f"degraded candidate v{degraded_version} rolled back on {metric}")
    return int(ExitCode.OK)


def _decided_on(state: RolloutState, metric: str) -> bool:
    """The rollback reason is the label metric's check (`accuracy delta ...`), not a proxy such as PSI."""

    return f"{metric} delta" in state.reason


def _ensure_champion(ctx: RunContext, estimator: str) -> None:
    from mlgate.pipelines.demo.champion import ensure_champion

    ref, created = ensure_champion(ctx.params, ctx.tracking_uri, ctx.base_dir, estimator)
    if created:
        console.info(f"demo: no champion was registered; trained a {estimator} as {ref.name} "
                     f"version {ref.version} and set alias 'champion' in {ctx.tracking_uri}")
    else:
        console.info(f"demo: champion is {ref.name} version {ref.version} ({ctx.tracking_uri})")


def _dvc(repo: Path, *arguments: str) -> int:
    bin_dir = Path(sys.executable).parent
    dvc = shutil.which("dvc", path=str(bin_dir)) or shutil.which("dvc") or "dvc"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    console.info(f"$ dvc {' '.join(arguments)}")
    return subprocess.run([dvc, *arguments], cwd=repo, env=env, check=False).returncode


def _print_verdict(ctx: RunContext, verdict: dict) -> int:

    status = Status(verdict["status"])
    rows = [(name, Status(gate["status"]), _counts(gate.get("checks", {})), f"{gate.get('duration_s', 0):.1f}s")
            for name, gate in verdict.get("gates", {}).items()]
    console.table(f"mlgate verdict: {status}", ["gate", "status", "checks", "time"], rows)
    for problem in verdict.get("problems", [])[:10]:
        console.info(f"  {problem}")
    for name in ("report.html", "report.md"):
        path = ctx.base_dir / "reports" / name
        if path.is_file():
            console.info(f"{name}: {path}")
    return int(ExitCode.GATE_FAILED if status.blocks else ExitCode.OK)


def _counts(checks: dict) -> str:
    return ", ".join(f"{n} {s.lower()}" for s, n in checks.items() if n) or "none"
