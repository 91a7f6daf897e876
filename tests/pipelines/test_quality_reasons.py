"""The quality report's reasons: both models' mean |contribution| per feature, side by side, from a real
`mlgate train` (whose bundle holds the background sample) and a registered champion."""

from __future__ import annotations

import json

import pytest

from mlgate.gates.result import GateResult, Status
from mlgate.pipelines.checks.quality.explanations import CHECK, reasons_check
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.lineage import model_digest, model_uri_digest
from mlgate.pipelines.report.html import render_html
from mlgate.pipelines.report.markdown import render_markdown
from mlgate.serving.explain_background import BACKGROUND_FILE, read_background
from mlgate.serving.settings import ExplainConfig
from tests.conftest import Project
from tests.pipelines.test_report import make_verdict

MODEL_NAME = "quality_reasons_churn"


@pytest.fixture(scope="module")
def judged(tmp_path_factory, churn_frame, base_params, mlflow_uri):
    """A logistic champion in the registry, a gradient-boosting candidate, and the quality gate's result."""
    root = tmp_path_factory.mktemp("quality_reasons")
    project = Project.create(root, churn_frame.sample(1200, random_state=11), base_params)
    champion = project.logistic_champion_boosted_candidate(MODEL_NAME, mlflow_uri)
    path = str(project.params_path)
    assert main(["gate", "quality", "--params", path, "--tracking-uri", mlflow_uri, "--report-only"]) == 0
    return project, champion, GateResult.read(root / "reports" / "gates" / "quality.json")


@pytest.mark.slow
def test_training_puts_the_background_in_the_logged_and_judged_bundle(judged, mlflow_uri):
    project, champion, _ = judged
    model_dir = project.root / "models" / "candidate"
    sample = read_background(model_dir)
    assert sample is not None and len(sample) == ExplainConfig().background_rows
    data = project.params["data"]
    assert list(sample.columns) == [*data["numeric"], *data["categorical"]]
    run = json.loads((project.root / "reports" / "train_run.json").read_text())
    assert model_uri_digest(mlflow_uri, run["model_uri"]) == model_digest(model_dir)  # register keeps the run
    assert (model_dir / BACKGROUND_FILE).is_file()


@pytest.mark.slow
def test_quality_json_and_both_reports_show_the_reasons_side_by_side(judged, tmp_path):
    _, champion, result = judged
    check = next(c for c in result.checks if c.name == CHECK)
    assert check.status == Status.PASS and result.status != Status.ERROR
    candidate, baseline = check.details["candidate"], check.details["baseline"]
    assert (candidate["explainer"], candidate["scale"]) == ("tree_path_dependent", "log_odds")
    assert (baseline["explainer"], baseline["scale"]) == ("linear", "log_odds")  # the champion's own background
    assert candidate["rows"] == baseline["rows"] == 200
    assert sum(candidate["share"].values()) == pytest.approx(1.0)
    top = max(candidate["mean_abs"], key=candidate["mean_abs"].get)
    verdict = make_verdict({"quality": result})
    markdown = render_markdown(verdict)
    assert "### Feature reasons: candidate vs production" in markdown
    assert "| Feature | Candidate | Production | Share change |" in markdown
    line = next(line for line in markdown.splitlines() if line.startswith(f"| `{top}` |"))
    assert f"{candidate['mean_abs'][top]:.4f}" in line and f"{baseline['mean_abs'][top]:.4f}" in line
    assert "Production: linear on log_odds, 200 holdout rows" in markdown
    page = render_html(verdict, tmp_path, "0" * 64)
    assert "Feature reasons: candidate vs production" in page and f"<code>{top}</code>" in page


def test_a_model_that_cannot_be_explained_is_named_and_never_fails(churn_frame, tmp_path):
    """A candidate whose bundle has no background (an old model) and a champion that cannot be fetched:
    the check says why for each and is SKIP (nothing to show), never FAIL or ERROR."""
    from sklearn.dummy import DummyClassifier

    x = churn_frame.drop(columns=["churn"]).head(60)
    candidate = DummyClassifier(strategy="prior").fit(x, churn_frame["churn"].head(60))
    check = reasons_check(candidate, tmp_path, candidate, str(tmp_path / "no-such-model"), "3", x, ExplainConfig(),
                          "yes", 0)
    assert check.status == Status.SKIP
    assert "has no background sample" in check.message and "retrain" in check.message
    assert "no-such-model" in check.details["baseline"]["problem"]
