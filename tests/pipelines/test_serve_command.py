"""`mlgate serve`: the installed command serves a trained model on 127.0.0.1 and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from mlgate.pipelines.cli.main import main
from mlgate.serving.runtime import free_port

pytestmark = pytest.mark.slow


def test_serve_command_answers_the_scoring_protocol(project, mlflow_uri, capsys, cli_env):
    assert main(["prepare", "--params", str(project.params_path)]) == 0
    assert main(["train", "--params", str(project.params_path), "--tracking-uri", mlflow_uri]) == 0
    capsys.readouterr()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlgate.pipelines.cli.main", "serve", "--model", str(project.root / "models" / "candidate"),
         "--port", str(port), "--params", str(project.params_path)],
        cwd=project.root, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
        body = {"dataframe_records": [{"state": "KS", "international_plan": "no", "total_day_minutes": 120.0}]}
        missing = httpx.post(f"{url}/invocations", json=body, timeout=10)
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_column"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) is not None


def test_serve_without_a_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_serve_with_a_missing_model_directory_exits_2_naming_it(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nothing"), "--port", "0"]) == 2
    assert "nothing: no model directory at that path" in capsys.readouterr().err
