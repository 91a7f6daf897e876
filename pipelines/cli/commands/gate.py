"""`mlgate gate <name>`: run one gate, write reports/gates/<name>.json, exit 0/1/2/3 (DESIGN §3).

GATES is the registry: gate name -> (stage module, one-line help, its own options). A stage module
has `run(ctx, **options) -> GateResult | int` (an int for actions that are not an evaluation, like
--suggest) with typed keyword arguments; argparse stays here. Stage modules are imported only when a
gate runs, so `mlgate --help` stays fast.

A gate with a `--candidate` option judges a model: its result records the candidate (location and
content digest, taken before the run and checked after it) and the baseline version it compared with
(mlgate.pipelines.checks.subject). A gate that cannot run (bad usage, bad params, a crash) replaces its
result file with an ERROR result naming why, so an older PASS never outlives it; the exit code is the
error's (2 usage, 3 internal), or 0 with --report-only: like a gate that ran and failed, the dvc
pipeline goes on and the verdict fails with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlgate.gates.result import ExitCode

if TYPE_CHECKING:
    from mlgate.gates.result import GateResult

_CANDIDATE = "candidate model directory or MLflow model URI (default: train.model_dir)"


@dataclass(frozen=True)
class Option:
    """One command-line option of a gate: its flag, the stage keyword it feeds, argparse settings."""

    flag: str
    keyword: str
    help: str
    flag_only: bool = False  # a switch (store_true) rather than a value
    metavar: str | None = None
    action: bool = False  # a switch that makes the run an action, not an evaluation: no result is written


@dataclass(frozen=True)
class GateCommand:
    module: str
    help: str
    options: tuple[Option, ...] = field(default_factory=tuple)

    @property
    def candidate_keyword(self) -> str | None:
        """The stage keyword of `--candidate`: set for a gate that judges a model."""
        return next((o.keyword for o in self.options if o.flag == "--candidate"), None)


GATES: dict[str, GateCommand] = {
    "data": GateCommand(
        "mlgate.pipelines.checks.data.stage",
        "validate data: the expectation suite on every split, drift vs training, serving skew",
        (Option("--suggest", "suggest_only", "derive the expectation suite from the training split and show "
                "what changed", flag_only=True, action=True),
         Option("--force", "force", "with --suggest: overwrite a suite that differs", flag_only=True),
         Option("--batch", "batch", "batch to validate (default: the production split)", metavar="PATH"),
         Option("--logged", "logged", "rows as the server logged them, for the skew check "
                "(default: gates.data.skew.logged_path)", metavar="PATH"))),
    "quality": GateCommand(
        "mlgate.pipelines.checks.quality.stage",
        "the candidate against the production model (alias champion) on the same holdout",
        (Option("--candidate", "model", _CANDIDATE),)),
    "edge_cases": GateCommand(
        "mlgate.pipelines.checks.edge_cases.stage",
        "the real server with the candidate, attacked with cases generated from the data schema",
        (Option("--candidate", "model", _CANDIDATE),)),
    "latency": GateCommand(
        "mlgate.pipelines.checks.latency.stage",
        "candidate and champion servers under the same locust load, in alternating rounds",
        (Option("--candidate", "model", _CANDIDATE),)),
}


def stage_run(name: str) -> Callable[..., object]:
    """The `run` function of gate `name`'s stage module (imported now, not at parser build)."""
    module = importlib.import_module(GATES[name].module)
    run = getattr(module, "run", None)
    if not callable(run):
        raise TypeError(f"gate '{name}': module {GATES[name].module} has no run() function")
    return run


def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.pipelines.cli.main import add_params_argument, add_tracking_argument

    gate = sub.add_parser("gate", help="run one pre-deploy gate")
    names = gate.add_subparsers(dest="gate", metavar="GATE")
    names.required = True
    for name, command in GATES.items():
        parser = names.add_parser(name, help=command.help, description=command.help)
        add_params_argument(parser)
        add_tracking_argument(parser)
        parser.add_argument("--report-only", action="store_true",
                            help="write the result and exit 0 even on FAIL/ERROR or when the gate cannot run "
                                 "(the verdict stage decides)")
        for option in command.options:
            if option.flag_only:
                parser.add_argument(option.flag, dest=option.keyword, action="store_true", help=option.help)
            else:
                parser.add_argument(option.flag, dest=option.keyword, metavar=option.metavar, help=option.help)
        parser.set_defaults(handler=gate_command)


def gate_command(args: argparse.Namespace) -> int:
    from mlgate.gates.result import GateResult, exit_code_for, first_line
    from mlgate.pipelines import console
    from mlgate.pipelines.errors import MlgateError

    started = time.perf_counter()
    command = GATES[args.gate]
    action = any(getattr(args, o.keyword) for o in command.options if o.action)
    try:
        outcome, reports = judged_run(args)
    except Exception as exc:  # noqa: BLE001 - a gate that cannot run leaves an ERROR result, not an old one
        if action:
            raise
        reason = (f"the gate could not run: {first_line(exc)}" if isinstance(exc, MlgateError)
                  else f"gate crashed: {type(exc).__name__}: {first_line(exc)}")
        outcome = GateResult.error(args.gate, reason, time.perf_counter() - started)
        if Path(args.params).is_file():  # a mistyped --params path gets no reports/ folder beside it
            _write(outcome, _reports_dir(args))
        if not args.report_only:
            raise
        console.gate_summary(outcome)
        return int(ExitCode.OK)
    if isinstance(outcome, int):
        return outcome
    path = _write(outcome, reports)
    console.gate_summary(outcome)
    console.info(f"  report: {path.relative_to(reports.parent.parent)}")
    return int(ExitCode.OK if args.report_only else exit_code_for(outcome.status))


def judged_run(args: argparse.Namespace) -> tuple[GateResult | int, Path]:
    """Run the gate; a gate that judges a model gets the candidate identified before the run and the
    models it judged attached after it. (outcome, the project's reports/gates directory)."""
    from mlgate.pipelines.checks.subject import identify_candidate, with_subject
    from mlgate.pipelines.context import RunContext

    ctx = RunContext.load(args.params, args.tracking_uri)
    command = GATES[args.gate]
    options = {option.keyword: getattr(args, option.keyword) for option in command.options}
    keyword = command.candidate_keyword
    candidate = identify_candidate(ctx, options[keyword]) if keyword else None
    outcome = stage_run(args.gate)(ctx, **options)
    if candidate is not None and not isinstance(outcome, int):
        alias = getattr(getattr(ctx.params.gates, args.gate, None), "baseline_alias", None)
        outcome = with_subject(ctx, outcome, candidate, alias)
    return outcome, ctx.gate_reports


def _reports_dir(args: argparse.Namespace) -> Path:
    """reports/gates beside the params file (where RunContext puts it, also when the params are bad)."""
    return Path(args.params).resolve().parent / "reports" / "gates"


def _write(result: GateResult, reports: Path) -> Path:
    return result.write(reports / f"{result.gate}.json")
