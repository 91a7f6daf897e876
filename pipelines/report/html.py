"""report.html: one self-contained page (inline CSS, inline base64 PNGs, no scripts) with every check
and every plot the gates produced, for the CI artifact and for reading locally."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.gates.result import GateResult, Status
from mlgate.pipelines.report.markdown import (
    baseline_text,
    check_counts,
    ci_text,
    fmt,
    headline,
    judged_text,
    metric_deltas,
    plot_caption,
)
from mlgate.pipelines.report.reasons import cell, change_text, model_note, reasons_of

if TYPE_CHECKING:
    from mlgate.pipelines.report.decision import Verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 10_000_000
MAX_DETAILS_CHARS = 4_000
COLORS = {Status.PASS: "#1a7f37", Status.WARN: "#9a6700", Status.FAIL: "#cf222e", Status.ERROR: "#82071e",
          Status.SKIP: "#6e7781"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;color:#1f2328}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f6f8fa} code,pre{font-family:ui-monospace,monospace;font-size:.85rem}
pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;margin:.3rem 0}
.status{color:#fff;padding:.05rem .45rem;border-radius:.3rem;font-weight:600;white-space:nowrap}
figure{display:inline-block;margin:.5rem 1rem .5rem 0} figure img{max-width:560px;border:1px solid #d0d7de}
.note{color:#6e7781}
"""


@dataclass(frozen=True)
class Plot:
    """One plot of a gate: an inline data URI, or the reason it could not be shown."""

    name: str
    path: str
    data_uri: str | None
    problem: str | None = None


def gate_plots(result: GateResult, base_dir: Path) -> list[Plot]:
    """Every artifact of the gate that is a .png file, in the order the gate wrote them, read from the
    repository root. The quality gate lists only its task's plots, so none is an empty placeholder."""
    return [load_plot(name, rel, base_dir) for name, rel in result.artifacts.items()
            if str(rel).lower().endswith(".png")]


def load_plot(name: str, rel: str, base_dir: Path) -> Plot:
    root = base_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        return Plot(name, rel, None, "outside the repository; not embedded")
    if not path.is_file():
        return Plot(name, rel, None, "file not found")
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC):
        return Plot(name, rel, None, "not a PNG file")
    if len(data) > MAX_IMAGE_BYTES:
        return Plot(name, rel, None, f"{len(data):,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit")
    return Plot(name, rel, "data:image/png;base64," + base64.b64encode(data).decode("ascii"))


def render_html(verdict: Verdict, base_dir: Path, report_digest: str) -> str:
    title = headline(verdict).removeprefix("## ")
    body = [f"<h1>{_e(title)}</h1>", _summary(verdict, report_digest), _overview(verdict), _deltas(verdict),
            _reasons(verdict)]
    body += [_gate_section(name, result, base_dir) for name, result in verdict.results.items()]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _summary(verdict: Verdict, report_digest: str) -> str:
    c = verdict.candidate
    items = [f"Candidate: <code>{_e(c.name)}</code> in <code>{_e(c.model_dir)}</code>, digest "
             f"<code>{_e(c.digest or 'missing')}</code>" + (f", run <code>{_e(c.run_id)}</code>" if c.run_id else ""),
             f"Judged: {_e(judged_text(verdict.results))}",
             f"Production: {_e(baseline_text(verdict.baseline, verdict.results))}",
             f"git <code>{_e(verdict.git_sha)}</code>{' (uncommitted changes)' if verdict.git_dirty else ''}, "
             f"params md5 <code>{_e(verdict.params_md5)}</code>",
             f"Created {_e(verdict.created)}; report.md sha256 <code>{_e(report_digest)}</code>"]
    items += [f"<strong>{_badge(Status.ERROR)} {_e(p)}</strong>" for p in verdict.problems]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _overview(verdict: Verdict) -> str:
    rows = [[f'<a href="#gate-{_e(n)}">{_e(n)}</a>', _badge(r.status), _e(check_counts(r)), f"{r.duration_s:.1f} s"]
            for n, r in verdict.results.items()]
    return "<h2>Gates</h2>" + _table(["Gate", "Status", "Checks passed / warn / fail / error", "Duration"], rows)


