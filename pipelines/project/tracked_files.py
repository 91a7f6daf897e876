"""Writing files into a team's repository without ever overwriting one they changed.

`mlgate init` records the sha256 of every file it writes in .mlgate/init.json (committed with the
files). On a re-run, per file: absent -> written; already what init would write -> unchanged; still
what init wrote last time -> updated; anything else is the team's edit -> kept, with a unified diff of
what init would write (unless `force`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from mlgate.pipelines.files import write_text_atomic

RECORD = Path(".mlgate/init.json")
MAX_DIFF_LINES = 80


class Outcome(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    KEPT = "kept"
    OVERWRITTEN = "overwritten"  # kept would have applied, and --force overwrote it


@dataclass(frozen=True)
class PlannedFile:
    """A file init wants in the repository: path relative to the root (posix), and its full text."""

    path: str
    text: str


@dataclass(frozen=True)
class FileOutcome:
    path: str
    outcome: Outcome
    reason: str = ""
    diff: tuple[str, ...] = field(default_factory=tuple)

    def line(self) -> str:
        return f"{self.outcome.value:<9} {self.path}" + (f" ({self.reason})" if self.reason else "")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_record(root: Path) -> dict[str, str]:
    """Recorded path -> sha256; a missing or unreadable record means init never wrote anything here."""
    try:
        files = json.loads((root / RECORD).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def decide(root: Path, planned: PlannedFile, recorded: dict[str, str], force: bool) -> FileOutcome:
    """What to do with one planned file, from what is on disk and what init wrote there last time."""
    path = root / planned.path
    if not path.exists():
        return FileOutcome(planned.path, Outcome.WRITTEN)
    current = path.read_bytes()
    if current == planned.text.encode("utf-8"):
        return FileOutcome(planned.path, Outcome.UNCHANGED)
    if recorded.get(planned.path) == hashlib.sha256(current).hexdigest():
        return FileOutcome(planned.path, Outcome.UPDATED)
    reason = "changed by you" if planned.path in recorded else "not written by mlgate init"
    if force:
        return FileOutcome(planned.path, Outcome.OVERWRITTEN, f"{reason}; --force")
    return FileOutcome(planned.path, Outcome.KEPT, reason, unified_diff(planned.path, current, planned.text))


def unified_diff(name: str, current: bytes, proposed: str) -> tuple[str, ...]:
    """The change from the file on disk to init's version, bounded to MAX_DIFF_LINES lines."""
    old = current.decode("utf-8", errors="replace").splitlines()
    lines = list(difflib.unified_diff(old, proposed.splitlines(), f"{name} (yours)", f"{name} (mlgate init)",
                                      lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more diff lines"]
    return tuple(lines)


def apply(root: Path, planned: list[PlannedFile], force: bool = False) -> list[FileOutcome]:
    """Decide every file first, then write those that may be written, then the record."""
    recorded = read_record(root)
    outcomes = [decide(root, p, recorded, force) for p in planned]
    for plan, outcome in zip(planned, outcomes, strict=True):
        if outcome.outcome in (Outcome.WRITTEN, Outcome.UPDATED, Outcome.OVERWRITTEN):
            write_text_atomic(root / plan.path, plan.text)
        if outcome.outcome is not Outcome.KEPT:
            recorded[plan.path] = sha256_text(plan.text)
    write_record(root, recorded)
    return outcomes


def write_record(root: Path, files: dict[str, str]) -> None:
    from mlgate import __version__

    payload = {"written_by": f"mlgate {__version__}", "files": dict(sorted(files.items()))}
    write_text_atomic(root / RECORD, json.dumps(payload, indent=2) + "\n")
