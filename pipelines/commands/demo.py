"""`mlgate demo`: the CI pipeline on the bundled data, end to end, with an embedded MLflow.

1. `dvc repro prepare` (the splits), 2. bootstrap a champion when none is registered (a simpler
model, so the comparison is real), 3. `dvc repro` (every gate on the stronger candidate, then the
verdict), 4. print the verdict table and where report.html is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gates.result import ExitCode, Status
from pipelines import console
from pipelines.context import RunContext
from pipelines.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.cli import add_params_argument

    demo = sub.add_parser("demo", help="run the whole CI pipeline on the bundled data and show the verdict")
    add_params_argument(demo)
    demo.add_argument("--champion-estimator", default="logistic_regression",
                      choices=["logistic_regression", "random_forest", "hist_gradient_boosting"],
                      help="estimator of the bootstrapped champion when none is registered")
    demo.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    ctx = RunContext.load(args.params)
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
    return _print_verdict(ctx, json.loads(verdict.read_text()))


def _ensure_champion(ctx: RunContext, estimator: str) -> None:
    from pipelines.champion import ensure_champion

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
