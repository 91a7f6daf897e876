"""Base of every configuration model: strict, so an unknown key is an error, never ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A params.yaml section: unknown keys are rejected and values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
