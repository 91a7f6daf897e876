"""Building a rollout controller from a RunContext: store, backend, analyser and approvals; and which
version a rollout starts with (an alias, a version number, or the digest of the model a pull request's
reviewers approved).

Settings from the environment (admin token, endpoint, log URL, kill hook) are passed in by the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import GateRefused, UsageError
from mlgate.pipelines.rollout.analysis import LogAnalyser, resolve_log_url
from mlgate.pipelines.rollout.backend import LocalBackend, TrafficBackend
from mlgate.pipelines.rollout.controller import RolloutController
from mlgate.pipelines.rollout.store import ROLLBACK_REASON_TAG, STAGE_TAG, RolloutStore


@dataclass(frozen=True)
class RolloutSettings:
    """What the CLI edge resolves: the server endpoint, its admin token, the log, and the test kill hook."""

    endpoint: str
    admin_token: str | None
    log_url: str
    kill_at: str | None = None

    @classmethod
    def from_context(cls, ctx: RunContext, *, endpoint: str | None = None, admin_token: str | None = None,
                     log_url: str | None = None, kill_at: str | None = None) -> RolloutSettings:
        rollout = ctx.params.rollout
        url = log_url or rollout.prediction_log_url or ctx.params.serving.prediction_log.url
        return cls(endpoint or rollout.endpoint, admin_token, resolve_log_url(url, ctx.base_dir), kill_at or None)


def approval_lookup(ctx: RunContext) -> Callable[[str, str], dict[str, Any] | None]:
    """(version, stage) -> the recorded approval of an approver allowed *now*, else None."""
    from mlgate.pipelines.registry.approval import allowed_approvers, check_approver, list_approvals

    def find(version: str, stage: str) -> dict[str, Any] | None:
        allowed = allowed_approvers(ctx.params.approvals, ctx.base_dir)
        for approval in list_approvals(ctx, version)[1]:
            if approval.stage != stage:
                continue
            try:
                check_approver(approval.approver, allowed)
            except GateRefused:
                continue  # recorded by someone no longer allowed: does not count
            return asdict(approval)
        return None

    return find


def training_reference(ctx: RunContext) -> Callable[[], pd.DataFrame | None]:
    """Loads the training split for the input-drift check, once, when the shadow analysis first needs it."""
    from mlgate.pipelines.datasets import load_split

    def load() -> pd.DataFrame | None:
        try:
            return load_split(ctx.params.data, "train", ctx.base_dir)
        except UsageError:
            return None  # no split here: the drift check says it could not compare

    return load


def outlier_share(ctx: RunContext) -> Callable[[str], float | None]:
    """The share of training rows the outlier detector in a registered version's bundle flags; None when the
    version has no detector or its bundle cannot be read (the check then says it could not judge). Read once
    per version (the model is downloaded for it), not at every look."""
    import tempfile

    from mlflow.exceptions import MlflowException

    from mlgate.pipelines.mlflow_io import download_model
    from mlgate.serving.outliers import OutlierBundleError, read_spec

    known: dict[str, float | None] = {}  # per version: a registered version's bundle does not change

    def share(version: str) -> float | None:
        if version in known:
            return known[version]
        try:
            with tempfile.TemporaryDirectory(prefix="mlgate-outliers-") as scratch:
                spec = read_spec(download_model(ctx.tracking_uri, f"models:/{ctx.params.model.name}/{version}",
                                                Path(scratch)))
        except (OSError, OutlierBundleError, MlflowException):
            return None  # not kept: the next look tries again
        known[version] = float(spec["share"]) if spec and isinstance(spec.get("share"), (int, float)) else None
        return known[version]

    return share


def build_controller(ctx: RunContext, settings: RolloutSettings, backend: TrafficBackend | None = None,
                     ) -> RolloutController:
    params = ctx.params
    analyser = LogAnalyser(
        settings.log_url, params.rollout.shadow, params.rollout.canary, params.model.task,
        positive_class=params.model.positive_class, numeric=list(params.data.numeric),
        categorical=list(params.data.categorical), drift=params.gates.data.drift, reference=training_reference(ctx),
        settle_s=params.rollout.log_settle_s, outlier_share=outlier_share(ctx),
    )
    return RolloutController(
        RolloutStore(ctx.tracking_uri, params.model.name),
        backend or LocalBackend(settings.endpoint, settings.admin_token), analyser, approval_lookup(ctx),
        shadow_limit_s=params.rollout.shadow.max_duration_s, step_limit_s=params.rollout.canary.max_step_duration_s,
        kill_at=settings.kill_at, server_rollback=analyser.server_rollback,
    )


def rollout_versions(ctx: RunContext, version: str | None) -> tuple[str, str]:
    """(challenger version, champion version) for a new rollout; refused without a champion to compare with."""
    name, uri = ctx.params.model.name, ctx.tracking_uri
    champion = registry.version_by_alias(uri, name, registry.CHAMPION)
    if champion is None:
        raise GateRefused(f"model {name!r} has no alias champion: a rollout compares the challenger with the "
                          "production model; give the first production version the alias champion (the demo "
                          "bootstraps one)")
    if version is None:
        challenger = registry.version_by_alias(uri, name, registry.CHALLENGER)
        if challenger is None:
            raise UsageError(f"model {name!r} has no alias challenger; `mlgate register` one or pass --version")
        version = challenger.version
    _require_version(uri, name, str(version))
    return str(version), champion.version


PASSING_VERDICTS = ("PASS", "WARN")
VERDICT_TAG = "mlgate.verdict"


@dataclass(frozen=True)
class DigestMatch:
    """The registered version of an approved model digest; `is_champion` when nothing is left to roll out."""

    version: str
    is_champion: bool
    approval: dict[str, Any] | None = None


def version_by_digest(ctx: RunContext, digest: str, approved_as: str | None = None) -> DigestMatch:
    """The newest registered version whose `mlgate.model_digest` is `digest` and whose verdict passed.
    Refused (GateRefused) when no version has the digest, none passed, the one found was rolled back, or
    `approved_as` is given and it has no approval of that stage by an allowed approver."""
    from mlgate.pipelines.registry.registration import MODEL_DIGEST_TAG

    name, uri = ctx.params.model.name, ctx.tracking_uri
    digest = digest.strip()
    if not digest:
        raise UsageError("--digest is empty: give the model digest of the judged model (reports/verdict.json "
                         "`.model.digest` of the pull request's CI run)")
    found = registry.versions_tagged(uri, name, MODEL_DIGEST_TAG, digest) \
        if registry.registered_model_tags(uri, name) is not None else []
    if not found:
        raise GateRefused(f"no registered version of {name!r} has model digest {digest[:12]}: a pull request's "
                          "model is registered by ci.yml's approve-model job when a reviewer approves it")
    champion = registry.version_by_alias(uri, name, registry.CHAMPION)
    if champion is not None and champion.version in {ref.version for ref in found}:
        return DigestMatch(champion.version, True)
    passing = [ref for ref in found if ref.tags.get(VERDICT_TAG) in PASSING_VERDICTS]
    if not passing:
        verdicts = ", ".join(f"v{ref.version}: {ref.tags.get(VERDICT_TAG, 'none')}" for ref in found)
        raise GateRefused(f"model digest {digest[:12]} of {name!r} has no version with a passing verdict "
                          f"({verdicts}); only a PASS or WARN verdict is rolled out")
    chosen = max(passing, key=lambda ref: int(ref.version))
    if chosen.tags.get(STAGE_TAG) == "rolled_back":
        raise GateRefused(f"{name} version {chosen.version} (digest {digest[:12]}) was rolled back before: "
                          f"{chosen.tags.get(ROLLBACK_REASON_TAG, '')[:300]}; roll out a new model")
    approval = approval_lookup(ctx)(chosen.version, approved_as) if approved_as else None
    if approved_as and approval is None:
        raise GateRefused(f"{name} version {chosen.version} (digest {digest[:12]}) has no approval of stage "
                          f"{approved_as} by an allowed approver: mlgate approvals --version {chosen.version}")
    return DigestMatch(chosen.version, False, approval)


def _require_version(uri: str, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        registry.get_version(uri, name, version)
    except MlflowException as exc:
        raise UsageError(f"model {name!r} has no version {version!r} in {uri} ({exc.error_code})") from None
