"""Stage `verdict`: read every gate result, decide, write reports/verdict.json, report.md, report.html.

The verdict is the worst gate status. A gate whose result file is missing or unreadable is ERROR,
never PASS, and so is a set of results that did not judge one model, the candidate as it is now
(report/identity.py, DESIGN §5). The files are always written first; the command's exit code follows
(DESIGN §3).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlgate.gates.result import Check, GateResult, Status, worst
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import write_text_atomic
from mlgate.pipelines.lineage import git_state, model_digest
from mlgate.pipelines.params import Params
from mlgate.pipelines.report.decision import Candidate, Verdict
from mlgate.pipelines.report.html import render_html
from mlgate.pipelines.report.identity import identity_problems
from mlgate.pipelines.report.markdown import render_markdown

# The offline gates of dvc.yaml, in pipeline order. Each must have left a result; others found are added.
EXPECTED_GATES: tuple[str, ...] = ("data", "quality", "edge_cases", "latency")
# The gates among them that judge the candidate model: each result must name the model it judged.
MODEL_GATES: tuple[str, ...] = ("quality", "edge_cases", "latency")
VERDICT_FILE, REPORT_MD, REPORT_HTML = "verdict.json", "report.md", "report.html"
# Sections that cannot change a verdict: editing them does not make a verdict stale.
NOT_GATED_SECTIONS = ("rollout", "approvals")


def read_gate_result(base_dir: Path, path: Path, name: str) -> GateResult:
    """The gate's result, or an ERROR result naming the file when it is missing, unreadable or inconsistent."""
    if not (base_dir / path).is_file():
        return GateResult.error(name, f"{path}: no result file; the gate did not run "
                                      f"(run `mlgate gate {name}` or `dvc repro`)", name="result_file")
    try:
        result = GateResult.read(base_dir / path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return GateResult.error(name, f"{path}: not a gate result ({type(exc).__name__}: {exc})", name="result_file")
    if result.gate != name:
        return GateResult.error(name, f"{path}: holds the result of gate '{result.gate}', not '{name}'",
                                name="result_file")
    return _consistent(result, path)


def _consistent(result: GateResult, path: Path) -> GateResult:
    """A recorded status is never milder than the gate's own checks; no checks at all is undecided."""
    if not result.checks:
        return GateResult.error(result.gate, f"{path}: the gate recorded no checks", result.duration_s,
                                name="result_file")
    status = worst([result.status, *(c.status for c in result.checks)])
    if status == result.status:
        return result
    note = Check("result_file", status, str(result.status), f"gate status = worst check ({status})",
                 f"{path}: recorded status {result.status} is milder than its checks; using {status}")
    return dataclasses.replace(result, status=status, checks=(*result.checks, note))


def collect_results(base_dir: Path, expected: tuple[str, ...] = EXPECTED_GATES) -> dict[str, GateResult]:
    """Every expected gate (ERROR when absent), then any other result file in reports/gates, by name.

    Paths are relative to `base_dir` so the report reads (and hashes) the same in every checkout.
    """
    gate_dir = Path("reports") / "gates"
    names = list(expected)
    if (base_dir / gate_dir).is_dir():
        names += sorted(p.stem for p in (base_dir / gate_dir).glob("*.json") if p.stem not in expected)
    return {name: read_gate_result(base_dir, gate_dir / f"{name}.json", name) for name in names}


def find_baseline(results: dict[str, GateResult]) -> dict[str, Any] | None:
    """The production model a gate compared against: details of the first decided `baseline` check,
    with the digest of its files when the gate recorded it."""
    for name, result in results.items():
        for check in result.checks:
            if check.name == "baseline" and check.details.get("version") is not None:
                judged = result.subject.baseline if result.subject else None
                digest = {"digest": judged.digest} if judged and judged.version == str(check.details["version"]) else {}
                return {"gate": name, **check.details, **digest}
    return None


def decide(results: dict[str, GateResult], problems: tuple[str, ...] = ()) -> Status:
    """Worst gate status; any verdict-level problem, or nothing decided at all, is ERROR."""
    if problems:
        return Status.ERROR
    status = worst(r.status for r in results.values())
    return Status.ERROR if status == Status.SKIP else status


def gated_params_md5(params: Params) -> str:
    """md5 of the sections that can change a verdict (not rollout or approvals)."""
    dumped = params.model_dump(mode="json", exclude=set(NOT_GATED_SECTIONS))
    return hashlib.md5(json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def find_candidate(params: Params, base_dir: Path) -> tuple[Candidate, tuple[str, ...]]:
    """The candidate model directory's digest, and its training run when the model came from it (its
    MLmodel names that run, or the run logged exactly these files: train.command's model); problems when
    the model is missing."""
    model_dir = base_dir / params.train.model_dir
    run = _read_json(base_dir / "reports" / "train_run.json") or {}
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        problem = f"{params.train.model_dir}: candidate model directory not found (run `mlgate train`)"
        return Candidate(params.model.name, params.train.model_dir, None), (problem,)
    digest = model_digest(model_dir)
    if run.get("run_id") is None or (_mlmodel_run_id(model_dir) != run["run_id"] and run.get("model_digest") != digest):
        run = {}  # an own model, or one that replaced the trained one: no training run to name
    return Candidate(params.model.name, params.train.model_dir, digest, run.get("run_id"), run.get("model_uri")), ()


def _mlmodel_run_id(model_dir: Path) -> str | None:
    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return meta.get("run_id") if isinstance(meta, dict) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_verdict(params: Params, base_dir: Path) -> Verdict:
    results = collect_results(base_dir)
    candidate, problems = find_candidate(params, base_dir)
    problems += tuple(identity_problems(results, MODEL_GATES, candidate.model_dir, candidate.digest))
    sha, dirty = git_state(base_dir)
    return Verdict(decide(results, problems), results, candidate, params.digest(), gated_params_md5(params),
                   sha, dirty, find_baseline(results), problems)


@dataclass(frozen=True)
class VerdictFiles:
    verdict: Path
    report_md: Path
    report_html: Path
    report_digest: str


def write_reports(verdict: Verdict, base_dir: Path) -> VerdictFiles:
    """report.md first (its sha256 goes into verdict.json), then report.html, then verdict.json."""
    out = base_dir / "reports"
    markdown = render_markdown(verdict)
    md_path = _write_text(out / REPORT_MD, markdown)
    digest = file_sha256(md_path)
    html_path = _write_text(out / REPORT_HTML, render_html(verdict, base_dir, digest))
    payload = json.dumps(verdict.to_dict(digest), indent=2, allow_nan=False) + "\n"
    return VerdictFiles(_write_text(out / VERDICT_FILE, payload), md_path, html_path, digest)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write_text(path: Path, text: str) -> Path:
    return write_text_atomic(path, text)


@dataclass(frozen=True)
class VerdictRecord:
    """What other commands need from reports/verdict.json."""

    status: Status
    model_digest: str | None
    gated_params_md5: str | None
    report_digest: str | None
    blocked: list[str]
    raw: dict[str, Any]


def read_verdict(path: Path) -> VerdictRecord:
    """reports/verdict.json as written by `mlgate verdict`; a malformed file is a UsageError naming it."""
    data = _read_json(path)
    if data is None:
        raise UsageError(f"{path}: not a readable verdict JSON file (re-run `mlgate verdict`)")
    try:
        status = Status(data["status"])
        gates = data.get("gates") or {}
        blocked = [n for n, g in gates.items() if Status(g.get("status", "ERROR")).blocks]
        model = data.get("model") or {}
    except (KeyError, ValueError, AttributeError, TypeError) as exc:
        raise UsageError(f"{path}: malformed verdict ({type(exc).__name__}: {exc}); re-run `mlgate verdict`") from None
    return VerdictRecord(status, model.get("digest"), data.get("gated_params_md5"), data.get("report_digest"),
                         blocked, data)
