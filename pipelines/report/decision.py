"""What a verdict is: the decision over all gates and the candidate it is about (no I/O).

The renderers (markdown.py, html.py) and verdict.py (which decides and writes) all import these
types from here, so the report modules never import each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlgate.gates.result import GateResult, Status


@dataclass(frozen=True)
class Candidate:
    """The model the verdict is about (train.model_dir), identified by the content digest of its files;
    `run_id` and `model_uri` name its training run when it came from one."""

    name: str
    model_dir: str
    digest: str | None
    run_id: str | None = None
    model_uri: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The decision over all gates, with what it was decided on."""

    status: Status
    results: dict[str, GateResult]
    candidate: Candidate
    params_md5: str
    gated_params_md5: str
    git_sha: str
    git_dirty: bool
    baseline: dict[str, Any] | None
    problems: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def blocked(self) -> list[str]:
        return [name for name, result in self.results.items() if result.status.blocks]

    def to_dict(self, report_digest: str) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "created": self.created,
            "model": {"name": self.candidate.name, "dir": self.candidate.model_dir,
                      "digest": self.candidate.digest, "run_id": self.candidate.run_id,
                      "model_uri": self.candidate.model_uri},
            "params_md5": self.params_md5,
            "gated_params_md5": self.gated_params_md5,
            "git_sha": self.git_sha,
            "git_dirty": self.git_dirty,
            "report_digest": report_digest,
            "baseline": self.baseline,
            "problems": list(self.problems),
            "gates": {name: gate_summary(result) for name, result in self.results.items()},
        }


def gate_summary(result: GateResult) -> dict[str, Any]:
    counts = {str(s): len(result.by_status(s)) for s in Status}
    summary = {"status": str(result.status), "duration_s": round(result.duration_s, 3), "checks": counts}
    return summary | ({"subject": result.subject.to_dict()} if result.subject else {})
