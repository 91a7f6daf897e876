"""report.md (PR comment, job summary) and report.html (self-contained, every plot inline)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from mlgate.gates.result import Check, GateResult, Status
from mlgate.pipelines.report.html import render_html
from mlgate.pipelines.report.markdown import MAX_LISTED_CHECKS, REPORT_MARKER, metric_deltas, render_markdown
from mlgate.pipelines.report.verdict import Candidate, Verdict, decide

BASELINE = {"gate": "quality", "alias": "champion", "name": "churn", "version": "7", "uri": "models:/churn/7",
            "run_id": "0123456789abcdef", "lineage": {"mlgate.git_sha": "feedfacecafe0000"}}


def delta_check(metric: str, status: Status, delta: float, low: float, high: float) -> Check:
    """A check shaped like mlgate.gates.quality.model_comparison.comparison_details produces."""
    details = {"metric": metric, "candidate": 0.80 + delta, "baseline": 0.80, "delta": delta, "ci": [low, high],
               "level": 0.95, "p_value": 0.01, "test": "DeLong"}
    return Check(f"metric.{metric}.vs_baseline", status, delta, "CI lower bound of delta > -0.010",
                 f"{metric} delta {delta:+.3f} [95% CI {low:+.3f}, {high:+.3f}]", details)


def make_verdict(results: dict[str, GateResult], baseline: dict | None = BASELINE) -> Verdict:
    candidate = Candidate("churn", "models/candidate", "c0ffee" * 5 + "00", "runid42", "models:/m-abc")
    return Verdict(decide(results), results, candidate, "p" * 32, "g" * 32, "a1b2c3d4e5f6" * 3, False, baseline,
                   created="2025-01-01T00:00:00+00:00")


def gate(name: str, *checks: Check, artifacts: dict | None = None) -> GateResult:
    return GateResult.from_checks(name, checks, 2.25, artifacts)


def ok(name: str) -> Check:
    return Check(name, Status.PASS, 1, "a rule", f"{name} ok")


@pytest.fixture()
def failing_verdict() -> Verdict:
    quality = gate("quality", Check("baseline", Status.PASS, "models:/churn/7", "a version", "baseline", BASELINE),
                   delta_check("roc_auc", Status.FAIL, -0.021, -0.034, -0.008),
                   delta_check("accuracy", Status.PASS, 0.004, -0.003, 0.011),
                   Check("calibration.ece", Status.WARN, 0.06, "ECE <= 0.05", "ECE 0.060 above max 0.050"))
    latency = gate("latency", ok("p95"), Check("slo.p99", Status.ERROR, None, "p99 <= 500 ms", "no samples | none"))
    return make_verdict({"data": gate("data", ok("schema")), "quality": quality,
                         "edge_cases": gate("edge_cases", ok("nulls")), "latency": latency})


def test_markdown_headline_gate_rows_and_marker(failing_verdict):
    text = render_markdown(failing_verdict)
    assert text.startswith(REPORT_MARKER)
    assert "## ⛔ mlgate verdict: ERROR — 2 of 4 gates blocked" in text
    assert "| quality | ❌ FAIL | 2 / 1 / 1 / 0 | 2.2 s |" in text
    assert "| latency | ⛔ ERROR | 1 / 0 / 0 / 1 | 2.2 s |" in text
    assert "| data | ✅ PASS | 1 / 0 / 0 / 0 |" in text and "| edge_cases | ✅ PASS |" in text


def test_markdown_lists_failing_checks_first_then_deltas_models_and_reproduction(failing_verdict):
    text = render_markdown(failing_verdict)
    error = text.index("`latency` / `slo.p99`")
    fail = text.index("`quality` / `metric.roc_auc.vs_baseline`: roc_auc delta -0.021")
    warn = text.index("`quality` / `calibration.ece`")
    assert error < fail < warn < text.index("### Metric deltas vs production")
    assert "no samples | none" in text  # messages kept whole outside tables
    assert ("| quality | `metric.roc_auc.vs_baseline` | 0.7790 | 0.8000 | -0.0210 | 95% [-0.0340, -0.0080] "
            "| ❌ FAIL |") in text
    assert "`churn` version 7, alias `champion`, run `0123456789abcdef`, git `feedfacecafe`" in text
    assert "run `runid42`" in text
    assert "dvc repro" in text and "mlgate gate quality" in text and "mlgate gate latency" in text
    assert text == render_markdown(failing_verdict)  # deterministic: its digest identifies what was approved


def test_markdown_bounds_the_list_and_the_size():
    many = gate("quality", *[Check(f"slice.{i}", Status.FAIL, i, "rule", "x" * 2000) for i in range(45)])
    verdict = make_verdict({"quality": many})
    text = render_markdown(verdict)
    assert text.count("**FAIL**") == MAX_LISTED_CHECKS and "… 25 more (see report.html)" in text
    assert all(len(line) < 600 for line in text.splitlines())
    short = render_markdown(verdict, max_chars=3000)
    assert len(short) <= 3000 and "report truncated at 3,000 characters" in short


def test_markdown_without_a_production_model_says_so():
    absent = Check("baseline", Status.SKIP, None, "a model version behind alias 'champion'",
                   "no model version behind alias 'champion'; relative checks are skipped")
    verdict = make_verdict({"quality": gate("quality", absent, ok("metric.roc_auc.absolute"))}, baseline=None)
    text = render_markdown(verdict)
    assert "## ✅ mlgate verdict: PASS — all 1 gates passed" in text
    assert "No comparison with a production model was made." in text
    assert "**Production**: none (no model version behind alias 'champion'; relative checks are skipped)" in text
    assert "No failing or warning checks." in text


def write_png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def test_html_is_self_contained_with_inline_plots_and_every_check(tmp_path, failing_verdict):
    png = write_png(tmp_path / "reports" / "plots" / "roc.png")
    quality = failing_verdict.results["quality"]
    artifacts = {"roc_curve": "reports/plots/roc.png", "lost": "reports/plots/missing.png",
                 "predictions": "reports/quality_predictions.parquet"}
    results = {**failing_verdict.results,
               "quality": GateResult(quality.gate, quality.status, quality.checks, 1.0, artifacts)}
    page = render_html(make_verdict(results), tmp_path, "d" * 64)
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 1 and base64.b64decode(embedded[0]) == png.read_bytes()
    assert "reports/plots/missing.png</code>): file not found" in page
    assert "reports/quality_predictions.parquet" in page
    assert not re.search(r"<script|<link|(src|href)=\"(https?:)?//", page)
    for result in results.values():
        for check in result.checks:
            assert f"<code>{check.name}</code>" in page
    assert "no samples | none" in page and "d" * 64 in page


def test_reports_show_and_caption_the_plots_of_the_task_in_the_order_written(tmp_path, failing_verdict):
    """A regression's quality gate wrote residuals and metric deltas: both shown with captions, no ROC."""
    quality = failing_verdict.results["quality"]
    artifacts = {"predictions_test": "reports/quality/predictions_test.parquet",
                 "residuals": "plots/quality/residuals.png", "forest_plot": "plots/quality/forest.png"}
    for rel in ("plots/quality/residuals.png", "plots/quality/forest.png"):
        write_png(tmp_path / rel)
    verdict = make_verdict({"quality": GateResult("quality", quality.status, quality.checks, 1.0, artifacts)})
    page = render_html(verdict, tmp_path, "d" * 64)
    captions = re.findall(r"<figcaption><strong>([^<]+)</strong>: (.+?) \(<code>plots/quality/", page)
    assert [title for title, _ in captions] == ["Residuals", "Metric deltas"]
    assert captions[0][1].startswith("predicted vs actual, residual (actual - predicted) vs predicted")
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 2
    assert "ROC" not in page and "not found" not in page
    text = render_markdown(verdict)
    assert "Every check and plot (quality: Residuals, Metric deltas): `reports/report.html`." in text
    assert "ROC" not in text


