"""GET/PUT /routes (the route table), GET /bandit (the posteriors) and POST /feedback.

Writes need `Authorization: Bearer <MLGATE_ADMIN_TOKEN>`, compared in constant time: 401 without
a bearer token, 403 with a wrong one, 503 when the server was started without a token (writes are
then refused, never open). A PUT body is the GET body; its `version`, when given, must be the
current one (409 otherwise), so two controllers cannot overwrite each other's change unknowingly.
The versions are the shared store's: a PUT first catches up with the store, and is a 409 too when
another replica wrote the next version first.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from mlgate.serving.feedback import parse_feedback
from mlgate.serving.invocations import read_body
from mlgate.serving.request_errors import RequestError, bad_request
from mlgate.serving.routing.routes import RouteTableError, parse_table
from mlgate.serving.server_state import RouteTableConflict, ServerState

MAX_ADMIN_BODY_BYTES = 1_000_000
MAX_FEEDBACK_BODY_BYTES = 5_000_000


def add_admin_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/routes")
    async def get_routes(request: Request) -> JSONResponse:
        """The route table in use: mode, version and each variant's model, version, weight, shadow."""
        try:
            require_reader(state, request.headers.get("authorization"))
        except RequestError as exc:
            return error_response(exc)
        return JSONResponse(state.routes.describe())

    @app.put("/routes")
    async def put_routes(request: Request) -> JSONResponse:
        """Replace the route table atomically (bearer token); new models are loaded before the swap."""
        try:
            require_admin(state.admin_token, request.headers.get("authorization"))
            body = await json_body(request, MAX_ADMIN_BODY_BYTES)
            return JSONResponse(await replace_routes(state, body))
        except RequestError as exc:
            return error_response(exc)

    @app.get("/bandit")
    async def get_bandit(request: Request) -> JSONResponse:
        """The bandit's minimum share and each arm's Beta posterior."""
        try:
            require_reader(state, request.headers.get("authorization"))
        except RequestError as exc:
            return error_response(exc)
        arms = [{"variant": a.variant, "model_version": a.model_version, "alpha": a.alpha, "beta": a.beta,
                 "pulls": a.pulls, "mean": a.mean} for a in state.bandit.arms()]
        return JSONResponse({"min_share": state.config.routing.bandit.min_share, "arms": arms})

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        """Labels or rewards by request id (one item, a list, or {"feedback": [...]}); bearer feedback token."""
        try:
            require_token(state.feedback_token, request.headers.get("authorization"), "MLGATE_FEEDBACK_TOKEN",
                          "labels")
            require_json(request.headers.get("content-type"))
            items = parse_feedback(await json_body(request, MAX_FEEDBACK_BODY_BYTES))
            return JSONResponse(await state.feedback.accept(items))
        except RequestError as exc:
            return error_response(exc)


def require_reader(state: ServerState, authorization: str | None) -> None:
    """Reads of /routes and /bandit: open, or the admin token with `routing.read_access: token`."""
    if state.config.routing.read_access == "token":
        require_token(state.admin_token, authorization, "MLGATE_ADMIN_TOKEN", "reads of the route table")


def require_admin(expected: str | None, authorization: str | None) -> None:
    """Pass only with the configured admin bearer token (constant-time comparison)."""
    require_token(expected, authorization, "MLGATE_ADMIN_TOKEN", "route changes")


def require_token(expected: str | None, authorization: str | None, env: str, what: str) -> None:
    """Pass only with the bearer token `expected` (read from `env`): 401 without one, 403 with another,
    503 when the server has none (the write is then refused, never open)."""
    if not expected:
        code = "admin_disabled" if env == "MLGATE_ADMIN_TOKEN" else "feedback_disabled"
        raise RequestError(503, code, f"{what} are disabled: the server has no {env}")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "unauthorized", f"send Authorization: Bearer <{env}>")
    if not hmac.compare_digest(token.strip().encode("utf-8", "replace"), expected.encode()):
        raise RequestError(403, "forbidden", f"the bearer token is not the server's {env}")


def require_json(content_type: str | None) -> None:
    """Writes take application/json only: a browser's cross-origin text/plain POST (no preflight) is 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RequestError(415, "unsupported_media_type", f"send Content-Type: application/json, not {media or 'none'!r}")


async def replace_routes(state: ServerState, body: Any) -> dict[str, Any]:
    """Check, load and swap in the table of a PUT body; its GET body after the swap."""
    current = state.routes.table
    known = {v.name: v.model_uri for v in current.variants}
    try:
        table = parse_table(body, known)
        expected = body.get("version")
        if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
            raise RouteTableError(f"version must be an integer, not {expected!r}")
        active = await state.replace_table(table, expected)
    except RouteTableConflict as exc:
        raise RequestError(409, "version_conflict", str(exc)) from None
    except RouteTableError as exc:
        raise bad_request("invalid_routes", str(exc)) from None
    return active.describe()


async def json_body(request: Request, limit: int) -> Any:
    """The request's JSON body (bounded); a 400 when it is not JSON."""
    raw = await read_body(request, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("malformed_json", f"the body is not valid JSON: {exc}") from None


def error_response(exc: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
