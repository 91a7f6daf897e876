"""deploy/k8s: N replicas of the model server on Kubernetes (deploy/k8s/README.md).

There is no cluster here (DESIGN §10), so every manifest is validated offline against the Kubernetes
schemas (kubernetes-validate, strict: an unknown or misspelt field fails), and the pieces are checked
against each other and against the server they run: its command line, routes, image and params schema.
"""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import sqlalchemy as sa
import yaml

from mlgate.pipelines.cli.main import build_parser
from mlgate.pipelines.params import load_params
from mlgate.pipelines.rollout.backend import CHAMPION_VARIANT
from mlgate.serving.app import ADMIN_TOKEN_ENV, FEEDBACK_TOKEN_ENV, create_app
from mlgate.serving.settings import ServingConfig
from mlgate.serving.variants import parse_model_args

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"  # bundled by kubernetes-validate >= 1.30 (pyproject.toml, dev)


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in manifest_files()
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def server_container() -> dict[str, Any]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def serve_arguments() -> Any:
    """The container's command line parsed by mlgate's own parser (an unknown flag exits 2)."""
    container = server_container()
    command = [*container["command"], *container["args"]]
    assert command[:2] == ["mlgate", "serve"]
    return build_parser().parse_args(command[1:])


def container_port(name_or_number: str | int) -> int:
    """A port as Kubernetes resolves it against the server container: a number, or a port's name."""
    if isinstance(name_or_number, int):
        return name_or_number
    ports = {p["name"]: p["containerPort"] for p in server_container()["ports"]}
    assert name_or_number in ports, f"no container port named {name_or_number!r}"
    return ports[name_or_number]


def secret_env() -> dict[str, tuple[str, str]]:
    """Environment variable -> (Secret name, key) for every variable the server takes from a Secret."""
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in server_container().get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}


@pytest.mark.parametrize(("filename", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_each_manifest_validates_against_the_kubernetes_schema(filename: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert "namespace" not in doc["metadata"], f"{filename}: the namespace is the one applied to (-n / kustomize)"


def test_the_strict_schema_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(one("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_exactly_the_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = kustomization["resources"]
    assert [name for name in listed if not (K8S / name).is_file()] == []
    assert sorted(listed) == [p.name for p in manifest_files()]
    # `images` retags the container's image only when it names the same image.
    image = server_container()["image"].rsplit(":", 1)[0]
    assert [i["name"] for i in kustomization["images"]] == [image]


def test_probes_ask_the_server_for_liveness_and_readiness() -> None:
    """While its models load, the server is alive (the pod is not restarted during a slow download)
    and not ready (the Service sends it no traffic): asked in process, as Kubernetes would ask."""
    container = server_container()
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    app = create_app({CHAMPION_VARIANT: "models:/churn@champion"},
                     ServingConfig(prediction_log={"enabled": False}))

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pod") as client:
            return await client.get(path)

    alive, readiness = asyncio.run(get(live["path"])), asyncio.run(get(ready["path"]))
    assert alive.status_code == 200
    assert readiness.status_code == 503 and readiness.json()["status"] == "loading"
    port = serve_arguments().port
    assert container_port(live["port"]) == container_port(ready["port"]) == port


def test_the_server_listens_on_the_port_the_service_sends_to() -> None:
    args = serve_arguments()
    assert args.host == "0.0.0.0"  # the pod's address, not its loopback
    (port,) = server_container()["ports"]
    (service_port,) = one("Service")["spec"]["ports"]
    assert port["containerPort"] == args.port == container_port(service_port["targetPort"])


def test_the_served_variant_is_the_one_the_rollout_drives() -> None:
    assert list(parse_model_args(serve_arguments().model)) == [CHAMPION_VARIANT]


def test_selectors_match_the_pods() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [deployment["spec"]["selector"]["matchLabels"], one("Service")["spec"]["selector"],
                 *(c["labelSelector"]["matchLabels"]
                   for c in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []))]
    for selector in selectors:
        assert selector and selector.items() <= pod_labels.items()


def test_the_autoscaler_scales_the_deployment() -> None:
    hpa, deployment = one("HorizontalPodAutoscaler"), one("Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"], "Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"] == 3
    assert server_container()["resources"]["requests"]["cpu"]  # CPU utilisation is a share of the request


def test_tokens_come_from_the_secret_and_every_key_exists() -> None:
    secret = one("Secret")
    env = secret_env()
    assert {ADMIN_TOKEN_ENV, FEEDBACK_TOKEN_ENV} <= env.keys()
    missing = [(name, key) for name, key in env.values()
               if name != secret["metadata"]["name"] or key not in secret["stringData"]]
    assert missing == []
    # Applied unchanged, the template must not enable route changes or labels with a published token.
    assert secret["stringData"][ADMIN_TOKEN_ENV] == secret["stringData"][FEEDBACK_TOKEN_ENV] == ""


def test_params_are_the_configmaps_and_name_one_shared_prediction_log(tmp_path: Path) -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    configmap = one("ConfigMap")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounted = {}
    for mount in server_container()["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source and source["name"] == configmap["metadata"]["name"]:
            mounted |= {f"{mount['mountPath']}/{item['path']}": item["key"] for item in source["items"]}
    # A --params path that does not exist is not an error: the server would silently run on defaults.
    assert mounted.get(serve_arguments().params) == "params.yaml"

    path = tmp_path / "params.yaml"
    path.write_text(configmap["data"]["params.yaml"], encoding="utf-8")
    url = sa.make_url(load_params(path).serving.prediction_log.url)
    assert url.get_backend_name() == "postgresql"  # a SQLite file cannot be shared between pods
    if url.host is None:  # libpq then reads the connection from its environment variables
        assert {"PGHOST", "PGDATABASE", "PGUSER", "PGPASSWORD"} <= secret_env().keys()


def test_the_pod_runs_as_the_images_user_with_writable_scratch() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    uid = int(re.findall(r"^USER (\d+)", dockerfile, re.MULTILINE)[-1])
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE)[-1]
    spec = one("Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid
    container = server_container()
    assert container["image"].split(":")[0] == ServingConfig().docker_image.split(":")[0]
    if container["securityContext"].get("readOnlyRootFilesystem"):
        # MLflow downloads models under /tmp and writes ~/.config/mlflow: both must be writable.
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
        assert {"/tmp", workdir} <= writable
