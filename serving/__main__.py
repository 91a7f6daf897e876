"""`python -m mlgate.serving --model [NAME=]URI ... [--routes FILE] [--host H] [--port N] [--config-json JSON]`.

The entry point ServerProcess and the docker runtime start; `mlgate serve` calls the same
`run_server`. The configuration arrives as the JSON of a ServingConfig (the `serving:` section).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from mlgate.serving.routing.routes import RouteTable, initial_table, load_routes_file
from mlgate.serving.settings import ServingConfig
from mlgate.serving.variants import parse_model_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlgate.serving", description="Run the mlgate model server.")
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]URI", help="repeatable")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--config-json", default="{}", help="the serving: section as JSON")
    parser.add_argument("--routes", metavar="FILE", help="route table JSON (the GET /routes body)")
    args = parser.parse_args(argv)
    try:
        config = ServingConfig.model_validate_json(args.config_json)
        models, routes = models_and_routes(args.model, args.routes)
    except (ValueError, ValidationError) as exc:
        print(f"python -m mlgate.serving: {exc}", file=sys.stderr)
        return 2
    from mlgate.serving.app import run_server  # imported here: FastAPI and uvicorn load only to serve

    run_server(models, config, port=args.port, host=args.host, routes=routes)
    return 0


def models_and_routes(model_args: Sequence[str], routes_path: str | None) -> tuple[dict[str, str], RouteTable | None]:
    """The --model variants and the --routes table; ValueError (RouteTableError) naming the problem.
    With a routes file, --model may be omitted (the table names each model_uri), and a variant of
    the file may omit its model_uri when --model gives it."""
    models = parse_model_args(model_args) if model_args or not routes_path else {}
    routes = load_routes_file(routes_path, models) if routes_path else None
    initial_table(models, routes)  # the same check the server makes: conflicting URIs are an error
    return models, routes


if __name__ == "__main__":
    sys.exit(main())
