"""POST /explain: per-row feature contributions for the bodies /invocations takes (docs/EXPLANATIONS.md).

The body is read, parsed and checked exactly as /invocations does it (same 4xx for bad input). The
variant explained is the one `X-Target-Variant` names (under the same `serving.routing.forced_variants`
policy), else the route table's primary variant (the champion: the largest weight); an explanation is
not a prediction, so it is not routed by key or bandit, not logged, not mirrored and not counted in the
request metrics. Bounds: `serving.explain.max_rows` rows (else 413), one explanation at a time in its own
thread, queued, and `timeout_s` for the queueing and the work together (else 504; the work stops at its
next deadline check). A bundle's background sample is read once per loaded variant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from mlgate.serving.explain import ExplainError, ExplainOptions, ExplainTimeout, explain_frame
from mlgate.serving.explain_background import background_of_uri
from mlgate.serving.frames import build_frame
from mlgate.serving.invocations import (
    checked_batch,
    encode_json,
    header_map,
    new_request_id,
    read_parsed,
    request_id_of,
)
from mlgate.serving.loading import ModelLoadError
from mlgate.serving.openapi import INVOCATIONS_OPENAPI
from mlgate.serving.request_errors import RequestError, error_body, too_large
from mlgate.serving.routing.router import forced_variant
from mlgate.serving.server_state import ServerState
from mlgate.serving.variants import Variant

log = logging.getLogger(__name__)

EXPLAIN_OPENAPI: dict[str, Any] = {
    "parameters": [p for p in INVOCATIONS_OPENAPI["parameters"] if p["name"] in ("X-Request-Id", "X-Target-Variant")],
    "requestBody": INVOCATIONS_OPENAPI["requestBody"],
    "responses": {"200": {"description": "per row: base_value, contributions per input column, output; the scale "
                                         "and the explainer (docs/EXPLANATIONS.md)"},
                  **{code: r for code, r in INVOCATIONS_OPENAPI["responses"].items() if code != "200"},
                  "404": {"description": "serving.explain.enabled is false"},
                  "413": {"description": "body larger than max_body_bytes, or more rows than serving.explain.max_rows"},
                  "409": {"description": "the model's bundle has no background sample (retrain), or labels only"}},
}


class ExplainEndpoint:
    """Answers POST /explain for one server; holds the one explanation thread and the background cache."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlgate-explain")
        self._backgrounds: dict[tuple[str, str], pd.DataFrame | None] = {}

    async def answer(self, request: Request) -> Response:
        """The explanation, or the error JSON /invocations would give; never raises."""
        headers = header_map(request)
        request_id, variant = "", None
        try:
            request_id = request_id_of(headers)
            variant, body = await self._explain(request, headers)
            status, content = 200, encode_json(body)
        except RequestError as exc:
            status, payload = exc.status, exc.body()
        except ExplainError as exc:
            status, payload = exc.status, error_body(exc.code, exc.message)
        except (TimeoutError, ExplainTimeout):
            status, payload = 504, error_body("explain_timeout", f"no explanation within "
                                              f"{self.state.config.explain.timeout_s} s (serving.explain.timeout_s)")
        except ClientDisconnect:
            status, payload = 400, error_body("client_disconnected", "the client closed the connection early")
        except Exception as exc:  # noqa: BLE001 - the model (or its explainer) raised: as /invocations answers
            log.warning("explain %s: the model raised", request_id, exc_info=True)
            status, payload = 500, error_body("prediction_failed", f"the model failed on this request: "
                                              f"{type(exc).__name__}: {str(exc)[:300]}")
        if status != 200:
            request_id = request_id or new_request_id()  # an invalid X-Request-Id is replaced
            payload["error"]["request_id"] = request_id
            content = encode_json(payload)
        out = {"X-Request-Id": request_id}
        if variant is not None:
            out |= {"X-Model-Variant": variant.name, "X-Model-Version": variant.version}
        return Response(content, status_code=status, headers=out, media_type="application/json")

    async def _explain(self, request: Request, headers: dict[str, str]) -> tuple[Variant, dict[str, Any]]:
        config = self.state.config
        if not config.explain.enabled:
            raise RequestError(404, "explain_disabled", "POST /explain is turned off (serving.explain.enabled)")
        routes = self.state.routes
        name = forced_variant(routes.table, headers, config.routing.forced_variants) or routes.table.primary.name
        variant = routes.runtime(name).variant
        parsed = await read_parsed(request, headers, config)
        if parsed.n_rows > config.explain.max_rows:
            raise too_large("too_many_rows", f"{parsed.n_rows} rows; /explain takes at most "
                            f"{config.explain.max_rows} (serving.explain.max_rows)")
        frame = build_frame(variant.schema, [await checked_batch(parsed, variant, config)])
        explanation = await self._run(variant, frame)
        return variant, {"explanations": explanation.rows(), "scale": explanation.scale,
                         "explainer": explanation.explainer, **explanation.details,
                         "columns": explanation.columns, "variant": variant.name, "model_version": variant.version}

    async def _run(self, variant: Variant, frame: pd.DataFrame) -> Any:
        """The explanation in the explain thread, queued behind any other, within timeout_s overall."""
        settings = self.state.config.explain
        deadline = time.monotonic() + settings.timeout_s
        options = ExplainOptions(settings.permutations, 0, variant.positive_index, deadline)

        def work() -> Any:
            options.check_deadline()  # waited in the queue past the deadline: do nothing
            background = self._background(variant)  # at most background_rows of the bundle's sample
            sample = background.head(settings.background_rows) if background is not None else None
            return explain_frame(variant.model, frame, sample, options)

        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._pool, work), settings.timeout_s)

    def _background(self, variant: Variant) -> pd.DataFrame | None:
        """The variant's background sample, read once (the explain thread is the only caller)."""
        key = (variant.uri, variant.version)
        if key not in self._backgrounds:
            try:
                self._backgrounds[key] = background_of_uri(variant.uri, variant.version)
            except ModelLoadError as exc:  # not cached: the store may answer next time
                raise ExplainError(503, "background_unavailable", f"the model's background sample cannot be "
                                   f"fetched: {exc}") from None
            except (OSError, ValueError) as exc:
                raise ExplainError(500, "background_unreadable", f"the model's background sample "
                                   f"(mlgate/background.parquet) cannot be read: {exc}") from None
        return self._backgrounds[key]
