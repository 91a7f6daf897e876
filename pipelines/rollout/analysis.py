"""Feeding the online gates: the prediction log and feedback of the rollout's variants and versions, the
weights of every route-table version (the canary's split is judged per version), and the rollbacks a
server's guard made by itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlgate.gates.config import CanaryConfig, DriftConfig, ShadowConfig
from mlgate.gates.online import CanaryStep, OnlineAnalysis
from mlgate.gates.online.canary import server_rollback_analysis
from mlgate.gates.online.canary_data import judge_canary_stats, weights_by_version
from mlgate.gates.online.canary_stats import CanaryScope
from mlgate.gates.online.shadow import judge_shadow
from mlgate.gates.online.shadow_stats import ShadowScope
from mlgate.pipelines.rollout.backend import CHALLENGER_VARIANT, CHAMPION_VARIANT
from mlgate.pipelines.rollout.incremental import SETTLE_S, Arms, IncrementalLog
from mlgate.pipelines.rollout.state import RolloutState


def resolve_log_url(url: str, base_dir: Path) -> str:
    """A relative SQLite path (the default sqlite:///reports/predictions.db) is relative to the project."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((base_dir / url[len(prefix):]).resolve())
    return url


@dataclass
class LogAnalyser:
    """Runs the shadow or canary analysis of a rollout on the prediction log at `log_url`.

    Each look adds the rows stored since the previous look to running sums kept in the log store
    (`incremental.IncrementalLog`), so its cost does not grow with the log; `settle_s` is how long a write
    still open at a look (PostgreSQL, several servers) is awaited before its rows count as never written.
    """

    log_url: str
    shadow: ShadowConfig
    canary: CanaryConfig
    task: str
    positive_class: object = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    drift: DriftConfig | None = None
    reference: Callable[[], pd.DataFrame | None] = lambda: None
    settle_s: float = SETTLE_S
    # The share of training rows the outlier detector in a registered version's bundle flags (None: it has none).
    outlier_share: Callable[[str], float | None] = lambda version: None
    _reference: pd.DataFrame | None = field(default=None, init=False, repr=False)
    _log: IncrementalLog | None = field(default=None, init=False, repr=False)
    _shares: dict[str, float | None] = field(default_factory=dict, init=False, repr=False)

    def __call__(self, state: RolloutState, now: float) -> OnlineAnalysis:
        if state.position.phase == "shadow":
            return self.shadow_look(state, now)
        if state.position.phase == "canary":
            return self.canary_look(state, now)
        raise ValueError(f"no analysis in phase {state.position.phase}")

    @property
    def log(self) -> IncrementalLog:
        if self._log is None:
            self._log = IncrementalLog(self.log_url, self.settle_s)
        return self._log

    def shadow_look(self, state: RolloutState, now: float | None = None) -> OnlineAnalysis:
        scope = ShadowScope(self.task, tuple(self.numeric), tuple(self.categorical), self.shadow.max_latency_ratio,
                            CHAMPION_VARIANT, CHALLENGER_VARIANT, self.shadow.latency_slack_ms)
        stats, settled = self.log.shadow(state.rollout_id, _arms(state), scope, state.phase_started, now)
        if self._reference is None:
            self._reference = self.reference()
        return judge_shadow(stats, self.shadow, self._reference, scope, settled=settled, drift=self.drift,
                            shed=self._shed(state), outlier_share=self._outlier_share(state))

    def canary_look(self, state: RolloutState, now: float) -> OnlineAnalysis:
        from mlgate.serving.log.prediction_log import read_route_history

        since = state.canary_started or state.phase_started
        scope = CanaryScope(tuple(self.canary.metric_margins), state.phase_started, self.positive_class,
                            CHAMPION_VARIANT, CHALLENGER_VARIANT)
        stats = self.log.canary(state.rollout_id, _arms(state), scope, since, now)
        step = CanaryStep.of(self.canary, state.position.step, now - state.phase_started)
        weights = weights_by_version(read_route_history(self.log_url), CHAMPION_VARIANT, CHALLENGER_VARIANT)
        return judge_canary_stats(stats, self.canary, step, task=self.task, positive_class=self.positive_class,
                                  route_weights=weights, outlier_share=self._outlier_share(state))

    def _outlier_share(self, state: RolloutState) -> float | None:
        """The challenger's training outlier share, read from its bundle once per version."""
        if state.version not in self._shares:
            self._shares[state.version] = self.outlier_share(state.version)
        return self._shares[state.version]

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


def _arms(state: RolloutState) -> Arms:
    """This rollout's rows: the champion and challenger variants at their registry versions (requests forced
    with X-Target-Variant are left out of every analysis)."""
    return Arms(str(state.champion_version), str(state.version), CHAMPION_VARIANT, CHALLENGER_VARIANT)
