"""The decision audit's scenarios: challengers whose right rollout decision is known, built from one champion.

One prepared project per audit process (the real churn splits, a logistic-regression champion and a
gradient-boosting candidate trained as `mlgate demo` trains them, in a throwaway SQLite MLflow store).
Each scenario's challenger is built once (mlgate.pipelines.demo.faulty_model wraps the champion with a sized fault);
each run registers champion and challenger under a model name of its own, so every run is a fresh rollout
with its own prediction log, and rolls it out live with `run_lifecycle_demo` (a real server on 127.0.0.1,
replayed production traffic with late labels, the real controller).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from mlgate.pipelines.context import RunContext
from mlgate.pipelines.demo.faulty_model import Faults

REPO = Path(__file__).resolve().parents[1]
MODEL_NAME = "churn_audit"
CHAMPION_ESTIMATOR = "logistic_regression"
MIN_DISTANCE = 2.0  # every fault is at least this many times the threshold that should catch it
ERROR_SHARE = 0.05
MAX_RUN_S = 300.0
CALIBRATION_S = 20.0


@dataclass(frozen=True)
class Scenario:
    """A challenger and the decision it deserves: `expected` phase, on the check whose metric starts with `on`."""

    name: str
    expected: str
    on: str | None
    summary: str
    clients_unharmed: bool = False  # right only if every client answer was 200


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("same", "production", None, "the champion itself, wrapped without a fault"),
    Scenario("better", "production", None, "gradient boosting against the logistic-regression champion"),
    Scenario("accuracy_drop", "rolled_back", "accuracy", "the champion with a share of labels swapped"),
    Scenario("slow", "rolled_back", "latency", "the champion with extra CPU work per call"),
    Scenario("errors", "rolled_back", "error_rate", f"the champion with {ERROR_SHARE:.0%} of rows raising"),
    Scenario("raising", "rolled_back", None, "a shadow that raises on every call", clients_unharmed=True),
)}


def audit_rollout(task: str) -> dict:
    """AUDIT_ROLLOUT: the demo's rollout settings (mlgate.pipelines.demo.lifecycle.demo_rollout), unchanged."""
    from mlgate.pipelines.demo.lifecycle import demo_rollout

    return demo_rollout(task)


@dataclass(frozen=True)
class AuditProject:
    ctx: RunContext  # model MODEL_NAME (its champion registered), with AUDIT_ROLLOUT applied
    champion_uri: str
    champion_dir: Path
    better_uri: str
    holdout: dict[str, dict[str, float]]  # champion / better -> holdout metrics


@dataclass(frozen=True)
class Challenger:
    model_uri: str
    fault: str  # what is wrong with it
    distance: str  # how far the fault is from the threshold that should catch it


def prepare_project(root: Path) -> AuditProject:
    """`mlgate prepare`, the bootstrapped champion (registered, alias champion) and the params.yaml candidate."""
    from mlgate.pipelines.cli.main import main as mlgate
    from mlgate.pipelines.demo.champion import BOOTSTRAP_DIR, ensure_champion
    from mlgate.pipelines.demo.lifecycle import with_rollout
    from mlgate.pipelines.stages.train import fit_and_log

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["name"] = MODEL_NAME
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    if mlgate(["prepare", "--params", str(path)]) != 0:
        raise RuntimeError(f"mlgate prepare failed in {root}")
    ctx = RunContext.load(path, f"sqlite:///{root / 'mlflow.db'}")
    ctx = with_rollout(ctx, audit_rollout(ctx.params.model.task))
    champion, _ = ensure_champion(ctx.params, ctx.tracking_uri, root, CHAMPION_ESTIMATOR)
    better = fit_and_log(ctx.params, ctx.tracking_uri, root)
    champion_metrics = _run_metrics(ctx.tracking_uri, champion.run_id)
    project = AuditProject(ctx, champion.source, root / BOOTSTRAP_DIR, better.run.model_uri,
                           {"champion": champion_metrics, "better": dict(better.metrics)})
    # The served champion is the fault-free wrapper, so champion and faulty challengers pay the same
    # pyfunc overhead per call and differ only by their fault (a bare sklearn champion made the wrapper
    # itself a slowdown: one accuracy-drop run was rolled back on canary latency, P(slower) 0.952).
    wrapped = _faulty(project, "champion", Faults(), "the champion as served")
    return replace(project, champion_uri=wrapped.model_uri)


def _run_metrics(tracking_uri: str, run_id: str | None) -> dict[str, float]:
    from mlgate.pipelines import mlflow_io as registry

    return dict(registry.client(tracking_uri).get_run(run_id).data.metrics) if run_id else {}


def build_challenger(project: AuditProject, scenario: str) -> Challenger:
    return _BUILDERS[scenario](project)


def _same(project: AuditProject) -> Challenger:
    return _faulty(project, "same", Faults(), "the champion's own wrapper: identical answers and cost per call")


