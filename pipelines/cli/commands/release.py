"""`mlgate verdict`, `mlgate register`, `mlgate approve`, `mlgate approvals`: from gate results to an
approved, registered model version."""

from __future__ import annotations

import argparse

from mlgate.gates.result import ExitCode, exit_code_for
from mlgate.pipelines import console
from mlgate.pipelines.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.pipelines.cli.main import add_params_argument, add_tracking_argument

    verdict = sub.add_parser("verdict", help="read every gate result, write verdict.json, report.md, report.html")
    add_params_argument(verdict)
    verdict.set_defaults(handler=verdict_command)

    reg = sub.add_parser("register", help="register the candidate that passed the gates (alias challenger)")
    add_params_argument(reg)
    add_tracking_argument(reg)
    reg.add_argument("--from-training-run", action="store_true",
                     help="register the model the training run logged (reports/train_run.json) when its digest is "
                          "the verdict's, without train.model_dir on this machine (ci.yml's approval job)")
    reg.add_argument("--no-alias", action="store_true",
                     help="do not move alias challenger (a pull request's model: cd.yml finds it by digest)")
    reg.set_defaults(handler=register_command)

    approve = sub.add_parser("approve", help="record an allowed approver's approval of a version for a stage")
    add_params_argument(approve)
    add_tracking_argument(approve)
    approve.add_argument("--version", help="registered model version (required unless --dry-run)")
    approve.add_argument("--stage", required=True, help="rollout stage approved, e.g. candidate, canary-50, production")
    approve.add_argument("--approver", required=True, help="the approver's name (GitHub login)")
    approve.add_argument("--comment", default="", help="free text kept with the approval")
    approve.add_argument("--dry-run", action="store_true",
                         help="check the approver and reports/report.md against reports/verdict.json; record nothing")
    approve.add_argument("--registered-report", action="store_true",
                         help="approve the report registered with the version (checked in MLflow) instead of "
                              "reports/report.md on disk (rollout-monitor.yml's approval job has no reports)")
    approve.set_defaults(handler=approve_command)

    approvals = sub.add_parser("approvals", help="list the approvals recorded on a version")
    add_params_argument(approvals)
    add_tracking_argument(approvals)
    approvals.add_argument("--version", required=True, help="registered model version")
    approvals.set_defaults(handler=approvals_command)


def verdict_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.report.markdown import check_counts, listed_checks
    from mlgate.pipelines.report.verdict import build_verdict, write_reports

    ctx = RunContext.load(args.params)
    verdict = build_verdict(ctx.params, ctx.base_dir)
    files = write_reports(verdict, ctx.base_dir)
    console.table(f"verdict: {verdict.status}", ["gate", "status", "checks P/W/F/E", "duration"],
                  [(n, r.status, check_counts(r), f"{r.duration_s:.1f}s") for n, r in verdict.results.items()])
    for problem in verdict.problems:
        console.info(f"  ERROR {problem}")
    for gate, check in [(g, c) for g, c in listed_checks(verdict.results) if c.status.blocks][:10]:
        console.info(f"  {check.status:<5} {gate}/{check.name}: {check.message}")
    for path in (files.verdict, files.report_md, files.report_html):
        console.info(f"  wrote {path.relative_to(ctx.base_dir)}")
    return int(exit_code_for(verdict.status))


def register_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.registry.registration import register_candidate

    ctx = RunContext.load(args.params, args.tracking_uri)
    outcome = register_candidate(ctx, from_training_run=args.from_training_run, set_challenger=not args.no_alias)
    ref = outcome.version
    verb = "registered" if outcome.created else "already registered as"
    if outcome.logged_now:
        console.info(f"register: the judged {ctx.params.train.model_dir} is not the training run's model; "
                     f"logged it unchanged to run {ref.run_id}")
    alias = "no alias" if args.no_alias else "alias challenger"
    console.info(f"register: {verb} {ref.name} version {ref.version} ({ref.uri}), {alias}, "
                 f"verdict {ref.tags.get('mlgate.verdict')}, model digest {ref.tags.get('mlgate.model_digest')}, "
                 f"run {ref.run_id}")
    console.info(f"register: attached {len(outcome.artifacts)} report files to the run; wrote reports/registration.json")
    return int(ExitCode.OK)


def approve_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.registry.approval import approve_version, verify_candidate

    ctx = RunContext.load(args.params, args.tracking_uri)
    if args.dry_run and args.registered_report:
        raise UsageError("mlgate approve: --registered-report needs a registered --version, not --dry-run")
    if args.dry_run:
        approval = verify_candidate(ctx, args.stage, args.approver)
        console.info(f"approve: {approval.approver} may approve stage {approval.stage} of the candidate "
                     f"(report sha256 {approval.report_digest[:12]}); dry run, nothing recorded")
        return int(ExitCode.OK)
    if not args.version:
        raise UsageError("mlgate approve: --version is required (or --dry-run for an unregistered candidate)")
    approval = approve_version(ctx, args.version, args.stage, args.approver, args.comment,
                               registered_report=args.registered_report)
    console.info(f"approve: {ctx.params.model.name} version {args.version} approved for {approval.stage} by "
                 f"{approval.approver} at {approval.time} (report sha256 {approval.report_digest[:12]})")
    return int(ExitCode.OK)


def approvals_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.registry.approval import list_approvals

    ctx = RunContext.load(args.params, args.tracking_uri)
    registered, approvals = list_approvals(ctx, args.version)
    title = f"approvals of {ctx.params.model.name} version {args.version}"
    if not approvals:
        console.info(f"{title}: none recorded")
        return int(ExitCode.OK)
    rows = [(a.stage, a.approver, a.time.replace("T", " ").removesuffix("+00:00"),
             "current" if a.report_digest == registered else f"other ({a.report_digest[:8]})", a.comment)
            for a in approvals]
    console.table(title, ["stage", "approver", "time (UTC)", "report", "comment"], rows)
    return int(ExitCode.OK)
