"""`mlgate rollout start|status|step|monitor|run|promote|abort|unlock|report` and `mlgate replay`.

The environment is read here, at the edge: MLGATE_ADMIN_TOKEN (the server's route-changing token),
MLGATE_ENDPOINT (the server, instead of rollout.endpoint), MLGATE_LOG_URL (the prediction log, instead
of rollout.prediction_log_url and serving's), MLGATE_ROLLOUT_KILL_AT (test hook: die at a write-ahead
point, as a crash would), the actor's name (GITHUB_ACTOR, else USER) for manual decisions, and for
`monitor` GITHUB_OUTPUT (step outputs) and the run's URL (GITHUB_SERVER_URL, GITHUB_REPOSITORY,
GITHUB_RUN_ID). Exit codes: 0 running, paused or promoted; 1 rolled back or refused; 2 bad usage; 3 the
server or MLflow failed (retry the step). `monitor` differs: 1 only once per thing the team must hear
(rolled back, awaiting an approval, paused), else 0 (pipelines/rollout/monitor.py).
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

from mlgate.gates.result import ExitCode
from mlgate.pipelines import console
from mlgate.pipelines.errors import UsageError

if TYPE_CHECKING:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.rollout.controller import RolloutController, StepReport
    from mlgate.pipelines.rollout.monitor import Notice



def register(sub: argparse._SubParsersAction) -> None:
    rollout = sub.add_parser("rollout", help="shadow, canary and promote a registered challenger (DESIGN §8)")
    actions = rollout.add_subparsers(dest="action", metavar="ACTION", parser_class=type(rollout))
    actions.required = True
    _add(actions, "start", "start shadowing the challenger (alias challenger, or --version)", _start)
    _add(actions, "status", "show the rollout's state and last analysis", _status)
    _add(actions, "step", "one look at live data; apply what it decides (safe to schedule)", _step)
    _add(actions, "monitor", "a scheduled step: exit 1 once when the team must act (rolled back, approval, "
         "paused), else 0", _monitor)
    _add(actions, "run", "step every rollout.poll_interval_s until promoted, rolled back or paused", _run)
    _add(actions, "promote", "promote the challenger now (aliases moved in one step)", _promote)
    _add(actions, "abort", "roll back now: challenger weight 0, champion kept, reason recorded", _abort)
    _add(actions, "unlock", "break the controller lock of a crashed controller", _unlock)
    _add(actions, "report", "write the timeline (reports/rollout/*.md, plots/rollout/*.png)", _report)
    replay = sub.add_parser("replay", help="send a data split to a local server as live traffic, labels later")
    _common(replay)
    replay.add_argument("--split", default="production", help="data split to replay (default: production)")
    replay.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    replay.add_argument("--feedback-delay", type=float, default=2.0, help="seconds until a label is posted")
    replay.add_argument("--max-rows", type=int, default=None, help="stop after this many requests")
    replay.add_argument("--loops", type=int, default=1, help="replay the split this many times")
    replay.add_argument("--id-prefix", default="", help="prefix of X-Request-Id (keeps repeated replays apart)")
    replay.set_defaults(handler=_replay)


def _add(actions: argparse._SubParsersAction, name: str, text: str, handler) -> argparse.ArgumentParser:
    from mlgate.pipelines.cli.main import add_tracking_argument

    parser = actions.add_parser(name, help=text)
    _common(parser)
    add_tracking_argument(parser)
    parser.add_argument("--log-url", help="prediction log URL (default: $MLGATE_LOG_URL, else "
                        "rollout.prediction_log_url, else serving.prediction_log.url)")
    if name == "start":
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--version", help="version to roll out (default: alias challenger)")
        which.add_argument("--digest", help="roll out the registered version of this model digest (the judged "
                           "model's, reports/verdict.json .model.digest); refused unless its verdict passed")
        parser.add_argument("--approved-as", metavar="STAGE",
                            help="with --digest: refuse unless the version has an approval of STAGE (e.g. candidate)")
    if name == "monitor":
        parser.add_argument("--repeat", action="store_true",
                            help="report what needs the team even if it was reported already (ask again)")
    if name in ("promote", "abort"):
        parser.add_argument("--actor", default=os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or "operator")
        parser.add_argument("--reason", required=name == "abort", default="manual promotion", help="why, in words")
    if name == "abort":
        parser.add_argument("--break-lock", action="store_true", help="break another controller's lock first")
    if name == "run":
        parser.add_argument("--max-duration", type=float, default=None, help="stop looping after this many seconds")
        parser.add_argument("--poll", type=float, default=None, help="seconds between looks (rollout.poll_interval_s)")
    if name == "status":
        parser.add_argument("--json", action="store_true", help="print the state as JSON")
    parser.set_defaults(handler=handler)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    from mlgate.pipelines.cli.main import add_params_argument

    add_params_argument(parser)
    parser.add_argument("--endpoint", help="server base URL (default: $MLGATE_ENDPOINT, else rollout.endpoint)")


def _setup(args: argparse.Namespace, command: str):
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.rollout.lock import RolloutLock
    from mlgate.pipelines.rollout.wiring import RolloutSettings, build_controller
    from mlgate.serving.entry import LOG_URL_ENV

    ctx = RunContext.load(args.params, args.tracking_uri)
    endpoint = args.endpoint or os.environ.get("MLGATE_ENDPOINT")
    log_url = args.log_url or os.environ.get(LOG_URL_ENV, "").strip() or None
    settings = RolloutSettings.from_context(ctx, endpoint=endpoint, admin_token=os.environ.get("MLGATE_ADMIN_TOKEN"),
                                            log_url=log_url, kill_at=os.environ.get("MLGATE_ROLLOUT_KILL_AT"))
    lock = RolloutLock(ctx.tracking_uri, ctx.params.model.name, f"mlgate rollout {command}",
                       ttl_s=ctx.params.rollout.lock_ttl_s, on_takeover=console.info)
    return ctx, build_controller(ctx, settings), lock


def _start(args: argparse.Namespace) -> int:
    from mlgate.pipelines import mlflow_io as registry
    from mlgate.pipelines.rollout.wiring import rollout_versions, version_by_digest

    if args.approved_as and args.digest is None:
        raise UsageError("--approved-as goes with --digest")
    ctx, controller, lock = _setup(args, "start")
    wanted = args.version
    if args.digest is not None:
        match = version_by_digest(ctx, args.digest, args.approved_as)
        if match.is_champion:
            console.info(f"rollout: version {match.version}, the champion, is the model of digest "
                         f"{args.digest.strip()[:12]}; nothing to roll out")
            return int(ExitCode.OK)
        approved = f", approved as {args.approved_as} by {match.approval['approver']}" if match.approval else ""
        console.info(f"rollout: digest {args.digest.strip()[:12]} is version {match.version}{approved}")
        wanted = match.version
    version, champion = rollout_versions(ctx, wanted)
    with lock:
        report = controller.start(version, champion, ctx.params.rollout.canary, uuid.uuid4().hex[:12])
        if args.digest is not None and report.action == "started":  # the version is now in rollout
            registry.set_alias(ctx.tracking_uri, ctx.params.model.name, registry.CHALLENGER, version)
    return _show(ctx, report)


def _step(args: argparse.Namespace) -> int:
    ctx, controller, lock = _setup(args, "step")
    with lock:
        report = controller.step()
    return _show(ctx, report)


def _monitor(args: argparse.Namespace) -> int:
    """One scheduled look: step the rollout if there is one, then exit 1 only for news the team has not
    been told (recorded as a notice in the timeline), writing GitHub step outputs when asked."""
    from mlgate.pipelines.rollout.lock import LockHeld
    from mlgate.pipelines.rollout.monitor import outputs

    if _current(args)[2] is None:
        _write_outputs(outputs(None, None))
        return int(ExitCode.OK)  # nothing to do
    ctx, controller, lock = _setup(args, "monitor")
    try:
        with lock:
            report, notice = _look_and_tell(controller, args.repeat)
    except LockHeld as exc:
        console.info(f"rollout monitor: {exc}; that controller takes this look")
        return int(ExitCode.OK)
    _show(ctx, report, quiet=True)
    _write_outputs(outputs(report.state, notice))
    if notice is None:
        return int(ExitCode.OK)
    console.error(f"rollout monitor: {notice.message}")
    if notice.stage:
        console.info(f"rollout monitor: approve with: mlgate approve --version {report.state.version} --stage "
                     f"{notice.stage} --approver NAME (GitHub environment {notice.environment})")
    return int(ExitCode.GATE_FAILED)


def _look_and_tell(controller: RolloutController, repeat: bool) -> tuple[StepReport, Notice | None]:
    """(the step's report, the notice recorded now or None); call under the rollout lock."""
    from mlgate.pipelines.rollout.monitor import already_told, notice_for, record_notice

    report = controller.step()
    console.info(f"rollout: {report.action}: {report.message}")
    notice = notice_for(report.state)
    if notice is None or (not repeat and already_told(controller.store.events(report.state), notice)):
        return report, None
    return replace(report, state=record_notice(controller.store, report.state, notice, _run_url())), notice


def _write_outputs(values: dict[str, str]) -> None:
    """`key=value` lines appended to $GITHUB_OUTPUT when it is set (a GitHub Actions step)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(f"{key}={value}\n" for key, value in values.items())


def _run_url() -> str | None:
    """The GitHub Actions run that told the team, for the timeline."""
    parts = [os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None


def _run(args: argparse.Namespace) -> int:
    ctx, controller, lock = _setup(args, "run")
    poll = args.poll or ctx.params.rollout.poll_interval_s
    with lock:
        report = controller.run(poll, max_duration_s=args.max_duration, heartbeat=lock.refresh,
                                on_report=lambda r: console.info(f"rollout: {r.action}: {r.message}"))
    return _show(ctx, report, quiet=True)


def _promote(args: argparse.Namespace) -> int:
    ctx, controller, lock = _setup(args, "promote")
    with lock:
        report = controller.promote(args.actor, args.reason)
    return _show(ctx, report)


def _abort(args: argparse.Namespace) -> int:
    from mlgate.pipelines.rollout.lock import break_lock

    ctx, controller, lock = _setup(args, "abort")
    if args.break_lock:
        _broken(break_lock(ctx.tracking_uri, ctx.params.model.name))
    with lock:
        report = controller.abort(args.actor, args.reason)
    _show(ctx, report)
    return int(ExitCode.OK)  # the operator asked for the rollback and got it


def _unlock(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.rollout.lock import break_lock

    ctx = RunContext.load(args.params, args.tracking_uri)
    _broken(break_lock(ctx.tracking_uri, ctx.params.model.name))
    return int(ExitCode.OK)


def _broken(record) -> None:
    console.info(f"rollout: broke the lock of {record.describe()}" if record else "rollout: there was no lock")


def _current(args: argparse.Namespace):
    """(context, store, state) of the model's rollout; state None (after saying so) when it has none."""
    from mlgate.pipelines import mlflow_io as registry
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.rollout.store import RolloutStore

    ctx = RunContext.load(args.params, args.tracking_uri)
    store = RolloutStore(ctx.tracking_uri, ctx.params.model.name)
    registered = registry.registered_model_tags(ctx.tracking_uri, ctx.params.model.name) is not None
    state = store.current() if registered else None
    if state is None:
        console.info(f"rollout: model {ctx.params.model.name} has no rollout yet"
                     + ("" if registered else " (not registered either)"))
    return ctx, store, state


def _status(args: argparse.Namespace) -> int:
    from mlgate.pipelines.rollout.lock import read_lock
    from mlgate.pipelines.rollout.report import timeline_markdown

    ctx, store, state = _current(args)
    if state is None:
        return int(ExitCode.OK)
    if args.json:
        console.info(json.dumps(json.loads(state.to_json()), indent=2))
        return int(ExitCode.OK)
    console.info(timeline_markdown(state, store.events(state)).rstrip())
    lock = read_lock(ctx.tracking_uri, ctx.params.model.name)
    console.info(f"lock: {lock.describe() if lock else 'free'}")
    return int(ExitCode.OK)


def _report(args: argparse.Namespace) -> int:
    from mlgate.pipelines.rollout.report import write_report

    ctx, store, state = _current(args)
    if state is None:
        return int(ExitCode.OK)
    for path in write_report(state, store.events(state), ctx.base_dir):
        console.info(f"  wrote {path.relative_to(ctx.base_dir)}")
    return int(ExitCode.OK)


def _show(ctx: RunContext, report, quiet: bool = False) -> int:
    """One line per step, the analysis checks, and the last look written to reports/rollout/analysis.json."""

    if not quiet:
        console.info(f"rollout: {report.action}: {report.message}")
    if report.analysis is not None:
        console.gate_summary(report.analysis.result)
        report.analysis.result.write(ctx.base_dir / "reports" / "rollout" / "analysis.json")
    state = report.state
    console.info(f"rollout: {state.model} v{state.version} at {state.position.label()}, {state.status}")
    return int(ExitCode.GATE_FAILED if state.position.phase == "rolled_back" else ExitCode.OK)


def _replay(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.datasets import load_split
    from mlgate.pipelines.rollout.replay import ReplayPlan, replay_rows

    ctx = RunContext.load(args.params)
    endpoint = args.endpoint or os.environ.get("MLGATE_ENDPOINT") or ctx.params.rollout.endpoint
    plan = ReplayPlan(endpoint, args.rate, args.feedback_delay, args.max_rows, args.loops, args.id_prefix,
                      feedback_token=os.environ.get("MLGATE_FEEDBACK_TOKEN"))
    frame = load_split(ctx.params.data, args.split, ctx.base_dir)
    stats = replay_rows(frame, ctx.params.data.features, ctx.params.model.target, "row_id", plan)
    console.info(f"replay: {stats.sent} requests in {stats.duration_s:.1f} s ({stats.achieved_rps:.0f} rps), "
                 f"statuses {dict(stats.statuses)}, variants {dict(stats.variants)}, labels posted "
                 f"{stats.feedback_posted} (accepted {stats.feedback_accepted}, unknown {stats.feedback_unknown}, "
                 f"refused {stats.feedback_refused}), "
                 f"transport errors {stats.transport_errors}")
    return int(ExitCode.OK if stats.transport_errors == 0 else ExitCode.INTERNAL)
