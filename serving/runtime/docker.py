"""The `docker` runtime: the serving image (`serving.docker_image`) run through the docker SDK.

The image is the Dockerfile's (`docker build -t mlgate-serving:latest .` in a checkout of mlgate, or
any image whose entry point is `mlgate serve`); a build context, when given, is built first. Each model is fetched to a local directory and mounted read-only at /models/<variant>; the
container publishes port 8080 on a free 127.0.0.1 port. It needs a reachable Docker daemon:
`docker_status()` says whether there is one and, if not, why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlgate.serving.loading import local_model_path
from mlgate.serving.runtime.probe import ServerStartError, free_port, wait_until_ready
from mlgate.serving.settings import ServingConfig

CONTAINER_PORT = 8080


def docker_status() -> tuple[bool, str]:
    """(True, daemon version) when a Docker daemon answers, else (False, the reason)."""
    try:
        import docker
    except ImportError:
        return False, "the `docker` Python package is not installed"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        return True, str(client.version().get("Version", "unknown"))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable daemon"
        return False, f"no Docker daemon reachable ({type(exc).__name__}: {str(exc)[:200]})"


class DockerServer:
    """The serving image in a container; same use as ServerProcess (`url`, start/stop, `with`)."""

    def __init__(
        self,
        model_uris: Mapping[str, str] | str,
        config: ServingConfig | None = None,
        *,
        image: str | None = None,
        build_context: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float | None = None,
    ) -> None:
        self.model_uris = {"default": model_uris} if isinstance(model_uris, str) else dict(model_uris)
        self.config = config or ServingConfig()
        self.image = image or self.config.docker_image
        self.build_context = Path(build_context) if build_context else None
        self.host = host
        self.port = port
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s or self.config.startup_timeout_s
        self._container: Any = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> DockerServer:
        """Build the image (when a build context is set), run it, wait until /readyz is 200."""
        available, reason = docker_status()
        if not available:
            raise ServerStartError(reason)
        import docker

        client = docker.from_env()
        if self.build_context is not None:
            client.images.build(path=str(self.build_context), tag=self.image, rm=True)
        self.port = self.port or free_port(self.host)
        self._container = client.containers.run(
            self.image, entrypoint=["python", "-m", "mlgate.serving"], command=self._command(),
            detach=True, ports={f"{CONTAINER_PORT}/tcp": (self.host, self.port)},
            volumes=self._volumes(), environment=self.env,
        )
        try:
            wait_until_ready(self.url, self.startup_timeout_s, self._exit_reason)
        except ServerStartError as exc:
            logs = self._container.logs(tail=50).decode("utf-8", "replace")
            self.stop()
            raise ServerStartError(f"{exc}\n--- container log ---\n{logs}") from None
        return self

    def _volumes(self) -> dict[str, dict[str, str]]:
        return {str(local_model_path(uri).resolve()): {"bind": f"/models/{name}", "mode": "ro"}
                for name, uri in self.model_uris.items()}

    def _command(self) -> list[str]:
        command = ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "--config-json", self.config.model_dump_json()]
        for name in self.model_uris:
            command += ["--model", f"{name}=/models/{name}"]
        return command

    def _exit_reason(self) -> str | None:
        self._container.reload()
        if self._container.status in ("exited", "dead"):
            return f"the container stopped ({self._container.attrs.get('State', {}).get('ExitCode')})"
        return None

    def is_alive(self) -> bool:
        if self._container is None:
            return False
        self._container.reload()
        return self._container.status == "running"

    def stop(self, timeout_s: float = 10.0) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.stop(timeout=int(timeout_s))
            container.remove(force=True)

    def __enter__(self) -> DockerServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