def test_html_escapes_messages_and_refuses_files_outside_the_repository(tmp_path):
    write_png(tmp_path / "outside.png")
    base = tmp_path / "repo"
    base.mkdir()
    checks = [Check("x", Status.FAIL, "<b>", "rule", "<script>alert(1)</script>")]
    result = GateResult.from_checks("data", checks, 0.1, {"escape": "../outside.png"})
    page = render_html(make_verdict({"data": result}), base, "0" * 64)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "outside the repository; not embedded" in page and "base64," not in page


@pytest.mark.slow
def test_the_real_quality_gate_results_show_up_as_deltas(churn_frame, base_params):
    """A result of gates.quality.check (two real models on the churn data) feeds the deltas table."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from mlgate.gates.config import QualityGateConfig
    from mlgate.gates.quality.decide import BaselineOutputs, QualityInputs, check
    from mlgate.gates.stats import Predictions

    frame = churn_frame.sample(1200, random_state=3)
    x = frame[["total_day_minutes", "number_customer_service_calls", "total_eve_minutes"]].to_numpy()
    y = (frame["churn"] == "yes").to_numpy().astype(int)

    def predictions(model) -> Predictions:
        proba = model.fit(x[:800], y[:800]).predict_proba(x[800:])[:, 1]
        return Predictions(labels=(proba >= 0.5).astype(int), scores=proba, proba=proba)

    config = QualityGateConfig.model_validate({
        "metrics": base_params["gates"]["quality"]["metrics"], "bootstrap": {"n_boot": 200},
        "deepchecks": {"enabled": False}})
    baseline = BaselineOutputs("churn", "7", "models:/churn/7", predictions(HistGradientBoostingClassifier(max_iter=40)))
    inputs = QualityInputs("binary", y[800:], predictions(LogisticRegression(max_iter=500)), baseline)
    result = check(inputs, config)
    deltas = {d.metric: d for d in metric_deltas({"quality": result})}
    assert set(deltas) == set(config.metrics)
    assert all(d.ci_low is not None and d.ci_low <= d.delta <= d.ci_high for d in deltas.values())
    text = render_markdown(make_verdict({"quality": result}))
    assert f"| quality | `metric.roc_auc.vs_baseline` | {deltas['roc_auc'].candidate:.4f}" in text
    assert np.isfinite(deltas["roc_auc"].delta)
