"""The demo's second candidate: the champion it is rolled out against, with a share of its answers spoiled.

Whatever happened to the first rollout (promoted or rolled back), this candidate is worse than the
model that is champion *now*, by a measured amount: it wraps that very model (mlgate.pipelines.demo.faulty_model)
and perturbs a share of its rows, sized so that the label metric the canary judges drops by at least
`DEGRADE_FACTOR` times the demo's margin on the holdout. It is registered straight as the challenger,
without the offline gates: it stands for a regression that the offline evaluation missed, which the
online analysis must catch on live labels (DESIGN §8). The share is checked on the holdout before
registration; a champion too weak to be degraded that much is refused with the numbers.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import load_split
from mlgate.pipelines.demo.faulty_model import Faults, log_faulty_model, save_faulty_model
from mlgate.pipelines.errors import GateRefused

DEGRADE_FACTOR = 3.0  # the fault is sized to this many times the canary margin (the issue asks >= 2)
MAX_SHARE = 0.4
SIZING_TRIES = 4


@dataclass(frozen=True)
class Degradation:
    metric: str
    champion: float
    degraded: float
    margin: float
    faults: Faults

    @property
    def harm(self) -> float:
        """How much worse on the holdout, in the metric's own direction (accuracy drop, MAE rise)."""
        return self.champion - self.degraded if self.metric == "accuracy" else self.degraded - self.champion

    @property
    def allowed(self) -> float:
        """The canary's margin in the metric's units (MAE's margin is relative to the champion's MAE)."""
        return self.margin * self.champion if self.metric == "mae" else self.margin

    @property
    def margins(self) -> float:
        """The harm in canary margins: what the demo sizes to DEGRADE_FACTOR and refuses below 2."""
        return self.harm / self.allowed if self.allowed > 0 else math.inf

    def describe(self) -> str:
        return (f"holdout {self.metric} {self.champion:.4f} -> {self.degraded:.4f} (harm {self.harm:.4f}, "
                f"{self.margins:.1f}x the canary margin {self.allowed:.4g}); {self.faults.describe()}")


def canary_metric(task: str) -> str:
    """The label metric the demo's canary judges for this task."""
    return "mae" if task == "regression" else "accuracy"


def plan_degradation(task: str, labels: pd.Series, champion_out: np.ndarray, classes: list[Any],
                     margin: float) -> Faults:
    """Faults expected to worsen the champion's metric by DEGRADE_FACTOR x margin on these rows."""
    if task == "regression":
        truth = labels.to_numpy(dtype=float)
        mae = float(np.mean(np.abs(truth - champion_out.astype(float))))
        share = 0.2  # MAE margin is relative: rise needed = factor x margin x MAE, from a fifth of the rows
        return Faults(perturb_share=share, shift=DEGRADE_FACTOR * margin * mae / share * 1.5)
    accuracy = float(np.mean(_text(champion_out) == _text(labels.to_numpy())))
    edge = 2 * accuracy - 1  # swapping a right answer loses 1, a wrong one gains at most 1
    if edge <= 0:
        raise GateRefused(f"demo: the champion's holdout accuracy {accuracy:.3f} is no better than chance; "
                          "there is no answer worth spoiling")
    share = min(MAX_SHARE, DEGRADE_FACTOR * margin / edge * 1.1)
    return Faults(perturb_share=share, classes=list(classes))


def degrade_champion(ctx: RunContext, margin: float, out_dir: Path) -> tuple[Path, Degradation]:
    """Save the degraded wrapper of the current champion to `out_dir`; the harm measured on the holdout.
    Returns the champion's model directory and the degradation."""
    from mlgate.serving.loading import LoadPolicy, load_model, local_model_path

    name, uri = ctx.params.model.name, ctx.tracking_uri
    champion = registry.version_by_alias(uri, name, registry.CHAMPION)
    if champion is None:
        raise GateRefused(f"demo: model {name!r} has no alias champion to degrade")
    base = local_model_path(f"models:/{name}/{champion.version}")
    holdout = load_split(ctx.params.data, "test", ctx.base_dir)
    features, labels = holdout[ctx.params.data.features], holdout[ctx.params.model.target]
    ints = features.select_dtypes(include="integer").columns  # the signature declares them as doubles
    features = features.astype({c: "float64" for c in ints})
    policy = LoadPolicy.of(ctx.params.serving)  # never MLflow's own loader: it would allow pickle
    champion_model = load_model(str(base), policy).model
    champion_out = np.asarray(champion_model.predict(features))
    task, metric = ctx.params.model.task, canary_metric(ctx.params.model.task)
    classes = sorted(pd.unique(labels).tolist(), key=str) if task != "regression" else []
    faults = plan_degradation(task, labels, champion_out, classes, margin)
    for _ in range(SIZING_TRIES):  # on a small holdout the hashed share is noisy: grow it to the target
        save_faulty_model(base, out_dir, faults)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow's hint about type hints on predict
            degraded_out = np.asarray(load_model(str(out_dir), policy).model.predict(features))
        result = Degradation(metric, _score(metric, labels, champion_out), _score(metric, labels, degraded_out),
                             margin, faults)
        if result.margins >= DEGRADE_FACTOR or faults.perturb_share >= MAX_SHARE:
            break
        grow = DEGRADE_FACTOR / max(result.margins, 0.1)
        faults = replace(faults, perturb_share=min(MAX_SHARE, faults.perturb_share * grow))
        shutil.rmtree(out_dir)
    if result.margins < 2:
        raise GateRefused(f"demo: the degraded candidate is not degraded enough to prove anything: {result.describe()}")
    return base, result


def register_degraded(ctx: RunContext, margin: float, log: Callable[[str], None]) -> str:
    """Build, check and register the degraded champion as alias challenger; its version."""
    import mlflow

    name = ctx.params.model.name
    with tempfile.TemporaryDirectory(prefix="mlgate-degraded-") as tmp:
        base, degradation = degrade_champion(ctx, margin, Path(tmp) / "checked")
        log(f"demo: degraded candidate = the current champion with {degradation.describe()}")
        registry.client(ctx.tracking_uri)
        mlflow.set_experiment(name)
        tags = {"mlgate.stage": "candidate", "mlgate.demo": "degraded champion (not gated offline)",
                "mlgate.verdict": "NOT_GATED"}
        with mlflow.start_run(run_name="demo-degraded-candidate", tags=tags):
            mlflow.log_metrics({f"holdout_{degradation.metric}": degradation.degraded,
                                f"champion_holdout_{degradation.metric}": degradation.champion})
            model_uri = log_faulty_model(base, degradation.faults, Path(tmp))
        ref = registry.register_version(ctx.tracking_uri, name, model_uri,
                                        {**tags, "mlgate.fault": degradation.faults.describe()})
    registry.set_alias(ctx.tracking_uri, name, registry.CHALLENGER, ref.version)
    log(f"demo: registered the degraded candidate as {name} version {ref.version} (alias challenger)")
    return ref.version


def _score(metric: str, labels: pd.Series, out: np.ndarray) -> float:
    if metric == "mae":
        return float(np.mean(np.abs(labels.to_numpy(dtype=float) - out.astype(float))))
    return float(np.mean(_text(out) == _text(labels.to_numpy())))


def _text(values: np.ndarray) -> np.ndarray:
    """Labels compared as text, 1 and 1.0 alike (as the online analysis compares them)."""
    from mlgate.gates.online.log_frames import canonical

    return np.array([canonical(v) for v in values], dtype=object)
