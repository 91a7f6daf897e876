"""The `process` runtime: the model server as a subprocess on a free 127.0.0.1 port.

`ServerProcess` is what the edge-case and latency gates and the tests start: it runs
`python -m mlgate.serving`, waits until /readyz answers 200 (failing fast, with the server's log, when the
process dies or a model fails to load), and stops it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlgate.serving.pickle_guard import MLFLOW_FLAG
from mlgate.serving.routing.routes import RouteTable, table_json
from mlgate.serving.runtime.probe import ServerStartError, free_port, wait_until_ready
from mlgate.serving.settings import ServingConfig

_PORT_ATTEMPTS = 3


class ServerProcess:
    """`python -m mlgate.serving` in a subprocess; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        model_uris: Mapping[str, str] | str,
        config: ServingConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float | None = None,
        log_path: str | Path | None = None,
        routes: RouteTable | Mapping[str, Any] | str | Path | None = None,
    ) -> None:
        """`routes`: a route table, its JSON body, or a routes file (`--routes`); `env` adds to the
        server's environment (e.g. MLGATE_ADMIN_TOKEN)."""
        self.model_uris = {"default": model_uris} if isinstance(model_uris, str) else dict(model_uris)
        self.routes = routes
        self.config = config or ServingConfig()
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s or self.config.startup_timeout_s
        self._env = dict(env or {})
        self._keep_log = log_path is not None
        self.log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> ServerProcess:
        """Start and wait until ready; ServerStartError (server stopped) if it does not get there."""
        fixed_port = self.port
        for attempt in range(1 if fixed_port else _PORT_ATTEMPTS):
            self.port = fixed_port or free_port(self.host)
            self._spawn()
            try:
                wait_until_ready(self.url, self.startup_timeout_s, self._exit_reason)
                return self
            except ServerStartError as exc:
                log_tail = self.log_tail()
                self.stop()
                if "address already in use" in log_tail.lower() and attempt + 1 < _PORT_ATTEMPTS:
                    continue  # the free port was taken in between: try another one
                raise ServerStartError(f"{exc}\n--- server log ---\n{log_tail}") from None
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        if self.log_path is None or not self._keep_log:
            handle, name = tempfile.mkstemp(prefix="mlgate-server-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        command = [sys.executable, "-m", "mlgate.serving", "--host", self.host, "--port", str(self.port),
                   "--config-json", self.config.model_dump_json()]
        for name, uri in self.model_uris.items():
            command += ["--model", f"{name}={uri}"]
        if self.routes is not None:
            command += ["--routes", str(self._routes_file())]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._child_env())

    def _routes_file(self) -> Path:
        """The routes as a file for `--routes` (written next to the server log)."""
        if isinstance(self.routes, (str, Path)):
            return Path(self.routes)
        body = table_json(self.routes) if isinstance(self.routes, RouteTable) else dict(self.routes or {})
        assert self.log_path is not None
        path = self.log_path.with_suffix(".routes.json")
        path.write_text(json.dumps(body), encoding="utf-8")
        return path

    def _child_env(self) -> dict[str, str]:
        """This environment plus `env`; MLflow's pickle flag follows the config's consent, whatever is set."""
        pickle_flag = "true" if self.config.allow_pickle else "false"
        return {**os.environ, **self._env, "PYTHONUNBUFFERED": "1", MLFLOW_FLAG: pickle_flag}

    def _exit_reason(self) -> str | None:
        code = self._process.poll() if self._process else None
        return None if code is None else f"the server process exited with code {code}"

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the server's combined stdout/stderr."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-max_chars:]

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code (None if never started)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if not self._keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
        if self.log_path is not None and not isinstance(self.routes, (str, Path, type(None))):
            self.log_path.with_suffix(".routes.json").unlink(missing_ok=True)
        return process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
