"""`mlgate config validate`: check params.yaml against the schema without running anything."""

from __future__ import annotations

import argparse

from mlgate.gates.result import ExitCode
from mlgate.pipelines import console


def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.pipelines.cli.main import add_params_argument

    config = sub.add_parser("config", help="inspect the configuration")
    actions = config.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    validate = actions.add_parser("validate", help="validate params.yaml; exit 2 naming the key on error")
    add_params_argument(validate)
    validate.set_defaults(handler=validate_command)


def validate_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.params import load_params

    params = load_params(args.params)
    console.info(f"{args.params}: valid (model {params.model.name}, task {params.model.task}, "
                 f"{len(params.data.features)} features, params md5 {params.digest()})")
    return int(ExitCode.OK)
