"""`mlgate register`: the candidate that passed the gates becomes a registered version (DESIGN §5).

Refused unless reports/verdict.json passed (PASS or WARN) and belongs to this exact model: the digest of
models/candidate, the gated parameters and reports/report.md must all be the ones the verdict recorded
(and the verdict passes only when every gate judged that digest). Exactly that model is registered: the
training run's logged model when its files have the judged digest, else the directory logged to a new
run (registry/model_source.py). The version is tagged with lineage and `mlgate.model_digest`, the
reports are attached to the run, and the version gets alias `challenger` and `mlgate.stage=candidate`.

In a pull request's approval job (ci.yml) the model directory is not on the runner, only the reports
of the run that judged it: `from_training_run` registers the training run's logged model when its
digest is the verdict's, and `set_challenger=False` leaves alias `challenger` alone, since the pull
request is not merged yet (cd.yml finds the version by that digest after the merge).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlgate.gates.result import Status
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import GateRefused
from mlgate.pipelines.files import write_text_atomic
from mlgate.pipelines.lineage import TAG_PREFIX, model_digest, model_uri_digest
from mlgate.pipelines.registry.approval import REPORT_DIGEST_TAG, REPORTS_ARTIFACT_PATH
from mlgate.pipelines.registry.model_source import ModelSource, judged_model_source, read_train_run
from mlgate.pipelines.report.verdict import (
    REPORT_HTML,
    REPORT_MD,
    VERDICT_FILE,
    VerdictRecord,
    file_sha256,
    gated_params_md5,
    read_verdict,
)

REGISTRATION_FILE = "registration.json"
MODEL_DIGEST_TAG = TAG_PREFIX + "model_digest"
_LINEAGE_KEYS = ("git_sha", "git_dirty", "data_md5", "params_md5")


@dataclass(frozen=True)
class Registration:
    version: registry.ModelVersionRef
    created: bool
    artifacts: list[str]
    logged_now: bool = False  # the judged directory was logged to a new run (not the training run's model)


def check_registrable(record: VerdictRecord, model_digest: str | None, params_md5: str, report_digest: str) -> None:
    """Raise GateRefused unless the verdict passed and is the verdict of this model, params and report."""
    if record.status not in (Status.PASS, Status.WARN):
        blocked = f" (blocked: {', '.join(record.blocked)})" if record.blocked else ""
        raise GateRefused(f"the verdict is {record.status}{blocked}: only a PASS or WARN verdict can be "
                          "registered; fix the failing checks in reports/report.md and re-run `dvc repro`")
    if not model_digest or record.model_digest != model_digest:
        raise GateRefused(f"the verdict is for model digest {str(record.model_digest)[:12]}, but the candidate "
                          f"model is {str(model_digest)[:12]}: the model changed since the verdict; re-run `dvc repro`")
    if record.gated_params_md5 != params_md5:
        raise GateRefused("params.yaml changed since the verdict (gated sections md5 "
                          f"{params_md5[:12]}, verdict {str(record.gated_params_md5)[:12]}); re-run `dvc repro`")
    if record.report_digest != report_digest:
        raise GateRefused(f"reports/{REPORT_MD} is not the report of the verdict (sha256 {report_digest[:12]}, "
                          f"verdict {str(record.report_digest)[:12]}); re-run `mlgate verdict`")


def version_tags(lineage: dict[str, str], record: VerdictRecord) -> dict[str, str]:
    """Lineage of the model (the tags of the run it is registered from) plus the verdict that admitted it
    and the digest of the model it judged (DESIGN §5)."""
    tags = {TAG_PREFIX + k: str(lineage[TAG_PREFIX + k]) for k in _LINEAGE_KEYS if TAG_PREFIX + k in lineage}
    tags.setdefault(TAG_PREFIX + "params_md5", str(record.raw.get("params_md5", "")))
    tags.setdefault(TAG_PREFIX + "git_sha", str(record.raw.get("git_sha", "")))
    return {**tags, TAG_PREFIX + "verdict": str(record.status), TAG_PREFIX + "stage": "candidate",
            REPORT_DIGEST_TAG: str(record.report_digest), MODEL_DIGEST_TAG: str(record.model_digest)}


def report_files(reports_dir: Path) -> list[Path]:
    """The reports attached to the run: verdict, report.md, report.html and every gate result."""
    files = [reports_dir / n for n in (VERDICT_FILE, REPORT_MD, REPORT_HTML)]
    return [f for f in files if f.is_file()] + sorted((reports_dir / "gates").glob("*.json"))


def attach_reports(tracking_uri: str, run_id: str, reports_dir: Path) -> list[str]:
    attached = []
    for path in report_files(reports_dir):
        sub = "/gates" if path.parent.name == "gates" else ""
        registry.log_run_artifact(tracking_uri, run_id, path, REPORTS_ARTIFACT_PATH + sub)
        attached.append(f"{REPORTS_ARTIFACT_PATH}{sub}/{path.name}")
    return attached


def existing_version(tracking_uri: str, name: str, record: VerdictRecord) -> registry.ModelVersionRef | None:
    """A still-candidate version of this model digest and report (a re-run CD job)."""
    from mlflow.exceptions import MlflowException

    try:
        found = registry.versions_tagged(tracking_uri, name, MODEL_DIGEST_TAG, str(record.model_digest))
    except MlflowException:
        return None
    for ref in found:
        if ref.tags.get(REPORT_DIGEST_TAG) == record.report_digest and ref.tags.get(TAG_PREFIX + "stage") == "candidate":
            return ref
    return None


def register_candidate(ctx: RunContext, *, from_training_run: bool = False,
                       set_challenger: bool = True) -> Registration:
    """Register the judged model (see the module docstring for the two sources and the alias)."""
    reports = ctx.base_dir / "reports"
    verdict_path = reports / VERDICT_FILE
    if not verdict_path.is_file():
        raise GateRefused(f"{verdict_path}: no verdict; run `dvc repro` (or `mlgate verdict`) before registering")
    record = read_verdict(verdict_path)
    logged = _training_run_model(ctx) if from_training_run else None
    if logged is not None:
        digest = _digest_or_none(ctx.tracking_uri, logged.model_uri)
    else:
        model_dir = ctx.path(ctx.params.train.model_dir)
        digest = model_digest(model_dir) if model_dir.is_dir() else None
    report = reports / REPORT_MD
    check_registrable(record, digest, gated_params_md5(ctx.params), file_sha256(report) if report.is_file() else "")
    assert digest is not None  # check_registrable refuses a missing model
    name = ctx.params.model.name
    ref = existing_version(ctx.tracking_uri, name, record)
    created, logged_now = ref is None, False
    if ref is None:
        source = logged or judged_model_source(ctx, digest)
        ref = registry.register_version(ctx.tracking_uri, name, source.model_uri, version_tags(source.lineage, record))
        run_id, logged_now = source.run_id, source.logged_now
    else:
        run_id = str(ref.run_id)
    artifacts = attach_reports(ctx.tracking_uri, run_id, reports)
    if set_challenger:
        registry.set_alias(ctx.tracking_uri, name, registry.CHALLENGER, ref.version)
    _write_registration(reports / REGISTRATION_FILE, ref, run_id, registry.CHALLENGER if set_challenger else None)
    return Registration(registry.get_version(ctx.tracking_uri, name, ref.version), created, artifacts, logged_now)


def _training_run_model(ctx: RunContext) -> ModelSource:
    """The model `mlgate train` logged (reports/train_run.json), for a runner without the model directory."""
    path = ctx.path("reports/train_run.json")
    run = read_train_run(path, ctx.tracking_uri)
    if run is None:
        raise GateRefused(f"{path}: no training record; registering from the training run needs the reports "
                          "of the run that trained and judged the model (ci.yml uploads them as mlgate-reports)")
    return ModelSource(run["run_id"], run["model_uri"], dict(run.get("tags") or {}), False)


def _digest_or_none(tracking_uri: str, model_uri: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return model_uri_digest(tracking_uri, model_uri)
    except (MlflowException, OSError):
        return None  # refused by check_registrable: not the judged model


def _write_registration(path: Path, ref: registry.ModelVersionRef, run_id: str, alias: str | None) -> None:
    """reports/registration.json: the version for CD's next steps (`jq -r .version`)."""
    payload = {"name": ref.name, "version": ref.version, "uri": ref.uri, "run_id": run_id, "alias": alias,
               "model_digest": ref.tags.get(MODEL_DIGEST_TAG)}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
