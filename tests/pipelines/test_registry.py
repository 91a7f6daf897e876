"""Model registry adapter against a real MLflow store: register, alias, resolve, tag."""

from __future__ import annotations

import json

from mlgate.pipelines import mlflow_io as registry
from mlgate.pipelines.cli.main import main


def test_register_alias_and_resolve(project, mlflow_uri, capsys):
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    assert main(["train", "--params", str(project.params_path), "--tracking-uri", mlflow_uri]) == 0
    capsys.readouterr()
    run = json.loads((project.root / "reports" / "train_run.json").read_text())
    name = "registry_test_model"
    assert registry.version_by_alias(mlflow_uri, name, registry.CHAMPION) is None
    ref = registry.register_version(mlflow_uri, name, run["model_uri"], {"mlgate.stage": "candidate"})
    assert ref.run_id == run["run_id"] and ref.tags["mlgate.stage"] == "candidate"
    assert registry.version_by_alias(mlflow_uri, name, registry.CHAMPION) is None
    registry.set_alias(mlflow_uri, name, registry.CHAMPION, ref.version)
    champion = registry.version_by_alias(mlflow_uri, name, registry.CHAMPION)
    assert champion is not None and champion.version == ref.version and champion.uri == f"models:/{name}/{ref.version}"
    registry.set_version_tags(mlflow_uri, name, ref.version, {"mlgate.stage": "production"})
    assert registry.get_version(mlflow_uri, name, ref.version).tags["mlgate.stage"] == "production"
    registry.delete_alias(mlflow_uri, name, registry.CHAMPION)
    registry.delete_alias(mlflow_uri, name, registry.CHAMPION)  # idempotent
    assert registry.version_by_alias(mlflow_uri, name, registry.CHAMPION) is None
