"""`mlgate rollout monitor`, the scheduled look of rollout-monitor.yml, against a real deployment here: a
real `mlgate serve` process and the controller sharing a real PostgreSQL prediction log through
MLGATE_LOG_URL (params.yaml names another log, which nobody may use), and a real MLflow store.

The contract: exit 0 when there is nothing to do (no rollout, collecting, promoted), exit 1 exactly once
when the team must act (rolled back, awaiting an approval, with `approval_needed=<stage>` in
$GITHUB_OUTPUT), recorded as a notice in the timeline so the next run is green again.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.context import RunContext
from mlgate.pipelines.datasets import load_split
from mlgate.pipelines.params import load_params
from mlgate.pipelines.rollout.replay import ReplayPlan, replay_rows
from mlgate.pipelines.rollout.state import Position, transition_to
from mlgate.pipelines.rollout.store import RolloutStore
from mlgate.pipelines.rollout.wiring import RolloutSettings, build_controller
from mlgate.serving.entry import with_log_url
from mlgate.serving.log.prediction_log import read_predictions
from mlgate.serving.runtime.probe import free_port, wait_until_ready
from mlgate.serving.settings import ServingConfig
from tests.conftest import Project
from tests.pipelines.rollout_fixtures import ROLLOUT_PARAMS
from tests.pipelines.test_registration import release_project, trained_template_dir, write_gate_results

pytestmark = pytest.mark.slow
LABELS_TOKEN = "monitor-labels"


class Deployment:
    """A team's deployment in miniature: the project checkout, the shared log, the server, the secrets."""

    def __init__(self, project: Project, log_url: str, decoy: Path, url: str, token: str) -> None:
        self.project, self.log_url, self.decoy, self.url, self.token = project, log_url, decoy, url, token
        self.name = project.params["model"]["name"]

    def env(self, mlflow_uri: str, output: Path) -> dict[str, str]:
        """The monitor's secrets and GitHub's variables, as rollout-monitor.yml passes them."""
        return {"MLGATE_LOG_URL": self.log_url, "MLGATE_ENDPOINT": self.url, "MLGATE_ADMIN_TOKEN": self.token,
                "MLFLOW_TRACKING_URI": mlflow_uri, "GITHUB_OUTPUT": str(output),
                "GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "team/churn",
                "GITHUB_RUN_ID": "42"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, churn_frame, base_params, mlflow_uri, postgres_server):
    root = tmp_path_factory.mktemp("monitor")
    project = release_project(trained_template_dir(churn_frame, base_params, mlflow_uri), root / "project")
    decoy = root / "decoy" / "predictions.db"  # what params.yaml says: MLGATE_LOG_URL must win everywhere
    rollout = json.loads(json.dumps(ROLLOUT_PARAMS))
    rollout["shadow"]["min_requests"] = 100
    rollout["canary"]["approval_before"] = [50]
    project.params["rollout"] = rollout
    project.params["serving"]["prediction_log"] = {"url": f"sqlite:///{decoy}", "flush_interval_s": 0.1}
    project.params["serving"]["routing"] = {"shadow": {"max_busy_share": 0.1}}
    project.write()
    run = json.loads((project.root / "reports" / "train_run.json").read_text())
    name = project.params["model"]["name"]
    champion = registry.register_version(mlflow_uri, name, run["model_uri"], run["tags"])
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, champion.version)
    log_url, token, port = postgres_server.create_database(), secrets.token_hex(8), free_port()
    env = {**os.environ, "MLGATE_LOG_URL": log_url, "MLGATE_ADMIN_TOKEN": token,
           "MLGATE_FEEDBACK_TOKEN": LABELS_TOKEN, "MLFLOW_TRACKING_URI": mlflow_uri}
    command = [sys.executable, "-m", "mlgate.pipelines.cli.main", "serve", "--params", str(project.params_path),
               "--model", f"champion=models:/{name}/{champion.version}", "--port", str(port)]
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen(command, cwd=project.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, 120, lambda: None if server.poll() is None else f"exited {server.returncode}: "
                         + (root / "server.log").read_text()[-2000:])
        yield Deployment(project, log_url, decoy, url, token)
    finally:
        server.terminate()
        server.wait(timeout=30)


def monitor(params: Path, *extra: str) -> tuple[int, dict[str, str]]:
    """One `mlgate rollout monitor` (in this process) and the step outputs it wrote."""
    output = Path(os.environ["GITHUB_OUTPUT"])
    output.write_text("")
    code = main(["rollout", "monitor", "--params", str(params), *extra])
    return code, dict(line.split("=", 1) for line in output.read_text().splitlines())


def routes(deployment: Deployment) -> dict:
    return httpx.get(f"{deployment.url}/routes", timeout=10).json()


def replay(deployment: Deployment, rows: int) -> None:
    params = load_params(deployment.project.params_path)
    frame = load_split(params.data, "production", deployment.project.root)
    plan = ReplayPlan(deployment.url, rate_rps=300, feedback_delay_s=0.2, max_rows=rows, loops=2,
                      id_prefix=uuid.uuid4().hex[:6], feedback_token=LABELS_TOKEN)
    stats = replay_rows(frame, params.data.features, params.model.target, "row_id", plan)
    assert stats.statuses[200] == rows


