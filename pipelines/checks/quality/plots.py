"""Plots of the quality gate under plots/quality/, per task, none of them an empty box.

Classifiers: ROC and precision-recall curves of both models (micro-average for multiclass; a model
that gives labels only is its one operating point) and their confusion matrices. Regression: residuals.
Every task: a forest plot of the metric deltas; with slices configured: the slice table (CSV, PNG).
`plot_files` names exactly the files `write_plots` writes: dvc.yaml's plots block is rendered from it.
Uses matplotlib's object API (Figure + Agg canvas): no pyplot global state, no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, confusion_matrix, precision_recall_curve, roc_curve
from sklearn.preprocessing import label_binarize

from mlgate.gates.config import SliceConfig
from mlgate.gates.result import Check, GateResult, Status
from mlgate.gates.stats import Predictions

PLOT_DIR = "plots/quality"  # under the project root; the stage writes here
_CLASSIFIER_FILES = {"roc_curve": "roc.png", "pr_curve": "pr.png", "confusion_matrix": "confusion.png"}
_REGRESSION_FILES = {"residuals": "residuals.png"}
_SLICE_FILES = {"slice_plot": "slices.png", "slice_table": "slices.csv"}
# How `dvc plots show` draws a CSV output (a PNG needs no options).
DVC_PLOT_OPTIONS = {"slices.csv": {"template": "bar_horizontal_sorted", "x": "delta", "y": "slice"}}
MAX_SCATTER_POINTS = 5_000
_COLOURS = {Status.PASS: "tab:green", Status.WARN: "tab:orange", Status.FAIL: "tab:red",
            Status.ERROR: "black", Status.SKIP: "tab:gray"}
_MODEL_COLOURS = {"candidate": "tab:blue", "baseline": "tab:orange"}


def plot_files(task: str, has_slices: bool) -> dict[str, str]:
    """Artifact name -> file name of every plot `write_plots` writes for this task, in report order."""
    per_task = _REGRESSION_FILES if task == "regression" else _CLASSIFIER_FILES
    return {**per_task, "forest_plot": "forest.png", **(_SLICE_FILES if has_slices else {})}


def slices_configured(slices: SliceConfig) -> bool:
    """Whether gates.quality.slices names any column (else there is no slice table or plot)."""
    return bool(slices.categorical or slices.numeric)


def write_plots(
    out_dir: Path, result: GateResult, y: np.ndarray, candidate: Predictions, baseline: Predictions | None,
    task: str, *, has_slices: bool, classes: Sequence[Any] | None = None,
) -> dict[str, Path]:
    """Write exactly the files of `plot_files(task, has_slices)`; returns artifact name -> path.
    `classes` is the class list of model_outputs.class_list, to name the encoded labels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in plot_files(task, has_slices).items()}
    for stale in {*_CLASSIFIER_FILES.values(), *_REGRESSION_FILES.values(), *_SLICE_FILES.values()}:
        (out_dir / stale).unlink(missing_ok=True)  # left by another task or slice setting: not this model's
    models = {"candidate": candidate, **({"baseline": baseline} if baseline is not None else {})}
    if task == "regression":
        _save(residuals_figure(residual_table(y, models)), paths["residuals"])
    else:
        names = class_names(task, classes, y, models)
        _save(curve_figure("roc", y, models, task, len(names)), paths["roc_curve"])
        _save(curve_figure("pr", y, models, task, len(names)), paths["pr_curve"])
        _save(confusion_figure({n: confusion_table(y, p, names) for n, p in models.items()}), paths["confusion_matrix"])
    _save(forest_figure(result), paths["forest_plot"])
    if has_slices:
        table = slice_table(result)
        table.to_csv(paths["slice_table"], index=False)
        _save(slice_figure(table), paths["slice_plot"])
    return paths


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=110, bbox_inches="tight")


def class_names(task: str, classes: Sequence[Any] | None, y: np.ndarray, models: dict[str, Predictions]) -> list[str]:
    """The name of each encoded label: binary 0 = the other class(es), 1 = the positive class (last in
    `classes`); multiclass i = classes[i]. Without `classes`, the label numbers."""
    if classes is not None and len(classes) >= 2:
        if task == "binary":
            rest = [str(c) for c in classes[:-1]]
            return [rest[0] if len(rest) == 1 else f"not {classes[-1]}", str(classes[-1])]
        return [str(c) for c in classes]
    seen = [np.asarray(y), *(np.asarray(p.labels) for p in models.values() if p.labels is not None)]
    return [str(i) for i in range(max(2, int(max(a.max() for a in seen)) + 1))]


