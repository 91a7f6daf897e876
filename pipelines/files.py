"""Writing outputs: atomically (a reader never sees half a file), JSON without NaN, project-relative paths."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to a sibling temporary file, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def replace_directory(source: Path, target: Path) -> Path:
    """Move the directory `source` to `target`, replacing what was there (on the same filesystem, the
    old directory stays in place until the new one is complete)."""
    source, target = Path(source), Path(target)
    source.chmod(0o755)  # mkdtemp makes 0700 directories; a serving container runs as another user
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.replace(old)
    source.replace(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def write_json(path: Path, payload: Any) -> Path:
    """Indented JSON, written atomically; non-finite numbers become null (JSON has no NaN)."""
    return write_text_atomic(path, json.dumps(finite(payload), indent=2, default=str) + "\n")


def finite(value: Any) -> Any:
    """`value` with numpy scalars made plain and NaN / infinity made None, in nested dicts and lists."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    elif getattr(value, "ndim", 0) >= 1 and hasattr(value, "tolist"):  # a numpy array
        return finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def relative(path: Path, base: Path) -> str:
    """`path` relative to `base` (posix), or the path as given when it lies outside it."""
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return str(path)
