"""`python -m serving --model [NAME=]URI ... [--host H] [--port N] [--config-json JSON]`.

The entry point ServerProcess and the docker runtime start; `mlgate serve` calls the same
`run_server`. The configuration arrives as the JSON of a ServingConfig (the `serving:` section).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from serving.config import ServingConfig
from serving.variants import parse_model_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description="Run the mlgate model server.")
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]URI", help="repeatable")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--config-json", default="{}", help="the serving: section as JSON")
    args = parser.parse_args(argv)
    try:
        models = parse_model_args(args.model)
        config = ServingConfig.model_validate_json(args.config_json)
    except (ValueError, ValidationError) as exc:
        print(f"python -m serving: {exc}", file=sys.stderr)
        return 2
    from serving.app import run_server  # imported here: FastAPI and uvicorn load only to serve

    run_server(models, config, port=args.port, host=args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
