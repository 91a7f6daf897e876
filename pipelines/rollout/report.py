"""The rollout timeline (steps, weights, decisions, reasons) as markdown and as a plot.

Built from the events the controller recorded in MLflow, so any machine can draw it afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.pipelines.rollout.state import Position, RolloutState

_COLOURS = {"start": "tab:gray", "advance": "tab:green", "promote": "tab:blue", "rollback": "tab:red",
            "pause": "tab:orange", "reassert": "tab:purple"}


@dataclass(frozen=True)
class TimelineRow:
    at_s: float
    kind: str
    traffic: str
    weight: int
    shadow: bool
    outcome: str
    reason: str


def timeline(state: RolloutState, events: list[dict[str, Any]]) -> list[TimelineRow]:
    rows = []
    for event in events:
        target = Position(**event["target"])
        traffic = f"{target.label()}, challenger {'shadow' if target.shadow else f'{target.weight}%'}"
        rows.append(TimelineRow(float(event["time"]) - state.started, str(event["kind"]), traffic, target.weight,
                                target.shadow, str(event.get("outcome", "")), str(event.get("reason", ""))))
    return rows


def headline(state: RolloutState) -> str:
    """One sentence: where the rollout is and why."""
    subject = f"{state.model} version {state.version} (champion was {state.champion_version})"
    if state.position.phase == "production":
        return f"{subject} was promoted to production: {state.reason}"
    if state.position.phase == "rolled_back":
        return f"{subject} was rolled back; the champion keeps all traffic. Why: {state.reason}"
    status = "is paused" if state.status == "paused" else "is in progress"
    return f"{subject} {status} at {state.position.label()}: {state.reason}"


def timeline_markdown(state: RolloutState, events: list[dict[str, Any]], plot: str | None = None) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.started))
    lines = [f"# Rollout of {state.model} version {state.version}", "", headline(state), "",
             f"Rollout `{state.rollout_id}`, started {started}; steps {list(state.steps)}%, approval before "
             f"{list(state.approval_before) or 'none'}{', and promotion' if state.approve_promotion else ''}.", "",
             "| t (s) | event | traffic after | outcome | reason |", "|---:|---|---|---|---|"]
    for row in timeline(state, events):
        reason = row.reason.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row.at_s:.1f} | {row.kind} | {row.traffic} | {row.outcome} | {reason} |")
    if state.last and not state.terminal:
        lines += ["", f"Last look: {state.last.get('outcome')}: {state.last.get('reason')}"]
    if plot:
        lines += ["", f"![rollout timeline]({plot})"]
    return "\n".join(lines) + "\n"


def timeline_plot(state: RolloutState, events: list[dict[str, Any]], path: Path) -> Path:
    """Challenger weight over time as a step line, one marker per decision, the end annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = timeline(state, events)
    end = max([r.at_s for r in rows] + [state.updated - state.started, 1.0])
    xs = [r.at_s for r in rows] + [end]
    ys = [r.weight for r in rows] + [rows[-1].weight if rows else 0]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.step(xs, ys, where="post", color="black", linewidth=1.5, label="challenger weight")
    for row, nxt in zip(rows, xs[1:], strict=False):
        if row.shadow:
            ax.axvspan(row.at_s, nxt, color="tab:purple", alpha=0.12, label="shadow (mirrored, 0% served)")
    for row in rows:
        ax.scatter(row.at_s, row.weight, color=_COLOURS.get(row.kind, "black"), zorder=3, s=40, label=row.kind)
    for event, row in zip(events, rows, strict=True):
        if row.kind == "rollback":
            ax.annotate(_why(event), (row.at_s, row.weight), xytext=(-10, 40), textcoords="offset points",
                        ha="right", fontsize=7, color="tab:red", arrowprops={"arrowstyle": "->", "color": "tab:red"})
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("challenger traffic (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(_wrap(headline(state), 110), fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(state: RolloutState, events: list[dict[str, Any]], base_dir: Path) -> tuple[Path, Path]:
    """reports/rollout/<model>-v<version>.md and plots/rollout/<model>-v<version>.png."""
    stem = f"{state.model}-v{state.version}"
    plot = timeline_plot(state, events, base_dir / "plots" / "rollout" / f"{stem}.png")
    markdown = base_dir / "reports" / "rollout" / f"{stem}.md"
    markdown.parent.mkdir(parents=True, exist_ok=True)
    relative = Path("..", "..", "plots", "rollout", plot.name).as_posix()
    markdown.write_text(timeline_markdown(state, events, relative), encoding="utf-8")
    return markdown, plot


def _why(event: dict[str, Any]) -> str:
    """`accuracy delta -0.39 < threshold -0.05` from the recorded rollback reason."""
    reason = event.get("rollback_reason") or {}
    value, threshold = reason.get("value"), reason.get("threshold")
    if isinstance(value, (int, float)) and isinstance(threshold, (int, float)):
        return f"rolled back: {reason.get('metric')} {value:+.3f} vs threshold {threshold:+.3f}"
    return _wrap(str(reason.get("message") or event.get("reason", "rolled back")), 50)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line][:4])
