"""Pickle only by consent: a cloudpickle PythonModel whose unpickling writes a marker file is refused by
`mlgate serve`, the server the gates and the rollout use, and every gate, before any of its code runs;
with `serving.allow_pickle: true`, `mlgate --allow-pickle` or MLGATE_ALLOW_PICKLE=1 it loads."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from mlgate.gates.result import GateResult, Status
from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.pickle_consent import pickle_policy
from mlgate.pipelines.rollout.backend import BackendError, LocalBackend, ModelSpec
from mlgate.serving.pickle_guard import MLFLOW_FLAG
from mlgate.serving.runtime import ServerProcess, ServerStartError
from mlgate.serving.settings import ServingConfig
from tests.conftest import Project
from tests.pipelines.byom_models import save_cloudpickle_model

MODEL_NAME = "pickle_consent_churn"


class Pickled:
    """The project, its trained candidate, the pickled model and the marker its unpickling writes."""

    def __init__(self, project: Project, model: Path, marker: Path) -> None:
        self.project, self.model, self.marker = project, model, marker

    @property
    def candidate(self) -> Path:
        return self.project.root / "models" / "candidate"

    def params_with(self, name: str, **serving) -> Path:
        params = yaml.safe_load(yaml.safe_dump(self.project.params))
        params["serving"].update(serving)
        path = self.project.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

    def ran(self) -> bool:
        """The model file's code ran since the last call (the marker is removed for the next check)."""
        ran = self.marker.exists()
        self.marker.unlink(missing_ok=True)
        return ran


@pytest.fixture(scope="module")
def pickled(tmp_path_factory, churn_frame, base_params, mlflow_uri) -> Pickled:
    root = tmp_path_factory.mktemp("pickle_consent")
    project = Project.create(root, churn_frame.sample(1200, random_state=7), base_params)
    project.params["gates"]["quality"]["deepchecks"]["enabled"] = False
    project.params["gates"]["edge_cases"]["property_rows"] = 5
    project.params["gates"]["latency"].update(rounds=2, min_samples=10, warmup_s=0.2)
    project.params["serving"].update(max_batch_rows=500, max_body_bytes=1_000_000)
    project.prepare_and_register_champion(MODEL_NAME, mlflow_uri)
    marker = root / "marker"
    model = save_cloudpickle_model(root / "models" / "candidate", root / "pickled", marker)
    return Pickled(project, model, marker)


def _refusal(text: str, model: Path) -> bool:
    return (f"{model / 'python_model.pkl'}: a PythonModel saved with cloudpickle" in text
            and "serving.allow_pickle: true" in text and "--allow-pickle" in text)


@pytest.mark.slow
def test_mlgate_serve_refuses_a_pickled_model(pickled, cli_env):
    command = [str(Path(sys.executable).parent / "mlgate"), "serve", "--model", str(pickled.model), "--port", "0",
               "--params", str(pickled.project.params_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=cli_env,
                          cwd=pickled.project.root)
    assert done.returncode == 2 and _refusal(done.stderr, pickled.model), done.stderr
    assert not pickled.ran()


@pytest.mark.slow
def test_the_server_loads_a_pickled_model_only_with_allow_pickle(pickled):
    with pytest.raises(ServerStartError) as refused:
        ServerProcess(str(pickled.model), ServingConfig(prediction_log={"enabled": False})).start()
    assert _refusal(str(refused.value), pickled.model) and not pickled.ran()
    consenting = ServingConfig(allow_pickle=True, prediction_log={"enabled": False})
    rows = pd.read_parquet(pickled.project.root / "data" / "test.parquet").drop(columns=["churn", "row_id"]).head(3)
    with ServerProcess(str(pickled.model), consenting) as server:
        answer = httpx.post(f"{server.url}/invocations", json={"dataframe_records": rows.to_dict("records")}, timeout=30)
        log = server.log_tail()
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
    assert "loading a pickle-based model because serving.allow_pickle is set" in log
    assert pickled.ran()


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["quality", "edge_cases", "latency"])
def test_every_gate_refuses_a_pickled_candidate_before_it_loads(pickled, mlflow_uri, gate, capsys):
    code = main(["gate", gate, "--params", str(pickled.project.params_path), "--tracking-uri", mlflow_uri,
                 "--candidate", str(pickled.model)])
    err = capsys.readouterr().err
    assert code == 2 and _refusal(err, pickled.model), err
    assert not pickled.ran()


