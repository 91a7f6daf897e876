"""Where a model server runs (DESIGN §7): one factory, `server_for`, picks the runtime from config.

- `process` (default): `python -m mlgate.serving` as a subprocess on a free 127.0.0.1 port.
- `docker`: the serving image (`serving.docker_image`) through the docker SDK; needs a Docker daemon.

Both have the same use: `url`, `start()`/`stop()`, a context manager, `is_alive()`, `log_tail()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlgate.serving.runtime.docker import DockerServer
from mlgate.serving.runtime.probe import ServerStartError, free_port, probe, wait_until_ready
from mlgate.serving.runtime.process import ServerProcess
from mlgate.serving.settings import ServingConfig

__all__ = ["DockerServer", "ServerProcess", "ServerStartError", "free_port", "probe", "server_for",
           "wait_until_ready"]


def server_for(model_uris: Mapping[str, str] | str, config: ServingConfig | None = None,
               **options: Any) -> ServerProcess | DockerServer:
    """An unstarted server for `config.runtime`. `options` are those both runtimes take (host,
    port, env, startup_timeout_s) plus, for `process`, log_path and routes."""
    config = config or ServingConfig()
    if config.runtime == "docker":
        options.pop("log_path", None)
        if options.pop("routes", None) is not None:
            raise ValueError("serving.runtime docker: a route table is not supported; use runtime: process")
        return DockerServer(model_uris, config, **options)
    return ServerProcess(model_uris, config, **options)
