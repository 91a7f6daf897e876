"""The data gate's files besides its result: metrics/data.json and the per-feature drift chart (CSV + PNG).

The CSV is what `dvc plots` renders (dvc.yaml declares it); the PNG is the same chart for people
reading the CI report without DVC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgate.gates.config import DriftConfig
from mlgate.gates.data.drift import FeatureDrift

METRICS_FILE = Path("metrics/data.json")
DRIFT_CSV = Path("plots/data/drift.csv")
DRIFT_PNG = Path("plots/data/drift.png")
CSV_COLUMNS = ("feature", "kind", "psi", "psi_threshold", "statistic", "statistic_threshold", "p_value",
               "drifted", "critical", "null_share_batch", "unseen_share")


def write_metrics(base_dir: Path, metrics: dict[str, Any]) -> Path:
    path = base_dir / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(metrics), indent=2) + "\n", encoding="utf-8")
    return path


def drift_rows(drift: Sequence[FeatureDrift], config: DriftConfig) -> list[dict[str, Any]]:
    """One row per feature with its thresholds; undecided features keep empty values, never zeros."""
    rows = []
    for item in drift:
        rule = config.features.get(item.feature)
        rows.append({
            "feature": item.feature, "kind": item.kind, "psi": item.psi,
            "psi_threshold": (rule.psi if rule and rule.psi else config.psi_threshold),
            "statistic": item.statistic,
            "statistic_threshold": (rule.statistic if rule and rule.statistic else config.statistic_threshold),
            "p_value": item.p_value, "drifted": "" if item.drifted is None else str(item.drifted).lower(),
            "critical": str(item.feature in config.critical).lower(),
            "null_share_batch": item.null_share_batch, "unseen_share": item.unseen_share,
        })
    return rows


def write_drift_plots(base_dir: Path, drift: Sequence[FeatureDrift], config: DriftConfig) -> dict[str, Path]:
    """Write the CSV and the PNG (both, even with no rows, so DVC finds its declared outputs)."""
    rows = drift_rows(drift, config)
    csv_path, png_path = base_dir / DRIFT_CSV, base_dir / DRIFT_PNG
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(CSV_COLUMNS)] + [",".join(_cell(r[c]) for c in CSV_COLUMNS) for r in rows]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _draw_png(rows, config.psi_threshold, png_path)
    return {"drift_csv": csv_path, "drift_png": png_path}


def _draw_png(rows: list[dict[str, Any]], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: (r["psi"] if _finite_number(r["psi"]) else -1.0))
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(rows) + 1)))
    try:
        names = [r["feature"] + (" *" if r["critical"] == "true" else "") for r in rows]
        values = [r["psi"] if _finite_number(r["psi"]) else 0.0 for r in rows]
        colors = ["#c0392b" if r["drifted"] == "true" else "#7f8c8d" if r["drifted"] == "" else "#2e86c1"
                  for r in rows]
        ax.barh(names, values, color=colors)
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"PSI threshold {threshold:g}")
        ax.set_xlabel("PSI vs training reference (red: drifted, grey: undecided, * critical)")
        ax.set_title("Feature drift of the batch")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _finite(value: Any) -> Any:
    """JSON for dvc metrics: non-finite floats become null (DVC cannot parse NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
