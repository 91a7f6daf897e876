"""What a scheduled look at a rollout must tell the team, and telling it once (`mlgate rollout monitor`).

A scheduled workflow is red when it exits non-zero, so the monitor's exit code is its message: green while
there is nothing to do (no rollout, a rollout collecting data, a promotion), red exactly once when people
are needed: the rollout was rolled back, it waits for an approval, or it paused because it stayed
inconclusive. "Once" is recorded in the rollout's own timeline: a `notice` event names what was told
(the kind, the stage, and the transition count it was told at), so the next run finds it and is green
again, whichever machine runs it. A later pause at another step is a new notice.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from mlgate.pipelines.rollout.state import RolloutState, approval_stage, next_position
from mlgate.pipelines.rollout.store import RolloutStore

NOTICE_EVENT = "notice"
AWAITING_APPROVAL = "awaiting approval"  # how state.plan words a pause for an approval


@dataclass(frozen=True)
class Notice:
    """Something the team must hear about. `key` identifies it within the rollout; `stage` and
    `environment` are set for an approval (the `mlgate approve --stage` and the GitHub environment
    whose reviewers give it: `production` for the 100% step and promotion, else `canary`)."""

    key: str
    kind: str  # rolled_back | approval | paused
    message: str
    stage: str | None = None
    environment: str | None = None


def notice_for(state: RolloutState) -> Notice | None:
    """The notice a rollout in `state` calls for, or None (running, promoted, or mid-transition)."""
    if state.pending is not None:
        return None
    subject = f"{state.model} version {state.version}"
    if state.position.phase == "rolled_back":
        return Notice("rolled_back", "rolled_back", f"{subject} was rolled back: {state.reason}")
    if state.status != "paused":
        return None
    target = next_position(state)
    stage = approval_stage(state, target)
    if stage and state.reason.startswith(AWAITING_APPROVAL):
        environment = "production" if target.phase == "production" or target.weight == 100 else "canary"
        return Notice(f"approval {stage} at {state.seq}", "approval",
                      f"{subject} waits at {state.position.label()} for approval {stage}: {state.reason}",
                      stage, environment)
    return Notice(f"paused at {state.seq}", "paused", f"{subject} paused at {state.position.label()}: {state.reason}")


def already_told(events: list[dict[str, Any]], notice: Notice) -> bool:
    return any(e.get("kind") == NOTICE_EVENT and e.get("notice") == notice.key for e in events)


def record_notice(store: RolloutStore, state: RolloutState, notice: Notice, where: str | None,
                  now: float | None = None) -> RolloutState:
    """Append the notice to the timeline and save the state that counts it (call under the rollout lock)."""
    position = asdict(state.position)
    event = {"time": time.time() if now is None else now, "kind": NOTICE_EVENT, "notice": notice.key,
             "actor": "monitor", "outcome": notice.kind, "reason": f"told the team: {notice.message}",
             "source": position, "target": position, **({"where": where} if where else {})}
    return store.save(store.append_event(state, event))


def outputs(state: RolloutState | None, notice: Notice | None) -> dict[str, str]:
    """The values a workflow reads (GitHub Actions step outputs): where the rollout is, and what to ask for."""
    told = notice is not None
    return {
        "state": "none" if state is None else (state.position.phase if state.terminal else state.status),
        "version": "" if state is None else state.version,
        "notice": notice.kind if told else "",
        "approval_needed": (notice.stage or "") if told else "",
        "environment": (notice.environment or "") if told else "",
    }
