"""Data gate (contract + drift) on 1,000,000 rows x 21 columns, side by side with deepchecks' drift checks.

Data: the real churn splits resampled with replacement (seeded): the reference from the training split,
the batch from the production split, `rows` rows each, with a fresh unique row_id. Each side runs in a
fresh process started by a small wrapper that reports the wall time and the peak RSS of its child
(`resource.getrusage(RUSAGE_CHILDREN)`, what `/usr/bin/time -v` shows):

- mlgate: read both files, Great Expectations validation of both against expectations/churn.json
  (the gate validates train and the batch), then `gates.data.check` (contract checks + per-feature
  PSI/KS/chi-square/JS drift of every feature, as params.yaml configures).
- deepchecks 0.19.1 in its pinned side environment (pipelines/deepchecks/env.py): the drift checks of
  its `train_test_validation` suite (FeatureDrift, LabelDrift, MultivariateDrift; suite defaults).

Targets: mlgate under 20 s and 4 GB on 2 cores, and at least 5x faster than deepchecks.

    python -m benchmarks.data_gate [--rows N] [--no-write] [--skip-deepchecks]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import publish

REPO = Path(__file__).resolve().parents[1]
TARGET_S, TARGET_GB, TARGET_RATIO = 20.0, 4.0, 5.0
SEED = 20240601
TIMEOUT_S = 3600.0
# Runs argv[2:] as a child and writes its wall time, exit code and peak RSS (KiB on Linux) to argv[1].
_WRAPPER = (
    "import json,resource,subprocess,sys,time\n"
    "t=time.perf_counter(); code=subprocess.call(sys.argv[2:])\n"
    "wall=time.perf_counter()-t; rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1],'w').write(json.dumps({'wall_s':wall,'exit':code,'max_rss_kib':rss}))\n"
)


def build_data(rows: int, out: Path) -> dict[str, str]:
    """Reference (from train) and batch (from production), `rows` each, resampled with a fixed seed."""
    from mlgate.pipelines.datasets import load_source
    from mlgate.pipelines.params import load_params
    from mlgate.pipelines.stages.prepare import make_splits

    params = load_params(REPO / "params.yaml")
    splits = make_splits(load_source(params.data, REPO), params)
    rng = np.random.default_rng(SEED)
    paths = {}
    for name, split in (("reference", "train"), ("batch", "production")):
        source = splits[split]
        frame = source.iloc[rng.integers(0, len(source), size=rows)].reset_index(drop=True)
        frame["row_id"] = np.arange(rows, dtype=np.int64)
        paths[name] = str(out / f"{name}.parquet")
        frame.to_parquet(paths[name], index=False)
    return paths


def mlgate_side(paths: dict[str, str], output: str) -> int:
    """In a fresh process: the data gate's contract + drift on both files, with phase timings."""
    started = time.perf_counter()
    import pandas as pd

    from mlgate.gates.data.decide import DataGateInputs, check
    from mlgate.pipelines.checks.data.expectations import Validator, read_suite
    from mlgate.pipelines.params import load_params

    params = load_params(REPO / "params.yaml")
    config = params.gates.data
    timings = {"import_s": time.perf_counter() - started}
    mark = time.perf_counter()
    frames = {"train": pd.read_parquet(paths["reference"]), "batch": pd.read_parquet(paths["batch"])}
    timings["read_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    validator = Validator(read_suite(REPO / "expectations" / "churn.json"), "expectations/churn.json",
                          config.max_examples)  # imports Great Expectations and builds its ephemeral context
    timings["gx_import_and_context_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    contract = {name: validator.validate(frame) for name, frame in frames.items()}
    timings["contract_gx_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    inputs = DataGateInputs(frames["train"], params.data.numeric, params.data.categorical, "batch",
                            frames, contract)
    result = check(inputs, config).result
    timings["checks_and_drift_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    summary = {"status": str(result.status), "checks": len(result.checks),
               "not_passed": [f"{c.status} {c.name}" for c in result.checks if c.status != "PASS"][:10]}
    Path(output).write_text(json.dumps({"timings": timings, **summary}, indent=1), encoding="utf-8")
    return 0


def deepchecks_spec(paths: dict[str, str], output: str) -> dict:
    from mlgate.pipelines.params import load_params

    params = load_params(REPO / "params.yaml")
    return {**paths, "output": output, "label": params.model.target,
            "features": params.data.features, "categorical": params.data.categorical}


def measured(command: list[str], work: Path, name: str, env: dict[str, str] | None = None) -> dict:
    """Run `command` under the RUSAGE_CHILDREN wrapper; its own JSON output is merged in."""
    usage = work / f"{name}.usage.json"
    subprocess.run([sys.executable, "-c", _WRAPPER, str(usage), *command], check=True, timeout=TIMEOUT_S,
                   env=env, cwd=REPO)
    figures = json.loads(usage.read_text())
    figures["peak_rss_gib"] = figures.pop("max_rss_kib") / 2**20
    result = work / f"{name}.json"
    if figures["exit"] != 0 or not result.is_file():
        raise RuntimeError(f"{name} side exited {figures['exit']} without writing {result}")
    return {**figures, **json.loads(result.read_text())}


def run_deepchecks(paths: dict[str, str], work: Path) -> dict:
    from mlgate.pipelines.deepchecks.env import ensure_env, side_env_vars

    python = ensure_env()
    spec = work / "deepchecks.spec.json"
    spec.write_text(json.dumps(deepchecks_spec(paths, str(work / "deepchecks.json"))))
    script = str(REPO / "benchmarks" / "_deepchecks_drift.py")
    return measured([str(python), script, str(spec)], work, "deepchecks", env=side_env_vars())


def report(rows: int, ours: dict, theirs: dict | None, load: tuple[float, float]) -> str:
    """The markdown section: command, machine, one row per side, the ratio and the targets."""
    from benchmarks import machine_description

    lines = [f"Command: `python -m benchmarks.data_gate --rows {rows}`  ", f"Machine: {machine_description()}", "",
             f"Data: the real churn splits resampled (seed {SEED}) to {rows:,} reference rows (from train) and "
             f"{rows:,} batch rows (from production), 21 columns (row_id, 4 categorical, 15 numeric, target). "
             "Wall time and peak RSS are of a fresh process per side, imports included. 1-minute load average "
             f"{load[0]:.1f} before and {load[1]:.1f} after (the 2 cores are shared with other work).", "",
             "| side | what runs | wall s | peak RSS GiB | phases (s) |", "|---|---|---:|---:|---|"]
    phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in ours["timings"].items())
    lines.append(f"| mlgate | GX contract on both frames + drift of 19 features | {ours['wall_s']:.1f} | "
                 f"{ours['peak_rss_gib']:.2f} | {phases} |")
    if theirs:
        phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in theirs["timings"].items())
        lines.append(f"| deepchecks {theirs['deepchecks_version']} | train_test_validation drift checks "
                     f"(FeatureDrift, LabelDrift, MultivariateDrift) | {theirs['wall_s']:.1f} | "
                     f"{theirs['peak_rss_gib']:.2f} | {phases} |")
    lines += ["", f"mlgate gate status on the resampled batch: {ours['status']} ({ours['checks']} checks)."]
    t = ours["timings"]
    imports = t["import_s"] + t["gx_import_and_context_s"]
    lines.append(f"Where mlgate's time goes: imports {imports:.1f} s ({imports / ours['wall_s']:.0%} of its wall time; "
                 f"Great Expectations alone {t['gx_import_and_context_s']:.1f} s), reading {t['read_s']:.1f} s, "
                 f"validating the 2 x {rows:,} rows {t['contract_gx_s']:.1f} s, contract checks and drift "
                 f"{t['checks_and_drift_s']:.1f} s.")
    met = ours["wall_s"] < TARGET_S and ours["peak_rss_gib"] < TARGET_GB
    lines.append(f"Target under {TARGET_S:.0f} s and {TARGET_GB:.0f} GB: {'met' if met else 'NOT met'}.")
    if theirs:
        ratio = theirs["wall_s"] / ours["wall_s"]
        drift_ratio = theirs["timings"]["checks_s"] / ours["timings"]["checks_and_drift_s"]
        lines.append(f"deepchecks / mlgate wall time: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: "
                     f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}). Drift computation alone (mlgate's gate "
                     f"checks and drift phase vs deepchecks' suite run): {drift_ratio:.1f}x. deepchecks checks no "
                     "data contract and subsamples by default (100,000 rows per dataset for FeatureDrift and "
                     "LabelDrift, 10,000 for MultivariateDrift); mlgate validates every row of both frames with "
                     "Great Expectations, computes PSI on every row and tests on 50,000-row samples.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_gate", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/BENCHMARKS.md")
    parser.add_argument("--skip-deepchecks", action="store_true")
    parser.add_argument("--side", choices=["mlgate"], help=argparse.SUPPRESS)
    parser.add_argument("--data", nargs=2, metavar=("REFERENCE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side == "mlgate":
        return mlgate_side({"reference": args.data[0], "batch": args.data[1]}, args.output)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-data-") as tmp:
        work = Path(tmp)
        paths = build_data(args.rows, work)
        print(f"data gate benchmark: {args.rows:,} rows per side in {work}", flush=True)
        ours = measured([sys.executable, "-m", "benchmarks.data_gate", "--side", "mlgate", "--data",
                         paths["reference"], paths["batch"], "--output", str(work / "mlgate.json")], work, "mlgate")
        print(f"  mlgate: {ours['wall_s']:.1f} s, {ours['peak_rss_gib']:.2f} GiB", flush=True)
        theirs = None if args.skip_deepchecks else run_deepchecks(paths, work)
        if theirs:
            print(f"  deepchecks: {theirs['wall_s']:.1f} s, {theirs['peak_rss_gib']:.2f} GiB", flush=True)
    body = report(args.rows, ours, theirs, (load_before, os.getloadavg()[0]))
    publish('Data gate: contract + drift vs deepchecks', body, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
