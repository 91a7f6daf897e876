"""`mlgate gate <name>`: run one gate, write reports/gates/<name>.json, exit 0/1/2/3 (DESIGN §3).

GATES is the registry: gate name -> stage module. A stage module has `add_arguments(parser)` and
`run(ctx, args) -> GateResult | int` (an int for actions that are not an evaluation, like --suggest).
The contract is checked when the parser is built, so a broken registration fails before any stage runs.
"""

from __future__ import annotations

import argparse
import importlib
import time
from types import ModuleType

from mlgate.gates.result import ExitCode, GateResult, exit_code_for
from mlgate.pipelines import console
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.errors import MlgateError

GATES: dict[str, str] = {
    "data": "mlgate.pipelines.checks.data.stage",
    "quality": "mlgate.pipelines.checks.quality.stage",
    "edge_cases": "mlgate.pipelines.checks.edge_cases.stage",
    "latency": "mlgate.pipelines.checks.latency.stage",
}


def stage_module(name: str) -> ModuleType:
    module = importlib.import_module(GATES[name])
    for attr in ("add_arguments", "run"):
        if not callable(getattr(module, attr, None)):
            raise TypeError(f"gate '{name}': module {GATES[name]} has no {attr}() function")
    return module


def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.pipelines.cli.main import add_params_argument

    gate = sub.add_parser("gate", help="run one pre-deploy gate")
    names = gate.add_subparsers(dest="gate", metavar="GATE")
    names.required = True
    for name in GATES:
        parser = names.add_parser(name, help=(stage_module(name).__doc__ or "").strip().splitlines()[0])
        add_params_argument(parser)
        parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
        parser.add_argument("--report-only", action="store_true",
                            help="write the result and exit 0 even on FAIL/ERROR (the verdict stage decides)")
        stage_module(name).add_arguments(parser)
        parser.set_defaults(handler=gate_command)


def gate_command(args: argparse.Namespace) -> int:
    ctx = RunContext.load(args.params, args.tracking_uri)
    started = time.perf_counter()
    try:
        outcome = stage_module(args.gate).run(ctx, args)
    except MlgateError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crashed gate is an ERROR result, not a lost run
        if not args.report_only:
            raise
        outcome = GateResult.error(args.gate, f"gate crashed: {type(exc).__name__}: {exc}",
                                   time.perf_counter() - started)
    if isinstance(outcome, int):
        return outcome
    path = outcome.write(ctx.gate_reports / f"{args.gate}.json")
    console.gate_summary(outcome)
    console.info(f"  report: {path.relative_to(ctx.base_dir)}")
    return int(ExitCode.OK if args.report_only else exit_code_for(outcome.status))
