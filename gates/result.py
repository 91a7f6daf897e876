"""One result type for every decision, offline or online (DESIGN §3), and the exit-code contract."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any


class Status(StrEnum):
    """Outcome of a check or gate. ERROR means "could not decide" and blocks like FAIL."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def blocks(self) -> bool:
        """True when this status must stop a promotion."""
        return self in (Status.FAIL, Status.ERROR)


# SKIP ranks below PASS: a skipped check never hides a pass, fail or error next to it.
_SEVERITY = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3, Status.ERROR: 4}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; an empty collection could not be decided, so it is ERROR."""
    statuses = list(statuses)
    if not statuses:
        return Status.ERROR
    return max(statuses, key=lambda s: s.severity)


class ExitCode(IntEnum):
    """Process exit codes, the one place they are defined (DESIGN §3)."""

    OK = 0
    GATE_FAILED = 1
    USAGE = 2
    INTERNAL = 3
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report 128 + 2


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error's message, at most `limit` characters: what a check or a
    log line shows of an exception (a traceback or a 40-line MLflow message never floods a report)."""
    text = str(getattr(error, "message", None) or error).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if not line:
        line = type(error).__name__ if isinstance(error, BaseException) else "unknown error"
    return line[:limit]


def exit_code_for(status: Status) -> ExitCode:
    """Exit code of a command whose outcome is `status`: warnings pass, FAIL and ERROR do not."""
    return ExitCode.GATE_FAILED if status.blocks else ExitCode.OK


@dataclass(frozen=True)
class Check:
    """One rule applied to one observed value, with the reason in words."""

    name: str
    status: Status
    observed: Any
    expected: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "observed": _jsonable(self.observed),
            "expected": self.expected,
            "message": self.message,
            "details": _jsonable(self.details),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        return cls(
            name=data["name"],
            status=Status(data["status"]),
            observed=_restore(data.get("observed")),
            expected=data.get("expected", ""),
            message=data.get("message", ""),
            details=_restore(data.get("details") or {}),
        )


@dataclass(frozen=True)
class JudgedModel:
    """The candidate a gate judged: where it was read from and the content digest of its files."""

    uri: str
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "digest": self.digest}


@dataclass(frozen=True)
class JudgedBaseline:
    """The baseline a gate compared with: the version behind `alias` (none: `version` is None) and the
    content digest of that version's files."""

    alias: str
    name: str | None = None
    version: str | None = None
    uri: str | None = None
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "name": self.name, "version": self.version, "uri": self.uri,
                "digest": self.digest}


@dataclass(frozen=True)
class Subject:
    """What a gate judged (DESIGN §5). `baseline` is None for a gate that compares with no baseline."""

    candidate: JudgedModel
    baseline: JudgedBaseline | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate.to_dict(),
                "baseline": self.baseline.to_dict() if self.baseline else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subject:
        base = data.get("baseline")
        baseline = None if base is None else JudgedBaseline(
            str(base["alias"]), *(None if base.get(k) is None else str(base[k])
                                  for k in ("name", "version", "uri", "digest")))
        candidate = data["candidate"]
        return cls(JudgedModel(str(candidate["uri"]), str(candidate["digest"])), baseline)


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict: its status is the worst of its checks. `subject` names the models it judged
    (None for a gate that judges no model, or a result written before mlgate recorded it)."""

    gate: str
    status: Status
    checks: tuple[Check, ...]
    duration_s: float
    artifacts: dict[str, str] = field(default_factory=dict)
    subject: Subject | None = None

    @classmethod
    def from_checks(
        cls,
        gate: str,
        checks: Iterable[Check],
        duration_s: float,
        artifacts: dict[str, str] | None = None,
    ) -> GateResult:
        """Build a result whose status is derived from its checks (no checks is ERROR)."""
        checks = tuple(checks)
        return cls(gate, worst(c.status for c in checks), checks, duration_s, dict(artifacts or {}))

    @classmethod
    def error(cls, gate: str, message: str, duration_s: float = 0.0, name: str = "gate") -> GateResult:
        """A gate that could not decide at all, with the reason."""
        check = Check(name, Status.ERROR, None, "the gate can run", message)
        return cls(gate, Status.ERROR, (check,), duration_s, {})

    def by_status(self, *statuses: Status) -> list[Check]:
        return [c for c in self.checks if c.status in statuses]

    def to_dict(self) -> dict[str, Any]:
        data = {
            "gate": self.gate,
            "status": str(self.status),
            "duration_s": self.duration_s,
            "artifacts": dict(self.artifacts),
            "checks": [c.to_dict() for c in self.checks],
        }
        return data | ({"subject": self.subject.to_dict()} if self.subject else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        subject = data.get("subject")  # absent in results written before it was recorded
        return cls(
            gate=data["gate"],
            status=Status(data["status"]),
            checks=tuple(Check.from_dict(c) for c in data.get("checks", [])),
            duration_s=float(data.get("duration_s", 0.0)),
            artifacts=dict(data.get("artifacts") or {}),
            subject=Subject.from_dict(subject) if subject else None,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> GateResult:
        return cls.from_dict(json.loads(text))

    def write(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> GateResult:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


# Non-finite floats are not JSON; they are encoded as tagged strings and restored on read.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_TAG = "__float__:"


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return _TAG + ("NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity"))
    if isinstance(value, StrEnum):
        return str(value)
    return str(value)


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    if isinstance(value, str) and value.startswith(_TAG):
        return _NONFINITE.get(value[len(_TAG):], value)
    return value
