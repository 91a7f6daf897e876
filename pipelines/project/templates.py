"""Files `mlgate init` writes into a team's repository, rendered from templates shipped in the package.

A template is plain text with `@@NAME@@` placeholders (GitHub's `${{ }}` and DVC's `${}` pass
through untouched). `render` fills every placeholder and refuses to leave one unfilled.
"""

from __future__ import annotations

import re
from importlib import resources

_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


def template_text(name: str) -> str:
    """The template `name` (a path under templates/, e.g. "workflows/ci.yml")."""
    return resources.files(__package__).joinpath("templates", *name.split("/")).read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """The template with each `@@KEY@@` replaced by values[key.lower()]; KeyError naming any unfilled one."""
    text = template_text(name)
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - {k.upper() for k in values})
    if missing:
        raise KeyError(f"template {name}: no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1).lower()], text)
