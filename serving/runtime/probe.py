"""Starting a server and knowing when it is ready, whatever runs it: free ports, /readyz polling."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

_POLL_S = 0.05


class ServerStartError(RuntimeError):
    """The server did not become ready: the message says why and ends with its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (a race is handled by retrying the start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def probe(url: str, timeout_s: float = 2.0) -> tuple[int, dict[str, Any]]:
    """GET `url`: (status, JSON body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, _json_or_empty(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json_or_empty(exc.read())
    except (urllib.error.URLError, OSError):
        return 0, {}


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def wait_until_ready(base_url: str, timeout_s: float, exited: Callable[[], str | None]) -> None:
    """Poll /readyz until 200; raise ServerStartError when `exited()` gives a reason, a variant
    failed to load, or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reason = exited()
        if reason is not None:
            raise ServerStartError(reason)
        status, body = probe(base_url + "/readyz")
        if status == 200:
            return
        if body.get("status") == "failed":
            errors = {name: v.get("error") for name, v in body.get("variants", {}).items() if v.get("error")}
            raise ServerStartError(f"model failed to load: {errors}")
        time.sleep(_POLL_S)
    raise ServerStartError(f"not ready within {timeout_s} s at {base_url}/readyz")
