"""The files `mlgate init` renders from a validated params.yaml: dvc.yaml, the data contract, the workflows.

Each function returns text (or a suite dict); nothing here writes to the repository.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd

from mlgate.pipelines.checks.quality import plots as quality_plots
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
    param of prepare only when it exists (binary); evaluate's plots are the files the quality gate writes
    for this task and slice configuration (`plot_files`)."""
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
    quality_plot_outs = ""
    has_slices = quality_plots.slices_configured(params.gates.quality.slices)
    for name in quality_plots.plot_files(params.model.task, has_slices).values():
        options = {"cache": "false", **quality_plots.DVC_PLOT_OPTIONS.get(name, {})}
        quality_plot_outs += f"\n      - {quality_plots.PLOT_DIR}/{name}:" + "".join(
            f"\n          {key}: {value}" for key, value in options.items())
    return render(
        DVC_TEMPLATE,
        source_dep=f"\n      - {source}" if local else "",
        train_deps="".join(f"\n      - {dep}" for dep in params.train.deps),
        positive_class_param="\n      - model.positive_class" if params.model.task == "binary" else "",
        data_dir=data.dir.rstrip("/"),
        model_dir=params.train.model_dir.rstrip("/"),
        suite=suite_file(params),
        quality_plots=quality_plot_outs,
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