def test_the_monitor_is_green_unless_the_team_must_act_and_says_so_once(deployment, mlflow_uri, tmp_path,
                                                                      monkeypatch, capsys):
    for key, value in deployment.env(mlflow_uri, tmp_path / "output").items():
        monkeypatch.setenv(key, value)
    params, store = deployment.project.params_path, RolloutStore(mlflow_uri, deployment.name)
    assert monitor(params) == (0, {"state": "none", "version": "", "notice": "", "approval_needed": "",
                                   "environment": ""})

    # ci.yml's approval job registers the judged model by digest; cd.yml starts its rollout by that digest.
    write_gate_results(deployment.project.root)
    assert main(["verdict", "--params", str(params)]) == 0
    assert main(["register", "--params", str(params), "--from-training-run", "--no-alias"]) == 0
    version = json.loads((deployment.project.root / "reports" / "registration.json").read_text())["version"]
    assert main(["approve", "--params", str(params), "--version", version, "--stage", "candidate",
                 "--approver", "ml-lead"]) == 0
    digest = json.loads((deployment.project.root / "reports" / "verdict.json").read_text())["model"]["digest"]
    assert main(["rollout", "start", "--params", str(params), "--digest", digest, "--approved-as", "candidate"]) == 0
    assert registry.version_by_alias(mlflow_uri, deployment.name, registry.CHALLENGER).version == version
    assert routes(deployment)["mode"] == "shadow"
    code, out = monitor(params)
    assert (code, out["state"], out["approval_needed"]) == (0, "running", ""), capsys.readouterr().out

    replay(deployment, 300)  # shadowed traffic, logged by the server to the log of MLGATE_LOG_URL only
    for _ in range(20):
        code, out = monitor(params)
        if code or out["state"] != "running":
            break
        time.sleep(0.5)
    assert (code, out["notice"], out["approval_needed"], out["environment"]) == (1, "approval", "canary-50",
                                                                                "canary"), capsys.readouterr()
    assert len(read_predictions(deployment.log_url)) >= 300 and not deployment.decoy.exists()
    told = store.current()
    assert [e["notice"] for e in store.events(told) if e["kind"] == "notice"] == [f"approval canary-50 at {told.seq}"]
    assert store.events(told)[-1]["where"] == "https://github.example/team/churn/actions/runs/42"

    code, out = monitor(params)  # still waiting, already told: green, and no second approval job
    assert (code, out["state"], out["approval_needed"]) == (0, "paused", "")
    assert store.current().events == told.events
    code, out = monitor(params, "--repeat")  # a manual run asks again
    assert (code, out["approval_needed"]) == (1, "canary-50")

    # rollout-monitor.yml's approval job: no reports on its runner, the registered report is checked.
    assert main(["approve", "--params", str(params), "--version", version, "--stage", "canary-50",
                 "--approver", "ml-lead", "--registered-report"]) == 0
    code, out = monitor(params)
    assert (code, out["state"], out["notice"]) == (0, "running", "")
    assert store.current().position == Position("canary", 0, 50) and routes(deployment)["mode"] == "weighted"

    assert main(["rollout", "promote", "--params", str(params), "--reason", "enough seen"]) == 0
    code, out = monitor(params)
    assert (code, out["state"], out["notice"]) == (0, "production", "")
    assert registry.version_by_alias(mlflow_uri, deployment.name, registry.CHAMPION).version == version


def test_a_rollback_is_told_once_even_to_two_monitors_looking_at_the_same_moment(deployment, mlflow_uri, tmp_path,
                                                                                monkeypatch):
    name = f"churn_{uuid.uuid4().hex[:10]}"  # a model of its own on the same server and log
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**deployment.project.params, "model": {
        **deployment.project.params["model"], "name": name}}, sort_keys=False))
    run = json.loads((deployment.project.root / "reports" / "train_run.json").read_text())
    for _ in range(3):
        registry.register_version(mlflow_uri, name, run["model_uri"], {"mlgate.stage": "candidate"})
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, "1")
    for key, value in deployment.env(mlflow_uri, tmp_path / "output").items():
        monkeypatch.setenv(key, value)
    assert main(["rollout", "start", "--params", str(params), "--version", "2"]) == 0
    store = RolloutStore(mlflow_uri, name)
    before = store.current()
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, "3")  # production moved under the rollout: Error

    with ThreadPoolExecutor(2) as pool:  # two scheduled runs at once (a lock token each, like two runners)
        codes = sorted(pool.map(lambda _: main(["rollout", "monitor", "--params", str(params)]), range(2)))
    assert codes == [0, 1]
    state = store.current()
    kinds = [e["kind"] for e in store.events(state)]
    assert state.position.phase == "rolled_back" and kinds == ["start", "rollback", "notice"]
    assert routes(deployment)["variants"][0]["model_uri"] == f"models:/{name}/1"

    assert monitor(params)[0] == 0 and monitor(params)[0] == 0  # the next scheduled runs are green
    assert store.current().events == state.events
    # A decision taken on a state another controller has moved since is never written.
    controller = build_controller(RunContext.load(params, mlflow_uri),
                                  RolloutSettings(deployment.url, deployment.token, deployment.log_url))
    decided = transition_to(before, "advance", Position("canary", 0, 50), {}, time.time())
    skipped = controller._execute(before, decided, None)  # noqa: SLF001 - the write-ahead path itself
    assert skipped.action == "skipped" and store.current() == state


def test_mlgate_log_url_replaces_the_configured_log_only_when_set():
    config = ServingConfig()
    assert with_log_url(config, {}) == config and with_log_url(config, {"MLGATE_LOG_URL": " "}) == config
    moved = with_log_url(config, {"MLGATE_LOG_URL": "postgresql+psycopg://db/mlgate"})
    assert moved.prediction_log.url == "postgresql+psycopg://db/mlgate"
    assert moved.prediction_log.flush_interval_s == config.prediction_log.flush_interval_s
