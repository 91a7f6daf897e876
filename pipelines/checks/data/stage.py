"""Validate data: the expectation suite on train, test and a batch, drift vs training, serving skew.

`mlgate gate data --suggest` derives the suite from the training split (and never silently overwrites a
curated one). A batch that cannot be read is an ERROR result naming the file (exit 1); a missing
params file, training/test split or suite is bad usage (exit 2).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlgate.gates.data.contract import ColumnRoles
from mlgate.gates.result import ExitCode, GateResult, first_line
from mlgate.pipelines import console
from mlgate.pipelines.checks.data.suggestion import suggested_suite
from mlgate.pipelines.checks.data.expectations import (
    Validator,
    diff_suites,
    read_suite,
    suite_path,
    write_suite,
)
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import SPLITS, check_dataset, load_split, read_table, split_path
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import relative

if TYPE_CHECKING:
    from mlgate.gates.data.decide import SkewInputs

DEFAULT_BATCH = "production"


def run(ctx: RunContext, *, suggest_only: bool = False, force: bool = False, batch: str | None = None,
        logged: str | None = None) -> GateResult | int:
    """The gate on `batch` (default: the production split), or with `suggest_only` the suite derivation
    (an exit code: it is not an evaluation)."""
    if suggest_only:
        if batch or logged:
            raise UsageError("--suggest derives the suite from the training split; it takes no --batch or --logged")
        return suggest(ctx, force=force)
    if force:
        raise UsageError("--force only applies with --suggest")
    return evaluate(ctx, batch=batch, logged=logged)


def suggest(ctx: RunContext, force: bool = False) -> int:
    """Write the suggested suite; if a different one exists, show the diff and keep it unless `force`."""
    params, base = ctx.params, ctx.base_dir
    splits = {split: load_split(params.data, split, base) for split in SPLITS}
    train = splits["train"]
    check_dataset(train, params.model, params.data, str(split_path(params.data, "train", base)))
    suggested = suggested_suite(params, splits, "mlgate gate data --suggest")
    path = suite_path(params.gates.data.suite, params.model.name, base)
    shown = relative(path, base)
    if not path.is_file():
        write_suite(path, suggested)
        console.info(f"data: wrote {shown} ({len(suggested['expectations'])} expectations from {len(train)} rows)")
        return int(ExitCode.OK)
    changes = diff_suites(_read_json_or_empty(path, force), suggested)
    if not changes:
        console.info(f"data: {shown} is up to date with the training split")
        return int(ExitCode.OK)
    console.info(f"data: the training split suggests {len(changes)} change(s) to {shown}:")
    for line in changes:
        console.info(f"  {line}")
    if force:
        write_suite(path, suggested)
        console.info(f"data: --force: overwrote {shown}")
        return int(ExitCode.OK)
    # Not a failed gate (exit 1) nor bad usage (exit 2): the suggestion was shown, the curated suite stands.
    console.warning(f"{shown} differs from the suggestion and was kept (it may hold curated edits); "
                    "edit it by hand, or re-run with --suggest --force to overwrite it")
    return int(ExitCode.OK)


def _read_json_or_empty(path: Path, force: bool) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if force:
            return {"expectations": []}
        raise UsageError(f"{path}: not valid JSON ({exc}); fix it or re-run with --suggest --force") from None


def column_roles(ctx: RunContext, frame: pd.DataFrame) -> ColumnRoles:
    data, keys = ctx.params.data, [ctx.params.gates.data.skew.offline_key]
    return ColumnRoles(tuple(data.categorical), tuple(data.numeric), ctx.params.model.target,
                       tuple(k for k in keys if k in frame.columns))


def evaluate(ctx: RunContext, batch: str | None = None, logged: str | None = None) -> GateResult:
    """Contract on train, test and the batch; drift of the batch; skew when logged rows are given."""
    # Imported here: the statistics pull in scipy, and building the CLI parser imports this module.
    from mlgate.gates.data.decide import DataGateInputs, check, summary_metrics
    from mlgate.pipelines.checks.data.outputs import write_drift_plots, write_metrics

    started = time.perf_counter()
    params, base, config = ctx.params, ctx.base_dir, ctx.params.gates.data
    suite = read_suite(suite_path(config.suite, params.model.name, base))
    frames = {split: load_split(params.data, split, base) for split in ("train", "test")}
    check_dataset(frames["train"], params.model, params.data, str(split_path(params.data, "train", base)))
    # Paths given on the command line are relative to the working directory, those in params.yaml to the project.
    batch_name, batch_path = ("batch", Path(batch)) if batch else (DEFAULT_BATCH, split_path(params.data, DEFAULT_BATCH, base))
    errors = {}
    try:
        frames[batch_name] = read_rows(batch_path)
    except UsageError as exc:
        errors[batch_name] = f"{exc}; the batch was not validated"
    validator = Validator(suite, str(suite_path(config.suite, params.model.name, base)), config.max_examples)
    contract = {s: validator.validate(f) for s, f in frames.items() if not f.columns.duplicated().any()}
    inputs = DataGateInputs(frames["train"], params.data.numeric, params.data.categorical, batch_name,
                            frames, contract, errors, skew_inputs(ctx, logged))
    outcome = check(inputs, config)
    artifacts = {"metrics": relative(write_metrics(base, summary_metrics(outcome)), base)}
    artifacts.update({k: relative(p, base) for k, p in write_drift_plots(base, outcome.drift, config.drift).items()})
    return dataclasses.replace(outcome.result, duration_s=time.perf_counter() - started, artifacts=artifacts)


def skew_inputs(ctx: RunContext, logged: str | None) -> SkewInputs | None:
    """Logged rows and the offline splits they are compared with; None when no logged file is configured."""
    from mlgate.gates.data.decide import SkewInputs

    configured = ctx.params.gates.data.skew.logged_path
    if not logged and not configured:
        return None
    path = Path(logged) if logged else ctx.base_dir / configured
    try:
        rows = read_rows(path)
    except UsageError as exc:
        return SkewInputs(error=f"{exc}; skew not checked")
    offline = [load_split(ctx.params.data, s, ctx.base_dir) for s in SPLITS
               if split_path(ctx.params.data, s, ctx.base_dir).is_file()]
    return SkewInputs(logged=rows, offline=pd.concat(offline, ignore_index=True))


def read_rows(path: Path) -> pd.DataFrame:
    """A CSV, Parquet or JSON-lines file; every problem is a UsageError naming the file."""
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return read_table(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise UsageError(f"{path}: data file " + ("not found" if not path.is_file() else "is empty"))
    try:
        return pd.read_json(path, lines=True, encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read as JSON lines: {first_line(exc)}") from None