def _better(project: AuditProject) -> Challenger:
    champ, better = project.holdout["champion"].get("accuracy"), project.holdout["better"].get("accuracy")
    margin = project.ctx.params.rollout.canary.metric_margins.get("accuracy")
    return Challenger(project.better_uri, "none (a stronger model family)",
                      f"holdout accuracy {champ:.4f} -> {better:.4f} ({better - champ:+.4f}; canary margin -{margin:g})")


def _accuracy_drop(project: AuditProject) -> Challenger:
    """mlgate.pipelines.demo.degraded sizes the share of swapped labels and checks the drop on the holdout."""
    from mlgate.pipelines.demo.degraded import degrade_champion

    margin = project.ctx.params.rollout.canary.metric_margins["accuracy"]
    with tempfile.TemporaryDirectory(prefix="mlgate-audit-") as tmp:
        _, drop = degrade_champion(project.ctx, margin, Path(tmp) / "checked")
    if drop.harm < MIN_DISTANCE * margin:
        raise RuntimeError(f"the accuracy drop is too small to prove anything: {drop.describe()}")
    return _faulty(project, "accuracy_drop", drop.faults, f"holdout accuracy {drop.champion:.4f} -> "
                   f"{drop.degraded:.4f}: drop {drop.harm:.4f} = {drop.harm / margin:.1f}x the canary accuracy margin {margin:g}")


def _slow(project: AuditProject) -> Challenger:
    """Extra CPU work sized on the champion's model time as the server's shadow worker measures it under
    the replayed load (several times its time in a quiet process), so the live ratio is >= 2x the limit.
    The 90th percentile, because a slow shadow gathers bigger batches than the calibration's."""
    limit = project.ctx.params.rollout.shadow.max_latency_ratio
    champion_ms, rows = live_champion_ms(project)
    cpu_ms = round((MIN_DISTANCE * limit - 1) * champion_ms * 1.5, 1)  # 1.5: room for the load's drift
    ratio = 1 + cpu_ms / champion_ms
    return _faulty(project, "slow", Faults(cpu_ms_per_call=cpu_ms),
                   f"champion {champion_ms:.1f} ms per shadow call (90th percentile under the replayed load, calls of "
                   f"{rows:.0f} rows on average); planned model-time ratio >= {ratio:.1f} vs shadow max_latency_ratio "
                   f"{limit:g} ({ratio / limit:.1f}x)")


def live_champion_ms(project: AuditProject) -> tuple[float, float]:
    """90th percentile of the champion's model time per shadow call and the mean rows of those calls, timed
    by the server's shadow worker while the champion is shadowed by its unfaulted wrapper for CALIBRATION_S."""
    from mlgate.pipelines.demo.lifecycle import run_lifecycle_demo

    ctx = _registered(project, "calibration", _same(project))
    run_lifecycle_demo(ctx, version="2", rollout_overrides={"shadow": {"min_requests": 10**9}},
                       max_duration_s=CALIBRATION_S)  # never leaves the shadow: only its timings are wanted
    calls = shadow_calls(ctx.params.rollout.prediction_log_url)
    if len(calls) < 10:
        raise RuntimeError(f"calibration: only {len(calls)} timed shadow calls in {CALIBRATION_S:g} s")
    return float(calls["baseline_ms"].quantile(0.9)), float(calls["rows"].mean())


def shadow_calls(log_url: str) -> Any:
    """The challenger's timed shadow calls in a run's prediction log (mlgate.gates.online.shadow.timed_calls)."""
    from mlgate.gates.online.log_frames import variant_rows
    from mlgate.gates.online.shadow import timed_calls
    from mlgate.serving.log.prediction_log import read_predictions

    return timed_calls(variant_rows(read_predictions(log_url), "challenger", shadow=True))


def _errors(project: AuditProject) -> Challenger:
    rollout = project.ctx.params.rollout
    shadow_max, margin = rollout.shadow.max_error_rate, rollout.canary.error_rate_margin
    if MIN_DISTANCE * max(shadow_max, margin) > ERROR_SHARE:
        raise RuntimeError(f"{ERROR_SHARE:.0%} errors is within {MIN_DISTANCE:g}x of shadow max_error_rate "
                           f"{shadow_max:g} or canary error_rate_margin {margin:g}: the scenario would prove nothing")
    return _faulty(project, "errors", Faults(error_share=ERROR_SHARE),
                   f"error rate {ERROR_SHARE:.0%} vs shadow max_error_rate {shadow_max:g} ({ERROR_SHARE / shadow_max:.1f}x) "
                   f"and canary error_rate_margin {margin:g} ({ERROR_SHARE / margin:.1f}x)")


def _raising(project: AuditProject) -> Challenger:
    shadow_max = project.ctx.params.rollout.shadow.max_error_rate
    return _faulty(project, "raising", Faults(raise_always=True),
                   f"error rate 100% of shadow calls vs shadow max_error_rate {shadow_max:g}; clients must see none")


_BUILDERS: dict[str, Callable[[AuditProject], Challenger]] = {
    "same": _same, "better": _better, "accuracy_drop": _accuracy_drop, "slow": _slow, "errors": _errors,
    "raising": _raising,
}


