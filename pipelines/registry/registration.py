"""`mlgate register`: the candidate that passed the gates becomes a registered version (DESIGN §5).

Refused unless reports/verdict.json passed (PASS or WARN) and belongs to this exact model: the digest of
models/candidate, the gated parameters and reports/report.md must all be the ones the verdict recorded.
The training run's logged model is registered with lineage tags, the reports are attached to the run,
and the version gets alias `challenger` and `mlgate.stage=candidate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.gates.result import Status
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import GateRefused, UsageError
from mlgate.pipelines.files import write_text_atomic
from mlgate.pipelines.lineage import TAG_PREFIX, directory_digest
from mlgate.pipelines.registry.approval import REPORT_DIGEST_TAG
from mlgate.pipelines.report.verdict import (
    REPORT_HTML,
    REPORT_MD,
    VERDICT_FILE,
    VerdictRecord,
    file_sha256,
    gated_params_md5,
    read_verdict,
)

REPORTS_ARTIFACT_PATH = "mlgate-reports"
REGISTRATION_FILE = "registration.json"
MODEL_DIGEST_TAG = TAG_PREFIX + "model_digest"
_LINEAGE_KEYS = ("git_sha", "git_dirty", "data_md5", "params_md5")


@dataclass(frozen=True)
class Registration:
    version: registry.ModelVersionRef
    created: bool
    artifacts: list[str]


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


def read_train_run(path: Path, tracking_uri: str) -> dict[str, Any]:
    """reports/train_run.json: the run and logged model to register; it must live in this tracking store."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        run_id, model_uri = str(run["run_id"]), str(run["model_uri"])
    except FileNotFoundError:
        raise UsageError(f"{path}: not found; run `mlgate train` (or `dvc repro`) first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: malformed training record ({type(exc).__name__}: {exc})") from None
    logged_to = run.get("tracking_uri")
    if logged_to and logged_to != tracking_uri:
        raise UsageError(f"{path}: run {run_id} was logged to {logged_to}, not to {tracking_uri}; re-run "
                         "`dvc repro --force` with MLFLOW_TRACKING_URI set to the registry you register into")
    return {**run, "run_id": run_id, "model_uri": model_uri}


def version_tags(run: dict[str, Any], record: VerdictRecord) -> dict[str, str]:
    """Lineage of the model (from its training run) plus the verdict that admitted it (DESIGN §5)."""
    lineage = run.get("tags") or {}
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


def existing_version(tracking_uri: str, name: str, run_id: str, tags: dict[str, str]) -> registry.ModelVersionRef | None:
    """A still-candidate version of this run with the same model and report (a re-run CD job)."""
    from mlflow.exceptions import MlflowException

    try:
        found = registry.versions_of_run(tracking_uri, name, run_id)
    except MlflowException:
        return None
    for ref in found:
        same = all(ref.tags.get(k) == tags[k] for k in (MODEL_DIGEST_TAG, REPORT_DIGEST_TAG))
        if same and ref.tags.get(TAG_PREFIX + "stage") == "candidate":
            return ref
    return None


def register_candidate(ctx: RunContext) -> Registration:
    reports = ctx.base_dir / "reports"
    verdict_path = reports / VERDICT_FILE
    if not verdict_path.is_file():
        raise GateRefused(f"{verdict_path}: no verdict; run `dvc repro` (or `mlgate verdict`) before registering")
    record = read_verdict(verdict_path)
    model_dir = ctx.path(ctx.params.train.model_dir)
    digest = directory_digest(model_dir) if model_dir.is_dir() else None
    report = reports / REPORT_MD
    check_registrable(record, digest, gated_params_md5(ctx.params), file_sha256(report) if report.is_file() else "")
    run = read_train_run(reports / "train_run.json", ctx.tracking_uri)
    tags = version_tags(run, record)
    name = ctx.params.model.name
    ref = existing_version(ctx.tracking_uri, name, run["run_id"], tags)
    created = ref is None
    if ref is None:
        ref = registry.register_version(ctx.tracking_uri, name, run["model_uri"], tags)
    artifacts = attach_reports(ctx.tracking_uri, run["run_id"], reports)
    registry.set_alias(ctx.tracking_uri, name, registry.CHALLENGER, ref.version)
    _write_registration(reports / REGISTRATION_FILE, ref, run["run_id"])
    return Registration(registry.get_version(ctx.tracking_uri, name, ref.version), created, artifacts)


def _write_registration(path: Path, ref: registry.ModelVersionRef, run_id: str) -> None:
    """reports/registration.json: the version for CD's next steps (`jq -r .version`)."""
    payload = {"name": ref.name, "version": ref.version, "uri": ref.uri, "run_id": run_id,
               "alias": registry.CHALLENGER}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
