"""The demo's degraded candidate and the faulty-model wrapper behind it, on a real champion in MLflow."""

from __future__ import annotations

import numpy as np
import pytest

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import load_split
from mlgate.pipelines.demo.degraded import degrade_champion, register_degraded
from mlgate.pipelines.demo.faulty_model import Faults, save_faulty_model
from mlgate.pipelines.errors import GateRefused
from mlgate.serving.loading import local_model_path


@pytest.fixture()
def champion_ctx(project, mlflow_uri):
    project.prepare_and_register_champion("degraded_demo", mlflow_uri)
    return RunContext.load(str(project.params_path), mlflow_uri)


def _holdout(ctx: RunContext):
    frame = load_split(ctx.params.data, "test", ctx.base_dir)
    features = frame[ctx.params.data.features]
    ints = features.select_dtypes(include="integer").columns
    return features.astype({c: "float64" for c in ints}), frame[ctx.params.model.target]


def test_degraded_candidate_is_worse_than_the_champion_it_wraps_by_at_least_twice_the_margin(champion_ctx):
    import mlflow.pyfunc

    ctx = champion_ctx
    out = ctx.base_dir / "degraded"
    _, degradation = degrade_champion(ctx, 0.03, out)
    assert degradation.metric == "accuracy" and degradation.harm >= 0.06, degradation.describe()
    features, labels = _holdout(ctx)
    model = mlflow.pyfunc.load_model(str(out))
    first, second = np.asarray(model.predict(features)), np.asarray(model.predict(features.iloc[::-1]))[::-1]
    assert (first == second).all(), "a row must get the same answer whatever the batch around it"
    champion = registry.version_by_alias(ctx.tracking_uri, ctx.params.model.name, registry.CHAMPION)
    base = mlflow.pyfunc.load_model(str(local_model_path(f"models:/{ctx.params.model.name}/{champion.version}")))
    changed = float(np.mean(np.asarray(base.predict(features)) != first))
    assert changed == pytest.approx(degradation.faults.perturb_share, abs=0.05)
    assert set(first) <= set(labels)


def test_degraded_candidate_is_registered_as_challenger_and_marked_not_gated(champion_ctx):
    ctx = champion_ctx
    version = register_degraded(ctx, 0.03, lambda line: None)
    name = ctx.params.model.name
    assert registry.version_by_alias(ctx.tracking_uri, name, registry.CHALLENGER).version == version
    tags = registry.client(ctx.tracking_uri).get_model_version(name, version).tags
    assert tags["mlgate.verdict"] == "NOT_GATED" and "label swapped" in tags["mlgate.fault"]


def test_a_margin_too_wide_for_the_champion_is_refused_with_the_numbers(champion_ctx):
    with pytest.raises(GateRefused, match="not degraded enough"):
        degrade_champion(champion_ctx, 0.45, champion_ctx.base_dir / "too-wide")


def test_faulty_model_raises_for_its_error_rows_and_on_every_call_when_told(champion_ctx, tmp_path):
    import mlflow.pyfunc

    ctx = champion_ctx
    champion = registry.version_by_alias(ctx.tracking_uri, ctx.params.model.name, registry.CHAMPION)
    base = local_model_path(f"models:/{ctx.params.model.name}/{champion.version}")
    features = _holdout(ctx)[0].head(400)  # one call per row: 400 rows judge a 5% share to +-3 points (2.7 SE)
    errors = mlflow.pyfunc.load_model(str(save_faulty_model(base, tmp_path / "errors", Faults(error_share=0.05))))
    failed = 0
    for i in range(len(features)):
        try:
            errors.predict(features.iloc[[i]])
        except Exception as exc:  # noqa: BLE001 - MLflow wraps the model's error
            assert "set to fail" in str(exc)
            failed += 1
    assert failed / len(features) == pytest.approx(0.05, abs=0.03)
    always = mlflow.pyfunc.load_model(str(save_faulty_model(base, tmp_path / "raise", Faults(raise_always=True))))
    with pytest.raises(Exception, match="raises on every call"):
        always.predict(features.head(3))


def test_a_regression_champion_is_degraded_on_mae_by_at_least_twice_the_relative_margin(tmp_path):
    """Regression: a share of values shifted; the MAE rise, in units of the margin x the champion's MAE."""
    import mlflow.pyfunc
    import mlflow.sklearn
    import pandas as pd
    import skops.io
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from mlgate.pipelines.demo.degraded import Degradation, plan_degradation

    x, y = load_diabetes(return_X_y=True, as_frame=True)
    model = Ridge().fit(x.iloc[:300], y.iloc[:300])
    base = tmp_path / "ridge"
    mlflow.sklearn.save_model(model, str(base), serialization_format="skops", signature=infer_signature(x, y),
                              skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    holdout, labels = x.iloc[300:], y.iloc[300:]
    champion_out = np.asarray(model.predict(holdout))
    faults = plan_degradation("regression", labels, champion_out, [], 0.15)
    degraded_out = np.asarray(mlflow.pyfunc.load_model(str(save_faulty_model(base, tmp_path / "deg", faults)))
                              .predict(holdout))
    mae = lambda out: float(np.mean(np.abs(labels.to_numpy() - out)))  # noqa: E731
    result = Degradation("mae", mae(champion_out), mae(degraded_out), 0.15, faults)
    assert result.margins >= 2, result.describe()
    changed = np.mean(~np.isclose(champion_out, degraded_out))
    assert changed == pytest.approx(faults.perturb_share, abs=0.08)
    assert isinstance(pd.Series(degraded_out).iloc[0], float)


def test_a_lightgbm_champion_is_wrapped_under_the_project_s_trust_list(champion_ctx):
    """The wrapper loads the model it wraps under the policy of the load it runs inside (the project's
    serving.trusted_types), so a LightGBM champion can be degraded; the default list refuses the same wrapper."""
    import pandas as pd

    from mlgate.serving.loading import LoadPolicy, ModelLoadError, load_model
    from mlgate.serving.settings import DEFAULT_TRUSTED_TYPES
    from tests.pipelines.byom_models import LIGHTGBM_TYPES, save_lightgbm_pipeline

    root, params = champion_ctx.base_dir, champion_ctx.params.model_dump()
    train = pd.read_parquet(root / "data" / "train.parquet")
    champion = save_lightgbm_pipeline(train, params, root / "models" / "candidate", root / "lightgbm")
    wrapped = save_faulty_model(champion, root / "degraded-lightgbm", Faults(perturb_share=0.2, classes=["no", "yes"]))
    features, labels = _holdout(champion_ctx)
    trusted = LoadPolicy(trusted_types=(*DEFAULT_TRUSTED_TYPES, *LIGHTGBM_TYPES))
    out = np.asarray(load_model(str(wrapped), trusted).model.predict(features))
    plain = np.asarray(load_model(str(champion), trusted).model.predict(features))
    assert set(out) <= set(labels) and 0.1 < float(np.mean(out != plain)) < 0.3
    with pytest.raises(ModelLoadError, match="lightgbm.basic.Booster"):
        load_model(str(wrapped), LoadPolicy())
