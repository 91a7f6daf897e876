"""Quality gate statistics on a 1,000,000-row holdout with B = 1,000: wall time and peak memory.

Real predictions, resampled: a logistic-regression champion and the params.yaml candidate are fitted
on the real churn training split and predict its holdout; the benchmark draws 1,000,000 holdout
rows with replacement (seeded) and adds a tiny seeded jitter to the scores, so ranks are not tied as
they would not be in a real holdout of that size. Measured in a fresh process (peak RSS of that
process): `gates.quality.check` with every metric configured in params.yaml, B = 1,000, and the
configured slices. Target: under 30 s and 4 GB on 2 cores.

    python -m benchmarks.quality_gate [--rows N] [--no-write]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import publish

REPO = Path(__file__).resolve().parents[1]
TARGET_S, TARGET_GB = 30.0, 4.0
SEED = 20240601


def build_holdout(rows: int, out: Path) -> dict[str, str]:
    """Fit both models on the real training split, resample their holdout predictions to `rows` rows."""
    from mlgate.pipelines.datasets import load_source
    from mlgate.pipelines.params import load_params
    from mlgate.pipelines.stages.prepare import make_splits
    from mlgate.pipelines.stages.train import build_pipeline

    params = load_params(REPO / "params.yaml")
    splits = make_splits(load_source(params.data, REPO), params)
    train, test = splits["train"], splits["test"]
    features, target, positive = params.data.features, params.model.target, params.model.positive_class
    rng = np.random.default_rng(SEED)
    pick = rng.integers(0, len(test), size=rows)
    arrays = {"y": (test[target].to_numpy() == positive).astype(np.int8)[pick]}
    champion = params.train.model_copy(update={"estimator": "logistic_regression", "hyperparams": {}})
    for name, train_cfg in (("baseline", champion), ("candidate", params.train)):
        config = params.model_copy(update={"train": train_cfg})
        model = build_pipeline(config).fit(train[features], train[target])
        score = model.predict_proba(test[features])[:, list(model.classes_).index(positive)][pick]
        arrays[f"{name}_score"] = np.clip(score + rng.normal(0.0, 1e-6, rows), 1e-9, 1 - 1e-9)
        arrays[f"{name}_label"] = (model.predict(test[features]) == positive).astype(np.int8)[pick]
    columns = [*params.gates.quality.slices.categorical, *params.gates.quality.slices.numeric]
    test[columns].iloc[pick].reset_index(drop=True).to_parquet(out / "slices.parquet")
    np.savez(out / "holdout.npz", **arrays)
    return {"holdout": str(out / "holdout.npz"), "slices": str(out / "slices.parquet")}


def measure(paths: dict[str, str], queue) -> None:
    """In a fresh process: load the holdout, run the gate's statistics, report time and peak RSS."""
    import pandas as pd

    from mlgate.gates.quality.decide import Baseline, QualityInputs, check
    from mlgate.gates.stats import Predictions
    from mlgate.pipelines.params import load_params

    config = load_params(REPO / "params.yaml").gates.quality
    config = config.model_copy(update={"bootstrap": config.bootstrap.model_copy(update={"n_boot": 1000})})
    data = np.load(paths["holdout"])
    y = data["y"].astype(np.int64)

    def predictions(name: str) -> Predictions:
        score = data[f"{name}_score"]
        return Predictions(labels=data[f"{name}_label"].astype(np.int64), scores=score, proba=score)

    inputs = QualityInputs("binary", y, predictions("candidate"),
                           Baseline("churn", "bench", "models:/churn/bench", predictions("baseline")),
                           slice_frame=pd.read_parquet(paths["slices"]), y_train=y,
                           candidate_train=predictions("candidate"))
    load_before = os.getloadavg()[0]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    started = time.perf_counter()
    result = check(inputs, config)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB on Linux
    metrics = [c.name.split(".")[1] for c in result.checks if c.name.endswith(".vs_baseline")]
    slices = [c for c in result.checks if c.name.startswith("slice.")]
    errors = [c.message for c in result.checks if c.status == "ERROR"]
    queue.put({"seconds": elapsed, "peak_gb": peak, "loaded_gb": rss_before, "rows": int(y.size),
               "checks": len(result.checks), "metrics": metrics, "slices": len(slices), "errors": errors,
               "status": str(result.status), "methods": _methods(result),
               "load": (load_before, os.getloadavg()[0])})


def _methods(result) -> dict[str, str]:
    return {c.name.split(".")[1]: c.details.get("method", "") for c in result.checks if c.name.endswith(".vs_baseline")}


def run_in_fresh_process(paths: dict[str, str]) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=measure, args=(paths, queue))
    process.start()
    figures = queue.get(timeout=600)
    process.join()
    return figures


def report(figures: dict, command: str) -> str:
    from benchmarks import machine_description

    verdict = "meets" if figures["seconds"] < TARGET_S and figures["peak_gb"] < TARGET_GB else "MISSES"
    methods = "\n".join(f"| {m} | {figures['methods'][m]} |" for m in figures["metrics"])
    return f"""Command: `{command}`

Machine: {machine_description()}

Workload: `gates.quality.check` on a {figures['rows']:,}-row holdout (real churn holdout predictions of a
logistic-regression champion and the params.yaml candidate, resampled with replacement, seeded),
B = 1,000 paired bootstrap resamples, every metric in params.yaml ({', '.join(figures['metrics'])}),
{figures['slices']} slice comparisons (Holm), overfitting gaps (the holdout standing in for a 1M-row train side)
and calibration; {figures['checks']} checks,
gate status {figures['status']}, {len(figures['errors'])} errors. Measured in a fresh process; 1-minute load
average {figures['load'][0]:.1f} before and {figures['load'][1]:.1f} after (the 2 cores are shared with other work).

| figure | value | target |
|---|---|---|
| wall time of `check()` | {figures['seconds']:.1f} s | < {TARGET_S:.0f} s |
| peak RSS of the process | {figures['peak_gb']:.2f} GiB (of which {figures['loaded_gb']:.2f} GiB before `check()`: interpreter, libraries, data) | < {TARGET_GB:.0f} GiB |

Result: {verdict} the target.

| metric | method as reported by mlgate.gates.stats |
|---|---|
{methods}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_gate", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-") as tmp:
        paths = build_holdout(args.rows, Path(tmp))
        figures = run_in_fresh_process(paths)
    command = "python -m benchmarks.quality_gate" + ("" if args.rows == 1_000_000 else f" --rows {args.rows}")
    text = report(figures, command)
    publish('Quality gate', text, write=not args.no_write)
    return 0 if not figures["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
