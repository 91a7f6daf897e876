"""Performance harness: one module per benchmark, each with `main(argv) -> int` (never part of `make test`).

`python -m benchmarks` runs every module's main(); `python -m benchmarks.<name>` runs one. Each
writes its figures into its own section of docs/BENCHMARKS.md with `write_section`.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

BENCHMARKS_DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
_HEADER = "# Benchmarks\n\nFigures written by `python -m benchmarks` (one section per benchmark module).\n"


def machine_description() -> str:
    """nproc, RAM, Python version and date: the context every figure needs."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs (nproc), {ram:.1f} GiB RAM, Python {platform.python_version()} "
            f"({platform.machine()}), {datetime.date.today().isoformat()}")


def write_section(title: str, body: str, path: Path = BENCHMARKS_DOC) -> Path:
    """Replace (or append) the `## <title>` section of the benchmarks document, keeping the others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.is_file() else _HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    return path


def publish(title: str, text: str, write: bool) -> None:
    """Print the figures and, unless told not to (`--no-write`), write them as the `title` section."""
    print(text)
    if write:
        print(f"written to {write_section(title, text)}")