def _faulty(project: AuditProject, scenario: str, faults: Faults, distance: str) -> Challenger:
    """Log the champion wrapped with `faults` as a run of its own; the logged model's URI."""
    import mlflow

    from mlgate.pipelines import mlflow_io as registry
    from mlgate.pipelines.demo.faulty_model import log_faulty_model

    registry.client(project.ctx.tracking_uri)
    mlflow.set_experiment(MODEL_NAME)
    with tempfile.TemporaryDirectory(prefix="mlgate-audit-") as tmp, \
            mlflow.start_run(run_name=f"audit-{scenario}", tags={"mlgate.fault": faults.describe()}):
        uri = log_faulty_model(project.champion_dir, faults, Path(tmp))
    return Challenger(uri, faults.describe(), distance)


def run_scenario(project: AuditProject, scenario: Scenario, challenger: Challenger) -> dict[str, Any]:
    """One live rollout of `challenger` against the champion, under a fresh model name; its record."""
    from mlgate.pipelines.demo.lifecycle import run_lifecycle_demo

    ctx = _registered(project, scenario.name, challenger)
    started = time.perf_counter()
    result = run_lifecycle_demo(ctx, version="2", rollout_overrides=audit_rollout(ctx.params.model.task),
                                max_duration_s=MAX_RUN_S)
    log_url = ctx.params.rollout.prediction_log_url
    calls = shadow_calls(log_url)
    ratio = float((calls["latency_ms"] / calls["baseline_ms"]).median()) if len(calls) else None
    return {**_record(scenario, challenger, result, time.perf_counter() - started), "shadow_model_ratio": ratio,
            "labels": labels_used(log_url, result.state)}


def labels_used(log_url: str, state: Any) -> int:
    """Labels the canary analysis had when it decided: those that arrived since the canary started (the
    shadow needs none, so a decision in the shadow used 0)."""
    from mlgate.serving.log.prediction_log import read_feedback

    if state.canary_started is None:
        return 0
    feedback = read_feedback(log_url, since=state.canary_started)
    labels = feedback[feedback["kind"] == "label"] if "kind" in feedback.columns else feedback
    return int((labels["ts"] <= state.updated).sum())


def _registered(project: AuditProject, label: str, challenger: Challenger) -> RunContext:
    """Champion (alias champion) and challenger as versions 1 and 2 of a new model name with a log of its own."""
    from dataclasses import replace

    from mlgate.pipelines import mlflow_io as registry

    name, uri = f"{MODEL_NAME}-{label}-{uuid.uuid4().hex[:6]}", project.ctx.tracking_uri
    registry.register_version(uri, name, project.champion_uri, {"mlgate.stage": "production"})
    registry.register_version(uri, name, challenger.model_uri, {"mlgate.stage": "candidate"})
    registry.set_alias(uri, name, registry.CHAMPION, "1")
    log_url = f"sqlite:///{project.ctx.base_dir / 'logs' / f'{name}.db'}"
    rollout = project.ctx.params.rollout.model_copy(update={"prediction_log_url": log_url})
    model = project.ctx.params.model.model_copy(update={"name": name})
    return replace(project.ctx, params=project.ctx.params.model_copy(update={"model": model, "rollout": rollout}))


def _record(scenario: Scenario, challenger: Challenger, result: Any, wall_s: float) -> dict[str, Any]:
    from mlgate.pipelines.rollout.state import Position

    state, stats = result.state, result.replay
    decisive = next((e for e in reversed(result.events) if e.get("kind") in ("promote", "rollback")), {})
    why = decisive.get("rollback_reason") or {}
    metric = why.get("metric")
    statuses = {str(code): n for code, n in sorted(stats.statuses.items())}
    return {"scenario": scenario.name, "expected": scenario.expected, "expected_on": scenario.on,
            "phase": state.position.phase, "right": judge(scenario, state.position.phase, metric, statuses,
                                                          stats.transport_errors),
            "reason": state.reason, "decided_on": metric, "value": why.get("value"), "threshold": why.get("threshold"),
            "decided_at": Position(**decisive["source"]).label() if decisive else state.position.label(),
            "seconds": round(state.updated - state.started, 1), "wall_s": round(wall_s, 1),
            "labels_delivered": stats.feedback_accepted, "labels_posted": stats.feedback_posted, "requests": stats.sent,
            "client_statuses": statuses,
            "transport_errors": stats.transport_errors, "fault": challenger.fault, "distance": challenger.distance}


def judge(scenario: Scenario, phase: str, metric: str | None, statuses: dict[str, int], transport_errors: int) -> bool:
    """Right = the expected phase, decided on the expected check, and (where asked) no client saw an error."""
    if phase != scenario.expected:
        return False
    if scenario.on and not str(metric or "").startswith(scenario.on):
        return False
    return not (scenario.clients_unharmed and (set(statuses) - {"200"} or transport_errors))


def config_json(project: AuditProject) -> str:
    """The audit's effective configuration (params.yaml + AUDIT_ROLLOUT: rollout and shadow mirroring), as validated."""
    params = project.ctx.params
    return json.dumps({"rollout": params.rollout.model_dump(), "mirror": params.serving.routing.shadow.model_dump()},
                      sort_keys=True)
