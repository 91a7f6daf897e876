"""Shaping the prediction log for the online analyses: pairs, requests, labels, features (pure pandas).

The log has one row per input row per variant (shadow variants too): request_id, row_index, variant,
shadow, ts, latency_ms, status, features (dict), prediction (decoded JSON) and score. Feedback has
request_id, row_index and label.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = ("request_id", "row_index", "variant", "shadow", "ts", "latency_ms", "status", "prediction")
FEEDBACK_COLUMNS = ("request_id", "row_index", "label")
KEY = ["request_id", "row_index"]


def require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """ValueError naming the missing columns of the prediction log or feedback frame."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} has no column(s) {', '.join(missing)}")


def variant_rows(preds: pd.DataFrame, variant: str, *, shadow: bool | None = None) -> pd.DataFrame:
    """Rows one variant predicted; `shadow` keeps only mirrored (True) or served (False) rows."""
    rows = preds[preds["variant"] == variant]
    if shadow is not None:
        rows = rows[rows["shadow"].astype(bool) == shadow]
    return rows


def routed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows the router assigned: requests forced with X-Target-Variant (`forced` 1) are in no split."""
    if "forced" not in rows.columns:
        return rows
    return rows[(pd.to_numeric(rows["forced"], errors="coerce").fillna(0) == 0).to_numpy(dtype=bool)]


def forced_requests(rows: pd.DataFrame) -> int:
    """Served requests the caller forced to a variant (X-Target-Variant): left out of every split, counted."""
    if "forced" not in rows.columns:
        return 0
    forced = (pd.to_numeric(rows["forced"], errors="coerce").fillna(0) != 0).to_numpy(dtype=bool)
    served = (rows["shadow"].astype(int) == 0).to_numpy(dtype=bool)
    return int(rows.loc[forced & served, "request_id"].nunique())


def requests_of(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request (latency and status are per request and variant in the log)."""
    return rows.drop_duplicates("request_id")


def ok(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] == 200]


def paired(champion: pd.DataFrame, challenger: pd.DataFrame) -> pd.DataFrame:
    """Rows both variants answered with 200, side by side (suffixes _a champion, _b challenger)."""
    cols = [*KEY, "prediction", "score"] if "score" in champion.columns else [*KEY, "prediction"]
    return ok(champion)[cols].merge(ok(challenger)[cols], on=KEY, suffixes=("_a", "_b"))


def labelled(rows: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Served rows answered with 200 joined to their standing label; rows without a label are dropped.

    The first label of a row stands; an explicit correction (the latest) replaces it; conflicts (a later,
    different label, whether the server marked it or two replicas raced) are never used.
    """
    labels = standing_labels(feedback)[[*KEY, "label"]]
    return ok(rows).merge(labels, on=KEY, how="inner")


def standing_labels(feedback: pd.DataFrame) -> pd.DataFrame:
    """One row per (request_id, row_index): the latest correction, else the first label."""
    labels = feedback.dropna(subset=["label"])
    if "ts" in labels.columns:
        labels = labels.sort_values("ts", kind="stable")
    kind = labels["kind"] if "kind" in labels.columns else pd.Series("label", index=labels.index)
    firsts = labels[~kind.isin(["correction", "conflict"])].drop_duplicates(KEY, keep="first")
    corrections = labels[kind == "correction"].drop_duplicates(KEY, keep="last")
    return pd.concat([corrections, firsts]).drop_duplicates(KEY, keep="first")


def label_conflicts(feedback: pd.DataFrame) -> int:
    """Labels that differ from the first label of their row (marked conflicts, and replicas that raced);
    corrections are not conflicts."""
    labels = feedback.dropna(subset=["label"])
    if labels.empty:
        return 0
    if "ts" in labels.columns:
        labels = labels.sort_values("ts", kind="stable")
    kind = labels["kind"] if "kind" in labels.columns else pd.Series("label", index=labels.index)
    plain = labels[kind != "correction"]
    firsts = labels[~kind.isin(["correction", "conflict"])].drop_duplicates(KEY, keep="first")
    joined = plain[[*KEY, "label"]].merge(firsts[[*KEY, "label"]].rename(columns={"label": "first"}), on=KEY)
    return int((joined["label"].astype(str) != joined["first"].astype(str)).sum())


def features_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The logged input rows as a DataFrame (one per logged row; missing values become NaN)."""
    if "features" not in rows.columns or rows.empty:
        return pd.DataFrame()
    records = [f if isinstance(f, dict) else {} for f in rows["features"]]
    return pd.DataFrame.from_records(records)


def canonical(value: Any) -> str:
    """Labels compared as text, with 1 and 1.0 equal (JSON and the feedback table may differ in type)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<null>"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value)


def canonical_series(values: pd.Series) -> np.ndarray:
    if pd.api.types.infer_dtype(values, skipna=False) == "string":  # text labels are their own canonical form
        return np.asarray(values, dtype=object)
    return np.array([canonical(v) for v in values], dtype=object)


def as_float(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def outlier_counts(rows: pd.DataFrame) -> tuple[int, int]:
    """(rows an outlier detector checked, rows it flagged) among `rows` (logs from before the flag: 0, 0)."""
    if "outlier" not in rows.columns or rows.empty:
        return 0, 0
    flags = pd.to_numeric(rows["outlier"], errors="coerce")
    return int(flags.notna().sum()), int((flags == 1).sum())
