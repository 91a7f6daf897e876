"""Stage `prepare`: deterministic, seeded, stratified train / test / production splits as Parquet."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from mlgate.pipelines.datasets import SPLITS, check_dataset, load_source, split_path
from mlgate.pipelines.params import Params

ROW_ID = "row_id"


def make_splits(frame: pd.DataFrame, params: Params) -> dict[str, pd.DataFrame]:
    """Split rows into train / test / production; classification splits are stratified on the target."""
    frame = frame.reset_index(drop=True)
    if ROW_ID not in frame.columns:
        frame.insert(0, ROW_ID, range(len(frame)))  # a stable id: replay, feedback and skew join on it
    shares = params.data.splits
    stratify = params.model.task != "regression"
    target = frame[params.model.target]
    rest, production = train_test_split(
        frame, test_size=shares.production, random_state=params.data.seed,
        stratify=target if stratify else None,
    )
    test_share = shares.test / (1.0 - shares.production)
    train, test = train_test_split(
        rest, test_size=test_share, random_state=params.data.seed + 1,
        stratify=rest[params.model.target] if stratify else None,
    )
    return {name: part.sort_values(ROW_ID).reset_index(drop=True)
            for name, part in (("train", train), ("test", test), ("production", production))}


def run_prepare(params: Params, base_dir: Path = Path(".")) -> dict[str, Path]:
    """Read the source, check the configured columns, write all splits or none."""
    frame = load_source(params.data, base_dir)
    check_dataset(frame, params.model, params.data, f"data.source {params.data.source!r}")
    _check_positive_class(frame, params)
    splits = make_splits(frame, params)
    out_dir = base_dir / params.data.dir
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out_dir))
    try:
        for name in SPLITS:
            splits[name].to_parquet(staging / f"{name}.parquet", index=False)
        paths = {}
        for name in SPLITS:  # all files were written; moving them in is a rename each
            paths[name] = split_path(params.data, name, base_dir)
            (staging / f"{name}.parquet").replace(paths[name])
        return paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_positive_class(frame: pd.DataFrame, params: Params) -> None:
    from mlgate.pipelines.errors import UsageError

    if params.model.task != "binary":
        return
    values = frame[params.model.target].dropna().unique().tolist()
    if params.model.positive_class not in values:
        raise UsageError(
            f"model.positive_class {params.model.positive_class!r} is not a value of target "
            f"'{params.model.target}' (values: {sorted(map(str, values))[:10]})"
        )
    if len(values) != 2:
        raise UsageError(f"target '{params.model.target}' has {len(values)} classes; task binary needs 2")
