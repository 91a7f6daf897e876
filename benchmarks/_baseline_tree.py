"""The model server as it was at another commit, run beside today's in one benchmark (before/after).

`git archive` of that commit's `mlgate/`, `gates/`, `pipelines/` and `serving/` is laid out as the
installed package (`mlgate.serving` ...) in a scratch directory, and a `sitecustomize` on PYTHONPATH
makes a child Python import `mlgate` from there instead of this editable install. The baseline runs
with its own `serving` defaults (read from its settings), so it is served as it was shipped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_FOLDERS = ("gates", "pipelines", "serving")
_SITECUSTOMIZE = """# Written by benchmarks/_baseline_tree.py: import mlgate from {tree}, not the editable install.
import sys

sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, {tree!r})
import mlgate  # noqa: E402 - imported now: `python -m` puts the working directory first later
"""


@contextmanager
def baseline_environment(commit: str) -> Iterator[dict[str, str]]:
    """Environment variables that make a child `python -m mlgate.serving` run `commit`'s server."""
    with tempfile.TemporaryDirectory(prefix="mlgate-baseline-") as tmp:
        root = Path(tmp)
        archive = subprocess.run(["git", "archive", commit, "mlgate", *_FOLDERS], cwd=REPO, check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(root / "src", filter="data")
        package = root / "tree" / "mlgate"
        shutil.copytree(root / "src" / "mlgate", package)
        for folder in _FOLDERS:
            shutil.copytree(root / "src" / folder, package / folder)
        (root / "site").mkdir()
        (root / "site" / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(tree=str(root / "tree")))
        yield {"PYTHONPATH": str(root / "site")}


def baseline_defaults(environment: dict[str, str]) -> dict[str, Any]:
    """The baseline's own `serving` defaults, as JSON data."""
    code = "from mlgate.serving.settings import ServingConfig; print(ServingConfig().model_dump_json())"
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **environment}, cwd=REPO,
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)
