"""The online half of the lifecycle, end to end on this machine: serve the champion, roll out the challenger
under replayed production traffic with late labels, and report how it ended (promoted or rolled back).

`run_lifecycle_demo` is what `mlgate demo` calls once per registered challenger. Everything it does is
the same code as `mlgate serve`, `mlgate replay` and `mlgate rollout run`, only in one process.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mlgate.pipelines import console
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import load_split
from mlgate.pipelines.rollout.analysis import resolve_log_url
from mlgate.pipelines.rollout.controller import StepReport
from mlgate.pipelines.rollout.lock import RolloutLock
from mlgate.pipelines.rollout.replay import ReplayPlan, ReplayStats, replay_rows
from mlgate.pipelines.rollout.report import headline, timeline, write_report
from mlgate.pipelines.rollout.state import RolloutState
from mlgate.pipelines.rollout.store import RolloutStore
from mlgate.pipelines.rollout.wiring import RolloutSettings, build_controller, rollout_versions

# The demo replays the 1,000-row production split in about a minute, so it needs no approval, proves
# non-inferiority within a wider margin than params.yaml's, and accepts a new model family's shifted outputs
# (logistic regression -> gradient boosting moves scores by PSI ~0.9, correlation ~0.6 on this data).
# The margin is on the task's label metric: accuracy for classifiers, MAE (relative) for regression.
DEMO_MARGIN = {"accuracy": 0.03, "mae": 0.15}
DEMO_ROLLOUT: dict = {
    "poll_interval_s": 1.0,
    "shadow": {"min_requests": 200, "min_agreement": 0.8, "min_score_correlation": 0.3, "max_output_psi": 2.0,
               "max_duration_s": 120},
    "canary": {"steps": [25, 50, 100], "approval_before": [], "approve_promotion": False,
               "min_requests_per_step": 150, "min_labels_per_step": 100,
               "planned_labels": 600, "planned_requests": 1000, "error_rate_margin": 0.02,
               "latency_tolerance": 0.45, "max_step_duration_s": 120,
               # The degraded candidate is a models-from-code wrapper: MLflow's pyfunc overhead adds about
               # 2 ms per request to a champion the server answers in about 3, which is not what it shows.
               "latency_slack_ms": 5.0},
}


def demo_rollout(task: str) -> dict:
    """DEMO_ROLLOUT with the canary margin of this task's label metric (no accuracy for regression)."""
    from mlgate.pipelines.demo.degraded import canary_metric

    metric = canary_metric(task)
    margins = {metric: DEMO_MARGIN[metric]}
    shadow = dict(DEMO_ROLLOUT["shadow"])
    if task == "regression":
        shadow.pop("min_agreement")
    return {**DEMO_ROLLOUT, "shadow": shadow, "canary": {**DEMO_ROLLOUT["canary"], "metric_margins": margins}}


def with_rollout(ctx: RunContext, overrides: dict) -> RunContext:
    """`ctx` with `rollout:` settings replaced key by key (validated like params.yaml)."""
    from mlgate.pipelines.params import RolloutConfig

    merged = ctx.params.rollout.model_dump()
    for key, value in overrides.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    rollout = RolloutConfig.model_validate(merged)
    return replace(ctx, params=ctx.params.model_copy(update={"rollout": rollout}))


@dataclass(frozen=True)
class LifecycleResult:
    state: RolloutState
    events: list[dict]
    replay: ReplayStats
    report_md: Path
    plot: Path

    @property
    def promoted(self) -> bool:
        return self.state.position.phase == "production"


def run_lifecycle_demo(ctx: RunContext, *, version: str | None = None, rate_rps: float = 150.0,
                       feedback_delay_s: float = 1.0, poll_s: float = 1.0, max_duration_s: float = 300.0,
                       rollout_overrides: dict | None = None, demo_settings: bool = True,
                       out: Callable[[str], None] = console.info) -> LifecycleResult:
    """Serve the champion on a free 127.0.0.1 port, roll out `version` (default: alias challenger), stop.

    Needs: the model registered with alias `champion` and a challenger version (alias `challenger`, or
    `version`), and the `production` split under data/. `rollout_overrides` replace params.yaml's
    `rollout:` keys (default, with `demo_settings`: DEMO_ROLLOUT for the model's task; else params.yaml). Prints one line per decision and the
    timeline; writes reports/rollout/<model>-v<version>.md and plots/rollout/<model>-v<version>.png.
    """
    from mlgate.serving.runtime import ServerProcess

    if rollout_overrides is None and demo_settings:
        rollout_overrides = demo_rollout(ctx.params.model.task)
    if rollout_overrides:
        ctx = with_rollout(ctx, rollout_overrides)
        canary = ctx.params.rollout.canary
        margins = ", ".join(f"{m} margin {v:g}" for m, v in canary.metric_margins.items()) or "no label metric"
        out(f"lifecycle: demo rollout settings: steps {canary.steps}%, {margins}, no approval pause, canary "
            f"latency slack {canary.latency_slack_ms:g} ms (pipelines/demo/lifecycle.py DEMO_ROLLOUT)")
    challenger, champion = rollout_versions(ctx, version)
    token, labels_token = secrets.token_hex(16), secrets.token_hex(16)
    log_url = resolve_log_url(_log_url(ctx), ctx.base_dir)
    tracking = resolve_log_url(ctx.tracking_uri, ctx.base_dir)  # a relative sqlite path, made absolute
    # A fresh server for a fresh rollout: it starts from the champion, not from a table an earlier run persisted.
    config = ctx.params.serving.model_copy(update={
        "prediction_log": ctx.params.serving.prediction_log.model_copy(update={"url": log_url}),
        "routing": ctx.params.serving.routing.model_copy(update={"restore_routes": False})})
    env = {"MLGATE_ADMIN_TOKEN": token, "MLGATE_FEEDBACK_TOKEN": labels_token, "MLFLOW_TRACKING_URI": tracking}
    out(f"lifecycle: serving champion v{champion} of {ctx.params.model.name}; rolling out v{challenger}")
    with ServerProcess({"champion": f"models:/{ctx.params.model.name}/{champion}"}, config, env=env) as server:
        settings = RolloutSettings(server.url, token, log_url)
        return roll_out_live(ctx, settings, challenger, champion, rate_rps=rate_rps, feedback_token=labels_token,
                             feedback_delay_s=feedback_delay_s, poll_s=poll_s, max_duration_s=max_duration_s, out=out)


