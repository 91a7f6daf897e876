"""Feeding the online gates: the prediction log and feedback of the rollout's variants and versions, the
weights of every route-table version (the canary's split is judged per version), and the rollbacks a
server's guard made by itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlgate.gates.config import CanaryConfig, DriftConfig, ShadowConfig
from mlgate.gates.online import CanaryStep, OnlineAnalysis, canary_analysis, shadow_analysis
from mlgate.gates.online.canary import server_rollback_analysis
from mlgate.gates.online.canary_data import weights_by_version
from mlgate.gates.online.log_frames import routed
from mlgate.pipelines.rollout.backend import CHALLENGER_VARIANT, CHAMPION_VARIANT
from mlgate.pipelines.rollout.state import RolloutState


def resolve_log_url(url: str, base_dir: Path) -> str:
    """A relative SQLite path (the default sqlite:///reports/predictions.db) is relative to the project."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base_dir / url[len(prefix):]).resolve())
    return url


@dataclass
class LogAnalyser:
    """Runs the shadow or canary analysis of a rollout on the prediction log at `log_url`."""

    log_url: str
    shadow: ShadowConfig
    canary: CanaryConfig
    task: str
    positive_class: object = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    drift: DriftConfig | None = None
    reference: Callable[[], pd.DataFrame | None] = lambda: None
    _reference: pd.DataFrame | None = field(default=None, init=False, repr=False)

    def __call__(self, state: RolloutState, now: float) -> OnlineAnalysis:
        if state.position.phase == "shadow":
            return self.shadow_look(state)
        if state.position.phase == "canary":
            return self.canary_look(state, now)
        raise ValueError(f"no analysis in phase {state.position.phase}")

    def shadow_look(self, state: RolloutState) -> OnlineAnalysis:
        preds = self._predictions(state, state.phase_started)
        if self._reference is None:
            self._reference = self.reference()
        return shadow_analysis(preds, self.shadow, self._reference, task=self.task, numeric=self.numeric,
                               categorical=self.categorical, drift=self.drift, shed=self._shed(state))

    def canary_look(self, state: RolloutState, now: float) -> OnlineAnalysis:
        from mlgate.serving.log.prediction_log import read_feedback, read_route_history

        since = state.canary_started or state.phase_started
        preds = self._predictions(state, since)
        feedback = read_feedback(self.log_url, since=since)
        step = CanaryStep.of(self.canary, state.position.step, now - state.phase_started)
        weights = weights_by_version(read_route_history(self.log_url), CHAMPION_VARIANT, CHALLENGER_VARIANT)
        return canary_analysis(preds, feedback, self.canary, step, step_started=state.phase_started,
                               task=self.task, positive_class=self.positive_class, route_weights=weights)

    def server_rollback(self, state: RolloutState) -> OnlineAnalysis | None:
        """A Failed look when a server's guard sent this rollout's challenger back to the champion by itself
        (a `guard_rollback` route event since the rollout started), else None."""
        from mlgate.serving.log.prediction_log import read_route_events

        events = read_route_events(self.log_url, since=state.started)
        mine = events[(events["kind"] == "guard_rollback") & (events["variant"] == CHALLENGER_VARIANT)
                      & (events["model_version"].astype(str) == str(state.version))]
        return None if mine.empty else server_rollback_analysis(mine.iloc[-1].to_dict())

    def _shed(self, state: RolloutState) -> dict[str, int]:
        """Mirrors of the challenger's version the server shed since shadowing began, by reason."""
        from mlgate.serving.log.prediction_log import read_shed

        shed = read_shed(self.log_url, since=state.phase_started)
        mine = shed[(shed["variant"] == CHALLENGER_VARIANT) & (shed["model_version"].astype(str) == str(state.version))]
        return {str(reason): int(n) for reason, n in mine.groupby("reason")["count"].sum().items()}

    def _predictions(self, state: RolloutState, since: float) -> pd.DataFrame:
        """This rollout's rows only: the champion and challenger variants at their registry versions, as the
        router assigned them (requests forced with X-Target-Variant are left out of every analysis)."""
        from mlgate.serving.log.prediction_log import read_predictions

        preds = read_predictions(self.log_url, since=since)
        versions = {CHAMPION_VARIANT: state.champion_version, CHALLENGER_VARIANT: state.version}
        keep = preds["variant"].map(versions) == preds["model_version"].astype(str)
        return routed(preds[keep.to_numpy(dtype=bool)])