# --- ROC and precision-recall ---------------------------------------------------------------------------

def _one_vs_rest(y: np.ndarray, values: np.ndarray, task: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores (or labels) flattened so one curve summarises the model (micro-average for multiclass)."""
    if task == "binary":
        return np.asarray(y), np.asarray(values)
    truth = label_binarize(y, classes=np.arange(n_classes)).ravel()
    values = np.asarray(values)
    if values.ndim == 1:  # predicted labels: one-hot
        values = label_binarize(values, classes=np.arange(n_classes))
    return truth, values.ravel()


def _scores(predictions: Predictions, task: str) -> np.ndarray | None:
    return predictions.scores if task == "binary" else predictions.proba


def operating_point(kind: str, y: np.ndarray, predictions: Predictions, task: str, n_classes: int) -> tuple[float, float]:
    """A labels-only model's one point: (FPR, TPR) for `kind="roc"`, (recall, precision) for `"pr"`."""
    truth, predicted = _one_vs_rest(y, np.asarray(predictions.labels), task, n_classes)
    tp = float(np.sum((truth == 1) & (predicted == 1)))
    fp, positives = float(np.sum((truth == 0) & (predicted == 1))), float(np.sum(truth == 1))
    recall = tp / positives if positives else 0.0
    if kind == "roc":
        negatives = float(truth.size) - positives
        return (fp / negatives if negatives else 0.0), recall
    return recall, (tp / (tp + fp) if tp + fp else 0.0)


def curve_figure(kind: str, y: np.ndarray, models: dict[str, Predictions], task: str,
                 n_classes: int | None = None) -> Figure:
    """ROC (`kind="roc"`) or precision-recall (`"pr"`) curves of each model on the holdout; a model
    without probabilities is drawn as its single operating point, and the title says so."""
    if task == "regression":
        raise ValueError("ROC and precision-recall curves apply to classifiers")
    k = n_classes or _n_classes(y, models)
    figure = Figure(figsize=(5.5, 5))
    axes = figure.subplots()
    labels_only = [n for n, p in models.items() if _scores(p, task) is None]
    for name, predictions in models.items():
        colour = _MODEL_COLOURS.get(name)
        if name in labels_only:
            x_value, y_value = operating_point(kind, y, predictions, task, k)
            what = f"FPR {x_value:.3f}, TPR {y_value:.3f}" if kind == "roc" else f"R {x_value:.3f}, P {y_value:.3f}"
            axes.plot([x_value], [y_value], "D", markersize=9, color=colour, label=f"{name}, labels only ({what})")
            continue
        truth, scores = _one_vs_rest(y, _scores(predictions, task), task, k)
        if kind == "roc":
            fpr, tpr, _ = roc_curve(truth, scores)
            axes.plot(fpr, tpr, color=colour, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        else:
            precision, recall, _ = precision_recall_curve(truth, scores)
            axes.step(recall, precision, where="post", color=colour,
                      label=f"{name} (AP {average_precision_score(truth, scores):.3f})")
    _chance_line(axes, kind, _one_vs_rest(y, y, task, k)[0])
    _curve_labels(axes, kind, task, labels_only)
    return figure


def _n_classes(y: np.ndarray, models: dict[str, Predictions]) -> int:
    widths = [np.asarray(p.proba).shape[1] for p in models.values() if p.proba is not None and np.ndim(p.proba) == 2]
    return max([*widths, len(class_names("multiclass", None, y, models))])


def _chance_line(axes: Any, kind: str, truth: np.ndarray) -> None:
    if kind == "roc":
        axes.plot([0, 1], [0, 1], linestyle=":", color="gray", label="chance")
    else:
        axes.axhline(float(np.mean(truth)), linestyle=":", color="gray", label="prevalence")


def _curve_labels(axes: Any, kind: str, task: str, labels_only: list[str]) -> None:
    title = "ROC curve" if kind == "roc" else "Precision-recall curve"
    title += f"{' (micro-average)' if task == 'multiclass' else ''}: holdout"
    if labels_only:
        who = " and ".join(labels_only)
        title += f"\n{who} give{'s' if len(labels_only) == 1 else ''} labels only: one operating point"
    labels = ("False positive rate", "True positive rate") if kind == "roc" else ("Recall", "Precision")
    axes.set(xlabel=labels[0], ylabel=labels[1], xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.legend(loc="lower right" if kind == "roc" else "lower left", fontsize="small")


# --- confusion matrix -----------------------------------------------------------------------------------

def confusion_table(y: np.ndarray, predictions: Predictions, names: Sequence[str]) -> pd.DataFrame:
    """Counts of holdout rows by actual class (rows) and predicted class (columns), every class listed."""
    counts = confusion_matrix(y, np.asarray(predictions.labels), labels=np.arange(len(names)))
    return pd.DataFrame(counts, index=pd.Index(list(names), name="actual"),
                        columns=pd.Index(list(names), name="predicted"))


def confusion_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """One heatmap per model: each cell's count and its share of the actual class (row), coloured by the share."""
    size = max(len(t) for t in tables.values())
    side = min(max(3.2, 0.65 * size + 1.5), 12.0)
    figure = Figure(figsize=(side * len(tables) + 1.2, side + 0.6), layout="constrained")
    for axes, (name, table) in zip(figure.subplots(1, len(tables), squeeze=False)[0], tables.items(), strict=True):
        counts = table.to_numpy()
        totals = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        font = "small" if size <= 6 else "x-small"
        for (row, col), count in np.ndenumerate(counts):
            axes.text(col, row, f"{count}\n{shares[row, col]:.0%}", ha="center", va="center", fontsize=font,
                      color="white" if shares[row, col] > 0.55 else "black")
        ticks, tilted = range(len(table)), size > 4
        axes.set_xticks(ticks, [str(c) for c in table.columns], rotation=45 if tilted else 0,
                        ha="right" if tilted else "center")
        axes.set_yticks(ticks, [str(c) for c in table.index])
        axes.set(xlabel="predicted", ylabel="actual", title=f"{name} (n={int(counts.sum())})")
    figure.colorbar(image, ax=figure.axes, shrink=0.8, label="share of the actual class (row)")
    figure.suptitle("Confusion matrix on the holdout: count and share of each actual class")
    return figure


# --- regression residuals -------------------------------------------------------------------------------

def residual_table(y: np.ndarray, models: dict[str, Predictions]) -> pd.DataFrame:
    """One row per model and holdout row: actual, predicted, residual = actual - predicted."""
    frames = [pd.DataFrame({"model": name, "actual": np.asarray(y, dtype=float),
                            "predicted": np.asarray(p.values, dtype=float)}) for name, p in models.items()]
    table = pd.concat(frames, ignore_index=True)
    return table.assign(residual=table["actual"] - table["predicted"])


def residuals_figure(table: pd.DataFrame) -> Figure:
    """Predicted vs actual, residual vs predicted and the residual histogram, one colour per model."""
    figure = Figure(figsize=(15, 4.6))
    fit, spread, histogram = figure.subplots(1, 3)
    low, high = float(table[["actual", "predicted"]].min().min()), float(table[["actual", "predicted"]].max().max())
    bins = np.histogram_bin_edges(table["residual"], bins=40)
    for name, rows in table.groupby("model", sort=False):
        colour = _MODEL_COLOURS.get(str(name))
        shown = rows.sample(MAX_SCATTER_POINTS, random_state=0) if len(rows) > MAX_SCATTER_POINTS else rows
        rmse = float(np.sqrt(np.mean(rows["residual"] ** 2)))
        label = f"{name} (RMSE {rmse:.4g}, MAE {rows['residual'].abs().mean():.4g})"
        fit.scatter(shown["actual"], shown["predicted"], s=8, alpha=0.5, color=colour, label=label)
        spread.scatter(shown["predicted"], shown["residual"], s=8, alpha=0.5, color=colour, label=str(name))
        histogram.hist(rows["residual"], bins=bins, alpha=0.5, color=colour, label=str(name))
    fit.plot([low, high], [low, high], linestyle=":", color="gray", label="predicted = actual")
    spread.axhline(0.0, linestyle=":", color="gray")
    histogram.axvline(0.0, linestyle=":", color="gray")
    fit.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    spread.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residual vs predicted")
    histogram.set(xlabel="residual (actual - predicted)", ylabel="rows", title="Residual distribution")
    for axes in (fit, spread, histogram):
        axes.legend(fontsize="small")
    n = table.groupby("model").size().max()
    shown_note = f" ({MAX_SCATTER_POINTS:,} random rows per model in the scatters)" if n > MAX_SCATTER_POINTS else ""
    figure.suptitle(f"Regression residuals on the holdout (n={n:,}){shown_note}")
    return figure


# --- metric deltas and slices ---------------------------------------------------------------------------

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