def roll_out_live(ctx: RunContext, settings: RolloutSettings, challenger: str, champion: str, *,
                  rate_rps: float, feedback_delay_s: float, poll_s: float, max_duration_s: float,
                  resume: bool = False, feedback_token: str | None = None,
                  out: Callable[[str], None] = console.info) -> LifecycleResult:
    """Against a running server: start the rollout (or `resume` the current one), replay traffic in the
    background, and run the controller until the rollout ends or pauses."""
    controller = build_controller(ctx, settings)
    lock = RolloutLock(ctx.tracking_uri, ctx.params.model.name, "mlgate demo (lifecycle)",
                       ttl_s=ctx.params.rollout.lock_ttl_s, on_takeover=out)
    stop, stats, show = threading.Event(), [], _printer(out)
    traffic = threading.Thread(target=lambda: stats.append(_replay(ctx, settings, rate_rps, feedback_delay_s,
                                                                   max_duration_s, stop, feedback_token)), daemon=True)
    with lock:
        if not resume:
            show(controller.start(challenger, champion, ctx.params.rollout.canary, uuid.uuid4().hex[:12]))
        traffic.start()
        try:
            last = controller.run(poll_s, max_duration_s=max_duration_s, heartbeat=lock.refresh,
                                  on_report=show)
        finally:
            stop.set()
            traffic.join()
    return _finish(ctx, last.state, stats[0] if stats else ReplayStats(), out)


def _replay(ctx: RunContext, settings: RolloutSettings, rate_rps: float, feedback_delay_s: float,
            max_duration_s: float, stop: threading.Event, feedback_token: str | None) -> ReplayStats:
    frame = load_split(ctx.params.data, "production", ctx.base_dir)
    loops = 1000  # cycle through the split until the rollout ends (bounded by time and `stop`)
    plan = ReplayPlan(settings.endpoint, rate_rps, feedback_delay_s, None, loops, f"{uuid.uuid4().hex[:8]}-",
                      max_duration_s=max_duration_s, feedback_token=feedback_token)
    return replay_rows(frame, ctx.params.data.features, ctx.params.model.target, "row_id", plan, stop)


def _finish(ctx: RunContext, state: RolloutState, stats: ReplayStats, out: Callable[[str], None]) -> LifecycleResult:
    store = RolloutStore(ctx.tracking_uri, ctx.params.model.name)
    events = store.events(state)
    report_md, plot = write_report(state, events, ctx.base_dir)
    out(f"lifecycle: replayed {stats.sent} requests ({stats.achieved_rps:.0f} rps), statuses {dict(stats.statuses)}, "
        f"{stats.feedback_accepted} labels accepted" + (f", {stats.feedback_refused} refused" if stats.feedback_refused
                                                         else ""))
    console.table(f"rollout timeline of v{state.version}", ["t (s)", "event", "traffic after", "outcome"],
                  [(f"{r.at_s:.1f}", r.kind, r.traffic, r.outcome) for r in timeline(state, events)])
    out(f"lifecycle: {headline(state)}")
    champion = registry.version_by_alias(ctx.tracking_uri, ctx.params.model.name, registry.CHAMPION)
    out(f"lifecycle: alias champion -> v{champion.version if champion else '?'}; timeline "
        f"{report_md.relative_to(ctx.base_dir)}, plot {plot.relative_to(ctx.base_dir)}")
    return LifecycleResult(state, events, stats, report_md, plot)


def _printer(out: Callable[[str], None], every_s: float = 5.0) -> Callable[[StepReport], None]:
    """Prints every decision, and a `collecting` line at most every `every_s` seconds."""
    last = [-every_s]

    def show(report: StepReport) -> None:
        now = time.monotonic()
        if report.action == "collecting" and now - last[0] < every_s:
            return
        last[0] = now
        out(f"rollout: {report.action}: {report.message}")

    return show


def _log_url(ctx: RunContext) -> str:
    return ctx.params.rollout.prediction_log_url or ctx.params.serving.prediction_log.url
