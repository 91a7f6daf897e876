"""`python -m mlgate.serving --model [NAME=]URI ... [--routes FILE] [--host H] [--port N] [--config-json JSON]`.

The entry point the process and docker runtimes start; `mlgate serve` takes the same arguments
(serving/entry.py) with the settings from params.yaml instead of --config-json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from mlgate.serving.entry import ServerUsageError, add_server_arguments, serve
from mlgate.serving.settings import ServingConfig

PROG = "python -m mlgate.serving"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Run the mlgate model server.")
    add_server_arguments(parser)
    parser.add_argument("--config-json", default="{}", help="the serving: section as JSON")
    args = parser.parse_args(argv)
    try:
        serve(args, ServingConfig.model_validate_json(args.config_json))
    except (ServerUsageError, ValidationError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
