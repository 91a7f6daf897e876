"""Your own training code (`train.command`): the contract's environment, the model it wrote checked with the
project's load policy, logged unchanged with lineage and measured like mlgate's own; failures exit 2 and say
what is wrong. And (slow) the LightGBM example through every gate, the verdict and `register`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main
from mlgate.pipelines.datasets import file_md5
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.lineage import model_digest, model_uri_digest
from mlgate.pipelines.params import load_params
from mlgate.pipelines.project import rendering
from mlgate.pipelines.report.verdict import find_candidate
from mlgate.serving.loading import LoadPolicy, ModelLoadError, load_model
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "lightgbm_churn"

# The team's training script: what it writes depends on its argument (the failure modes included).
OWN_TRAIN = '''
import json, os, sys
from pathlib import Path

import mlflow.pyfunc, mlflow.sklearn, pandas as pd, skops.io as sio, yaml
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

mode, out = sys.argv[1], Path(os.environ["MLGATE_MODEL_DIR"])
seen = {k: v for k, v in os.environ.items() if k.startswith("MLGATE_") or k.startswith("MLFLOW_")}
Path("seen.json").write_text(json.dumps({**seen, "cwd": os.getcwd(), "model_dir_existed": out.exists()}))
print(f"own_train.py: training ({mode})")
params = yaml.safe_load(Path(os.environ["MLGATE_PARAMS"]).read_text())
features = json.loads(os.environ["MLGATE_FEATURES"])
categorical = params["data"]["categorical"]
numeric = [c for c in features if c not in categorical]
train = pd.read_parquet(os.environ["MLGATE_TRAIN_DATA"])
x = train[features].astype({c: "float64" for c in numeric})
model = Pipeline([
    ("features", ColumnTransformer([
        ("categorical", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="?")),
                                  ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
        ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), numeric)])),
    ("model", LogisticRegression(max_iter=1000)),
]).fit(x, train[os.environ["MLGATE_TARGET"]])
signature = infer_signature(x, model.predict(x))
skops = {"serialization_format": "skops", "skops_trusted_types": sio.get_untrusted_types(data=sio.dumps(model))}
if mode == "nothing":
    sys.exit(0)
if mode == "not_mlflow":
    out.mkdir()
    (out / "model.txt").write_text("a model, but not an MLflow model")
elif mode == "no_signature":
    mlflow.sklearn.save_model(model, str(out), **skops)
elif mode == "pickle":
    mlflow.sklearn.save_model(model, str(out), serialization_format="cloudpickle", signature=signature)
elif mode == "skops":
    mlflow.sklearn.save_model(model, str(out), signature=signature, **skops)
elif mode == "code":  # a models-from-code PythonModel wrapping the skops model, with scores
    inner, code = out.parent / "inner", out.parent / "scored.py"
    mlflow.sklearn.save_model(model, str(inner), signature=signature, **skops)
    code.write_text(Path("scored_model.py").read_text())
    mlflow.pyfunc.save_model(str(out), python_model=str(code), artifacts={"model": str(inner)}, signature=signature)
'''

SCORED_MODEL = '''
import mlflow
from mlflow.pyfunc import PythonModel


class Scored(PythonModel):
    def load_context(self, context):
        from mlgate.serving.loading import load_model, nested_policy

        self.model = load_model(context.artifacts["model"], nested_policy()).model
        self.classes_ = self.model.classes_

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)

    def predict_proba(self, model_input):
        return self.model.predict_proba(model_input)


mlflow.models.set_model(Scored())
'''


@pytest.fixture()
def own(project, capsys):
    """The 1,200-row project, prepared, with own_train.py beside params.yaml (no estimator)."""
    (project.root / "own_train.py").write_text(OWN_TRAIN)
    (project.root / "scored_model.py").write_text(SCORED_MODEL)
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    capsys.readouterr()
    return project


def _train(project, uri, capsys, command: str, *flags: str) -> tuple[int, str, str]:
    project.params["train"] = {"command": command, "deps": ["own_train.py"], "seed": 1,
                               "model_dir": "models/candidate"}
    project.write()
    code = main([*flags, "train", "--params", str(project.params_path), "--tracking-uri", uri])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("mode", ["skops", "code"])
def test_the_command_s_model_is_logged_unchanged_with_lineage_and_measured(own, mlflow_uri, capsys, mode):
    code, out, err = _train(own, mlflow_uri, capsys, f"python own_train.py {mode}")
    assert code == 0, out + err
    root = own.root
    seen = json.loads((root / "seen.json").read_text())
    assert Path(seen["cwd"]) == root.resolve() and seen["MLGATE_PARAMS"] == str(own.params_path.resolve())
    assert seen["MLGATE_TRAIN_DATA"] == str((root / "data" / "train.parquet").resolve())
    assert seen["MLGATE_TEST_DATA"] == str((root / "data" / "test.parquet").resolve())
    assert seen["MLGATE_TARGET"] == "churn" and json.loads(seen["MLGATE_FEATURES"]) == load_params(
        own.params_path).data.features
    assert not seen["model_dir_existed"] and seen["MLFLOW_TRACKING_URI"] == mlflow_uri
    assert seen["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # mlgate's flag reaches the command
    assert "own_train.py: training" in out  # the command's output is relayed as it runs

    record = json.loads((root / "reports" / "train_run.json").read_text())
    metrics = json.loads((root / "metrics" / "train.json").read_text())
    assert record["command"] == f"python own_train.py {mode}" and record["estimator"] is None
    assert {"accuracy", "roc_auc", "pr_auc", "log_loss", "brier", "f1"} <= set(metrics)  # scores, also via pyfunc
    assert 0.6 < metrics["roc_auc"] <= 1.0
    run = mlflow.MlflowClient(mlflow_uri).get_run(record["run_id"])
    tags = run.data.tags
    assert tags["mlgate.data_md5"] == file_md5(root / "data" / "train.parquet")
    assert tags["mlgate.params_md5"] == load_params(own.params_path).digest() and tags["mlgate.git_sha"]
    assert tags["mlgate.train_command"] == f"python own_train.py {mode}"
    assert run.data.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert run.data.params["train.command"] == f"python own_train.py {mode}"
    # Logged unchanged: the run's model is the judged directory, so `register` registers it from this run,
    # and the verdict names the run although the model's MLmodel names none.
    digest = model_digest(root / "models" / "candidate")
    assert record["model_digest"] == digest == model_uri_digest(mlflow_uri, record["model_uri"])
    candidate, problems = find_candidate(load_params(own.params_path), root)
    assert not problems and candidate.run_id == record["run_id"]
    assert not [p for p in (root / "models").iterdir() if p.name != "candidate"]  # no scratch left behind


def test_a_failing_command_exits_2_with_its_status_and_stderr_and_keeps_the_previous_model(own, mlflow_uri, capsys):
    previous = own.root / "models" / "candidate"
    previous.mkdir(parents=True)
    (previous / "MLmodel").write_text("the previous model\n")
    command = "python -c \"import sys; print('loading'); sys.stderr.write('Traceback ...\\nKeyError: tenure\\n'); sys.exit(3)\""
    code, out, err = _train(own, mlflow_uri, capsys, command)
    assert code == 2
    assert f"train.command `{command}` exited with status 3" in err
    assert "its stderr ended with: Traceback ... | KeyError: tenure" in err
    assert (previous / "MLmodel").read_text() == "the previous model\n"
    assert not (own.root / "reports" / "train_run.json").exists()


@pytest.mark.parametrize("mode, words", [
    ("nothing", "train.command exited 0 but wrote nothing at MLGATE_MODEL_DIR"),
    ("not_mlflow", "without an MLmodel file: not an MLflow model directory"),
    ("no_signature", "has no signature"),
    ("pickle", "refusing to load a pickle-based model"),
])
def test_a_missing_or_unfit_model_exits_2_naming_the_problem(own, mlflow_uri, capsys, mode, words):
    code, out, err = _train(own, mlflow_uri, capsys, f"python own_train.py {mode}")
    assert code == 2, out + err
    assert words in err and "MLGATE_MODEL_DIR" in err
    assert not (own.root / "models" / "candidate").exists()
    if mode == "pickle":  # how to consent is named, and consent lets the same model through
        assert "serving.allow_pickle" in err
        code, out, err = _train(own, mlflow_uri, capsys, "python own_train.py pickle", "--allow-pickle")
        assert code == 0, out + err
        assert (own.root / "models" / "candidate" / "MLmodel").is_file()


def test_estimator_and_command_exclude_each_other_and_deps_need_a_command(project):
    train = project.params["train"]
    for bad, words in [({**train, "command": "python train.py"}, "set exactly one of estimator"),
                       ({"seed": 1}, "set exactly one of estimator"),
                       ({**train, "deps": ["train.py"]}, "deps lists the files of train.command")]:
        project.params["train"] = bad
        project.write()
        with pytest.raises(UsageError, match=words):
            load_params(project.params_path)


def test_dvc_yaml_makes_train_depend_on_the_command_s_files_and_evaluate_on_serving(project):
    project.params["train"] = {"command": "python src/train.py", "deps": ["src/train.py", "src/features.py"]}
    stages = yaml.safe_load(rendering.dvc_yaml(load_params(project.write())))["stages"]
    assert stages["train"]["deps"][-2:] == ["src/train.py", "src/features.py"]
    assert "serving" in stages["evaluate"]["params"]
    project.params["train"]["deps"] = ["../outside.py"]
    with pytest.raises(UsageError, match="train.deps '../outside.py'"):
        rendering.dvc_yaml(load_params(project.write()))


def test_the_example_pipeline_is_what_init_writes_for_its_params():
    params = load_params(EXAMPLE / "params.yaml")
    assert params.train.command == "python train.py" and params.train.deps == ["train.py"]
    assert yaml.safe_load((EXAMPLE / "dvc.yaml").read_text()) == yaml.safe_load(rendering.dvc_yaml(params))
    assert (EXAMPLE / rendering.suite_file(params)).is_file()


@pytest.mark.slow
@pytest.mark.deepchecks
def test_the_lightgbm_example_goes_through_every_gate_the_verdict_and_register(tmp_path, cli_env):
    """The example as a team has it, in its own repository: `mlgate demo --offline-only` (prepare, a logistic
    champion, `dvc repro`: train.py trains LightGBM, every gate, the verdict), then `mlgate register`."""
    root = tmp_path / "lightgbm_churn"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(
        "data", "models", "reports", "metrics", "plots", ".mlgate", "dvc.lock", "mlflow.db", "mlruns"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    latency = params["gates"]["latency"]  # this test is about training: a loaded CI machine must not fail it
    latency.update(rounds=6, max_p95_ratio=3.0, rank_test={**latency["rank_test"], "tolerance": 2.0})
    params["gates"]["edge_cases"]["property_rows"] = 20
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**cli_env, "MLFLOW_TRACKING_URI": uri}
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, env=env, check=True)

    demo = subprocess.run(["mlgate", "demo", "--offline-only"], cwd=root, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "train: running train.command `python train.py`" in demo.stdout
    verdict = json.loads((root / "reports" / "verdict.json").read_text())
    assert verdict["status"] in ("PASS", "WARN") and set(verdict["gates"]) == {
        "data", "quality", "edge_cases", "latency"}
    quality = {c["name"]: c for c in json.loads((root / "reports" / "gates" / "quality.json").read_text())["checks"]}
    assert quality["baseline"]["status"] == "PASS"  # compared with the logistic champion, not skipped
    assert quality["metric.roc_auc.vs_baseline"]["status"] == "PASS"
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert "train.py" in {d["path"] for d in lock["train"]["deps"]}
    bundle = root / "models" / "candidate" / "mlgate"  # mlgate's part of the team's bundle, judged with it
    assert (bundle / "outliers" / "forest.skops").is_file() and (bundle / "background.parquet").is_file()
    edge = {c["name"]: c for c in json.loads((root / "reports" / "gates" / "edge_cases.json").read_text())["checks"]}
    assert edge["outliers.flagged"]["status"] == "PASS", edge["outliers.flagged"]

    register = subprocess.run(["mlgate", "register"], cwd=root, env=env, capture_output=True, text=True)
    assert register.returncode == 0, register.stdout + register.stderr
    record = json.loads((root / "reports" / "train_run.json").read_text())
    version = registry.version_by_alias(uri, "churn_lightgbm", registry.CHALLENGER)
    assert version is not None and version.run_id == record["run_id"]  # the run train logged, unchanged
    assert version.tags["mlgate.model_digest"] == model_digest(root / "models" / "candidate")
    assert registry.run_tags(uri, record["run_id"])["mlgate.train_command"] == "python train.py"
    with pytest.raises(ModelLoadError, match="lightgbm"):  # the default trust list refuses LightGBM's types
        load_model(version.uri, LoadPolicy())
