"""All terminal output of mlgate goes through here: results to stdout, problems to stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table

from mlgate.gates.result import GateResult, Status

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.ERROR: "bold red",
          Status.SKIP: "dim"}


def info(message: str) -> None:
    _out.print(message, markup=False)


def warning(message: str) -> None:
    """One line on stderr for something the user chose that deserves a reminder."""
    _err.print(f"mlgate: warning: {message}", markup=False, style="yellow")


def error(message: str) -> None:
    """One line on stderr, prefixed so it stands out in CI logs."""
    _err.print(f"mlgate: error: {message}", markup=False, style="red")


def relay(text: str, *, stderr: bool = False) -> None:
    """Another program's output passed through unchanged (the log of `train.command`)."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text)
    stream.flush()


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(_cell(v) for v in row))
    _out.print(grid)


def _cell(value: object) -> str:
    if isinstance(value, Status):
        return f"[{_STYLE[value]}]{value}[/]"
    return str(value).replace("[", r"\[")


def gate_summary(result: GateResult, limit: int = 10) -> None:
    """The gate's status, then its blocking and warning checks first, bounded to `limit` lines."""
    info(f"gate {result.gate}: {result.status} ({len(result.checks)} checks, {result.duration_s:.1f}s)")
    order = (Status.ERROR, Status.FAIL, Status.WARN)
    shown = [c for s in order for c in result.checks if c.status == s][:limit]
    for check in shown:
        info(f"  {check.status:<5} {check.name}: {check.message}")
    hidden = sum(1 for c in result.checks if c.status in order) - len(shown)
    if hidden > 0:
        info(f"  ... {hidden} more; see the JSON report")


def is_tty() -> bool:
    return sys.stdout.isatty()
