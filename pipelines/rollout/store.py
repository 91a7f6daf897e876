"""The rollout's state and history in MLflow tags: the source of truth any machine can resume from.

- registered model tag `mlgate.rollout.current`: {"version", "rollout_id"} of the current (or last) rollout;
- version tag `mlgate.rollout.state`: the RolloutState JSON (position, status, pending transition);
- version tags `mlgate.rollout.<rollout_id>.event.<n>`: the timeline, one JSON event each;
- version tags `mlgate.stage` and `mlgate.rollback_reason` (DESIGN §5).

Each write is one tag (one row): the state tag is written last, so a reader sees an event only once the
state that counts it exists, and a rewritten event (after a crash) overwrites itself with the same key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.rollout.state import RolloutState, StateSchemaError, Transition

CURRENT_TAG = "mlgate.rollout.current"
STATE_TAG = "mlgate.rollout.state"
STAGE_TAG = "mlgate.stage"
ROLLBACK_REASON_TAG = "mlgate.rollback_reason"


def event_tag(rollout_id: str, n: int) -> str:
    return f"mlgate.rollout.{rollout_id}.event.{n:04d}"


class RolloutStore:
    """Reads and writes one model's rollout state through `mlgate.pipelines.mlflow_io`."""

    def __init__(self, tracking_uri: str, model: str) -> None:
        self.tracking_uri = tracking_uri
        self.model = model

    def current(self) -> RolloutState | None:
        """The current (or last) rollout of the model, or None when it never had one."""
        tags = registry.registered_model_tags(self.tracking_uri, self.model)
        if tags is None:
            raise UsageError(f"model {self.model!r} is not registered in {self.tracking_uri}")
        pointer = tags.get(CURRENT_TAG)
        if not pointer:
            return None
        version = json.loads(pointer)["version"]
        text = registry.get_version(self.tracking_uri, self.model, version).tags.get(STATE_TAG)
        if not text:
            raise UsageError(f"{self.model} version {version}: {CURRENT_TAG} points here but it has no "
                             f"{STATE_TAG} tag; `mlgate rollout unlock` and start again")
        try:
            return RolloutState.from_json(text)  # an older mlgate's state is migrated here
        except StateSchemaError as exc:
            raise UsageError(f"{self.model} version {version}: {exc}") from None

    def save(self, state: RolloutState) -> RolloutState:
        """Write the state (version tag) and point the model at this rollout."""
        registry.set_version_tags(self.tracking_uri, self.model, state.version, {STATE_TAG: state.to_json()})
        pointer = json.dumps({"version": state.version, "rollout_id": state.rollout_id})
        registry.set_registered_model_tag(self.tracking_uri, self.model, CURRENT_TAG, pointer)
        return state

    def append_event(self, state: RolloutState, event: dict[str, Any]) -> RolloutState:
        """Write event number `state.events + 1`; the returned state counts it (save it to make it count)."""
        n = state.events + 1
        record = {"n": n, **event}
        tag = {event_tag(state.rollout_id, n): json.dumps(record, sort_keys=True, default=str)}
        registry.set_version_tags(self.tracking_uri, self.model, state.version, tag)
        return replace(state, events=n)

    def events(self, state: RolloutState) -> list[dict[str, Any]]:
        """The rollout's timeline, in order (only events the saved state counts)."""
        tags = registry.get_version(self.tracking_uri, self.model, state.version).tags
        found = [json.loads(tags[event_tag(state.rollout_id, n)]) for n in range(1, state.events + 1)
                 if event_tag(state.rollout_id, n) in tags]
        return sorted(found, key=lambda e: e["n"])

    def set_stage(self, version: str, stage: str) -> None:
        registry.set_version_tags(self.tracking_uri, self.model, version, {STAGE_TAG: stage})

    def set_rollback_reason(self, version: str, reason: dict[str, Any]) -> None:
        text = json.dumps(reason, sort_keys=True, default=str)
        registry.set_version_tags(self.tracking_uri, self.model, version, {ROLLBACK_REASON_TAG: text})

    def apply_registry(self, state: RolloutState, transition: Transition) -> None:
        """The registry side of a transition (idempotent): stage tags; on promotion old champion ->
        `previous` and challenger -> `champion`; on rollback the reason. Alias `challenger` is dropped
        once the version is no longer in rollout."""
        uri, name, target = self.tracking_uri, self.model, transition.target
        if target.phase in ("shadow", "canary"):
            self.set_stage(state.version, target.phase)
        elif target.phase == "production":
            registry.set_alias(uri, name, registry.PREVIOUS, state.champion_version)
            registry.set_alias(uri, name, registry.CHAMPION, state.version)
            self._drop_challenger_alias(state.version)
            self.set_stage(state.champion_version, "archived")
            self.set_stage(state.version, "production")
        elif target.phase == "rolled_back":
            reason = {**transition.decision.get("rollback_reason", {}), "at": transition.source.label()}
            self.set_rollback_reason(state.version, reason)
            self._drop_challenger_alias(state.version)
            self.set_stage(state.version, "rolled_back")

    def _drop_challenger_alias(self, version: str) -> None:
        held = registry.version_by_alias(self.tracking_uri, self.model, registry.CHALLENGER)
        if held is not None and held.version == version:
            registry.delete_alias(self.tracking_uri, self.model, registry.CHALLENGER)


def transition_event(transition: Transition) -> dict[str, Any]:
    """The timeline entry of an applied transition."""
    return {"time": transition.time, "kind": transition.kind, "seq": transition.seq,
            "source": asdict(transition.source), "target": asdict(transition.target), **transition.decision}


def status_event(state: RolloutState, kind: str, reason: str, now: float,
                 decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """The timeline entry of a pause or resume (no traffic change)."""
    return {"time": now, "kind": kind, "source": asdict(state.position), "target": asdict(state.position),
            "reason": reason, **{k: v for k, v in (decision or {}).items() if k != "reason"}}
