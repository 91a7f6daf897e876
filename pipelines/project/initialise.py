"""`mlgate init`: set up a git repository holding a data file as an mlgate project.

Everything is checked and rendered before anything is written: params.yaml (inferred from the data,
validated by the real schema), dvc.yaml, the data contract, the GitHub workflows. Then `dvc init` if
needed, the files (never overwriting one the team changed, see tracked_files), and .gitignore lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError

from mlgate import __version__
from mlgate.pipelines.checks.data.suggestion import suggested_suite
from mlgate.pipelines.datasets import SPLITS, read_table
from mlgate.pipelines.errors import MlgateError, UsageError
from mlgate.pipelines.params import Params, describe_errors, load_params
from mlgate.pipelines.project import rendering, tracked_files
from mlgate.pipelines.project.infer import ColumnPlan, TaskInference, check_rows, infer_columns, infer_task
from mlgate.pipelines.project.params_yaml import params_text
from mlgate.pipelines.project.proposal import propose_params
from mlgate.pipelines.project.tracked_files import FileOutcome, Outcome, PlannedFile

PARAMS_FILE = "params.yaml"
# Written by the pipeline, never committed: the local MLflow store, run reports, the version stamp.
GITIGNORE_HEADER = "# mlgate: the local MLflow store, run reports, the version stamp dvc repro writes"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # params.py's model.name pattern
GITIGNORE_LINES = ("mlflow.db", "mlruns/", "mlartifacts/", "/reports/", "/.mlgate/version", "*.tmp")


@dataclass(frozen=True)
class InitRequest:
    """The command line, typed: the data file (relative to `cwd`), its target column, the task if given."""

    data: Path
    target: str
    task: str | None = None
    name: str | None = None
    force: bool = False
    cwd: Path = Path(".")


@dataclass(frozen=True)
class InitReport:
    root: Path
    task: TaskInference
    columns: ColumnPlan
    files: list[FileOutcome]
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome is Outcome.KEPT]


def run_init(request: InitRequest) -> InitReport:
    """Refuse (UsageError, exit 2) before writing anything when the repository or data do not fit."""
    root = git_root(request.cwd)
    data_path = (request.cwd / request.data).resolve()
    source = data_in_repository(data_path, root)
    task, columns, planned_params, inferred = propose_project(read_table(data_path), source, request)
    params, notes = effective_params(root, planned_params, inferred, request.force)
    planned = [planned_params, *rendered_files(params, root)]
    if not (root / ".dvc").is_dir():
        dvc_init(root)
        notes.append("dvc init: created .dvc/ (commit it with the files below)")
    files = tracked_files.apply(root, planned, request.force)
    files.append(ensure_gitignore(root))
    return InitReport(root, task, columns, files, notes)


def propose_project(frame: pd.DataFrame, source: str, request: InitRequest,
                    ) -> tuple[TaskInference, ColumnPlan, PlannedFile, Params]:
    """The task, the features and params.yaml (text and validated) for the data file at `source`."""
    target = request.target
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:15])) + (", ..." if len(frame.columns) > 15 else "")
        raise UsageError(f"--target '{target}': not a column of {source} (columns: {shown})")
    name = request.name or model_name(Path(source))
    if not _MODEL_NAME.match(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '_', '.' and '-' (it names the registered model)")
    task = infer_task(frame[target], request.task)
    check_rows(frame, target, task)
    columns = infer_columns(frame, target)
    if not columns.features:
        raise UsageError(f"{source}: no feature columns besides '{target}' "
                         f"(left out: {', '.join(f'{c} ({r})' for c, r in columns.dropped.items())})")
    proposal = propose_params(frame, target, task, columns, name, source)
    text = params_text(proposal.params, proposal.notes, source, target)
    return task, columns, PlannedFile(PARAMS_FILE, text), validated(text)


def git_root(cwd: Path) -> Path:
    """The top of the git work tree `cwd` is in; a UsageError when there is none."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed; mlgate init sets up a git repository") from None
    except NotADirectoryError:
        raise UsageError(f"{cwd}: not a directory") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise UsageError(f"{Path(cwd).resolve()}: not inside a git repository; run `git init` first "
                         "(mlgate init writes the project's files into one)")
    return Path(proc.stdout.strip()).resolve()


def data_in_repository(data_path: Path, root: Path) -> str:
    """The data file's path relative to the repository root (as params.yaml and dvc.yaml name it)."""
    if not data_path.is_file():
        raise UsageError(f"--data {data_path}: data file not found")
    try:
        source = data_path.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(f"--data {data_path}: outside the repository {root}; copy it into the repository "
                         "(dvc repro and CI read it from there, or track it with `dvc add`)") from None
    if source in {f"data/{split}.parquet" for split in SPLITS}:
        raise UsageError(f"--data {source}: that is where `prepare` writes a split; move the data file elsewhere")
    return source


def model_name(data_path: Path) -> str:
    """The data file's name as a registered-model name (letters, digits, '_', '.', '-')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", data_path.stem).strip("_.-") or "model"


def validated(text: str) -> Params:
    """The proposed params.yaml, read back and validated by the real schema (a failure is mlgate's bug)."""
    try:
        return Params.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise MlgateError("the inferred params.yaml does not validate: " + "; ".join(describe_errors(exc))) from None


def effective_params(root: Path, planned: PlannedFile, inferred: Params, force: bool) -> tuple[Params, list[str]]:
    """The params the other files follow: the team's params.yaml when init keeps it, else the proposal."""
    outcome = tracked_files.decide(root, planned, tracked_files.read_record(root), force)
    if outcome.outcome is not Outcome.KEPT:
        return inferred, []
    try:
        return load_params(root / PARAMS_FILE), [f"{PARAMS_FILE} is kept: the other files follow it"]
    except UsageError as exc:
        return inferred, [f"{PARAMS_FILE} is kept but does not validate ({exc}); the other files follow "
                          "mlgate's proposal"]


def rendered_files(params: Params, root: Path) -> list[PlannedFile]:
    """dvc.yaml, the suite (from the splits prepare would write) and the workflows for `params`."""
    from mlgate.pipelines.checks.data.expectations import suite_text
    from mlgate.pipelines.stages.prepare import make_splits

    try:
        splits = make_splits(rendering.source_frame(params, root), params)
    except ValueError as exc:  # sklearn's stratified split refusing a class that is too small
        raise UsageError(f"the data cannot be split as params.yaml says: {exc}") from None
    suite = suggested_suite(params, splits, "mlgate init")
    planned = [PlannedFile("dvc.yaml", rendering.dvc_yaml(params)),
               PlannedFile(rendering.suite_file(params), suite_text(suite))]
    return planned + [PlannedFile(path, text) for path, text in rendering.workflows(__version__).items()]


def dvc_init(root: Path) -> None:
    """`dvc init` with this environment's dvc (the version mlgate depends on)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "init", "--quiet"], cwd=root, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise MlgateError(f"dvc init failed in {root}: {detail[-1] if detail else f'exit {proc.returncode}'}")


def ensure_gitignore(root: Path) -> FileOutcome:
    """Append the lines mlgate needs that .gitignore lacks; the team's own lines are left as they are."""
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    present = {line.strip() for line in text.splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return FileOutcome(".gitignore", Outcome.UNCHANGED)
    block = "\n".join([GITIGNORE_HEADER, *missing]) + "\n"
    separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    path.write_text(text + separator + block, encoding="utf-8")
    outcome = Outcome.UPDATED if text else Outcome.WRITTEN
    return FileOutcome(".gitignore", outcome, f"added {', '.join(missing)}")
