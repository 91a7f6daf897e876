"""Choosing the variant that answers a request.

This module holds the contract and the single-variant router; weighted, sticky, shadow and bandit
routing (DESIGN §7) implement the same `Router.choose`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from serving.errors import bad_request

TARGET_HEADER = "x-target-variant"


class Router(Protocol):
    """Picks the variant name for a request from its headers (before the body is read)."""

    def choose(self, headers: Mapping[str, str]) -> str: ...


class DefaultRouter:
    """Every request goes to the default variant, unless `X-Target-Variant` names another one."""

    def __init__(self, names: Sequence[str], default: str) -> None:
        if default not in names:
            raise ValueError(f"default variant {default!r} is not one of {list(names)}")
        self._names = frozenset(names)
        self._default = default

    def choose(self, headers: Mapping[str, str]) -> str:
        target = headers.get(TARGET_HEADER)
        if target is None:
            return self._default
        if target not in self._names:
            message = f"X-Target-Variant {target[:100]!r} is not served here; variants: {sorted(self._names)}"
            raise bad_request("unknown_variant", message)
        return target
