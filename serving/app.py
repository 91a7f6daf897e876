"""The FastAPI app of the model server and the function that runs it under uvicorn.

`create_app` wires the routes; models load in the background after startup, so /healthz answers
at once and /readyz turns 200 when every variant is loaded; then the same background task follows
the route table that the replicas share in the prediction log's store. `run_server` is what `mlgate serve`
and `python -m mlgate.serving` call: one uvicorn process (uvloop and httptools when installed), no
access log, one worker (micro-batching, routing state and the bandit need every request in one
process). On SIGTERM uvicorn finishes the requests in flight, then the lifespan shutdown flushes
the prediction log.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mlgate.serving.admin import add_admin_routes
from mlgate.serving.explain_route import EXPLAIN_OPENAPI, ExplainEndpoint
from mlgate.serving.invocations import invoke
from mlgate.serving.openapi import INVOCATIONS_OPENAPI
from mlgate.serving.request_errors import error_body
from mlgate.serving.routing.router import Router
from mlgate.serving.routing.routes import RouteTable
from mlgate.serving.server_state import ServerState, VariantLoader
from mlgate.serving.settings import ServingConfig
from mlgate.serving.telemetry import ServerMetrics
from mlgate.serving.variants import variant_loader

ADMIN_TOKEN_ENV = "MLGATE_ADMIN_TOKEN"
FEEDBACK_TOKEN_ENV = "MLGATE_FEEDBACK_TOKEN"


def create_app(
    model_uris: Mapping[str, str],
    config: ServingConfig | None = None,
    *,
    loader: VariantLoader | None = None,
    router: Router | None = None,
    routes: RouteTable | None = None,
    admin_token: str | None = None,
    feedback_token: str | None = None,
) -> FastAPI:
    """An app serving each `{variant name: MLflow model URI}` by the route table `routes` (default:
    the first model takes all traffic). `admin_token` enables PUT /routes, `feedback_token` POST
    /feedback (a separate credential: labels come from another system); `router` replaces the table's
    own routing (tests, custom policies); `loader` replaces `load_variant` with the config's load policy."""
    config = config or ServingConfig()
    state = ServerState(model_uris, config, ServerMetrics(), loader or variant_loader(config), router, routes,
                        admin_token, feedback_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.open_log()  # fails the startup when the prediction log cannot be written
        background = asyncio.create_task(state.run_background(), name="mlgate-load-and-sync-routes")
        try:
            yield
        finally:
            background.cancel()
            await asyncio.gather(background, return_exceptions=True)
            await state.close()  # stops the shadows, then writes every queued log row

    app = FastAPI(
        title="mlgate model server",
        summary="MLflow scoring protocol with signature checks, micro-batching and per-variant metrics.",
        lifespan=lifespan,
    )
    app.state.serving = state
    app.add_middleware(DirectInvocations, state=state)
    _add_routes(app, state)
    add_admin_routes(app, state)
    _add_error_handlers(app)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/invocations", openapi_extra=INVOCATIONS_OPENAPI, response_class=Response)
    async def invocations(request: Request) -> Response:
        """Predict with MLflow's scoring protocol (JSON or CSV); `?proba=true` for probabilities."""
        return await invoke(state, request)

    explainer = ExplainEndpoint(state)

    @app.post("/explain", openapi_extra=EXPLAIN_OPENAPI, response_class=Response)
    async def explain(request: Request) -> Response:
        """Per-row feature contributions for the same bodies (docs/EXPLANATIONS.md)."""
        return await explainer.answer(request)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: 200 when every variant is loaded, else 503 with each variant's state; `routes` says
        where the table came from and, once loading is over (the replica then follows the store's table),
        how the following goes (`sync`) and the guard's last rollback (`guard`)."""
        variants = state.status()
        routes: dict[str, Any] = {"source": state.routes_source, "version": state.routes.table.version}
        failed = any(v["state"] == "failed" for v in variants.values())
        if state.ready or failed:
            routes.update(sync=state.sync.describe(), guard=state.guard_event)
        if state.ready:
            return JSONResponse({"status": "ready", "variants": variants, "routes": routes})
        return JSONResponse({"status": "failed" if failed else "loading", "variants": variants, "routes": routes},
                            status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics of this server."""
        content, media_type = state.metrics.render()
        return Response(content, media_type=media_type)


class DirectInvocations:
    """POST /invocations answered from the ASGI scope, ahead of FastAPI's router, dependency solving and
    exception middleware: the same `invoke` as the route below (which documents it in the OpenAPI schema
    and still answers when this is bypassed), with less of the framework's time per request (the figures
    are in docs/BENCHMARKS.md, issue 18). Every other path and method goes to FastAPI unchanged."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/invocations":
            response = await invoke(self.state, Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", str(exc.errors())[:500]), status_code=400)


def run_server(
    model_uris: Mapping[str, str],
    config: ServingConfig | None = None,
    port: int | None = None,
    host: str | None = None,
    routes: RouteTable | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; `port`/`host` override `config.port`/`config.host`. Route
    changes are enabled when the environment has MLGATE_ADMIN_TOKEN, labels with MLGATE_FEEDBACK_TOKEN."""
    import uvicorn  # imported here: only the serving entry points need it

    config = config or ServingConfig()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = os.environ.get(ADMIN_TOKEN_ENV) or None
    uvicorn.run(
        create_app(model_uris, config, routes=routes, admin_token=token,
                   feedback_token=os.environ.get(FEEDBACK_TOKEN_ENV) or None),
        host=host or config.host,
        port=config.port if port is None else port,
        loop=_fastest("uvloop", "uvloop", "asyncio"),
        http=_fastest("httptools", "httptools", "h11"),
        lifespan="on",
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=int(config.request_timeout_s),
    )


def _fastest(module: str, choice: str, fallback: str) -> str:
    """`choice` when its C-accelerated module is installed (uvicorn[standard]), else the pure-Python one."""
    import importlib.util

    return choice if importlib.util.find_spec(module) is not None else fallback
