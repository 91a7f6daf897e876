"""The params.yaml `mlgate init` proposes for a data set: every section, sized for the data it saw.

Pure: a DataFrame in, a plain dict (params.yaml's structure) and per-key notes out. Thresholds that
depend on the data are derived from it and say so in their note: metric floors are the no-skill
model's value (predicting the class shares or the mean), so a floor only stops a model that learnt
nothing; margins are the library's; sizes (slices, batch rows) follow the split sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgate.pipelines.project.infer import ColumnPlan, TaskInference, feature_ranking

SPLITS = {"test": 0.2, "production": 0.2}
SEED = 42
MAX_SLICE_LEVELS = 10   # a categorical with more values makes too many, too small slices
CRITICAL_FEATURES = 3   # features whose drift alone fails the data gate


@dataclass(frozen=True)
class Proposal:
    """params.yaml as a dict, and a short note per dotted key path explaining a data-derived value."""

    params: dict[str, Any]
    notes: dict[str, str] = field(default_factory=dict)


def propose_params(frame: pd.DataFrame, target: str, task: TaskInference, columns: ColumnPlan,
                   name: str, source: str) -> Proposal:
    """Every section of params.yaml for `frame` (the whole data set, target included)."""
    notes: dict[str, str] = {}
    ranked = feature_ranking(frame, columns, target, task.task)
    sizes = split_sizes(len(frame))
    model = {"name": name, "task": task.task, "target": target}
    if task.task == "binary":
        model["positive_class"] = task.positive_class
        notes["model.positive_class"] = "the class whose probability the model outputs"
    notes["model.task"] = task.reason
    data = {"source": source, "dir": "data", "drop_columns": list(columns.dropped), "seed": SEED,
            "splits": dict(SPLITS), "categorical": columns.categorical, "numeric": columns.numeric}
    for column, reason in columns.dropped.items():
        notes[f"data.drop_columns.{column}"] = reason
    params = {
        "model": model,
        "data": data,
        "train": train_section(sizes["train"]),
        "gates": {
            "data": data_gate(name, ranked, sizes, notes),
            "quality": quality_gate(frame, target, task, columns, ranked, sizes, notes),
            "edge_cases": {"property_rows": 50, "seed": 0, "request_timeout_s": 10,
                           "proba_tolerance": 1.0e-9, "holdout_batch_rows": 1000},
            "latency": latency_gate(),
        },
        "rollout": rollout_section(task.task),
        "serving": {"port": 8080, "max_batch_rows": 10000},
        "approvals": {"approvers": []},
    }
    return Proposal(params, notes)


def split_sizes(rows: int) -> dict[str, int]:
    """Rows per split as prepare cuts them (sklearn rounds test shares up)."""
    production = math.ceil(rows * SPLITS["production"])
    test = math.ceil((rows - production) * SPLITS["test"] / (1 - SPLITS["production"]))
    return {"train": rows - production - test, "test": test, "production": production}


def train_section(train_rows: int) -> dict[str, Any]:
    """Gradient boosting, regularised for the data size (leaves of at least 2% of the rows, >= 20)."""
    leaf = max(20, train_rows // 50)
    return {"estimator": "hist_gradient_boosting",
            "hyperparams": {"max_iter": 150, "learning_rate": 0.05, "max_depth": 3,
                            "min_samples_leaf": leaf, "l2_regularization": 1.0},
            "seed": SEED, "model_dir": "models/candidate"}


def data_gate(name: str, ranked: list[str], sizes: dict[str, int], notes: dict[str, str]) -> dict[str, Any]:
    """The contract's settings with row bounds from the split sizes; drift-critical: the top features."""
    smallest = min(sizes.values())
    min_rows = max(1, min(100, smallest // 2))
    notes["gates.data.min_batch_rows"] = f"half the smallest split ({smallest} rows), at most 100"
    critical = ranked[:CRITICAL_FEATURES]
    if critical:
        notes["gates.data.drift.critical"] = "the features most informative about the target (mutual information)"
    return {
        "suite": f"expectations/{name}.json",
        "range_tolerance": 0.1,
        "range_outlier_share": 0.01,
        "null_rate_slack": 0.05,
        "max_examples": 10,
        "min_batch_rows": min_rows,
        "drift": {"psi_threshold": 0.2, "statistic_threshold": 0.1, "alpha": 0.01, "max_rows": 50000,
                  "max_drifted_share": 0.3, "critical": critical},
    }


def quality_gate(frame: pd.DataFrame, target: str, task: TaskInference, columns: ColumnPlan, ranked: list[str],
                 sizes: dict[str, int], notes: dict[str, str]) -> dict[str, Any]:
    """The task's metrics, slices on the most informative low-cardinality features, gap, deepchecks."""
    min_slice = max(10, min(100, sizes["test"] // 10))
    notes["gates.quality.slices.min_slice_size"] = f"a tenth of the test split ({sizes['test']} rows), 10 to 100"
    categorical = [c for c in ranked if c in columns.categorical
                   and 2 <= frame[c].nunique() <= MAX_SLICE_LEVELS][:3]
    numeric = [c for c in ranked if c in columns.numeric][:1]
    if categorical:
        notes["gates.quality.slices.categorical"] = "the most informative features with at most 10 values"
    section: dict[str, Any] = {
        "require_baseline": False,
        "metrics": quality_metrics(frame[target], task, notes),
        "bootstrap": {"n_boot": 1000, "level": 0.95, "seed": 0, "max_rows": 100000},
        "slices": {"categorical": categorical, "numeric": {c: 4 for c in numeric}, "min_slice_size": min_slice,
                   "metrics": ["mae" if task.task == "regression" else "accuracy"],
                   "max_listed": 5, "inconclusive": "warn"},
        "max_gap": {"r2": 0.15} if task.task == "regression" else (
            {"roc_auc": 0.12, "accuracy": 0.08} if task.task == "binary" else {"accuracy": 0.1}),
    }
    if task.task != "regression":
        section["calibration"] = {"max_ece": 0.05, "n_bins": 10}
    # The runner decides every check for every task and size; what cannot apply is SKIP with the reason.
    notes["gates.quality.deepchecks.exclude_checks"] = "none needed: a check that cannot apply is SKIP with the reason"
    section["deepchecks"] = {"enabled": True, "suites": ["train_test_validation", "model_evaluation"],
                             "exclude_checks": [], "on_unavailable": "error", "timeout_s": 600}
    return section


def quality_metrics(target: pd.Series, task: TaskInference, notes: dict[str, str]) -> dict[str, Any]:
    """The task's metrics with library margins, and no-skill floors computed from the target."""
    if task.task == "regression":
        values = target.astype(float)
        std, mad = float(values.std(ddof=0)), float((values - values.mean()).abs().mean())
        notes["gates.quality.metrics.rmse"] = "ceiling: the target's standard deviation (predicting the mean)"
        notes["gates.quality.metrics.mae"] = "margin: 2% of the target's mean absolute deviation"
        return {
            "rmse": {"greater_is_better": False, "min_absolute": _sig(std), "max_regression": _sig(0.02 * std)},
            "mae": {"greater_is_better": False, "max_regression": _sig(0.02 * mad)},
            "r2": {"greater_is_better": True, "min_absolute": 0.0, "max_regression": 0.02},
        }
    shares = target.value_counts(normalize=True).to_numpy(dtype=float)
    entropy = float(-(shares * np.log(shares)).sum())
    notes["gates.quality.metrics.log_loss"] = "ceiling: the log loss of predicting the class shares (no skill)"
    if task.task == "multiclass":
        return {
            "accuracy": {"greater_is_better": True, "max_regression": 0.01},
            "macro_f1": {"greater_is_better": True, "max_regression": 0.03},
            "log_loss": {"greater_is_better": False, "min_absolute": _up(entropy), "max_regression": 0.02},
        }
    rate = float((target == task.positive_class).mean())
    notes["gates.quality.metrics.pr_auc"] = "floor: the positive rate (a random ranking's PR AUC)"
    notes["gates.quality.metrics.brier"] = "ceiling: the Brier score of predicting the positive rate"
    return {
        "roc_auc": {"greater_is_better": True, "min_absolute": 0.6, "max_regression": 0.01},
        "pr_auc": {"greater_is_better": True, "min_absolute": _up(rate), "max_regression": 0.02},
        "accuracy": {"greater_is_better": True, "max_regression": 0.01},
        "f1": {"greater_is_better": True, "max_regression": 0.03},
        "log_loss": {"greater_is_better": False, "min_absolute": _up(entropy), "max_regression": 0.02},
        "brier": {"greater_is_better": False, "min_absolute": _up(rate * (1 - rate)), "max_regression": 0.01},
    }


def latency_gate() -> dict[str, Any]:
    """Locust load that finishes in about 20 s per model (8 rounds of ~2.4 s), 20 requests/s offered."""
    return {
        "baseline_alias": "champion", "require_baseline": False,
        "users": 8, "spawn_rate": 8, "user_rps": 2.5,
        "rounds": 8, "round_s": 1.0, "warmup_s": 0.4, "max_requests_per_round": 2000, "request_timeout_s": 10,
        "batch_mix": {1: 0.9, 20: 0.1}, "payloads_per_size": 200, "seed": 0,
        "min_samples": 100, "min_sustained_share": 0.9,
        "slo": {"p95_ms": 250, "p99_ms": 500, "max_error_rate": 0.001, "min_rps": 15},
        "max_p95_ratio": 1.25, "p95_slack_ms": 2.0, "ratio_level": 0.95, "ratio_n_boot": 1000,
        "rank_test": {"alpha": 0.01, "effect": "shift_ratio", "tolerance": 0.25, "slack_ms": 2.0},
    }


def rollout_section(task: str) -> dict[str, Any]:
    margins = {"mae": 0.05} if task == "regression" else {"accuracy": 0.02}
    return {
        "backend": "local",
        "endpoint": "http://127.0.0.1:8080",
        "shadow": {"min_requests": 200, "min_agreement": 0.9, "max_output_psi": 0.2, "max_error_rate": 0.01,
                   "input_drift": "warn"},
        "canary": {"steps": [10, 50, 100], "approval_before": [100], "min_requests_per_step": 200,
                   "min_labels_per_step": 100, "metric_margins": margins},
    }


def _up(value: float) -> float:
    """Rounded up to 3 decimals: a ceiling never below the no-skill value it was derived from."""
    return math.ceil(value * 1000) / 1000


def _sig(value: float) -> float:
    """4 significant digits: readable, and in the target's own units."""
    return float(f"{value:.4g}") if value else 0.0
