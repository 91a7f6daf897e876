"""The route table: which variants a server runs, with their traffic weights, shadows and mode.

A table is an immutable value. `GET /routes` shows it, `PUT /routes` and `--routes FILE` give a new
one in the same JSON shape (`table_json`); the server swaps the whole table in one assignment, so a
request sees the old table or the new one, never a mix.

Modes:
- single: one variant takes all traffic (weight 100); others have weight 0 (reachable only with
  X-Target-Variant); no shadows.
- shadow: like single, and every request is mirrored to the shadow variants.
- weighted: the weights of the non-shadow variants sum to 100 (canary, A/B); shadows are mirrored.
- bandit: Thompson sampling over the non-shadow variants with weight > 0 (at least two arms).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

MODES = ("single", "shadow", "weighted", "bandit")
Mode = Literal["single", "shadow", "weighted", "bandit"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VARIANT_KEYS = {"name", "model_uri", "model_version", "weight", "shadow"}
_TABLE_KEYS = {"mode", "version", "variants"}
_TOLERANCE = 1e-6


class RouteTableError(ValueError):
    """A route table that cannot be served; the message names the variant or key at fault."""


@dataclass(frozen=True)
class VariantRoute:
    """One variant of the table; `model_version` is filled in by the server once the model is loaded."""

    name: str
    model_uri: str
    weight: float = 0.0
    shadow: bool = False
    model_version: str | None = None


@dataclass(frozen=True)
class RouteTable:
    mode: Mode
    variants: tuple[VariantRoute, ...]
    version: int = 1

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def get(self, name: str) -> VariantRoute | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def served(self) -> tuple[VariantRoute, ...]:
        """Non-shadow variants with traffic (weight > 0): the arms in bandit mode."""
        return tuple(v for v in self.variants if not v.shadow and v.weight > 0)

    @property
    def shadows(self) -> tuple[VariantRoute, ...]:
        return tuple(v for v in self.variants if v.shadow)

    @property
    def primary(self) -> VariantRoute:
        """The variant with the largest weight (the one variant with traffic in single/shadow mode)."""
        return max((v for v in self.variants if not v.shadow), key=lambda v: v.weight)


def single_table(model_uris: Mapping[str, str]) -> RouteTable:
    """The table of a server started without --routes: the first model takes all traffic."""
    names = list(model_uris)
    variants = tuple(VariantRoute(n, model_uris[n], 100.0 if i == 0 else 0.0) for i, n in enumerate(names))
    return checked_table(RouteTable("single", variants))


def initial_table(model_uris: Mapping[str, str], routes: RouteTable | None) -> RouteTable:
    """The table at startup: `routes` (models given only by --model join it with weight 0), else
    the first model takes all traffic. ValueError when a name has two different URIs."""
    if routes is None:
        if not model_uris:
            raise ValueError("at least one model URI is needed")
        return single_table(model_uris)
    for route in routes.variants:
        given = model_uris.get(route.name)
        if given is not None and given != route.model_uri:
            raise ValueError(f"variant {route.name!r} is {given} in --model but {route.model_uri} in the routes")
    extra = tuple(VariantRoute(name, uri) for name, uri in model_uris.items() if routes.get(name) is None)
    return checked_table(RouteTable(routes.mode, routes.variants + extra, routes.version))


def table_json(table: RouteTable, versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The GET /routes body; `versions` gives each loaded variant's model version."""
    versions = versions or {}
    return {"mode": table.mode, "version": table.version, "variants": [
        {"name": v.name, "model_uri": v.model_uri, "model_version": versions.get(v.name, v.model_version),
         "weight": v.weight, "shadow": v.shadow} for v in table.variants]}


def parse_table(body: Any, known_uris: Mapping[str, str] | None = None, version: int = 1) -> RouteTable:
    """A checked table from a PUT /routes body or routes file; `known_uris` fill an omitted model_uri."""
    if not isinstance(body, dict):
        raise RouteTableError("the route table must be a JSON object with 'mode' and 'variants'")
    if unknown := sorted(set(body) - _TABLE_KEYS):
        raise RouteTableError(f"unknown key(s) in the route table: {unknown}; allowed: {sorted(_TABLE_KEYS)}")
    mode = body.get("mode")
    if mode not in MODES:
        raise RouteTableError(f"mode must be one of {list(MODES)}, not {mode!r}")
    entries = body.get("variants")
    if not isinstance(entries, list) or not entries:
        raise RouteTableError("'variants' must be a non-empty list")
    variants = tuple(_variant(entry, i, known_uris or {}) for i, entry in enumerate(entries))
    return checked_table(RouteTable(mode, variants, version))


