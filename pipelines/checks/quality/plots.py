"""Plots of the quality gate under plots/quality/: ROC and PR curves of both models, a forest plot of
metric deltas with their CIs, and the slice table (CSV and PNG).

Uses matplotlib's object API (Figure + Agg canvas): no pyplot global state, no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve
from sklearn.preprocessing import label_binarize

from mlgate.gates.result import Check, GateResult, Status
from mlgate.gates.stats import Predictions

FILES = {"roc_curve": "roc.png", "pr_curve": "pr.png", "forest_plot": "forest.png",
         "slice_table": "slices.csv", "slice_plot": "slices.png"}
_COLOURS = {Status.PASS: "tab:green", Status.WARN: "tab:orange", Status.FAIL: "tab:red",
            Status.ERROR: "black", Status.SKIP: "tab:gray"}


def write_plots(
    out_dir: Path, result: GateResult, y: np.ndarray, candidate: Predictions, baseline: Predictions | None,
    task: str,
) -> dict[str, Path]:
    """Write every plot file (always all of them, so DVC finds its outputs); returns artifact paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILES.items()}
    models = {"candidate": candidate, **({"baseline": baseline} if baseline is not None else {})}
    _save(curve_figure("roc", y, models, task), paths["roc_curve"])
    _save(curve_figure("pr", y, models, task), paths["pr_curve"])
    _save(forest_figure(result), paths["forest_plot"])
    table = slice_table(result)
    table.to_csv(paths["slice_table"], index=False)
    _save(slice_figure(table), paths["slice_plot"])
    return paths


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=110, bbox_inches="tight")