@pytest.mark.slow
def test_consent_by_flag_by_params_or_by_environment_loads_it_in_every_gate(pickled, mlflow_uri, monkeypatch,
                                                                              capsys):
    project, model = pickled.project, str(pickled.model)
    common = ["--tracking-uri", mlflow_uri, "--candidate", model]
    assert main(["--allow-pickle", "gate", "quality", "--params", str(project.params_path), *common]) in (0, 1)
    assert "pickle-based models may be loaded in this run" in capsys.readouterr().err
    assert pickled.ran()  # the quality gate loads the candidate in its own process
    quality = GateResult.read(project.root / "reports" / "gates" / "quality.json")
    assert {c.name: c for c in quality.checks}["metric.roc_auc.vs_baseline"].status is Status.SKIP  # labels only
    params = pickled.params_with("allow_pickle", allow_pickle=True)
    assert main(["gate", "edge_cases", "--params", str(params), *common]) == 0, capsys.readouterr()
    assert pickled.ran()  # ... the edge-case gate in its server
    monkeypatch.setenv("MLGATE_ALLOW_PICKLE", "1")
    main(["gate", "latency", "--params", str(project.params_path), *common])
    capsys.readouterr()
    latency = GateResult.read(project.root / "reports" / "gates" / "latency.json")
    assert not [c for c in latency.checks if c.name == "candidate"], latency.checks
    assert pickled.ran()  # ... and the latency gate in its candidate server


@pytest.mark.slow
def test_a_pickled_champion_is_an_unusable_baseline_without_consent(pickled, mlflow_uri, capsys):
    import mlflow

    name = "pickle_consent_champion"
    registry.client(mlflow_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(pickled.model), "model")
    version = registry.register_version(mlflow_uri, name, f"runs:/{run.info.run_id}/model", {})
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, version.version)
    params = yaml.safe_load(yaml.safe_dump(pickled.project.params))
    params["model"]["name"] = name
    path = pickled.project.root / "pickled_champion.yaml"
    path.write_text(yaml.safe_dump(params))
    code = main(["gate", "quality", "--params", str(path), "--tracking-uri", mlflow_uri])
    capsys.readouterr()
    baseline = {c.name: c for c in GateResult.read(pickled.project.root / "reports" / "gates" / "quality.json").checks}
    assert code == 1 and baseline["baseline"].status is Status.ERROR
    assert "a PythonModel saved with cloudpickle: refusing to load" in baseline["baseline"].message
    assert not pickled.ran()


@pytest.mark.slow
def test_the_rollout_cannot_put_a_pickled_challenger_on_a_server_without_consent(pickled):
    token = secrets.token_hex(8)
    champion, challenger = ModelSpec("1", str(pickled.candidate)), ModelSpec("2", str(pickled.model))
    for allow in (False, True):
        config = ServingConfig(allow_pickle=allow, prediction_log={"enabled": False})
        with ServerProcess({"champion": str(pickled.candidate)}, config, env={"MLGATE_ADMIN_TOKEN": token}) as server:
            backend = LocalBackend(server.url, token)
            ready = httpx.get(f"{server.url}/readyz", timeout=10).json()["variants"]["champion"]
            assert ready["flavor"] == "sklearn" and ready["scores"] is True  # what the server says it trusted:
            assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in ready["skops_flagged_types"]
            if allow:
                assert backend.set_split(champion, challenger, 0, True) and pickled.ran()
            else:
                with pytest.raises(BackendError) as refused:
                    backend.set_split(champion, challenger, 0, True)
                assert _refusal(str(refused.value), pickled.model) and not pickled.ran()
                assert backend.current().challenger is None  # the table is unchanged


def test_a_run_without_consent_turns_mlflow_pickle_off_for_itself_and_its_children(monkeypatch, capsys):
    import os

    monkeypatch.setenv(MLFLOW_FLAG, "true")  # MLflow 3.17's default, made explicit
    monkeypatch.delenv("MLGATE_ALLOW_PICKLE", raising=False)
    with pickle_policy(False):
        assert os.environ[MLFLOW_FLAG] == "false" and "MLGATE_ALLOW_PICKLE" not in os.environ
    with pickle_policy(True):
        assert os.environ[MLFLOW_FLAG] == "true" and os.environ["MLGATE_ALLOW_PICKLE"] == "1"
    assert "mlgate: warning: pickle-based models may be loaded in this run" in capsys.readouterr().err
    assert os.environ[MLFLOW_FLAG] == "true" and "MLGATE_ALLOW_PICKLE" not in os.environ  # restored


def test_consent_from_the_environment_turns_on_serving_allow_pickle(project, monkeypatch):
    monkeypatch.delenv("MLGATE_ALLOW_PICKLE", raising=False)
    assert RunContext.load(project.params_path).params.serving.allow_pickle is False
    monkeypatch.setenv("MLGATE_ALLOW_PICKLE", "1")
    assert RunContext.load(project.params_path).params.serving.allow_pickle is True
