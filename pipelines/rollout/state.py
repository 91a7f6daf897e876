"""The rollout state machine: `challenger -> shadow -> canary(step 1..n) -> production | rolled_back`.

Pure values and rules; `mlgate.pipelines.rollout.store` persists them in MLflow tags. A state holds the
traffic position, whether the rollout runs or waits (paused: awaiting approval, or inconclusive past
the step's time limit), and `pending`: the write-ahead record of a transition decided but not yet
fully applied. Whoever finds a pending transition completes it, so a controller killed between
deciding and recording neither loses the decision nor takes a second step.

The stored JSON carries its format's number (`schema`); `from_json` migrates an older state step by step
(`migrate_state`), so a rollout started by an older mlgate continues under a newer one between two looks,
and refuses a state from a newer mlgate rather than dropping what it does not know.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online import AnalysisOutcome

Phase = Literal["challenger", "shadow", "canary", "production", "rolled_back"]
Kind = Literal["start", "advance", "promote", "rollback"]
Status = Literal["running", "paused", "done"]
TERMINAL: tuple[Phase, ...] = ("production", "rolled_back")
# The format of the stored state. 1: mlgate before schema numbers (no `schema` key); 2: `schema` recorded.
STATE_SCHEMA = 2


@dataclass(frozen=True)
class Position:
    """Where traffic is: the phase, the canary step index (-1 outside the canary) and the challenger's weight."""

    phase: Phase
    step: int = -1
    weight: int = 0
    shadow: bool = False

    def label(self) -> str:
        if self.phase == "canary":
            return f"canary step {self.step + 1} ({self.weight}%)"
        return self.phase


@dataclass(frozen=True)
class Transition:
    """A decided move, recorded before it is applied (write-ahead). `decision` says who or what decided."""

    seq: int
    kind: Kind
    source: Position
    target: Position
    decision: dict[str, Any]
    time: float


@dataclass(frozen=True)
class Plan:
    """What one look decided: a transition to apply, or the status to record (running or paused, why)."""

    transition: Transition | None = None
    status: Status = "running"
    reason: str = ""


@dataclass(frozen=True)
class RolloutState:
    rollout_id: str
    model: str
    version: str
    champion_version: str
    position: Position
    steps: tuple[int, ...]
    approval_before: tuple[int, ...] = ()
    approve_promotion: bool = False
    status: Status = "running"
    reason: str = ""
    started: float = 0.0
    updated: float = 0.0
    phase_started: float = 0.0
    canary_started: float | None = None
    seq: int = 0
    events: int = 0
    pending: Transition | None = None
    last: dict[str, Any] | None = field(default=None)
    schema: int = STATE_SCHEMA

    @property
    def terminal(self) -> bool:
        return self.position.phase in TERMINAL

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        """The state in `text`, migrated to STATE_SCHEMA; StateSchemaError when a newer mlgate wrote it."""
        data = migrate_state(json.loads(text))
        data["position"] = Position(**data["position"])
        data["steps"], data["approval_before"] = tuple(data["steps"]), tuple(data["approval_before"])
        if data.get("pending"):
            data["pending"] = _transition(data["pending"])
        return cls(**data)


class StateSchemaError(ValueError):
    """A stored state in a format this mlgate does not know (a newer one wrote it)."""


