"""The two models every comparing gate needs: the candidate it judges and the production baseline.

One loader for the candidate, one registry lookup for the baseline (the version behind an alias,
`champion` by default) and one `Baseline` type, shared by the quality, edge-case and latency gates.
A baseline that cannot be found is not an error (a first model has none); one that exists but cannot
be read, loaded or served is `failed`, which the gates turn into ERROR unless configured otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.gates.result import first_line
from mlgate.pipelines.errors import UsageError

if TYPE_CHECKING:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.mlflow_io import ModelVersionRef
    from mlgate.serving.loading import LoadedModel

_RUN_TRAIN = "run `mlgate train` (dvc stage train) first"


def candidate_location(ctx: RunContext, given: str | None) -> str:
    """The candidate's MLflow model URI or directory: `given`, else train.model_dir; UsageError when a
    directory holds no MLmodel file, or a pickle-based model without the user's consent."""
    from mlgate.serving.loading import LoadPolicy, ModelLoadError, check_pickle_consent, read_mlmodel

    uri = given or str(ctx.path(ctx.params.train.model_dir))
    local = "://" not in uri and not uri.startswith("models:/")
    if local and not (Path(uri) / "MLmodel").is_file():
        raise UsageError(f"candidate model: {uri} is not an MLflow model directory; {_RUN_TRAIN}")
    if local:
        try:
            check_pickle_consent(Path(uri), read_mlmodel(Path(uri)), LoadPolicy.of(ctx.params.serving))
        except ModelLoadError as exc:
            raise UsageError(f"candidate model: {exc}") from None
    return uri


def load_candidate(ctx: RunContext, given: str | None) -> LoadedModel:
    """The candidate loaded for offline predictions (any MLflow flavor, serving's load policy);
    UsageError naming the model when it cannot be."""
    from mlgate.serving.loading import LoadPolicy, ModelLoadError, load_model

    uri = candidate_location(ctx, given)
    try:
        return load_model(uri, LoadPolicy.of(ctx.params.serving))
    except ModelLoadError as exc:
        raise UsageError(f"candidate model: {exc}") from None


@dataclass(frozen=True)
class Baseline:
    """The production model compared against, or why there is none (`failed`: it exists but is unusable).

    `model` and `lineage` are filled by `load_baseline`, for gates that predict offline."""

    ref: ModelVersionRef | None = None
    problem: str = ""
    failed: bool = False
    model: Any = None
    lineage: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.ref is not None and not self.failed

    @property
    def uri(self) -> str | None:
        return self.ref.uri if self.ref is not None else None

    @property
    def details(self) -> dict[str, Any]:
        """Registry identity for reports: name, version, uri, run id (empty without a version)."""
        if self.ref is None:
            return {}
        return {"name": self.ref.name, "version": self.ref.version, "uri": self.ref.uri, "run_id": self.ref.run_id}

    def unusable(self, problem: str) -> Baseline:
        """The same version, marked failed with `problem` (it exists, but this gate cannot use it)."""
        return dataclasses.replace(self, problem=problem, failed=True, model=None)


def find_baseline(ctx: RunContext, alias: str) -> Baseline:
    """The version behind `alias` of `model.name`; a registry failure is `failed`."""
    from mlgate.pipelines import mlflow_io as registry

    name = ctx.params.model.name
    try:
        ref = registry.version_by_alias(ctx.tracking_uri, name, alias)
    except Exception as exc:  # noqa: BLE001 - any registry failure means the gate cannot compare
        return Baseline(problem=f"cannot read alias '{alias}' of model '{name}' at {ctx.tracking_uri}: "
                        f"{type(exc).__name__}: {first_line(exc)}", failed=True)
    if ref is None:
        return Baseline(problem=f"no version of model '{name}' has alias '{alias}' in {ctx.tracking_uri}")
    return Baseline(ref=ref)


def load_baseline(ctx: RunContext, baseline: Baseline) -> Baseline:
    """`baseline` with its model loaded and its lineage read; `failed` when the model cannot be loaded."""
    from mlgate.pipelines import mlflow_io as registry
    from mlgate.serving.loading import LoadPolicy, ModelLoadError, load_model

    if not baseline.usable:
        return baseline
    assert baseline.ref is not None
    try:
        registry.client(ctx.tracking_uri)  # models:/ URIs resolve against the current tracking URI
        loaded = load_model(baseline.ref.uri, LoadPolicy.of(ctx.params.serving))
    except ModelLoadError as exc:
        return baseline.unusable(f"baseline {baseline.ref.uri} cannot be loaded: {exc}")
    return dataclasses.replace(baseline, model=loaded.model, lineage=_lineage(ctx.tracking_uri, baseline.ref))


def _lineage(tracking_uri: str, ref: ModelVersionRef) -> dict[str, str]:
    """mlgate.* tags of the baseline's training run, overridden by those of the registered version; the
    rollout history a version accumulates (mlgate.rollout.*) is not lineage and stays out of reports."""
    from mlgate.pipelines import mlflow_io as registry

    run_tags: dict[str, str] = {}
    if ref.run_id:
        try:
            run_tags = registry.run_tags(tracking_uri, ref.run_id)
        except Exception:  # noqa: BLE001 - lineage is informative; the version's own tags still apply
            run_tags = {}
    tags = {**run_tags, **ref.tags}
    return {k: v for k, v in sorted(tags.items()) if k.startswith("mlgate.") and not k.startswith("mlgate.rollout.")}
