"""The layout DESIGN §2 and docs/ARCHITECTURE.md promise: one import package, imports pointing one way.

Read from the source files (ast), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"mlgate": "mlgate", "gates": "mlgate.gates", "pipelines": "mlgate.pipelines", "serving": "mlgate.serving"}

# Which unit may import which (besides itself). A unit is a top-level package, a pipelines/ subfolder,
# or the shared modules directly in pipelines/. This is the table of docs/ARCHITECTURE.md.
ALLOWED: dict[str, set[str]] = {
    "gates": set(),
    "serving": {"gates.result", "gates.stats", "gates.schema"},
    "pipelines": {"gates", "serving"},  # the shared modules directly in pipelines/
    "pipelines.deepchecks": {"gates", "pipelines"},
    "pipelines.stages": {"gates", "serving", "pipelines"},
    "pipelines.report": {"gates", "pipelines"},
    "pipelines.checks": {"gates", "serving", "pipelines", "pipelines.deepchecks"},
    "pipelines.registry": {"gates", "pipelines", "pipelines.report"},
    "pipelines.rollout": {"gates", "serving", "pipelines", "pipelines.registry"},
    "pipelines.demo": {"gates", "serving", "pipelines", "pipelines.stages", "pipelines.registry", "pipelines.rollout"},
    "pipelines.project": {"gates", "serving", "pipelines", "pipelines.checks", "pipelines.stages"},
    "pipelines.cli": {"gates", "serving", "pipelines", "pipelines.deepchecks", "pipelines.stages", "pipelines.report",
                      "pipelines.checks", "pipelines.registry", "pipelines.rollout", "pipelines.demo",
                      "pipelines.project"},
    "mlgate": {"pipelines.cli"},
}
# Parallel folders use parallel names on purpose (each gate's folder has its `decide`, each check's its
# `stage`); any other module name appears once in the whole package.
PARALLEL_NAMES = {"__init__", "__main__", "decide", "stage", "outputs", "plots"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _unit(module: str) -> str:
    """mlgate.pipelines.checks.quality.stage -> pipelines.checks; mlgate.pipelines.files -> pipelines."""
    parts = module.split(".")[1:] or ["mlgate"]
    if parts[0] == "pipelines" and len(parts) > 2:
        return f"pipelines.{parts[1]}"
    return parts[0] if parts[0] in ("gates", "serving", "pipelines") else "mlgate"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _allowed(unit: str, target: str) -> bool:
    """May `unit` import module `target` (mlgate.x.y...)?"""
    target_unit = _unit(target)
    if target_unit == unit or target == "mlgate":  # the top package holds only __version__
        return True
    rules = ALLOWED[unit]
    dotted = target.removeprefix("mlgate.")
    return target_unit in rules or any(dotted == r or dotted.startswith(r + ".") for r in rules)


def test_imports_point_one_way() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        unit = _unit(module)
        for line, target in _imports(path):
            if not target.startswith("mlgate.") or target not in modules and target.rsplit(".", 1)[0] not in modules:
                continue
            target_module = target if target in modules else target.rsplit(".", 1)[0]
            if not _allowed(unit, target_module):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {unit} imports {target_module}")
    assert not wrong, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(sorted(set(wrong)))


def test_nothing_imports_a_generic_top_level_package() -> None:
    generic = re.compile(r"^(gates|pipelines|serving)(\.|$)")
    wrong = [f"{path.relative_to(ROOT)}:{line}: import {target}"
             for folder in (*FOLDERS, "tests", "benchmarks") for path in (ROOT / folder).rglob("*.py")
             for line, target in _imports(path) if generic.match(target)]
    assert not wrong, "\n".join(wrong)


def test_every_package_folder_is_listed_in_pyproject_and_nothing_else() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert config["package-dir"] == {"mlgate": "mlgate", "mlgate.gates": "gates", "mlgate.pipelines": "pipelines",
                                     "mlgate.serving": "serving"}
    folders = {module for module, path in _modules().items() if path.name == "__init__.py"}
    assert set(config["packages"]) == folders
    python_dirs = {p.parent for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")}
    assert all((d / "__init__.py").is_file() for d in python_dirs), "a folder of modules without __init__.py"


def test_module_names_are_not_repeated_across_folders() -> None:
    names = Counter(path.stem for path in _modules().values())
    repeated = {name: count for name, count in names.items() if count > 1 and name not in PARALLEL_NAMES}
    assert not repeated


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_the_architecture_doc_names_every_unit(unit: str) -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    shown = {"pipelines": "pipelines/ (shared)", "mlgate": "mlgate/"}.get(unit, unit.replace(".", "/") + "/")
    assert shown in doc, f"docs/ARCHITECTURE.md does not show {shown}"
