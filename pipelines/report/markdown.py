"""report.md: the verdict for a pull-request comment and the job summary.

Headline, one row per gate, the failing checks first, the metric deltas against production with
their CIs, the models compared and how to reproduce locally. Deterministic for the same results (no
clock), so its sha256 identifies what an approver read. Bounded below GitHub's comment limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlgate.gates.result import Check, GateResult, Status
from mlgate.pipelines.report.identity import baseline_name, judged_summary
from mlgate.pipelines.report.reasons import reasons_markdown

if TYPE_CHECKING:
    from mlgate.pipelines.report.decision import Verdict

# The sticky PR comment is found by this marker (ci.yml); it is invisible when rendered.
REPORT_MARKER = "<!-- mlgate-report -->"
MAX_REPORT_CHARS = 60_000  # GitHub rejects comments over 65,536 characters; keep a margin
MAX_LISTED_CHECKS = 20
MAX_MESSAGE_CHARS = 400
ICONS = {Status.PASS: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.ERROR: "⛔", Status.SKIP: "⏭️"}
_LISTED_ORDER = (Status.ERROR, Status.FAIL, Status.WARN)
# What each quality plot shows, by its artifact name (the gate writes only its task's plots): the captions
# in report.html and the list in report.md. A plot not named here is shown under its artifact name.
PLOT_CAPTIONS = {
    "roc_curve": ("ROC curve", "candidate and production model on the holdout (micro-average for multiclass); "
                  "a model that gives labels only is its one operating point"),
    "pr_curve": ("Precision-recall curve", "the same models on the holdout; dotted: the positive share"),
    "confusion_matrix": ("Confusion matrix", "holdout rows by actual class (row) and predicted class (column) "
                         "per model: the count and its share of the row"),
    "residuals": ("Residuals", "predicted vs actual, residual (actual - predicted) vs predicted, and the "
                  "residual histogram, per model"),
    "forest_plot": ("Metric deltas", "candidate - production per metric with its CI, right = better; "
                    "red tick: the allowed regression"),
    "slice_plot": ("Slices", "each slice's delta vs production with its CI, coloured by its Holm-corrected verdict"),
}


@dataclass(frozen=True)
class MetricDelta:
    """A candidate-vs-production difference a gate decided on, with its confidence interval."""

    gate: str
    check: str
    metric: str
    candidate: float | None
    baseline: float | None
    delta: float
    ci_low: float | None
    ci_high: float | None
    level: float | None
    status: Status


def metric_deltas(results: dict[str, GateResult]) -> list[MetricDelta]:
    """Every check whose details carry a delta (and, when computed, a CI), in gate order."""
    found = []
    for gate, result in results.items():
        for check in result.checks:
            delta = _number(check.details.get("delta", check.details.get("difference")))
            if delta is not None:
                found.append(_metric_delta(gate, check, delta))
    return found


def _metric_delta(gate: str, check: Check, delta: float) -> MetricDelta:
    d = check.details
    low, high = _interval(d)
    return MetricDelta(gate, check.name, str(d.get("metric") or check.name),
                       _number(d.get("candidate", d.get("candidate_value"))),
                       _number(d.get("baseline", d.get("baseline_value"))),
                       delta, low, high, _number(d.get("level", d.get("ci_level"))), check.status)


def _interval(details: dict[str, Any]) -> tuple[float | None, float | None]:
    ci = details.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return _number(ci[0]), _number(ci[1])
    for low_key, high_key in (("ci_low", "ci_high"), ("ci_lower", "ci_upper"), ("low", "high")):
        if low_key in details or high_key in details:
            return _number(details.get(low_key)), _number(details.get(high_key))
    return None, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def listed_checks(results: dict[str, GateResult]) -> list[tuple[str, Check]]:
    """ERROR, then FAIL, then WARN checks of every gate: what a reader must look at first."""
    return [(gate, check) for status in _LISTED_ORDER
            for gate, result in results.items() for check in result.checks if check.status == status]


def check_counts(result: GateResult) -> str:
    """`12 / 1 / 2 / 0` for passed / warn / fail / error (skipped appended when any)."""
    counts = [len(result.by_status(s)) for s in (Status.PASS, Status.WARN, Status.FAIL, Status.ERROR)]
    skipped = len(result.by_status(Status.SKIP))
    return " / ".join(map(str, counts)) + (f" (+{skipped} skipped)" if skipped else "")


def headline(verdict: Verdict) -> str:
    total, blocked = len(verdict.results), len(verdict.blocked)
    if verdict.status.blocks:
        what = f"{blocked} of {total} gates blocked" if blocked else "the verdict could not be decided"
    elif verdict.status == Status.WARN:
        warned = sum(r.status == Status.WARN for r in verdict.results.values())
        what = f"all {total} gates passed, {warned} with warnings"
    else:
        what = f"all {total} gates passed"
    return f"## {ICONS[verdict.status]} mlgate verdict: {verdict.status} — {what}"


def render_markdown(verdict: Verdict, max_chars: int = MAX_REPORT_CHARS) -> str:
    sections = [REPORT_MARKER, headline(verdict), _problems(verdict), _gate_table(verdict),
                _listed_section(verdict.results), _deltas_section(verdict.results), reasons_markdown(verdict.results),
                _models_section(verdict),
                _reproduce_section(verdict)]
    return truncate("\n\n".join(s for s in sections if s) + "\n", max_chars)


def truncate(text: str, max_chars: int) -> str:
    """Cut at a line boundary and say so; the full detail is in report.html and the gate JSON files."""
    if len(text) <= max_chars:
        return text
    note = (f"\n\n_… report truncated at {max_chars:,} characters: every check is in report.html "
            "and reports/gates/*.json (the `mlgate-reports` artifact)._\n")
    cut = text.rfind("\n", 0, max_chars - len(note))
    return text[: cut if cut > 0 else max_chars - len(note)] + note


def _problems(verdict: Verdict) -> str:
    return "\n".join(f"> ⛔ {_inline(p)}" for p in verdict.problems)


def _gate_table(verdict: Verdict) -> str:
    rows = ["| Gate | Status | Checks passed / warn / fail / error | Duration |", "|---|---|---|---|"]
    for name, result in verdict.results.items():
        rows.append(f"| {name} | {ICONS[result.status]} {result.status} | {check_counts(result)} "
                    f"| {result.duration_s:.1f} s |")
    return "\n".join(rows)


def _listed_section(results: dict[str, GateResult]) -> str:
    listed = listed_checks(results)
    if not listed:
        return "### Checks\n\nNo failing or warning checks."
    lines = ["### Failing checks first"]
    lines += [f"- {ICONS[c.status]} **{c.status}** `{gate}` / `{c.name}`: {_inline(c.message)}"
              for gate, c in listed[:MAX_LISTED_CHECKS]]
    if len(listed) > MAX_LISTED_CHECKS:
        lines.append(f"- … {len(listed) - MAX_LISTED_CHECKS} more (see report.html)")
    return "\n".join(lines)


def _deltas_section(results: dict[str, GateResult]) -> str:
    deltas = metric_deltas(results)
    if not deltas:
        return "### Metric deltas vs production\n\nNo comparison with a production model was made."
    rows = ["### Metric deltas vs production", "",
            "| Gate | Check | Candidate | Production | Δ | CI | Status |", "|---|---|---|---|---|---|---|"]
    for d in deltas:
        rows.append(f"| {d.gate} | `{_cell(d.check)}` | {fmt(d.candidate)} | {fmt(d.baseline)} "
                    f"| {fmt(d.delta, signed=True)} | {ci_text(d)} | {ICONS[d.status]} {d.status} |")
    return "\n".join(rows)


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def ci_text(delta: MetricDelta) -> str:
    if delta.ci_low is None and delta.ci_high is None:
        return "—"
    level = f"{delta.level * 100:.0f}% " if delta.level is not None and delta.level < 1 else ""
    return f"{level}[{fmt(delta.ci_low, True)}, {fmt(delta.ci_high, True)}]"


def _models_section(verdict: Verdict) -> str:
    c = verdict.candidate
    digest = f"`{c.digest[:12]}`" if c.digest else "missing"
    run = f" from run `{c.run_id}` (`{c.model_uri}`)" if c.run_id else ""
    dirty = " (uncommitted changes)" if verdict.git_dirty else ""
    lines = ["### Models compared",
             f"- **Candidate**: `{c.name}` in `{c.model_dir}` (digest {digest}){run}; "
             f"git `{verdict.git_sha[:12]}`{dirty}, params md5 `{verdict.params_md5[:12]}`",
             f"- **Judged**: {judged_text(verdict.results)}",
             f"- **Production**: {baseline_text(verdict.baseline, verdict.results)}"]
    return "\n".join(lines)


def judged_text(results: dict[str, GateResult]) -> str:
    """Which model each gate judged (URI and digest) and the baseline version it compared with."""
    rows = judged_summary(results)
    if not rows:
        return "no gate recorded the model it judged"
    parts = []
    for gates, uri, digest, base in rows:
        against = "" if base is None else f" against alias `{base.alias}`: no version" if base.version is None \
            else f" against `{base.name}` {baseline_name(base.version, base.digest)}"
        parts.append(f"{gates} judged `{_cell(uri)}` (digest `{digest[:12]}`){against}")
    return "; ".join(parts)


def baseline_text(baseline: dict[str, Any] | None, results: dict[str, GateResult]) -> str:
    """The production model compared against, or why there was none (a gate's `baseline` check)."""
    if not baseline:
        reasons = [c.message for r in results.values() for c in r.checks if c.name == "baseline" and c.message]
        why = f" ({_inline(reasons[0])})" if reasons else ""
        return f"none{why}; checks relative to production were skipped or errored"
    sha = str((baseline.get("lineage") or {}).get("mlgate.git_sha", ""))[:12]
    parts = [f"`{baseline.get('name', '?')}` version {baseline.get('version')}"]
    if baseline.get("alias"):
        parts.append(f"alias `{baseline['alias']}`")
    if baseline.get("run_id"):
        parts.append(f"run `{baseline['run_id']}`")
    if sha:
        parts.append(f"git `{sha}`")
    if baseline.get("digest"):
        parts.append(f"digest `{str(baseline['digest'])[:12]}`")
    return ", ".join(parts)


def plot_caption(name: str) -> tuple[str, str]:
    """(title, what it shows) of a gate's plot artifact."""
    return PLOT_CAPTIONS.get(name, (name.replace("_", " "), ""))


def plots_text(results: dict[str, GateResult]) -> str:
    """The plots each gate wrote, by title: `quality: ROC curve, Confusion matrix; latency: ...`."""
    listed = [(gate, [plot_caption(name)[0] for name, rel in result.artifacts.items()
                      if str(rel).lower().endswith(".png")]) for gate, result in results.items()]
    return "; ".join(f"{gate}: {', '.join(titles)}" for gate, titles in listed if titles)


def _reproduce_section(verdict: Verdict) -> str:
    rerun = verdict.blocked or list(verdict.results)[:1]
    lines = [("dvc repro", "every stage whose inputs changed, then the verdict")]
    lines += [(f"mlgate gate {name}", f"re-run one gate: reports/gates/{name}.json") for name in rerun]
    lines.append(("mlgate verdict", "re-read the gate results, rewrite these reports"))
    width = max(len(command) for command, _ in lines) + 2
    block = "\n".join(f"{command:<{width}}# {why}" for command, why in lines)
    plots = plots_text(verdict.results)
    return (f"### Reproduce locally\n\n```bash\n{block}\n```\n\n"
            f"Every check and plot{f' ({_inline(plots)})' if plots else ''}: `reports/report.html`.")


def _inline(text: str) -> str:
    """One line, bounded, with `<` escaped so a message can never open an HTML tag in the comment."""
    flat = " ".join(str(text).split()).replace("<", "&lt;")
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 1] + "…"


def _cell(text: str) -> str:
    return _inline(text).replace("|", r"\|")
