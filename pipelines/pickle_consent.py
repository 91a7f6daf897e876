"""The user's consent to load pickle-based models, read at the edge (DESIGN §5).

For one run: `mlgate --allow-pickle ...` or MLGATE_ALLOW_PICKLE=1; for a project: `serving.allow_pickle:
true` in params.yaml. Without consent every mlgate process, and every process it starts, runs with
MLflow's MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false (MLflow 3.17 defaults it to true), and mlgate's own
loader refuses pickle-based models before loading them (mlgate.serving.loading).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from mlgate.pipelines import console
from mlgate.serving.pickle_guard import MLFLOW_FLAG
from mlgate.serving.settings import ServingConfig

CONSENT_ENV = "MLGATE_ALLOW_PICKLE"
_TRUE = {"1", "true", "yes", "on"}


def consented(environ: Mapping[str, str] = os.environ) -> bool:
    """MLGATE_ALLOW_PICKLE is set to a true value (1, true, yes, on)."""
    return environ.get(CONSENT_ENV, "").strip().lower() in _TRUE


@contextmanager
def pickle_policy(allow: bool) -> Iterator[None]:
    """One CLI run: consent (`--allow-pickle` or MLGATE_ALLOW_PICKLE) exported as MLGATE_ALLOW_PICKLE=1 and
    MLflow's flag for this process and its children, with a warning; without it MLflow's flag is false.
    The environment is restored afterwards (mlgate's main is also called in-process by tests)."""
    allow = allow or consented()
    before = {name: os.environ.get(name) for name in (CONSENT_ENV, MLFLOW_FLAG)}
    os.environ[MLFLOW_FLAG] = "true" if allow else "false"
    if allow:
        os.environ[CONSENT_ENV] = "1"
        console.warning("pickle-based models may be loaded in this run (--allow-pickle / MLGATE_ALLOW_PICKLE): "
                        "loading one runs code from the model file")
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def with_consent(serving: ServingConfig, environ: Mapping[str, str] = os.environ) -> ServingConfig:
    """The `serving` section with allow_pickle on when this run consented; unchanged otherwise."""
    if serving.allow_pickle or not consented(environ):
        return serving
    return serving.model_copy(update={"allow_pickle": True})
