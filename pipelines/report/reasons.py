"""The quality gate's `explanations` check as the reports show it: each feature's mean |contribution| for
the candidate and the production model side by side (pipelines/checks/quality/explanations.py).

Absolute values are on each model's own scale (log-odds, probability or value), which can differ between
the two models; the share of each model's total is comparable, and its change is what a reviewer reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlgate.gates.result import GateResult

REASONS_CHECK = "explanations"
MAX_REASON_ROWS = 15
MODELS = (("candidate", "Candidate"), ("baseline", "Production"))


@dataclass(frozen=True)
class ReasonRow:
    feature: str
    values: dict[str, tuple[float, float] | None]  # by model: (mean |contribution|, share of the total)

    @property
    def change(self) -> float | None:
        """Production's share subtracted from the candidate's (None without both)."""
        cand, base = self.values.get("candidate"), self.values.get("baseline")
        return None if cand is None or base is None else cand[1] - base[1]


@dataclass(frozen=True)
class Reasons:
    models: dict[str, dict[str, Any]]  # what each model's entry says: explainer, scale, rows, or problem
    rows: list[ReasonRow]
    omitted: int  # features beyond MAX_REASON_ROWS


def reasons_of(results: dict[str, GateResult]) -> Reasons | None:
    """The side-by-side table from the quality result (None when it has no explanations check)."""
    quality = results.get("quality")
    check = next((c for c in quality.checks if c.name == REASONS_CHECK), None) if quality else None
    if check is None:
        return None
    models = {who: check.details[who] for who, _ in MODELS if isinstance(check.details.get(who), dict)}
    explained = {who: m for who, m in models.items() if isinstance(m.get("mean_abs"), dict)}
    features = list(dict.fromkeys(f for m in explained.values() for f in m["mean_abs"]))
    rows = [ReasonRow(f, {who: (float(m["mean_abs"].get(f, 0.0)), float(m["share"].get(f, 0.0)))
                          for who, m in explained.items()}) for f in features]
    rows.sort(key=lambda r: -max((v[1] for v in r.values.values() if v is not None), default=0.0))
    return Reasons(models, rows[:MAX_REASON_ROWS], max(0, len(rows) - MAX_REASON_ROWS))


def model_note(who: str, entry: dict[str, Any]) -> str:
    """`Candidate: tree_path_dependent on log_odds, 200 holdout rows` or why it was not explained."""
    label = dict(MODELS)[who]
    if "mean_abs" not in entry:
        return f"{label}: not explained ({entry.get('problem', 'no reason given')})"
    extra = ""
    if "permutations" in entry:
        extra = f", {entry['permutations']} permutations x {entry.get('background_rows')} background rows"
    return f"{label}: {entry.get('explainer')} on {entry.get('scale')}, {entry.get('rows')} holdout rows{extra}"


def cell(value: tuple[float, float] | None) -> str:
    return "—" if value is None else f"{value[0]:.4f} ({value[1]:.0%})"


def change_text(row: ReasonRow) -> str:
    change = row.change
    return "—" if change is None else f"{change * 100:+.1f} pp"


def reasons_markdown(results: dict[str, GateResult]) -> str:
    """The report.md section ('' without the check)."""
    found = reasons_of(results)
    if found is None:
        return ""
    lines = ["### Feature reasons: candidate vs production", "",
             "Mean |contribution| per feature (its share of the model's total); information only, never a "
             "failing check.", ""]
    lines += [f"- {_safe(model_note(who, entry))}" for who, entry in found.models.items()]
    if found.rows:
        lines += ["", "| Feature | Candidate | Production | Share change |", "|---|---|---|---|"]
        lines += [f"| `{_safe(r.feature)}` | {cell(r.values.get('candidate'))} | {cell(r.values.get('baseline'))} "
                  f"| {change_text(r)} |" for r in found.rows]
    if found.omitted:
        lines.append(f"\n_… {found.omitted} more features in reports/gates/quality.json._")
    return "\n".join(lines)


def _safe(text: str) -> str:
    """One bounded line that cannot open an HTML tag or break the table (names come from the data)."""
    flat = " ".join(str(text).split()).replace("<", "&lt;").replace("|", r"\|").replace("`", "'")
    return flat if len(flat) <= 300 else flat[:299] + "…"