def migrate_state(data: dict[str, Any]) -> dict[str, Any]:
    """A stored state's JSON object in the current format, through each migration from its own."""
    found = data.get("schema", 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise StateSchemaError(f"the rollout state has schema {found!r}; expected a number from 1 to {STATE_SCHEMA}")
    if found > STATE_SCHEMA:
        raise StateSchemaError(f"the rollout state was written by a newer mlgate (state schema {found}; this one "
                               f"reads up to {STATE_SCHEMA}): upgrade mlgate to continue this rollout")
    for number in range(found, STATE_SCHEMA):
        data = _STATE_MIGRATIONS[number](data)
    return data


def _schema_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 had no `schema` key; its fields are all still read as they were."""
    return {**data, "schema": 2}


# number n -> the migration from schema n to n + 1; append one for every change of the stored format.
_STATE_MIGRATIONS = {1: _schema_1_to_2}


def _transition(data: dict[str, Any]) -> Transition:
    return Transition(data["seq"], data["kind"], Position(**data["source"]), Position(**data["target"]),
                      data["decision"], data["time"])


def new_rollout(rollout_id: str, model: str, version: str, champion_version: str, canary: CanaryConfig,
                now: float) -> tuple[RolloutState, Transition]:
    """A rollout about to enter shadow, with the start transition to apply (write-ahead like any other)."""
    challenger = Position("challenger")  # registered, no traffic yet
    state = RolloutState(rollout_id, model, version, champion_version, challenger, tuple(canary.steps),
                         tuple(canary.approval_before), canary.approve_promotion, started=now, updated=now,
                         phase_started=now)
    reason = f"shadowing version {version} against champion version {champion_version}"
    start = Transition(1, "start", challenger, Position("shadow", shadow=True), {"actor": "operator", "reason": reason},
                       now)
    return replace(state, pending=start), start


def next_position(state: RolloutState) -> Position:
    """The position after a successful look: shadow -> first step -> ... -> production."""
    pos = state.position
    index = pos.step + 1 if pos.phase == "canary" else 0
    if index < len(state.steps):
        return Position("canary", index, state.steps[index])
    return Position("production", weight=100)


def approval_stage(state: RolloutState, target: Position) -> str | None:
    """The approval (`mlgate approve --stage ...`) needed before moving to `target`, if any."""
    if target.phase == "canary" and target.weight in state.approval_before:
        return f"canary-{target.weight}"
    if target.phase == "production" and state.approve_promotion:
        return "production"
    return None


def accepted_stages(state: RolloutState, target: Position) -> tuple[str, ...]:
    """Approval stages that allow moving to `target`: its own, plus the GitHub environments' names of
    cd.yml: `canary` (live traffic at all) for the first step, `production` for 100% and promotion."""
    stage = approval_stage(state, target)
    if stage is None:
        return ()
    aliases = []
    if target.phase == "canary" and target.step == 0:
        aliases.append("canary")
    if target.phase == "canary" and target.weight == 100:
        aliases.append("production")
    return (stage, *aliases)


def plan(state: RolloutState, outcome: AnalysisOutcome, decision: dict[str, Any], *, elapsed_s: float,
         limit_s: float, approved: bool, now: float) -> Plan:
    """The rule: Failed/Error roll back; Successful advances (or waits for its approval); Inconclusive keeps
    collecting and pauses once the step has lasted `limit_s`."""
    if outcome in (AnalysisOutcome.FAILED, AnalysisOutcome.ERROR):
        return Plan(transition_to(state, "rollback", Position("rolled_back"), decision, now))
    if outcome is AnalysisOutcome.SUCCESSFUL:
        target = next_position(state)
        stage = approval_stage(state, target)
        if stage and not approved:
            return Plan(None, "paused", f"awaiting approval {stage}: mlgate approve --version {state.version} "
                        f"--stage {stage} --approver NAME")
        kind: Kind = "promote" if target.phase == "production" else "advance"
        return Plan(transition_to(state, kind, target, decision, now))
    if elapsed_s >= limit_s:
        return Plan(None, "paused", f"inconclusive after {elapsed_s:.0f} s at {state.position.label()} (limit "
                    f"{limit_s:.0f} s): {decision.get('reason', '')}; collect more traffic, or promote / abort")
    return Plan(None, "running", str(decision.get("reason", "")))


def transition_to(state: RolloutState, kind: Kind, target: Position, decision: dict[str, Any],
                  now: float) -> Transition:
    return Transition(state.seq + 1, kind, state.position, target, decision, now)


def record_intent(state: RolloutState, transition: Transition, now: float) -> RolloutState:
    """The state with the transition written ahead (not applied yet)."""
    return replace(state, pending=transition, updated=now)


def committed(state: RolloutState, transition: Transition, now: float) -> RolloutState:
    """The state after the transition was applied and recorded."""
    target = transition.target
    canary_started = state.canary_started
    if target.phase == "canary" and canary_started is None:
        canary_started = now
    status: Status = "done" if target.phase in TERMINAL else "running"
    reason = str(transition.decision.get("reason", ""))
    return replace(state, position=target, status=status, reason=reason, seq=transition.seq, pending=None,
                   phase_started=now, canary_started=canary_started, updated=now)


def with_status(state: RolloutState, status: Status, reason: str, last: dict[str, Any] | None,
                now: float) -> RolloutState:
    return replace(state, status=status, reason=reason, last=last, updated=now)