def _one_vs_rest(y: np.ndarray, predictions: Predictions, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores flattened so one curve summarises the model (micro-average for multiclass)."""
    if task == "binary":
        return y, np.asarray(predictions.scores)
    proba = np.asarray(predictions.proba)
    return label_binarize(y, classes=np.arange(proba.shape[1])).ravel(), proba.ravel()


def curve_figure(kind: str, y: np.ndarray, models: dict[str, Predictions], task: str) -> Figure:
    """ROC (`kind="roc"`) or precision-recall (`"pr"`) curves of each model on the holdout."""
    figure = Figure(figsize=(5.5, 5))
    axes = figure.subplots()
    title = "ROC curve" if kind == "roc" else "Precision-recall curve"
    if task == "regression":
        axes.text(0.5, 0.5, f"{title}s apply to classifiers;\nthis model is a regression", ha="center")
        return figure
    scored = {n: p for n, p in models.items() if (p.scores if task == "binary" else p.proba) is not None}
    if not scored:
        axes.text(0.5, 0.5, f"No {title}: no model gives probabilities\n(labels only)", ha="center")
        return figure
    for name, predictions in scored.items():  # a model that gives labels only has no curve
        truth, scores = _one_vs_rest(y, predictions, task)
        if kind == "roc":
            fpr, tpr, _ = roc_curve(truth, scores)
            axes.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        else:
            precision, recall, _ = precision_recall_curve(truth, scores)
            axes.step(recall, precision, where="post",
                      label=f"{name} (AP {average_precision_score(truth, scores):.3f})")
    if kind == "roc":
        axes.plot([0, 1], [0, 1], linestyle=":", color="gray", label="chance")
    else:
        axes.axhline(float(np.mean(truth)), linestyle=":", color="gray", label="prevalence")
    labels = ("False positive rate", "True positive rate") if kind == "roc" else ("Recall", "Precision")
    axes.set(xlabel=labels[0], ylabel=labels[1], xlim=(0, 1), ylim=(0, 1.02),
             title=f"{title}{' (micro-average)' if task == 'multiclass' else ''}: holdout")
    axes.legend(loc="lower right" if kind == "roc" else "lower left")
    return figure


def _oriented(check: Check) -> tuple[float, float, float, float]:
    """(delta, low, high, margin) turned so that right = candidate better, for every metric."""
    d = check.details
    sign = 1.0 if d.get("greater_is_better", True) else -1.0
    low, high = sorted((sign * d["ci"][0], sign * d["ci"][1]))
    margin = d.get("max_regression")
    limit = -margin if margin is not None else (d.get("min_improvement") or 0.0)
    return sign * d["delta"], low, high, limit


def _draw_intervals(axes: Any, rows: list[tuple[str, Check]]) -> None:
    for i, (_, check) in enumerate(rows):
        delta, low, high, limit = _oriented(check)
        colour = _COLOURS[check.status]
        axes.plot([low, high], [i, i], color=colour, linewidth=2)
        axes.plot([delta], [i], "o", color=colour)
        axes.plot([limit], [i], "|", color="tab:red", markersize=14, markeredgewidth=2)
    axes.axvline(0.0, color="gray", linestyle=":")
    axes.set_yticks(range(len(rows)), [label for label, _ in rows])
    axes.invert_yaxis()
    axes.set_xlabel("candidate - baseline (sign flipped for lower-is-better metrics; right = better)")


def forest_figure(result: GateResult) -> Figure:
    """Each metric's delta and CI, coloured by its check status, with its margin as a red tick."""
    rows = [(c.name.split(".")[1], c) for c in result.checks
            if c.name.startswith("metric.") and c.name.endswith(".vs_baseline") and "ci" in c.details]
    figure = Figure(figsize=(7, 1.2 + 0.5 * max(len(rows), 1)))
    axes = figure.subplots()
    if not rows:
        reason = next((c.message for c in result.checks if c.name == "baseline"), "no comparison")
        axes.text(0.5, 0.5, f"No metric deltas: {reason}", ha="center", wrap=True)
        axes.set_axis_off()
        return figure
    _draw_intervals(axes, rows)
    axes.set_title("Metric deltas vs baseline with CIs (red tick: margin)")
    return figure


SLICE_COLUMNS = ["slice", "metric", "n", "margin", "status", "candidate", "baseline", "delta", "ci_low", "ci_high",
                 "p_value", "p_noninferior_holm", "p_worse_holm", "test"]


def slice_table(result: GateResult) -> pd.DataFrame:
    """One row per slice comparison, worst first."""
    rows = []
    for c in (c for c in result.checks if c.name.startswith("slice.")):
        d = c.details
        low, high = d.get("ci", [None, None])
        rows.append({**{k: d.get(k) for k in SLICE_COLUMNS}, "status": str(c.status), "ci_low": low,
                     "ci_high": high, "greater_is_better": d.get("greater_is_better", True)})
    table = pd.DataFrame(rows, columns=[*SLICE_COLUMNS, "greater_is_better"])
    if table.empty:
        return table
    badness = np.where(table["greater_is_better"].astype(bool), -1.0, 1.0) * table["delta"].astype(float)
    return table.assign(_bad=badness).sort_values("_bad", ascending=False, na_position="last").drop(columns="_bad")


def slice_figure(table: pd.DataFrame) -> Figure:
    """The slice table as a forest plot: each slice's delta and CI, coloured by its status."""
    decided = table.dropna(subset=["delta"]) if not table.empty else table
    figure = Figure(figsize=(8, 1.2 + 0.4 * max(len(decided), 1)))
    axes = figure.subplots()
    if decided.empty:
        axes.text(0.5, 0.5, "No slice was compared with the baseline", ha="center")
        axes.set_axis_off()
        return figure
    rows = [(f"{r.metric} | {r.slice} (n={r.n})", _row_check(r)) for r in decided.itertuples()]
    _draw_intervals(axes, rows)
    axes.set_title("Slices: delta vs baseline with CIs (Holm-corrected verdicts by colour)")
    return figure


def _row_check(row: Any) -> Check:
    return Check("slice", Status(row.status), row.delta, "", "",
                 {"delta": row.delta, "ci": [row.ci_low, row.ci_high], "greater_is_better": row.greater_is_better,
                  "max_regression": row.margin})
