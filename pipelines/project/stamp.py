"""The version stamp dvc.yaml's first stage writes: which mlgate (version and code) runs the pipeline.

Every other stage depends on the stamp file instead of mlgate's source files, which live in the
virtualenv, not in the team's repository. The file changes exactly when the installed package
does (an upgrade, or an edit of an editable install), and then DVC re-runs the stages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import mlgate
from mlgate.pipelines.files import write_text_atomic

# The import package and its top-level subpackages. An editable install maps each to its own
# folder; a wheel puts them all under mlgate/. Files are named by package path either way.
PACKAGES = ("mlgate", "mlgate.gates", "mlgate.pipelines", "mlgate.serving")
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def package_files() -> dict[str, Path]:
    """Every .py and package-data file of the installed mlgate, by its path inside the package."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            prefix = package.replace(".", "/")
            for path in _walk(Path(location)):
                files.setdefault(f"{prefix}/{path.relative_to(location).as_posix()}", path)
    return files


def _walk(root: Path) -> list[Path]:
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        found += [Path(directory) / n for n in names if not n.startswith(".") and not n.endswith(_SKIPPED_SUFFIXES)]
    return found


def source_digest(files: dict[str, Path]) -> str:
    """sha256 over each file's package path and content digest, in sorted path order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name].read_bytes()).digest())
    return digest.hexdigest()


def stamp_text() -> str:
    return f"mlgate {mlgate.__version__}\nsource {source_digest(package_files())}\n"


def write_stamp(path: Path) -> tuple[str, bool]:
    """Write the stamp to `path` unless it already holds it (an unchanged file keeps its mtime).
    Returns the stamp and whether the file was written."""
    text = stamp_text()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return text, False
    write_text_atomic(path, text)
    return text, True
