"""The route table in force on one server: the table plus the loaded variants it names, as one value.

`ActiveRoutes` is immutable: a request reads the server's reference once and uses only what it got;
a table change builds a new one (its models loaded first) and replaces the reference in one
assignment (`mlgate.serving.server_state`), so every request sees the old table or the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlgate.serving.batching import MicroBatcher
from mlgate.serving.request_errors import RequestError
from mlgate.serving.routing.routes import RouteTable, RouteTableError, table_json
from mlgate.serving.shadow.mirror import ShadowRunner
from mlgate.serving.variants import Variant


@dataclass
class Runtime:
    """A loaded variant with its micro-batcher and, once it has been a shadow, its shadow runner."""

    variant: Variant
    batcher: MicroBatcher
    shadow: ShadowRunner | None = None


@dataclass(frozen=True)
class ActiveRoutes:
    """One route table and the runtimes of its loaded variants; never changed once built."""

    table: RouteTable
    runtimes: Mapping[str, Runtime] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)  # model version of each loaded variant

    def runtime(self, name: str) -> Runtime:
        """The runtime of a variant of this table, or a 503 RequestError when it is not loaded."""
        found = self.runtimes.get(name)
        if found is not None:
            return found
        if name in self.failures:
            raise RequestError(503, "variant_failed", f"variant {name!r} failed to load: {self.failures[name]}")
        raise RequestError(503, "not_ready", f"variant {name!r} is still loading; retry when /readyz is 200")

    def shadow_runners(self, answered: str) -> list[ShadowRunner]:
        """The runners of the table's shadow variants, except the one that answered."""
        return [r.shadow for v in self.table.shadows if v.name != answered and (r := self.runtimes.get(v.name))
                and r.shadow is not None]

    def describe(self) -> dict[str, Any]:
        return table_json(self.table, self.versions)


class RouteTableConflict(RouteTableError):
    """PUT /routes named a table version that is no longer current (409)."""


def stop_mirroring(old: ActiveRoutes, new_table: RouteTable) -> None:
    """Drop the queued work of variants the new table no longer mirrors to."""
    mirrored = {v.name for v in new_table.shadows}
    for route in old.table.shadows:
        runtime = old.runtimes.get(route.name)
        if route.name not in mirrored and runtime is not None and runtime.shadow is not None:
            runtime.shadow.discard_pending()


async def close_runtime(runtime: Runtime, shadow_timeout_s: float) -> None:
    if runtime.shadow is not None:
        await asyncio.to_thread(runtime.shadow.close, shadow_timeout_s)
    await runtime.batcher.close()
