"""`mlgate serve`: run the model server for one or more MLflow model URIs on uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlgate.gates.result import ExitCode
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.params import load_params
from mlgate.serving.settings import ServingConfig


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="serve MLflow models over HTTP (MLflow scoring protocol)")
    serve.add_argument("--model", action="append", required=True, metavar="[NAME=]URI",
                       help="model URI or directory; repeat for several variants (NAME=URI)")
    serve.add_argument("--routes", metavar="FILE", default=None,
                       help="route table JSON (the GET /routes body: mode, variants with model_uri, weight,"
                            " shadow); PUT /routes needs MLGATE_ADMIN_TOKEN in the environment")
    serve.add_argument("--host", default=None, help="bind address (default: serving.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: serving.port)")
    serve.add_argument("--reset-routes", action="store_true",
                       help="start from --model/--routes even when the prediction log holds a persisted route table")
    serve.add_argument("--params", default="params.yaml",
                       help="read the serving section from this file when it exists (default: params.yaml)")
    serve.set_defaults(handler=serve_command)


def serving_config(params_path: str) -> ServingConfig:
    """The `serving` section of params.yaml, or the defaults when there is no params file (e.g. in the image)."""
    if not Path(params_path).is_file():
        return ServingConfig()
    return load_params(params_path).serving


def serve_command(args: argparse.Namespace) -> int:
    from mlgate.serving.__main__ import models_and_routes
    from mlgate.serving.app import run_server
    from mlgate.serving.variants import parse_model_args

    try:
        models = parse_model_args(args.model)
    except ValueError as exc:
        raise UsageError(f"--model: {exc}") from None
    for name, uri in models.items():
        if "://" not in uri and not uri.startswith("models:/") and not Path(uri).is_dir():
            raise UsageError(f"--model {name}={uri}: no model directory at that path")
    try:
        models, routes = models_and_routes(args.model, args.routes)
    except ValueError as exc:
        raise UsageError(f"--routes: {exc}") from None
    config = serving_config(args.params)
    if args.reset_routes:
        config = config.model_copy(update={"routing": config.routing.model_copy(update={"restore_routes": False})})
    run_server(models, config, port=args.port, host=args.host, routes=routes)
    return int(ExitCode.OK)
