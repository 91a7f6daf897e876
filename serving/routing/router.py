"""Choosing the variant that answers a request, from one route table.

- `X-Target-Variant` forces a variant of the table (an unknown name is a 400).
- single / shadow mode: the table's one variant with traffic.
- weighted mode with a routing key (`X-Routing-Key`, or the configured entity-id column): sticky
  assignment by weighted rendezvous hashing. Each (key, variant) pair hashes to u in (0, 1); the key
  goes to the variant with the largest weight / -ln(u). That is an exponential race, so a variant
  gets a key with probability weight / total, and a key changes variant only toward a variant whose
  weight grew relative to its own: when a canary grows from 10 to 50, every canary key stays on the
  canary and champion keys move only to the canary. The hash is BLAKE2b, stable across processes.
- weighted mode without a key: random by weight.
- bandit mode: Thompson sampling (mlgate.serving.routing.bandit); routing keys are not used.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Protocol

from mlgate.serving.request_errors import RequestError, bad_request
from mlgate.serving.routing.bandit import ThompsonBandit
from mlgate.serving.routing.routes import RouteTable

TARGET_HEADER = "x-target-variant"
ROUTING_KEY_HEADER = "x-routing-key"
_TWO_64 = float(2**64)


class Router(Protocol):
    """Picks the variant name for a request that does not force one."""

    def choose(self, table: RouteTable, key: str | None, versions: Mapping[str, str]) -> str: ...


def forced_variant(table: RouteTable, headers: Mapping[str, str], policy: str = "allow") -> str | None:
    """The variant named by X-Target-Variant (400 if the table has no such variant), or None. With
    `policy` refuse_during_rollout, a 403 while the table splits or mirrors traffic (a rollout runs)."""
    target = headers.get(TARGET_HEADER)
    if target is None:
        return None
    if policy == "refuse_during_rollout" and (table.mode != "single" or table.shadows):
        raise RequestError(403, "forced_variant_refused", "X-Target-Variant is refused while the route table splits "
                           "or mirrors traffic (serving.routing.forced_variants: refuse_during_rollout)")
    if table.get(target) is None:
        message = f"X-Target-Variant {target[:100]!r} is not served here; variants: {sorted(table.names)}"
        raise bad_request("unknown_variant", message)
    return target


def key_point(key: str, variant: str) -> float:
    """A uniform point in (0, 1) for the pair, the same in every process and on every machine."""
    digest = hashlib.blake2b(f"{variant}\x1f{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _TWO_64


def sticky_choice(key: str, weights: Sequence[tuple[str, float]]) -> str:
    """The variant for `key` by weighted rendezvous hashing over (name, weight) pairs."""
    best_name, best_score = "", -1.0
    for name, weight in weights:
        if weight <= 0:
            continue
        score = weight / -math.log(key_point(key, name))
        if score > best_score:
            best_name, best_score = name, score
    if not best_name:
        raise ValueError("no variant has a positive weight")
    return best_name


def random_choice(rng: random.Random, weights: Sequence[tuple[str, float]]) -> str:
    """A variant drawn with probability weight / total."""
    point = rng.random() * sum(w for _, w in weights)
    for name, weight in weights:
        if point < weight:
            return name
        point -= weight
    return next(name for name, weight in reversed(weights) if weight > 0)  # float rounding at the end


class TableRouter:
    """Routes by the table's mode; random draws and the bandit share one seeded generator."""

    def __init__(self, bandit: ThompsonBandit, rng: random.Random) -> None:
        self.bandit = bandit
        self._rng = rng

    def choose(self, table: RouteTable, key: str | None, versions: Mapping[str, str]) -> str:
        if table.mode in ("single", "shadow"):
            return table.primary.name
        weights = [(v.name, v.weight) for v in table.served]
        if table.mode == "bandit":
            return self.bandit.choose([(name, versions.get(name, "")) for name, _ in weights])
        if key is not None:
            return sticky_choice(key, weights)
        return random_choice(self._rng, weights)