def _deltas(verdict: Verdict) -> str:
    deltas = metric_deltas(verdict.results)
    if not deltas:
        return '<h2>Metric deltas vs production</h2><p class="note">No comparison with a production model was made.</p>'
    rows = [[_e(d.gate), f"<code>{_e(d.check)}</code>", fmt(d.candidate), fmt(d.baseline),
             fmt(d.delta, signed=True), _e(ci_text(d)), _badge(d.status)] for d in deltas]
    return "<h2>Metric deltas vs production</h2>" + _table(
        ["Gate", "Check", "Candidate", "Production", "Δ", "CI", "Status"], rows)


def _reasons(verdict: Verdict) -> str:
    """Mean |contribution| per feature, candidate and production side by side (the quality gate's check)."""
    found = reasons_of(verdict.results)
    if found is None:
        return ""
    notes = "".join(f"<li>{_e(model_note(who, entry))}</li>" for who, entry in found.models.items())
    rows = [[f"<code>{_e(r.feature)}</code>", cell(r.values.get("candidate")), cell(r.values.get("baseline")),
             _e(change_text(r))] for r in found.rows]
    more = f'<p class="note">{found.omitted} more features in reports/gates/quality.json.</p>' if found.omitted else ""
    return ("<h2>Feature reasons: candidate vs production</h2><p class=\"note\">Mean |contribution| per feature "
            "(its share of the model's total); information only, never a failing check.</p>"
            f"<ul>{notes}</ul>" + (_table(["Feature", "Candidate", "Production", "Share change"], rows) if rows else "")
            + more)


def _gate_section(name: str, result: GateResult, base_dir: Path) -> str:
    checks = sorted(result.checks, key=lambda c: -c.status.severity)  # stable: failing first, gate order kept
    rows = [[f"<code>{_e(c.name)}</code>", _badge(c.status), _e(_short(c.observed)), _e(c.expected),
             _e(c.message) + _details(c.details)] for c in checks]
    parts = [f'<h2 id="gate-{_e(name)}">{_e(name)} {_badge(result.status)}</h2>',
             f'<p class="note">{len(result.checks)} checks, {result.duration_s:.1f} s</p>',
             _table(["Check", "Status", "Observed", "Expected", "Message"], rows), _plots(result, base_dir)]
    others = {k: v for k, v in result.artifacts.items() if not str(v).lower().endswith(".png")}
    if others:
        parts.append("<p>Other artifacts: " + ", ".join(f"{_e(k)}: <code>{_e(v)}</code>"
                                                        for k, v in sorted(others.items())) + "</p>")
    return "<section>" + "".join(parts) + "</section>"


def _plots(result: GateResult, base_dir: Path) -> str:
    figures = []
    for plot in gate_plots(result, base_dir):
        title, shows = plot_caption(plot.name)
        caption = (f"<figcaption><strong>{_e(title)}</strong>{f': {_e(shows)}' if shows else ''} "
                   f"(<code>{_e(plot.path)}</code>)</figcaption>")
        if plot.data_uri:
            figures.append(f'<figure><img alt="{_e(title)}" src="{plot.data_uri}">{caption}</figure>')
        else:
            figures.append(f'<p class="note">Plot {_e(title)} (<code>{_e(plot.path)}</code>): '
                           f"{_e(plot.problem or '')}</p>")
    return "".join(figures)


def _details(details: dict[str, Any]) -> str:
    if not details:
        return ""
    text = json.dumps(details, indent=1, default=str)
    if len(text) > MAX_DETAILS_CHARS:
        text = text[:MAX_DETAILS_CHARS] + "\n… (truncated; see the gate's JSON file)"
    return f"<details><summary>details</summary><pre>{_e(text)}</pre></details>"


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = fmt(float(value)) if isinstance(value, float) else str(value)
    return text if len(text) <= 120 else text[:119] + "…"


def _badge(status: Status) -> str:
    return f'<span class="status" style="background:{COLORS[status]}">{status}</span>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
