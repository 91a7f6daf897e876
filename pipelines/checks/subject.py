"""What a gate judged: the candidate's location and content digest, and the baseline version's (DESIGN §5).

The gate command identifies the candidate before the stage runs and attaches the identity to the
result after it, with the baseline version the result's `baseline` check names. The verdict refuses
results about different models, or about a model that is not the candidate any more, and `register`
registers the model with that digest. A candidate that changed while the gate ran, or a baseline whose
files cannot be read to identify them, is an ERROR check: nothing unidentified is ever PASS.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlgate.gates.result import (
    Check,
    GateResult,
    JudgedBaseline,
    JudgedModel,
    Status,
    Subject,
    first_line,
    worst,
)
from mlgate.pipelines.checks.models import candidate_location
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import relative
from mlgate.pipelines.lineage import model_digest, model_uri_digest


def identify_candidate(ctx: RunContext, given: str | None) -> JudgedModel:
    """The candidate `given` (default train.model_dir) and the digest of its files now; UsageError when
    it is not a model or cannot be read."""
    location = candidate_location(ctx, given)
    local = _local_path(location)
    if local is not None and not local.is_dir():
        raise UsageError(f"candidate model: {location} is not a model directory")
    if local is not None:
        return JudgedModel(relative(local.resolve(), ctx.base_dir), model_digest(local))
    try:
        return JudgedModel(location, model_uri_digest(ctx.tracking_uri, location))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; the user needs the model and reason
        raise UsageError(f"candidate model: cannot read {location} ({first_line(exc)})") from None


def with_subject(ctx: RunContext, result: GateResult, candidate: JudgedModel, alias: str | None) -> GateResult:
    """`result` with the models it judged; ERROR checks when the candidate changed during the run or
    the baseline cannot be identified. `alias`: the baseline alias of a gate that compares (else None)."""
    extra = [*_candidate_unchanged(ctx, candidate)]
    baseline = None
    if alias is not None and any(c.name == "baseline" for c in result.checks):
        baseline, problem = judged_baseline(ctx, result, alias)
        extra += [problem] if problem else []
    return dataclasses.replace(result, checks=(*result.checks, *extra), subject=Subject(candidate, baseline),
                               status=worst([result.status, *(c.status for c in extra)]))


def judged_baseline(ctx: RunContext, result: GateResult, alias: str) -> tuple[JudgedBaseline, Check | None]:
    """The version the result's `baseline` check names (none: no version was compared), with the digest
    of that version's files; an ERROR check when they cannot be downloaded."""
    details = next(c.details for c in result.checks if c.name == "baseline")
    if details.get("version") is None:
        return JudgedBaseline(alias), None
    name, version = str(details.get("name") or ctx.params.model.name), str(details["version"])
    uri = f"models:/{name}/{version}"
    try:
        return JudgedBaseline(alias, name, version, uri, model_uri_digest(ctx.tracking_uri, uri)), None
    except Exception as exc:  # noqa: BLE001 - any failure leaves the baseline unidentified
        problem = Check("subject.baseline", Status.ERROR, uri, "the baseline version's files can be read",
                        f"cannot identify the baseline {uri} the gate compared with: {first_line(exc)}")
        return JudgedBaseline(alias, name, version, uri), problem


def _candidate_unchanged(ctx: RunContext, candidate: JudgedModel) -> list[Check]:
    """An ERROR check when a candidate directory's files changed while the gate ran (URIs are immutable
    enough: a registry version or a run's artifacts)."""
    if _local_path(candidate.uri) is None:
        return []
    path = ctx.path(candidate.uri)  # relative to the project, or absolute outside it
    now = model_digest(path) if path.is_dir() else "missing"
    if now == candidate.digest:
        return []
    return [Check("subject.candidate", Status.ERROR, now, f"digest {candidate.digest}",
                  f"the candidate {candidate.uri} changed while the gate ran (digest {candidate.digest[:12]} "
                  f"before, {now[:12]} after); re-run the gate")]


def _local_path(location: str) -> Path | None:
    """The directory of a path or file:// candidate; None for an MLflow URI (models:/, runs:/, ...)."""
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    return None if "://" in location or location.startswith(("models:/", "runs:/")) else Path(location)
