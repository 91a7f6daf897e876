"""mlgate.pipelines.rollout.state: the rules of the state machine, without MLflow or a server."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlgate.gates.config import CanaryConfig
from mlgate.gates.online import AnalysisOutcome as O
from mlgate.pipelines.rollout.backend import ModelSpec, route_table, split_of
from mlgate.pipelines.rollout.monitor import NOTICE_EVENT, already_told, notice_for, outputs
from mlgate.pipelines.rollout.state import (
    Position,
    RolloutState,
    accepted_stages,
    approval_stage,
    committed,
    new_rollout,
    next_position,
    plan,
    record_intent,
)

CANARY = CanaryConfig(steps=[10, 50, 100], approval_before=[100], approve_promotion=True)


def started(now: float = 100.0) -> RolloutState:
    state, start = new_rollout("r1", "churn", "3", "2", CANARY, now)
    return committed(state, start, now)


def test_a_rollout_walks_shadow_then_each_step_then_production():
    state = started()
    assert state.position == Position("shadow", shadow=True) and state.status == "running"
    seen = []
    while True:
        target = next_position(state)
        seen.append(target.label())
        if target.phase == "production":
            break
        state = replace(state, position=target)
    assert seen == ["canary step 1 (10%)", "canary step 2 (50%)", "canary step 3 (100%)", "production"]


def test_failed_or_error_rolls_back_at_any_phase():
    state = started()
    for outcome in (O.FAILED, O.ERROR):
        planned = plan(state, outcome, {"reason": "bad"}, elapsed_s=1, limit_s=60, approved=False, now=101)
        assert planned.transition.kind == "rollback" and planned.transition.target.phase == "rolled_back"
        assert planned.transition.seq == state.seq + 1


def test_success_before_an_approval_step_pauses_until_approved():
    state = replace(started(), position=Position("canary", 1, 50))
    assert approval_stage(state, next_position(state)) == "canary-100"
    waiting = plan(state, O.SUCCESSFUL, {"reason": "ok"}, elapsed_s=1, limit_s=60, approved=False, now=101)
    assert waiting.transition is None and waiting.status == "paused"
    assert "awaiting approval canary-100: mlgate approve --version 3 --stage canary-100" in waiting.reason
    going = plan(state, O.SUCCESSFUL, {"reason": "ok"}, elapsed_s=1, limit_s=60, approved=True, now=101)
    assert going.transition.kind == "advance" and going.transition.target == Position("canary", 2, 100)


def test_the_github_environment_names_of_cd_yml_also_approve():
    first = started()
    config = replace(first, approval_before=(10, 100))
    assert accepted_stages(config, next_position(config)) == ("canary-10", "canary")
    at_50 = replace(config, position=Position("canary", 1, 50))
    assert accepted_stages(at_50, next_position(at_50)) == ("canary-100", "production")
    at_10 = replace(config, position=Position("canary", 0, 10))
    assert accepted_stages(at_10, next_position(at_10)) == ()  # 50% needs no approval


def test_promotion_can_require_its_own_approval():
    last = replace(started(), position=Position("canary", 2, 100))
    assert approval_stage(last, next_position(last)) == "production"
    planned = plan(last, O.SUCCESSFUL, {}, elapsed_s=1, limit_s=60, approved=True, now=101)
    assert planned.transition.kind == "promote"


def test_inconclusive_keeps_collecting_then_pauses_at_the_step_limit():
    state = started()
    collecting = plan(state, O.INCONCLUSIVE, {"reason": "shadow: 10 of 200"}, elapsed_s=5, limit_s=60,
                      approved=False, now=105)
    assert collecting.transition is None and collecting.status == "running"
    paused = plan(state, O.INCONCLUSIVE, {"reason": "shadow: 10 of 200"}, elapsed_s=61, limit_s=60,
                  approved=False, now=161)
    assert paused.status == "paused" and paused.reason.startswith("inconclusive after 61 s at shadow (limit 60 s)")


def test_state_with_a_pending_transition_survives_json():
    state = started()
    transition = plan(state, O.SUCCESSFUL, {"reason": "ok", "analysis": {"checks": {}}}, elapsed_s=1,
                      limit_s=60, approved=True, now=130).transition
    pending = record_intent(state, transition, 130)
    again = RolloutState.from_json(pending.to_json())
    assert again == pending and again.pending.target == Position("canary", 0, 10)
    done = committed(again, transition, 131)
    assert done.pending is None and done.seq == transition.seq and done.canary_started == 131


def test_route_tables_for_each_position_read_back_as_the_same_split():
    champ, chall = ModelSpec("2", "models:/churn/2"), ModelSpec("3", "models:/churn/3")
    assert route_table(champ, chall, 0, True)["mode"] == "shadow"
    weighted = route_table(champ, chall, 10, False)
    assert [v["weight"] for v in weighted["variants"]] == [90, 10]
    assert split_of(weighted).weight == 10 and not split_of(weighted).shadow
    assert route_table(champ, None, 0, False) == {"mode": "single", "variants": [
        {"name": "champion", "model_uri": "models:/churn/2", "weight": 100, "shadow": False}]}
    with pytest.raises(ValueError):
        route_table(champ, chall, 101, False)


def paused(state: RolloutState, at: Position, outcome=O.SUCCESSFUL, elapsed_s: float = 1) -> RolloutState:
    """`state` moved to `at` (as its own transition) and looked at once with `outcome`."""
    state = replace(state, position=at, seq=state.seq + 1)
    planned = plan(state, outcome, {"reason": "look"}, elapsed_s=elapsed_s, limit_s=60, approved=False, now=200)
    return replace(state, status=planned.status, reason=planned.reason)


def test_the_monitor_tells_about_a_rollback_an_approval_or_a_pause_and_nothing_else():
    state = started()
    assert notice_for(state) is None  # shadowing, collecting
    first_step = paused(replace(state, approval_before=(10, 100)), Position("shadow", shadow=True))
    approval = notice_for(first_step)
    assert (approval.kind, approval.stage, approval.environment) == ("approval", "canary-10", "canary")
    last_step = paused(state, Position("canary", 1, 50))
    assert (notice_for(last_step).stage, notice_for(last_step).environment) == ("canary-100", "production")
    promotion = paused(state, Position("canary", 2, 100))
    assert (notice_for(promotion).stage, notice_for(promotion).environment) == ("production", "production")
    stuck = notice_for(paused(state, Position("canary", 0, 10), O.INCONCLUSIVE, elapsed_s=61))
    assert stuck.kind == "paused" and stuck.stage is None and "inconclusive after 61 s" in stuck.message
    rolled = replace(state, position=Position("rolled_back"), status="done", reason="accuracy fell")
    assert notice_for(rolled).kind == "rolled_back" and "accuracy fell" in notice_for(rolled).message
    assert notice_for(replace(state, position=Position("production", weight=100), status="done")) is None
    pending = plan(state, O.FAILED, {"reason": "bad"}, elapsed_s=1, limit_s=60, approved=False, now=101).transition
    assert notice_for(record_intent(rolled, pending, 101)) is None  # told once it is applied, not before


def test_a_notice_is_told_once_per_step_it_is_about():
    state = started()
    at_50 = paused(state, Position("canary", 1, 50))
    notice = notice_for(at_50)
    told = [{"kind": NOTICE_EVENT, "notice": notice.key}]
    assert not already_told([], notice) and already_told(told, notice)
    assert not already_told([{"kind": "pause", "notice": notice.key}], notice)
    again_later = paused(at_50, Position("canary", 1, 50))  # the same wait after another transition
    assert not already_told(told, notice_for(again_later))
    assert outputs(at_50, notice) == {"state": "paused", "version": "3", "notice": "approval",
                                      "approval_needed": "canary-100", "environment": "production"}
    assert outputs(at_50, None)["approval_needed"] == "" and outputs(None, None)["state"] == "none"
