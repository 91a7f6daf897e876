"""The rollout controller: one look at live data per `step`, transitions applied write-ahead.

`step` loads the state from MLflow, completes a transition left pending by a crashed controller (and
does nothing else in that call), or analyses the current phase and applies what `state.plan` decides.
A transition is first recorded as `pending`, then applied to traffic, to the registry (aliases, stage
tags, rollback reason) and to the timeline, and only then committed; every part is idempotent, so
whoever finds it pending simply applies it again. `run` repeats `step` until a terminal state or a pause.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online import AnalysisOutcome, OnlineAnalysis
from mlgate.gates.online.core import error_analysis
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.errors import GateRefused, UsageError
from mlgate.pipelines.rollout.backend import ModelSpec, TrafficBackend
from mlgate.pipelines.rollout.state import (
    Position,
    RolloutState,
    Transition,
    accepted_stages,
    approval_stage,
    committed,
    new_rollout,
    next_position,
    plan,
    record_intent,
    transition_to,
    with_status,
)
from mlgate.pipelines.rollout.store import RolloutStore, status_event, transition_event

KILL_POINTS = ("after_intent", "after_apply")
Analyser = Callable[[RolloutState, float], OnlineAnalysis]
ServerRollback = Callable[[RolloutState], OnlineAnalysis | None]  # a rollback a server's guard already made
ApprovalLookup = Callable[[str, str], dict[str, Any] | None]  # (version, stage) -> approval record or None


@dataclass(frozen=True)
class StepReport:
    """What one call did: `action` is started, advanced, promoted, rolled_back, resumed, collecting,
    paused, done, or skipped (another controller moved the rollout while this one looked)."""

    state: RolloutState
    action: str
    message: str
    analysis: OnlineAnalysis | None = None


class RolloutController:
    def __init__(self, store: RolloutStore, backend: TrafficBackend, analyser: Analyser, approvals: ApprovalLookup,
                 *, shadow_limit_s: float, step_limit_s: float, clock: Callable[[], float] = time.time,
                 kill_at: str | None = None, server_rollback: ServerRollback | None = None) -> None:
        if kill_at is not None and kill_at not in KILL_POINTS:
            raise UsageError(f"kill point {kill_at!r}: expected one of {', '.join(KILL_POINTS)}")
        self.store, self.backend, self.analyser, self.approvals = store, backend, analyser, approvals
        self.server_rollback = server_rollback or (lambda state: None)
        self.limits = {"shadow": shadow_limit_s, "canary": step_limit_s}
        self.clock, self.kill_at = clock, kill_at

    # ---- commands ----

    def start(self, version: str, champion_version: str, canary: CanaryConfig, rollout_id: str) -> StepReport:
        """Begin shadowing `version` against `champion_version` (refused while another rollout runs)."""
        current = self.store.current()
        if current is not None and not current.terminal and current.version == version:
            return StepReport(current, "running", f"the rollout of version {version} is already in progress "
                              f"({current.position.label()}); nothing started")
        if current is not None and not current.terminal:
            raise GateRefused(f"a rollout of {current.model} version {current.version} is in progress "
                              f"({current.position.label()}); finish it, or `mlgate rollout abort` first")
        if version == champion_version:
            raise GateRefused(f"version {version} is already the champion; nothing to roll out")
        state, start = new_rollout(rollout_id, self.store.model, version, champion_version, canary, self.clock())
        state = self.store.save(state)
        self._hook("after_intent")
        return self._complete(state, start, "started")

    def step(self) -> StepReport:
        state = self._load()
        if state.pending is not None:
            return self._complete(state, state.pending, "resumed")
        if state.terminal:
            return StepReport(state, "done", f"rollout already ended: {state.position.phase} ({state.reason})")
        now = self.clock()
        look = self.server_rollback(state)  # first: re-asserting the split would undo the server's rollback
        if look is None:
            state = self._reassert(state, now)
            look = self._champion_moved(state) or self.analyser(state, now)
        decision = self._decision(state, look)
        approval = self._approval(state) if look.outcome is AnalysisOutcome.SUCCESSFUL else None
        if approval:
            decision["approval"] = approval
            decision["reason"] += f" (approved by {approval['approver']} at {approval['time']})"
        elapsed = now - state.phase_started
        limit = self.limits["shadow" if state.position.phase == "shadow" else "canary"]
        planned = plan(state, look.outcome, decision, elapsed_s=elapsed, limit_s=limit,
                       approved=approval is not None, now=now)
        if planned.transition is not None:
            return self._execute(state, planned.transition, look)
        return self._record_status(state, planned.status, planned.reason, look, now)

    def run(self, poll_s: float, *, max_duration_s: float | None = None, sleep: Callable[[float], None] = time.sleep,
            on_report: Callable[[StepReport], None] | None = None, heartbeat: Callable[[], None] | None = None,
            ) -> StepReport:
        """Step until the rollout ends or pauses (or `max_duration_s` passes)."""
        deadline = None if max_duration_s is None else time.monotonic() + max_duration_s
        while True:
            report = self.step()
            if on_report:
                on_report(report)
            if report.state.terminal or report.state.status == "paused":
                return report
            if deadline is not None and time.monotonic() >= deadline:
                return StepReport(report.state, "timeout", f"stopped after {max_duration_s:g} s; "
                                  f"the rollout continues with the next `mlgate rollout step`", report.analysis)
            if heartbeat:
                heartbeat()
            sleep(poll_s)

    def promote(self, actor: str, reason: str) -> StepReport:
        """Manual promotion from shadow or any canary step (still subject to a production approval)."""
        state = self._settled(done_ok="production")
        if state.terminal:
            return StepReport(state, "done", f"version {state.version} was already promoted")
        target = Position("production", weight=100)
        if approval_stage(state, target) and not self.approvals(state.version, "production"):
            raise GateRefused(f"promotion needs an approval of stage production: mlgate approve --version "
                              f"{state.version} --stage production --approver NAME")
        decision = {"actor": actor, "outcome": "Manual", "reason": f"promoted by {actor}: {reason}"}
        return self._execute(state, transition_to(state, "promote", target, decision, self.clock()), None)

    def abort(self, actor: str, reason: str) -> StepReport:
        """Roll back now: challenger weight 0, champion kept, the reason recorded."""
        state = self._settled(done_ok="rolled_back")
        if state.terminal:
            return StepReport(state, "done", f"version {state.version} was already rolled back")
        message = f"aborted by {actor}: {reason}"
        decision = {"actor": actor, "outcome": "Aborted", "reason": message,
                    "rollback_reason": {"metric": None, "value": None, "threshold": None, "message": message}}
        return self._execute(state, transition_to(state, "rollback", Position("rolled_back"), decision,
                                                  self.clock()), None)

    # ---- transitions ----

    def _execute(self, state: RolloutState, transition: Transition, look: OnlineAnalysis | None) -> StepReport:
        moved = self._moved_meanwhile(state)
        if moved is not None:
            return StepReport(moved, "skipped", f"another controller moved the rollout to {moved.position.label()} "
                              f"while this one decided to {transition.kind}; nothing done (the next look decides "
                              "again)", look)
        state = self.store.save(record_intent(state, transition, self.clock()))  # write-ahead
        self._hook("after_intent")
        action = {"advance": "advanced", "promote": "promoted", "rollback": "rolled_back"}[transition.kind]
        return self._complete(state, transition, action, look)

    def _complete(self, state: RolloutState, transition: Transition, action: str,
                  look: OnlineAnalysis | None = None) -> StepReport:
        """Apply a recorded transition (again, if half done) and commit it."""
        self._apply_traffic(state, transition.target)
        self._hook("after_apply")
        self.store.apply_registry(state, transition)
        state = self.store.append_event(state, {**transition_event(transition), "resumed": action == "resumed"})
        state = self.store.save(committed(state, transition, self.clock()))
        moved = f"{transition.source.label()} -> {transition.target.label()}"
        message = f"resumed the pending {transition.kind}, {moved}" if action == "resumed" else moved
        message += f"; {state.reason}" if state.reason else ""
        return StepReport(state, action, message, look)

    def _apply_traffic(self, state: RolloutState, target: Position) -> bool:
        """Put `target`'s split in force; True when the backend had to change."""
        champion = ModelSpec(state.champion_version, self._uri(state.champion_version))
        challenger = ModelSpec(state.version, self._uri(state.version))
        if target.phase == "production":
            return self.backend.set_split(challenger, None, 0, False)
        if target.phase == "rolled_back":
            return self.backend.set_split(champion, None, 0, False)
        return self.backend.set_split(champion, challenger, target.weight, target.shadow)

    def _moved_meanwhile(self, state: RolloutState) -> RolloutState | None:
        """The stored state when another controller recorded a transition since `state` was read (the lock is
        best effort: MLflow has no compare-and-set), so a decision is never written twice; else None."""
        stored = self.store.current()
        if stored is None or (stored.rollout_id, stored.seq, stored.pending) == (state.rollout_id, state.seq,
                                                                                 state.pending):
            return None
        return stored

    def _reassert(self, state: RolloutState, now: float) -> RolloutState:
        """Re-apply the split of the current position when the server lost it (a restart without its
        persisted table, a hand edit); recorded as an event, and the phase's clock restarts, so the
        traffic routed by the wrong table is not judged as this step's split."""
        if not self._apply_traffic(state, state.position):
            return state
        reason = (f"the route table did not match {state.position.label()} (server restarted or changed by hand); "
                  "re-applied it, and this step's analysis starts again from now")
        state = self.store.append_event(replace(state, phase_started=now), status_event(state, "reassert", reason, now))
        return self.store.save(state)

    # ---- helpers ----

    def _record_status(self, state: RolloutState, status: str, reason: str, look: OnlineAnalysis,
                       now: float) -> StepReport:
        new = with_status(state, status, reason, look.summary(), now)  # type: ignore[arg-type]
        if status == "paused" and (state.status != "paused" or _kind(state.reason) != _kind(reason)):
            new = self.store.append_event(new, status_event(state, "pause", reason, now, self._decision(state, look)))
        self.store.save(new)
        return StepReport(new, status if status == "paused" else "collecting", reason, look)

    def _decision(self, state: RolloutState, look: OnlineAnalysis) -> dict[str, Any]:
        where = state.position.label()
        reason = f"{where}: {look.reason}" if look.outcome is AnalysisOutcome.SUCCESSFUL \
            else f"{where}: {look.outcome.lower()}: {look.reason.removeprefix('inconclusive: ')}"
        decision: dict[str, Any] = {"actor": "controller", "outcome": str(look.outcome), "reason": reason,
                                    "analysis": look.summary()}
        if look.outcome in (AnalysisOutcome.FAILED, AnalysisOutcome.ERROR):
            verdict = "failed" if look.outcome is AnalysisOutcome.FAILED else "could not be trusted"
            decision["reason"] = f"rolled back at {where}: the {state.position.phase} analysis {verdict}: {look.reason}"
            decision["rollback_reason"] = look.rollback_reason()
        return decision

    def _champion_moved(self, state: RolloutState) -> OnlineAnalysis | None:
        """An Error look when alias champion no longer names the version this rollout compares against."""
        held = registry.version_by_alias(self.store.tracking_uri, self.store.model, registry.CHAMPION)
        if held is not None and held.version == state.champion_version:
            return None
        now = held.version if held else "nothing"
        return error_analysis("rollout", f"alias champion moved from version {state.champion_version} to {now} "
                              "during the rollout; the comparison no longer describes production")

    def _approval(self, state: RolloutState) -> dict[str, Any] | None:
        for stage in accepted_stages(state, next_position(state)):
            found = self.approvals(state.version, stage)
            if found:
                return found
        return None

    def _settled(self, done_ok: str) -> RolloutState:
        """The current rollout with any pending transition completed; refused when it ended otherwise than
        `done_ok` (so a repeated promote or abort, e.g. a re-run CD job, is a no-op)."""
        state = self._load()
        if state.pending is not None:
            state = self._complete(state, state.pending, "resumed").state
        if state.terminal and state.position.phase != done_ok:
            raise GateRefused(f"the rollout of version {state.version} already ended: {state.position.phase} "
                              f"({state.reason})")
        return state

    def _load(self) -> RolloutState:
        state = self.store.current()
        if state is None:
            raise UsageError(f"model {self.store.model!r} has no rollout; start one with `mlgate rollout start`")
        return state

    def _uri(self, version: str) -> str:
        return f"models:/{self.store.model}/{version}"

    def _hook(self, point: str) -> None:
        """Test hook (MLGATE_ROLLOUT_KILL_AT): die here as a crash would, without any cleanup."""
        if self.kill_at == point:
            os.kill(os.getpid(), signal.SIGKILL)


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0].split(" after ")[0]
