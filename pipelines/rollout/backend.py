"""Traffic backends: where the controller sets the champion / challenger split.

`LocalBackend` drives one mlgate server through `GET/PUT /routes`. The controller only knows the
`TrafficBackend` contract, so multi-machine serving plugs in without changing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from mlgate.pipelines.errors import MlgateError, UsageError

CHAMPION_VARIANT, CHALLENGER_VARIANT = "champion", "challenger"


class BackendError(MlgateError):
    """The serving backend refused or did not answer a traffic change (exit 3: retry the step)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model the backend serves: its registry version and the URI it is loaded from."""

    version: str
    model_uri: str


@dataclass(frozen=True)
class Split:
    """The traffic split in force: the challenger's weight (0-100) and whether it only shadows."""

    champion: ModelSpec | None
    challenger: ModelSpec | None
    weight: int
    shadow: bool


class TrafficBackend(Protocol):
    """Sets and reads the champion / challenger split. `set_split` must be idempotent: the controller
    re-applies a transition it finds half done after a crash.

    A Kubernetes backend implements the same two calls on a KServe InferenceService: `set_split` patches
    `spec.predictor.model.storageUri` to the challenger and `spec.predictor.canaryTrafficPercent` to
    `weight` (KServe keeps the previous ready revision, the champion, for the rest); weight 0 with
    shadow needs a mirror (Istio `VirtualService.spec.http[].mirror`), since KServe has no shadow mode;
    promotion sets canaryTrafficPercent to 100 and drops it, rollback sets it to 0 (KServe's own
    rollback). `current` reads the status' traffic per revision. Not implemented here: this machine
    has no cluster to test it against (DESIGN §10), and an untested backend is worse than none.
    """

    def set_split(self, champion: ModelSpec, challenger: ModelSpec | None, weight: int, shadow: bool) -> bool:
        """Put the split in force; True when something had to change (False: it already was)."""
        ...

    def current(self) -> Split: ...


def route_table(champion: ModelSpec, challenger: ModelSpec | None, weight: int, shadow: bool) -> dict[str, Any]:
    """The /routes body for a split: shadow mirrors, 0 < weight <= 100 splits, else the champion alone."""
    first = {"name": CHAMPION_VARIANT, "model_uri": champion.model_uri, "weight": 100, "shadow": False}
    if challenger is None or (weight == 0 and not shadow):
        return {"mode": "single", "variants": [first]}
    second = {"name": CHALLENGER_VARIANT, "model_uri": challenger.model_uri, "weight": 0, "shadow": shadow}
    if shadow:
        return {"mode": "shadow", "variants": [first, second]}
    if not 0 < weight <= 100:
        raise ValueError(f"weight must be in (0, 100], got {weight}")
    return {"mode": "weighted", "variants": [{**first, "weight": 100 - weight}, {**second, "weight": weight}]}


def split_of(table: dict[str, Any]) -> Split:
    """Read a /routes body back as a split (unknown variant names are not part of a rollout)."""
    variants = {v.get("name"): v for v in table.get("variants", [])}
    champ, chall = variants.get(CHAMPION_VARIANT), variants.get(CHALLENGER_VARIANT)

    def spec(v: dict[str, Any] | None) -> ModelSpec | None:
        return ModelSpec(str(v.get("model_version") or ""), str(v["model_uri"])) if v else None

    weight = int(round(float(chall.get("weight", 0)))) if chall else 0
    return Split(spec(champ), spec(chall), weight, bool(chall and chall.get("shadow")))


class LocalBackend:
    """One mlgate server's route table, changed with a bearer token (`MLGATE_ADMIN_TOKEN`)."""

    def __init__(self, endpoint: str, token: str | None, *, timeout_s: float = 180.0) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise UsageError(f"rollout endpoint {endpoint!r}: expected http://host:port")
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def set_split(self, champion: ModelSpec, challenger: ModelSpec | None, weight: int, shadow: bool) -> bool:
        body = route_table(champion, challenger, weight, shadow)
        if self._same(body):
            return False  # already in force: re-applying after a crash is a no-op
        if not self.token:
            raise UsageError("set MLGATE_ADMIN_TOKEN to the server's admin token to change its routes")
        headers = {"Authorization": f"Bearer {self.token}"}
        response = self._call("PUT", json=body, headers=headers)
        if response.status_code != 200:
            raise BackendError(f"PUT {self.endpoint}/routes answered {response.status_code}: "
                               f"{_problem(response)}{_hint(response.status_code)}")
        return True

    def current(self) -> Split:
        return split_of(self.table())

    def table(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None  # for read_access: token
        response = self._call("GET", headers=headers)
        if response.status_code != 200:
            raise BackendError(f"GET {self.endpoint}/routes answered {response.status_code}: {_problem(response)}")
        return response.json()

    def _same(self, body: dict[str, Any]) -> bool:
        have = self.table()
        strip = [{k: v[k] for k in ("name", "model_uri", "weight", "shadow")} for v in have.get("variants", [])]
        want = [{**v, "weight": float(v["weight"])} for v in body["variants"]]
        have_norm = [{**v, "weight": float(v["weight"])} for v in strip]
        return have.get("mode") == body["mode"] and have_norm == want

    def _call(self, method: str, **options: Any) -> httpx.Response:
        try:
            return httpx.request(method, f"{self.endpoint}/routes", timeout=self.timeout_s, **options)
        except httpx.HTTPError as exc:
            raise BackendError(f"{method} {self.endpoint}/routes failed: {type(exc).__name__}: {exc} "
                               "(is the server running? rollout.endpoint / --endpoint)") from None


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        return str(error.get("message", error) if isinstance(error, dict) else error)[:600]
    except ValueError:
        return response.text[:600]


def _hint(status: int) -> str:
    return {401: " (no bearer token sent)", 403: " (MLGATE_ADMIN_TOKEN does not match the server's)",
            503: " (the server has no MLGATE_ADMIN_TOKEN configured; restart it with one)"}.get(status, "")
