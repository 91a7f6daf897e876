"""What the incremental analysis stores per rollout and phase: the sums, the log position they cover, and
what they are of (`Arms`, the scope): sums of anything else are counted again from the phase's start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
import sqlalchemy as sa

from mlgate.gates.online.canary_stats import CanaryScope
from mlgate.gates.online.shadow_stats import ShadowScope
from mlgate.serving.log.incremental_reads import Watermark

FORMAT = 1  # the stored body's format; another one is recounted from the phase's start


@dataclass(frozen=True)
class Arms:
    """This rollout's rows: the champion and challenger variants, each at its registry version."""

    champion_version: str
    challenger_version: str
    champion: str = "champion"
    challenger: str = "challenger"

    def where(self, table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        c = table.c
        return [sa.or_(sa.and_(c.variant == self.champion, c.model_version == self.champion_version),
                       sa.and_(c.variant == self.challenger, c.model_version == self.challenger_version))]

    def mine(self, rows: pd.DataFrame) -> pd.DataFrame:
        versions = {self.champion: self.champion_version, self.challenger: self.challenger_version}
        keep = rows["variant"].map(versions) == rows["model_version"].astype(str)
        return rows[keep.to_numpy(dtype=bool)]


@dataclass
class Sums:
    """What is stored per rollout and phase: the sums, the positions they cover, and what they are of."""

    key: dict[str, Any]
    predictions: Watermark
    feedback: Watermark
    stats: Any
    step_started: float | None = None

    def to_json(self) -> str:
        return orjson.dumps({"format": FORMAT, "key": self.key, "predictions": self.predictions.to_json(),
                             "feedback": self.feedback.to_json(), "stats": self.stats.to_json(),
                             "step_started": self.step_started}).decode()


def shadow_key(arms: Arms, scope: ShadowScope, since: float) -> dict[str, Any]:
    """What a shadow phase's stored sums are of."""
    return {"phase": "shadow", "since": since, "arms": _plain(arms), "scope": _plain(scope)}


def canary_key(arms: Arms, scope: CanaryScope, since: float) -> dict[str, Any]:
    """What a canary's stored sums are of (its steps share them: a new step recounts only its step parts)."""
    return {"phase": "canary", "since": since, "arms": _plain(arms), "metrics": list(scope.metrics),
            "positive_class": None if scope.positive_class is None else str(scope.positive_class)}


def _plain(value: Any) -> dict[str, Any]:
    """A frozen dataclass as JSON-ready values (for the stored key)."""
    return {k: list(v) if isinstance(v, tuple) else (v if isinstance(v, (int, float, str)) or v is None else str(v))
            for k, v in vars(value).items()}
