"""`mlgate` command line: parse, run, map every outcome to the exit-code contract (DESIGN §3).

Commands live in their own modules and are listed in COMMANDS; each module has `register(subparsers)`
that adds its parser and sets `handler(args) -> int`. Command modules import only argparse-level code
at the top and the work inside their handlers, so `mlgate --help` answers without loading pandas,
scikit-learn or MLflow. Every problem is one stderr line starting `mlgate: error:`; nothing here
prints a traceback unless MLGATE_DEBUG is set. Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from mlgate.gates.result import ExitCode
from mlgate.pipelines import console
from mlgate.pipelines.errors import MlgateError
from mlgate.pipelines.pickle_consent import pickle_policy

# Each module registers one or more subcommands. Checked when the parser is built (like pluggy).
COMMANDS: tuple[str, ...] = (
    "mlgate.pipelines.cli.commands.config_validate",
    "mlgate.pipelines.cli.commands.stages",
    "mlgate.pipelines.cli.commands.gate",
    "mlgate.pipelines.cli.commands.serve",
    "mlgate.pipelines.cli.commands.demo",
    "mlgate.pipelines.cli.commands.release",
    "mlgate.pipelines.cli.commands.rollout",
    "mlgate.pipelines.cli.commands.init",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line with exit 2, like every other mlgate error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        console.error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(ExitCode.USAGE)


def build_parser() -> argparse.ArgumentParser:
    import mlgate

    parser = _Parser(prog="mlgate", description="CI/CD gates and rollout for ML models.")
    parser.add_argument("--version", action="version", version=f"mlgate {mlgate.__version__}")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="let this run load pickle-based models (runs code from the model file; "
                             "also MLGATE_ALLOW_PICKLE=1 or serving.allow_pickle in params.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        register = getattr(module, "register", None)
        if not callable(register):
            raise TypeError(f"command module {module_name} has no register(subparsers) function")
        register(sub)
    return parser


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="configuration file (default: params.yaml)")


def add_tracking_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with pickle_policy(args.allow_pickle):  # MLflow's pickle flag for this process and its children
            return int(args.handler(args))
    except MlgateError as exc:
        console.error(str(exc))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        console.error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place an unexpected error becomes exit 3
        if os.environ.get("MLGATE_DEBUG"):
            traceback.print_exc()
        console.error(f"internal error: {type(exc).__name__}: {exc} (set MLGATE_DEBUG=1 for the traceback)")
        return int(ExitCode.INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
