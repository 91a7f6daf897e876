"""The verdict's identity rule (DESIGN §5): every gate judged one model, and it is the candidate now.

Each result of a gate that judges a model records the candidate (URI and content digest) and the
baseline version it compared with (`GateResult.subject`). The verdict is ERROR when those results judged
different candidates, compared with different versions behind one alias, or judged a model whose digest
is not the candidate directory's now — whatever each gate's own status. No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from mlgate.gates.result import GateResult, JudgedBaseline, Status

_RERUN = "re-run the gates on the candidate (`dvc repro`)"


def identity_problems(results: dict[str, GateResult], model_gates: Iterable[str], candidate_dir: str,
                      candidate_digest: str | None) -> list[str]:
    """Why the results are not about one model that is the candidate in `candidate_dir` now ([] when they are).

    A gate of `model_gates` whose decided result names no candidate is a problem; an ERROR result
    without one (the gate could not run) already blocks on its own."""
    problems = [f"{gate}: the result does not name the model it judged (written by an older mlgate?); "
                f"re-run `mlgate gate {gate}`" for gate in model_gates
                if gate in results and results[gate].subject is None and results[gate].status != Status.ERROR]
    judged = _by_digest(results)
    if len(judged) > 1:
        problems.append("the gates judged different models: " + "; ".join(
            f"{_names(gates)} judged `{uri}` (digest {digest[:12]})" for digest, (uri, gates) in judged.items())
            + f"; the candidate `{candidate_dir}` is digest {str(candidate_digest)[:12]}; {_RERUN}")
    elif judged and candidate_digest is not None and candidate_digest not in judged:
        (digest, (uri, gates)), = judged.items()
        what = ("the model changed since the gates judged it" if uri == candidate_dir
                else "the gates judged another model than the candidate")
        problems.append(f"{what}: {_names(gates)} judged `{uri}` (digest {digest[:12]}), but the candidate "
                        f"`{candidate_dir}` is now digest {candidate_digest[:12]}; {_RERUN}")
    return problems + baseline_problems(results)


def baseline_problems(results: dict[str, GateResult]) -> list[str]:
    """Gates that compared with different versions (or files) behind the same alias."""
    by_alias: dict[str, dict[tuple[str | None, str | None], list[str]]] = defaultdict(lambda: defaultdict(list))
    for gate, result in results.items():
        if result.subject is not None and result.subject.baseline is not None:
            base = result.subject.baseline
            by_alias[base.alias][(base.version, base.digest)].append(gate)
    return [f"the gates compared with different baselines behind alias '{alias}': " + "; ".join(
        f"{_names(gates)} with {baseline_name(version, digest)}" for (version, digest), gates in seen.items())
        + f"; {_RERUN}" for alias, seen in by_alias.items() if len(seen) > 1]


def baseline_name(version: str | None, digest: str | None) -> str:
    if version is None:
        return "no version"
    return f"version {version}" + (f" (digest {digest[:12]})" if digest else " (digest unknown)")


def judged_summary(results: dict[str, GateResult]) -> list[tuple[str, str, str, JudgedBaseline | None]]:
    """(gates, candidate URI, digest, baseline) per distinct model judged, for the reports."""
    rows = []
    for digest, (uri, gates) in _by_digest(results).items():
        bases = [results[g].subject.baseline for g in gates if results[g].subject.baseline is not None]
        base = next((b for b in bases if b.version is not None), bases[0] if bases else None)
        rows.append((_names(gates), uri, digest, base))
    return rows


def _by_digest(results: dict[str, GateResult]) -> dict[str, tuple[str, list[str]]]:
    """Candidate digest -> (the URI the first gate named, the gates that judged it), in gate order."""
    judged: dict[str, tuple[str, list[str]]] = {}
    for gate, result in results.items():
        if result.subject is not None:
            candidate = result.subject.candidate
            judged.setdefault(candidate.digest, (candidate.uri, []))[1].append(gate)
    return judged


def _names(gates: list[str]) -> str:
    return ", ".join(f"`{g}`" for g in gates)
