"""`mlgate serve`: run the model server for one or more MLflow model URIs on uvicorn.

The arguments and their checks are the server's own (mlgate.serving.entry), shared with
`python -m mlgate.serving`; the settings come from params.yaml's `serving:` section, with the prediction
log at $MLGATE_LOG_URL when that is set (read by mlgate.serving.entry.serve, the server's edge).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mlgate.gates.result import ExitCode
from mlgate.pipelines.errors import UsageError

if TYPE_CHECKING:
    from mlgate.serving.settings import ServingConfig


def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.serving.entry import add_server_arguments

    serve = sub.add_parser("serve", help="serve MLflow models over HTTP (MLflow scoring protocol)")
    add_server_arguments(serve, models_required=True)
    serve.add_argument("--params", default="params.yaml",
                       help="read the serving section from this file when it exists (default: params.yaml)")
    serve.set_defaults(handler=serve_command)


def serving_config(params_path: str) -> ServingConfig:
    """The `serving` section of params.yaml, or the defaults when there is no params file (e.g. in the image)."""
    from mlgate.pipelines.params import load_params
    from mlgate.pipelines.pickle_consent import with_consent
    from mlgate.serving.settings import ServingConfig

    if not Path(params_path).is_file():
        return with_consent(ServingConfig())
    return with_consent(load_params(params_path).serving)


def serve_command(args: argparse.Namespace) -> int:
    from mlgate.serving.entry import ServerUsageError, serve

    try:
        serve(args, serving_config(args.params))
    except ServerUsageError as exc:
        raise UsageError(str(exc)) from None
    return int(ExitCode.OK)
