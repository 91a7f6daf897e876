"""Manual approval of a registered model version for a rollout stage (`mlgate approve`, `mlgate approvals`).

An approval is a version tag `mlgate.approval.<stage>` holding JSON {approver, time, report_digest,
comment}. Only allowed approvers count (`approvals.approvers`, or owners in the configured CODEOWNERS
file), and only for the report the version was registered with: if reports/report.md on disk is not
that report any more, the approver would be approving something else, so it is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import GateRefused, UsageError
from mlgate.pipelines.params import ApprovalsConfig
from mlgate.pipelines.report.verdict import REPORT_MD, VERDICT_FILE, file_sha256, read_verdict

APPROVAL_TAG_PREFIX = "mlgate.approval."
REPORTS_ARTIFACT_PATH = "mlgate-reports"  # where `mlgate register` attaches the reports to the run
REPORT_DIGEST_TAG = "mlgate.report_digest"
STAGE_PATTERN = re.compile(r"[a-z0-9-]+")
MAX_COMMENT_CHARS = 1000


@dataclass(frozen=True)
class Approval:
    stage: str
    approver: str
    time: str
    report_digest: str
    comment: str = ""

    def tag_value(self) -> str:
        record = {k: v for k, v in asdict(self).items() if k != "stage"}
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_tag(cls, stage: str, value: str) -> Approval:
        """Parse a recorded tag; an unreadable one is shown as such, never silently dropped."""
        try:
            data = json.loads(value)
            return cls(stage, str(data["approver"]), str(data["time"]), str(data["report_digest"]),
                       str(data.get("comment", "")))
        except (ValueError, KeyError, TypeError):
            return cls(stage, "?", "?", "?", f"unreadable approval tag: {value[:80]}")


def codeowners(path: Path) -> list[str]:
    """Owners named in a GitHub CODEOWNERS file (`pattern @user @org/team email`), without the `@`."""
    if not path.is_file():
        raise UsageError(f"{path}: CODEOWNERS file not found (approvals.codeowners in params.yaml)")
    owners: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        tokens = line.strip().split()
        if not tokens or tokens[0].startswith("#"):
            continue
        for token in tokens[1:]:
            if token.startswith("#"):
                break  # the rest of the line is a comment
            name = token.removeprefix("@")
            if name and name not in owners:
                owners.append(name)
    return owners


def allowed_approvers(config: ApprovalsConfig, base_dir: Path) -> list[str]:
    """`approvals.approvers`, plus the CODEOWNERS owners when `approvals.codeowners` is set."""
    names = list(config.approvers)
    if config.codeowners:
        names += [o for o in codeowners(base_dir / config.codeowners) if o not in names]
    return names


def check_approver(approver: str, allowed: list[str]) -> str:
    """The approver as listed (GitHub logins are case-insensitive); refused when not allowed."""
    wanted = approver.strip().removeprefix("@").casefold()
    if not wanted:
        raise GateRefused("no approver given (in CI: no approval found in the run's approval history; "
                          "does the environment have required reviewers?)")
    for name in allowed:
        if name.casefold() == wanted:
            return name
    shown = ", ".join(allowed) if allowed else "nobody (approvals.approvers is empty)"
    raise GateRefused(f"approver {approver!r} is not allowed to approve; allowed: {shown}")


def check_stage(stage: str) -> str:
    if not STAGE_PATTERN.fullmatch(stage):
        raise UsageError(f"--stage {stage!r}: use lowercase letters, digits and '-' (e.g. canary-50, production)")
    return stage


def report_digest_on_disk(base_dir: Path) -> str:
    path = base_dir / "reports" / REPORT_MD
    if not path.is_file():
        raise GateRefused(f"{path}: no report to approve (run `dvc repro` or `mlgate verdict`)")
    return file_sha256(path)


def check_report(approved_digest: str, disk_digest: str, where: str) -> None:
    """The report on disk must be the one `where` refers to, or the approval would be of another report."""
    if approved_digest != disk_digest:
        raise GateRefused(f"reports/{REPORT_MD} changed since {where} (sha256 {disk_digest[:12]} on disk, "
                          f"{approved_digest[:12]} recorded): re-run the gates and register again before approving")


def approve_version(ctx: RunContext, version: str, stage: str, approver: str, comment: str = "", *,
                    registered_report: bool = False) -> Approval:
    """Record `mlgate.approval.<stage>` on the version after checking the approver and the report: the one
    on disk, or with `registered_report` the one attached to the version's run (for an approval given away
    from the checkout that produced it, e.g. a rollout step approved in rollout-monitor.yml)."""
    check_stage(stage)
    name = check_approver(approver, allowed_approvers(ctx.params.approvals, ctx.base_dir))
    ref = _version(ctx, version)
    registered = ref.tags.get(REPORT_DIGEST_TAG)
    if not registered:
        raise GateRefused(f"{ref.uri} has no {REPORT_DIGEST_TAG} tag: it was not registered by `mlgate register`")
    found = registered_report_digest(ctx.tracking_uri, ref) if registered_report else report_digest_on_disk(ctx.base_dir)
    check_report(registered, found, f"version {ref.version} was registered")
    approval = Approval(stage, name, _now(), registered, comment[:MAX_COMMENT_CHARS])
    registry.set_version_tags(ctx.tracking_uri, ref.name, ref.version,
                              {APPROVAL_TAG_PREFIX + stage: approval.tag_value()})
    return approval


def registered_report_digest(tracking_uri: str, ref: registry.ModelVersionRef) -> str:
    """sha256 of the report.md `mlgate register` attached to the version's run (GateRefused when absent)."""
    import tempfile

    from mlflow.exceptions import MlflowException

    artifact = f"{REPORTS_ARTIFACT_PATH}/{REPORT_MD}"
    with tempfile.TemporaryDirectory(prefix="mlgate-report-") as scratch:
        try:
            path = registry.client(tracking_uri).download_artifacts(str(ref.run_id), artifact, scratch)
        except (MlflowException, OSError) as exc:
            raise GateRefused(f"{ref.uri}: run {ref.run_id} has no {artifact} ({type(exc).__name__}); it was not "
                              "registered by `mlgate register`") from None
        return file_sha256(Path(path))


def verify_candidate(ctx: RunContext, stage: str, approver: str) -> Approval:
    """Dry run for a model not registered yet (a pull request): check the approver and that
    reports/report.md is the report of reports/verdict.json. Records nothing."""
    check_stage(stage)
    name = check_approver(approver, allowed_approvers(ctx.params.approvals, ctx.base_dir))
    record = read_verdict(ctx.base_dir / "reports" / VERDICT_FILE)
    check_report(record.report_digest or "", report_digest_on_disk(ctx.base_dir), "the verdict was written")
    return Approval(stage, name, _now(), record.report_digest or "")


def list_approvals(ctx: RunContext, version: str) -> tuple[str | None, list[Approval]]:
    """(the version's registered report digest, its approvals by stage name)."""
    ref = _version(ctx, version)
    approvals = [Approval.from_tag(key.removeprefix(APPROVAL_TAG_PREFIX), value)
                 for key, value in sorted(ref.tags.items()) if key.startswith(APPROVAL_TAG_PREFIX)]
    return ref.tags.get(REPORT_DIGEST_TAG), approvals


def _version(ctx: RunContext, version: str) -> registry.ModelVersionRef:
    from mlflow.exceptions import MlflowException

    name = ctx.params.model.name
    try:
        return registry.get_version(ctx.tracking_uri, name, version)
    except MlflowException as exc:
        raise UsageError(f"model {name!r} has no version {version!r} in {ctx.tracking_uri} "
                         f"({exc.error_code})") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
