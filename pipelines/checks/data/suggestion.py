"""The suite a project's own splits pass: derived from the training split, sized for the smallest batch.

Used by `mlgate gate data --suggest` and by `mlgate init`, so both propose the same contract.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import pandas as pd

from mlgate.gates.data.contract import ColumnRoles, suggest_suite
from mlgate.pipelines.params import Params


def suggested_suite(params: Params, splits: Mapping[str, pd.DataFrame], generated_by: str) -> dict:
    """The training split's rules, with each value set widened to the values of every split of this data
    (a rare category may miss the training split by chance) and range tolerances sized for the smallest
    split the gate judges (one row out of range at least)."""
    stored = {name: as_stored(frame) for name, frame in splits.items()}
    train = stored["train"]
    keys = tuple(k for k in [params.gates.data.skew.offline_key] if k in train.columns)
    roles = ColumnRoles(tuple(params.data.categorical), tuple(params.data.numeric), params.model.target, keys)
    smallest = min(len(frame) for frame in stored.values())
    suite = suggest_suite(train, roles, params.gates.data, params.model.name, batch_rows=smallest)
    for rule in suite["expectations"]:
        if rule["type"] == "expect_column_values_to_be_in_set":
            column, known = rule["kwargs"]["column"], rule["kwargs"]["value_set"]
            seen = {v for frame in stored.values() if column in frame for v in frame[column].dropna().unique().tolist()}
            rule["kwargs"]["value_set"] = sorted({*known, *seen}, key=str)
    suite["meta"] = {**suite.get("meta", {}), "generated_by": generated_by,
                     "value_sets": f"the training split's values, plus those of the {', '.join(sorted(set(stored) - {'train'}))} "
                                   "split(s)"}
    return suite


def as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as prepare's Parquet file reads back (dtypes included), like the data gate sees it."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    buffer.seek(0)
    return pd.read_parquet(buffer)
