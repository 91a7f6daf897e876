"""The deepchecks side of benchmarks/data_gate.py, run by the pinned deepchecks environment's python.

    <side-env python> benchmarks/_deepchecks_drift.py SPEC.json

Standard library, pandas and deepchecks only (mlgate is not installed there). Runs the drift checks of
deepchecks' own `train_test_validation` suite (FeatureDrift, LabelDrift, MultivariateDrift) with the
suite's default parameters on the reference and batch Parquet files, and writes timings and the
per-check outcome as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

DRIFT_CHECKS = ("FeatureDrift", "LabelDrift", "MultivariateDrift")


def main(argv: list[str]) -> int:
    os.environ.setdefault("DISABLE_DEEPCHECKS_ANONYMOUS_TELEMETRY", "True")
    warnings.simplefilter("ignore")
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    started = time.perf_counter()
    import deepchecks
    import pandas as pd
    from deepchecks.tabular import Dataset, suites

    deepchecks.set_verbosity(logging.WARNING)
    timings = {"import_s": time.perf_counter() - started}
    mark = time.perf_counter()
    frames = [pd.read_parquet(spec[key]) for key in ("reference", "batch")]
    timings["read_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    train, test = (Dataset(f, label=spec["label"], features=spec["features"], cat_features=spec["categorical"])
                   for f in frames)
    timings["datasets_s"] = time.perf_counter() - mark
    suite = suites.train_test_validation()
    for index, item in list(suite.checks.items()):
        if type(item).__name__ not in DRIFT_CHECKS:
            suite.remove(index)
    mark = time.perf_counter()
    result = suite.run(train_dataset=train, test_dataset=test)
    timings["checks_s"] = time.perf_counter() - mark
    outcomes = [{"check": type(r.check).__name__, "passed": bool(r.passed_conditions()) if hasattr(r, "passed_conditions")
                 else None, "failure": str(getattr(r, "exception", "")) or None} for r in result.results]
    timings["total_s"] = time.perf_counter() - started
    output = {"deepchecks_version": deepchecks.__version__, "timings": timings, "checks": outcomes}
    Path(spec["output"]).write_text(json.dumps(output, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
