"""Stage `prepare`: deterministic stratified splits, and bad input that exits 2 naming file or column."""

from __future__ import annotations

import pandas as pd

from mlgate.pipelines.cli.main import main
from mlgate.pipelines.datasets import file_md5


def _prepare(project, capsys) -> tuple[int, str]:
    code = main(["prepare", "--params", str(project.params_path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_same_seed_gives_byte_identical_splits(project, capsys, tmp_path):
    assert _prepare(project, capsys)[0] == 0
    first = {s: file_md5(project.root / "data" / f"{s}.parquet") for s in ("train", "test", "production")}
    for split in first:
        (project.root / "data" / f"{split}.parquet").unlink()
    assert _prepare(project, capsys)[0] == 0
    second = {s: file_md5(project.root / "data" / f"{s}.parquet") for s in first}
    assert first == second


def test_splits_are_disjoint_stratified_and_sized(project, capsys):
    assert _prepare(project, capsys)[0] == 0
    parts = {s: pd.read_parquet(project.root / "data" / f"{s}.parquet") for s in ("train", "test", "production")}
    ids = [set(p["row_id"]) for p in parts.values()]
    assert sum(len(i) for i in ids) == 1200 and len(set().union(*ids)) == 1200
    assert len(parts["production"]) == 240 and len(parts["test"]) == 300
    rates = [(p["churn"] == "yes").mean() for p in parts.values()]
    assert max(rates) - min(rates) < 0.02


def test_a_different_seed_gives_different_splits(project, capsys):
    assert _prepare(project, capsys)[0] == 0
    before = file_md5(project.root / "data" / "train.parquet")
    project.params["data"]["seed"] = 7
    project.write()
    assert _prepare(project, capsys)[0] == 0
    assert file_md5(project.root / "data" / "train.parquet") != before


def test_missing_data_file_is_named(project, capsys):
    project.params["data"]["source"] = "missing.csv"
    project.write()
    code, out = _prepare(project, capsys)
    assert code == 2 and "missing.csv: data file not found" in out


def test_absent_target_column_is_named(project, capsys):
    project.params["model"]["target"] = "churned"
    project.write()
    code, out = _prepare(project, capsys)
    assert code == 2 and "target column 'churned' not found" in out


def test_absent_categorical_column_is_named(project, capsys):
    project.params["data"]["categorical"].append("contract_type")
    project.write()
    code, out = _prepare(project, capsys)
    assert code == 2 and "categorical column (data.categorical) 'contract_type' not found" in out


def test_positive_class_must_be_a_target_value(project, capsys):
    project.params["model"]["positive_class"] = "Yes"
    project.write()
    code, out = _prepare(project, capsys)
    assert code == 2 and "'Yes' is not a value of target 'churn'" in out


def test_non_utf8_csv_and_duplicate_columns_are_named(project, capsys):
    (project.root / "churn.csv").write_bytes("state,churn\nS\xe3o Paulo,no\n".encode("latin-1"))
    code, out = _prepare(project, capsys)
    assert code == 2 and "churn.csv: not UTF-8" in out
    (project.root / "churn.csv").write_text("state,state,churn\nKS,KS,no\n")
    code, out = _prepare(project, capsys)
    assert code == 2 and "duplicate column names: state" in out


def test_own_parquet_source_works(project, capsys, churn_frame):
    churn_frame.head(800).to_parquet(project.root / "own.parquet")
    project.params["data"]["source"] = "own.parquet"
    project.write()
    assert _prepare(project, capsys)[0] == 0
    assert len(pd.read_parquet(project.root / "data" / "train.parquet")) == 440


def test_nothing_is_half_written_when_a_column_is_missing(project, capsys):
    assert _prepare(project, capsys)[0] == 0
    before = file_md5(project.root / "data" / "train.parquet")
    project.params["data"]["numeric"].append("tenure")
    project.write()
    assert _prepare(project, capsys)[0] == 2
    assert file_md5(project.root / "data" / "train.parquet") == before


def test_a_text_column_declared_numeric_is_exit_2_naming_it_never_an_internal_error(project, capsys):
    project.params["data"]["categorical"].remove("state")
    project.params["data"]["numeric"].append("state")
    project.write()
    code, out = _prepare(project, capsys)
    assert code == 2, out
    assert "column 'state' is listed under data.numeric but holds text" in out
    assert "Traceback" not in out and "internal error" not in out
