"""One controller per model at a time: a lease in a registered-model tag that outlives a crash.

The tag `mlgate.rollout.lock` holds {token, host, pid, acquired, heartbeat, command}. A lock is stale,
and may be taken over, when its heartbeat is older than the TTL or when its process is gone from this
very host; otherwise it is held until released, or broken explicitly (`mlgate rollout unlock`,
`mlgate rollout abort --break-lock`). MLflow has no compare-and-set, so acquisition writes, waits a
moment and reads back: two controllers racing in the same instant are caught, and CD adds a
concurrency group per model so two jobs never race in the first place.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.errors import GateRefused

LOCK_TAG = "mlgate.rollout.lock"
_SETTLE_S = 0.2


class LockHeld(GateRefused):
    """Another controller holds the model's lock (exit 1)."""


@dataclass(frozen=True)
class LockRecord:
    token: str
    host: str
    pid: int
    acquired: float
    heartbeat: float
    command: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.acquired))
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {when})"

    def stale_reason(self, now: float, ttl_s: float) -> str | None:
        """Why the lock may be taken over, or None while its owner may still be working."""
        if now - self.heartbeat > ttl_s:
            return f"no heartbeat for {now - self.heartbeat:.0f} s (TTL {ttl_s:.0f} s)"
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return f"process {self.pid} is not running on this host"
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(tracking_uri: str, model: str) -> LockRecord | None:
    text = (registry.registered_model_tags(tracking_uri, model) or {}).get(LOCK_TAG)
    if not text:
        return None
    try:
        return LockRecord(**json.loads(text))
    except (ValueError, TypeError):
        return LockRecord("unreadable", "?", -1, 0.0, 0.0, text[:60])  # stale at once (heartbeat 0)


def break_lock(tracking_uri: str, model: str) -> LockRecord | None:
    """Remove the lock whoever holds it; returns what was removed."""
    record = read_lock(tracking_uri, model)
    registry.delete_registered_model_tag(tracking_uri, model, LOCK_TAG)
    return record


class RolloutLock:
    """Context manager: acquire on enter (LockHeld if another live controller has it), release on exit."""

    def __init__(self, tracking_uri: str, model: str, command: str, *, ttl_s: float = 900.0,
                 clock: Callable[[], float] = time.time, on_takeover: Callable[[str], None] | None = None) -> None:
        self.tracking_uri, self.model, self.command, self.ttl_s = tracking_uri, model, command, ttl_s
        self.token = uuid.uuid4().hex
        self._clock = clock
        self._on_takeover = on_takeover
        self._acquired: float | None = None

    def acquire(self) -> None:
        now = self._clock()
        held = read_lock(self.tracking_uri, self.model)
        if held is not None and held.token != self.token:
            stale = held.stale_reason(now, self.ttl_s)
            if stale is None:
                raise LockHeld(f"model {self.model!r} is locked by {held.describe()}; wait for it, or if it is "
                               f"gone: mlgate rollout unlock (or abort --break-lock)")
            if self._on_takeover:
                self._on_takeover(f"took over a stale lock of {held.describe()}: {stale}")
        self._acquired = now
        try:
            self._write(now)
        except Exception:  # MlflowException: another controller created the tag in the same instant (SQLite UNIQUE)
            other = read_lock(self.tracking_uri, self.model)
            if other is not None and other.token != self.token:
                raise LockHeld(f"model {self.model!r}: lost the race for the lock to {other.describe()}") from None
            raise
        time.sleep(_SETTLE_S)
        mine = read_lock(self.tracking_uri, self.model)
        if mine is None or mine.token != self.token:
            other = mine.describe() if mine else "someone who released it at once"
            raise LockHeld(f"model {self.model!r}: lost the race for the lock to {other}")

    def refresh(self) -> None:
        """Renew the heartbeat (a long `run` calls this every poll)."""
        held = read_lock(self.tracking_uri, self.model)
        if held is None or held.token != self.token:
            raise LockHeld(f"model {self.model!r}: the lock was broken or taken over by "
                           f"{held.describe() if held else 'nobody'}; stopping")
        self._write(self._clock())

    def release(self) -> None:
        held = read_lock(self.tracking_uri, self.model)
        if held is not None and held.token == self.token:
            registry.delete_registered_model_tag(self.tracking_uri, self.model, LOCK_TAG)

    def _write(self, heartbeat: float) -> None:
        record = LockRecord(self.token, socket.gethostname(), os.getpid(), self._acquired or heartbeat,
                            heartbeat, self.command)
        registry.set_registered_model_tag(self.tracking_uri, self.model, LOCK_TAG, json.dumps(asdict(record)))

    def __enter__(self) -> RolloutLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
