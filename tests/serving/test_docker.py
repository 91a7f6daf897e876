"""The Dockerfile, checked statically (no daemon here), and the docker runtime when a daemon exists."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import httpx
import pytest

from mlgate.serving.runtime import DockerServer, ServerProcess, ServerStartError, server_for
from mlgate.serving.runtime.docker import docker_status
from mlgate.serving.settings import ServingConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            stages[current] = [(keyword, rest)]
        elif current is not None:
            stages[current].append((keyword, rest))
    return stages


def _inherited(stages: dict, name: str) -> list[tuple[str, str]]:
    """The instructions in effect for stage `name`, following FROM <stage> chains."""
    own = stages[name]
    parent = own[0][1].split(" AS ")[0].strip()
    return (_inherited(stages, parent) if parent in stages else []) + own


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    stages = _stages()
    assert {"build", "base", "bundled", "runtime"} <= set(stages)
    assert list(stages)[-1] == "runtime", "the default target (last stage) mounts the model"
    assert any(k == "COPY" and rest.startswith("--from=build") for k, rest in stages["base"])


@pytest.mark.parametrize("target", ["runtime", "bundled"])
def test_final_images_run_as_non_root_with_healthcheck_and_entry_point(target: str) -> None:
    effective = _inherited(_stages(), target)
    users = [rest for keyword, rest in effective if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [rest for keyword, rest in effective if keyword == "HEALTHCHECK"]
    assert health, "no HEALTHCHECK"
    probe_command = json.loads(health[-1].split(" CMD ", 1)[1])
    assert probe_command[0] == "python" and "/healthz" in probe_command[-1]
    entry = json.loads(next(rest for k, rest in reversed(effective) if k == "ENTRYPOINT"))
    command = json.loads(next(rest for k, rest in reversed(effective) if k == "CMD"))
    assert entry + command == ["mlgate", "serve", "--model", "/model", "--host", "0.0.0.0", "--port", "8080"]


def test_every_build_input_exists_and_is_not_docker_ignored() -> None:
    ignored = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    sources = []
    for keyword, rest in _stages()["build"]:
        if keyword == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    assert {"pyproject.toml", "gates", "pipelines", "serving"} <= set(sources)
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is in .dockerignore"


def test_the_image_entry_point_matches_the_scripts_in_pyproject() -> None:
    assert re.search(r'^mlgate\s*=\s*"mlgate\.pipelines\.cli\.main:main"', (PROJECT_ROOT / "pyproject.toml").read_text(), re.M)


DOCKER_OK, DOCKER_REASON = docker_status()


@pytest.mark.skipif(not DOCKER_OK, reason=f"docker runtime needs a Docker daemon: {DOCKER_REASON}")
def test_docker_runtime_serves_the_model(model_dir: Path, row: dict) -> None:
    with DockerServer(str(model_dir), build_context=PROJECT_ROOT, startup_timeout_s=600) as server:
        answer = httpx.post(server.url + "/invocations", json={"inputs": [row]}, timeout=30)
        assert answer.status_code == 200 and answer.json()["predictions"][0] in ("yes", "no")
        assert httpx.get(server.url + "/healthz").status_code == 200


@pytest.mark.skipif(DOCKER_OK, reason="a Docker daemon is reachable")
def test_without_a_daemon_the_docker_runtime_refuses_to_start_and_says_why(model_dir: Path) -> None:
    with pytest.raises(ServerStartError, match="daemon|not installed"):
        DockerServer(str(model_dir), build_context=None).start()


def test_the_runtime_factory_follows_serving_runtime(model_dir: Path) -> None:
    assert isinstance(server_for(str(model_dir), ServingConfig()), ServerProcess)
    docker = server_for(str(model_dir), ServingConfig(runtime="docker", docker_image="team/serving:1"))
    assert isinstance(docker, DockerServer) and docker.image == "team/serving:1"


@pytest.mark.skipif(DOCKER_OK, reason="a Docker daemon is reachable")
def test_without_a_daemon_the_factory_made_docker_server_says_why(model_dir: Path) -> None:
    with pytest.raises(ServerStartError, match="daemon|not installed"):
        server_for(str(model_dir), ServingConfig(runtime="docker")).start()