def _variant(entry: Any, index: int, known_uris: Mapping[str, str]) -> VariantRoute:
    where = f"variants[{index}]"
    if not isinstance(entry, dict):
        raise RouteTableError(f"{where} must be an object with name, model_uri, weight, shadow")
    if unknown := sorted(set(entry) - _VARIANT_KEYS):
        raise RouteTableError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_VARIANT_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RouteTableError(f"{where}: name must be 1-64 characters of A-Z a-z 0-9 _ . -, not {name!r}")
    uri = entry.get("model_uri", known_uris.get(name))
    if not isinstance(uri, str) or not uri:
        raise RouteTableError(f"variant {name!r}: model_uri is required (a model URI or directory)")
    weight = entry.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 100:
        raise RouteTableError(f"variant {name!r}: weight must be a number in [0, 100], not {weight!r}")
    shadow = entry.get("shadow", False)
    if not isinstance(shadow, bool):
        raise RouteTableError(f"variant {name!r}: shadow must be true or false, not {shadow!r}")
    return VariantRoute(name, uri, float(weight), shadow)


def checked_table(table: RouteTable) -> RouteTable:
    """`table` if it can be served as its mode says, else RouteTableError naming the problem."""
    names = table.names
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise RouteTableError(f"variant names must be unique; repeated: {duplicates}")
    served = [v for v in table.variants if not v.shadow]
    if not served:
        raise RouteTableError("at least one variant must be non-shadow (the one that answers)")
    _MODE_CHECKS[table.mode](table, served)
    return table


def _check_single(table: RouteTable, served: list[VariantRoute]) -> None:
    if table.shadows:
        raise RouteTableError(f"mode 'single' has no shadow variants; use mode 'shadow' for {table.shadows[0].name!r}")
    _check_one_primary(table.mode, served)


def _check_shadow(table: RouteTable, served: list[VariantRoute]) -> None:
    if not table.shadows:
        raise RouteTableError("mode 'shadow' needs at least one variant with shadow: true")
    _check_one_primary(table.mode, served)


def _check_one_primary(mode: str, served: list[VariantRoute]) -> None:
    weights = {v.name: v.weight for v in served}
    with_traffic = [n for n, w in weights.items() if w > 0]
    if len(with_traffic) != 1 or not math.isclose(weights[with_traffic[0]], 100.0, abs_tol=_TOLERANCE):
        raise RouteTableError(
            f"mode {mode!r} needs exactly one non-shadow variant with weight 100 and the others 0; got {weights}")


def _check_weighted(table: RouteTable, served: list[VariantRoute]) -> None:
    total = sum(v.weight for v in served)
    if not math.isclose(total, 100.0, abs_tol=_TOLERANCE):
        weights = {v.name: v.weight for v in served}
        raise RouteTableError(f"mode 'weighted': the weights of non-shadow variants must sum to 100, got {total:g} {weights}")


def _check_bandit(table: RouteTable, served: list[VariantRoute]) -> None:
    if len(table.served) < 2:
        raise RouteTableError("mode 'bandit' needs at least two non-shadow variants with weight > 0 (the arms)")


_MODE_CHECKS = {"single": _check_single, "shadow": _check_shadow, "weighted": _check_weighted, "bandit": _check_bandit}


def load_routes_file(path: str | Path, known_uris: Mapping[str, str] | None = None) -> RouteTable:
    """The table in a routes file (the GET /routes JSON); RouteTableError naming the file on any problem."""
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RouteTableError(f"{path}: cannot read the routes file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise RouteTableError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse_table({k: v for k, v in body.items() if k != "version"} if isinstance(body, dict) else body,
                           known_uris)
    except RouteTableError as exc:
        raise RouteTableError(f"{path}: {exc}") from None
