"""metrics/quality.json: both models' values, the deltas with CIs, gaps and slices, for `dvc metrics`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlgate.gates.result import Check, GateResult
from mlgate.pipelines.checks.quality.explanations import CHECK as REASONS_CHECK
from mlgate.pipelines.files import write_json

_COMPARISON_KEYS = ("candidate", "baseline", "delta", "ci", "level", "p_value", "test")


def summarize(result: GateResult, baseline: dict[str, Any] | None, candidate: dict[str, Any]) -> dict[str, Any]:
    """The figures of a quality result, keyed by metric; taken from the checks so they cannot disagree."""
    by_name = {c.name: c for c in result.checks}
    metrics: dict[str, Any] = {}
    for check in result.checks:
        if check.name.startswith("metric.") and check.name.endswith(".vs_baseline"):
            metric = check.name.split(".")[1]
            metrics[metric] = _metric_entry(check, by_name.get(f"metric.{metric}.absolute"))
    return {
        "status": str(result.status),
        "baseline": baseline,
        "candidate": candidate,
        "metrics": metrics,
        "gaps": {c.name.removeprefix("gap."): _pick(c, ("train", "holdout", "gap", "max_gap"))
                 for c in result.checks if c.name.startswith("gap.")},
        "calibration": {c.name.removeprefix("calibration."): _pick(c, ("candidate", "baseline", "max"))
                        for c in result.checks if c.name.startswith("calibration.")},
        "slices": [_slice_entry(c) for c in result.checks if c.name.startswith("slice.")],
        "explanations": _explanations(by_name.get(REASONS_CHECK)),
        "counts": {s: len(result.by_status(s)) for s in {c.status for c in result.checks}},
    }


def _metric_entry(relative: Check, absolute: Check | None) -> dict[str, Any]:
    entry = {"status": str(relative.status), **_pick(relative, _COMPARISON_KEYS)}
    if absolute is not None:
        entry |= {"absolute_status": str(absolute.status), "floor": absolute.details.get("floor")}
        entry.setdefault("candidate", absolute.details.get("candidate"))
    if "ci" in entry:
        entry["ci_low"], entry["ci_high"] = entry.pop("ci")
    return entry


def _slice_entry(check: Check) -> dict[str, Any]:
    entry = {"check": check.name, "status": str(check.status),
             **_pick(check, ("slice", "metric", "n", *_COMPARISON_KEYS, "p_noninferior_holm", "p_worse_holm"))}
    if "ci" in entry:
        entry["ci_low"], entry["ci_high"] = entry.pop("ci")
    return entry


def _explanations(check: Check | None) -> dict[str, Any] | None:
    """Each model's explainer, scale, rows and mean |contribution| per feature (or why not)."""
    if check is None:
        return None
    return {who: check.details[who] for who in ("candidate", "baseline") if who in check.details}


def _pick(check: Check, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: check.details[k] for k in keys if k in check.details}


def write(path: Path, result: GateResult, baseline: dict[str, Any] | None, candidate: dict[str, Any]) -> Path:
    """Write the summary atomically; non-finite numbers become null (JSON has no NaN)."""
    return write_json(path, summarize(result, baseline, candidate))
