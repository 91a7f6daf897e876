"""`mlgate demo`: run the pipeline on the bundled data with `dvc repro` and say where everything is."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gates.result import ExitCode
from pipelines import console
from pipelines.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole pipeline on the bundled data (dvc repro) and summarise")
    demo.add_argument("--repo", default=".", help="repository root holding dvc.yaml (default: .)")
    demo.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    repo = Path(args.repo).resolve()
    if not (repo / "dvc.yaml").is_file():
        raise UsageError(f"{repo}: no dvc.yaml here; run `mlgate demo` from the repository root")
    code = _dvc_repro(repo)
    if code != 0:
        console.error(f"dvc repro failed with exit code {code}; the stage output above says why")
        return int(ExitCode.GATE_FAILED)
    _summarise(repo)
    return int(ExitCode.OK)


def _dvc_repro(repo: Path) -> int:
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    console.info(f"$ dvc repro   (in {repo})")
    return subprocess.run([dvc, "repro"], cwd=repo, env=env, check=False).returncode


def _summarise(repo: Path) -> None:
    run_file = repo / "reports" / "train_run.json"
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        console.info(f"MLflow run: {run['run_id']} (experiment id {run['experiment_id']}) in {run['tracking_uri']}")
        console.info(f"  browse it: mlflow ui --backend-store-uri {run['tracking_uri']}")
        console.info(f"  model: {run['model_uri']}")
    metrics = repo / "metrics" / "train.json"
    if metrics.is_file():
        values = json.loads(metrics.read_text())
        console.table("holdout metrics (metrics/train.json; also `dvc metrics show`)", ["metric", "value"],
                      [(k, f"{v:.4f}") for k, v in sorted(values.items())])
