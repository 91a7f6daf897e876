"""The server's command line, shared by `mlgate serve` and `python -m mlgate.serving` (what the
process and docker runtimes start): one set of arguments, one validation, one start.

The two differ only in where the `serving:` settings come from: `mlgate serve --params FILE` reads
params.yaml; `python -m mlgate.serving --config-json JSON` takes the section as JSON.

MLGATE_LOG_URL, read here at the server's edge, replaces `serving.prediction_log.url`: a deployment
keeps the shared log's URL (with its password) in a secret, not in params.yaml. It applies to settings
a person gave (params.yaml, or none); a server started with `--config-json` by another process (the
gates' and tests' runtimes) keeps the log its parent chose, so gate traffic never reaches the shared log.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlgate.serving.routing.routes import RouteTable
    from mlgate.serving.settings import ServingConfig


LOG_URL_ENV = "MLGATE_LOG_URL"


class ServerUsageError(ValueError):
    """A bad --model or --routes value; the message names the argument and the problem."""


def add_server_arguments(parser: argparse.ArgumentParser, *, models_required: bool = False) -> None:
    parser.add_argument("--model", action="append", default=[], required=models_required, metavar="[NAME=]URI",
                        help="model URI or directory; repeat for several variants (NAME=URI)")
    parser.add_argument("--routes", metavar="FILE", default=None,
                        help="route table JSON (the GET /routes body: mode, variants with model_uri, weight,"
                             " shadow); PUT /routes needs MLGATE_ADMIN_TOKEN in the environment")
    parser.add_argument("--host", default=None, help="bind address (default: serving.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: serving.port)")
    parser.add_argument("--reset-routes", action="store_true",
                        help="start from --model/--routes even when the prediction log holds a persisted route table")


def models_and_routes(model_args: Sequence[str], routes_path: str | None) -> tuple[dict[str, str], RouteTable | None]:
    """The --model variants and the --routes table; ServerUsageError naming the argument and problem.
    With a routes file, --model may be omitted (the table names each model_uri), and a variant of
    the file may omit its model_uri when --model gives it."""
    from mlgate.serving.routing.routes import initial_table, load_routes_file
    from mlgate.serving.variants import parse_model_args

    try:
        models = parse_model_args(model_args) if model_args or not routes_path else {}
    except ValueError as exc:
        raise ServerUsageError(f"--model: {exc}") from None
    try:
        routes = load_routes_file(routes_path, models) if routes_path else None
        initial_table(models, routes)  # the same check the server makes: conflicting URIs are an error
    except ValueError as exc:
        raise ServerUsageError(f"--routes: {exc}") from None
    for name, uri in models.items():
        if "://" not in uri and not uri.startswith("models:/") and not Path(uri).is_dir():
            raise ServerUsageError(f"--model {name}={uri}: no model directory at that path")
    return models, routes


def refuse_unconsented_pickle(models: Mapping[str, str], config: ServingConfig) -> None:
    """ServerUsageError for a local model directory that is pickle-based while `serving.allow_pickle` is
    off (before the server starts; a remote URI is checked the same way when it is fetched and loaded)."""
    from mlgate.serving.loading import LoadPolicy, ModelLoadError, check_pickle_consent, read_mlmodel

    for name, uri in models.items():
        path = Path(uri.removeprefix("file://"))
        if (path / "MLmodel").is_file():
            try:
                check_pickle_consent(path, read_mlmodel(path), LoadPolicy.of(config))
            except ModelLoadError as exc:
                raise ServerUsageError(f"--model {name}={uri}: {exc}") from None


def with_log_url(config: ServingConfig, environ: Mapping[str, str]) -> ServingConfig:
    """`config` with the prediction log at $MLGATE_LOG_URL when that is set (and not empty)."""
    url = environ.get(LOG_URL_ENV, "").strip()
    if not url:
        return config
    return config.model_copy(update={"prediction_log": config.prediction_log.model_copy(update={"url": url})})


def serve(args: argparse.Namespace, config: ServingConfig) -> None:
    """Validate the arguments (ServerUsageError), then run the server until it is stopped. MLflow's own
    pickle flag follows `serving.allow_pickle` for the whole process, models' own code included."""
    from mlgate.serving.pickle_guard import MLFLOW_FLAG

    if getattr(args, "config_json", "{}") == "{}":  # settings from params.yaml or defaults, not a parent's
        config = with_log_url(config, os.environ)
    models, routes = models_and_routes(args.model, args.routes)
    uris = {**models, **({v.name: v.model_uri for v in routes.variants} if routes is not None else {})}
    refuse_unconsented_pickle(uris, config)
    os.environ[MLFLOW_FLAG] = "true" if config.allow_pickle else "false"
    if args.reset_routes:
        config = config.model_copy(update={"routing": config.routing.model_copy(update={"restore_routes": False})})
    from mlgate.serving.app import run_server  # imported here: FastAPI and uvicorn load only to serve

    run_server(models, config, port=args.port, host=args.host, routes=routes)
