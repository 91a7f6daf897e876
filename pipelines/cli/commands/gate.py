"""`mlgate gate <name>`: run one gate, write reports/gates/<name>.json, exit 0/1/2/3 (DESIGN §3).

GATES is the registry: gate name -> (stage module, one-line help, its own options). A stage module
has `run(ctx, **options) -> GateResult | int` (an int for actions that are not an evaluation, like
--suggest) with typed keyword arguments; argparse stays here. Stage modules are imported only when a
gate runs, so `mlgate --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlgate.gates.result import ExitCode

_CANDIDATE = "candidate model directory or MLflow model URI (default: train.model_dir)"


@dataclass(frozen=True)
class Option:
    """One command-line option of a gate: its flag, the stage keyword it feeds, argparse settings."""

    flag: str
    keyword: str
    help: str
    flag_only: bool = False  # a switch (store_true) rather than a value
    metavar: str | None = None


@dataclass(frozen=True)
class GateCommand:
    module: str
    help: str
    options: tuple[Option, ...] = field(default_factory=tuple)


GATES: dict[str, GateCommand] = {
    "data": GateCommand(
        "mlgate.pipelines.checks.data.stage",
        "validate data: the expectation suite on every split, drift vs training, serving skew",
        (Option("--suggest", "suggest_only", "derive the expectation suite from the training split and show "
                "what changed", flag_only=True),
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
                            help="write the result and exit 0 even on FAIL/ERROR (the verdict stage decides)")
        for option in command.options:
            if option.flag_only:
                parser.add_argument(option.flag, dest=option.keyword, action="store_true", help=option.help)
            else:
                parser.add_argument(option.flag, dest=option.keyword, metavar=option.metavar, help=option.help)
        parser.set_defaults(handler=gate_command)


def gate_command(args: argparse.Namespace) -> int:
    from mlgate.gates.result import GateResult, exit_code_for
    from mlgate.pipelines import console
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.errors import MlgateError

    ctx = RunContext.load(args.params, args.tracking_uri)
    options = {option.keyword: getattr(args, option.keyword) for option in GATES[args.gate].options}
    started = time.perf_counter()
    try:
        outcome = stage_run(args.gate)(ctx, **options)
    except MlgateError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crashed gate is an ERROR result, not a lost run
        if not args.report_only:
            raise
        outcome = GateResult.error(args.gate, f"gate crashed: {type(exc).__name__}: {exc}",
                                   time.perf_counter() - started)
    if isinstance(outcome, int):
        return outcome
    assert isinstance(outcome, GateResult)
    path = outcome.write(ctx.gate_reports / f"{args.gate}.json")
    console.gate_summary(outcome)
    console.info(f"  report: {path.relative_to(ctx.base_dir)}")
    return int(ExitCode.OK if args.report_only else exit_code_for(outcome.status))
