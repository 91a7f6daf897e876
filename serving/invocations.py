"""POST /invocations: one request through routing, size limits, parsing, validation and the batcher.

Every outcome is a value: a JSON body, a status and the headers `X-Request-Id`, `X-Model-Variant`,
`X-Model-Version` and `X-Route-Version` (the route table that routed it); an answer of a variant whose
bundle has an outlier detector also has `X-Outlier-Count` (rows flagged) and `X-Outlier-Rows` (their 0-based
indices, comma-separated, at most `serving.outliers.max_header_rows` of them; empty when none). A bad request is a 4xx
naming the problem; only a model that raises (500), a model too slow (504) or a defect in this
server (500) give a 5xx, always with the request id. After the answer is ready, the request is
counted, its variant's answer is queued for the prediction log and it is offered to the shadows;
none of these waits for I/O or for another variant.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from mlgate.serving.batching import PredictionError
from mlgate.serving.log.prediction_log import PredictionEntry, json_text
from mlgate.serving.probing import suspicious_rows
from mlgate.serving.protocol import REQUEST_ID, ParsedInput, media_type_of, parse_body
from mlgate.serving.request_errors import RequestError, bad_request, error_body, too_large
from mlgate.serving.routing.router import ROUTING_KEY_HEADER, forced_variant
from mlgate.serving.server_state import ActiveRoutes, Runtime, ServerState
from mlgate.serving.settings import ServingConfig
from mlgate.serving.shadow.mirror import ShadowJob
from mlgate.serving.telemetry import UNROUTED
from mlgate.serving.validation import FeatureBatch, validate
from mlgate.serving.variants import PredictMethod, Variant, outlier_flags

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
PROBA_HEADER = "x-predict-proba"
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})
# Bodies above this are parsed, and batches above this many cells checked, in a thread, so the
# event loop keeps answering others.
OFFLOAD_BYTES = 256 * 1024
OFFLOAD_CELLS = 20_000
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits of a UUID
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


@dataclass
class _Call:
    """What one request got through: filled in step by step, logged and counted at the end."""

    started: float
    ts: float
    request_id: str
    routes: ActiveRoutes
    headers: Mapping[str, str]
    key: str | None = None
    runtime: Runtime | None = None
    parsed: ParsedInput | None = None
    batch: FeatureBatch | None = None
    labels: list[Any] | None = None
    scores: list[Any] | None = None
    outliers: list[bool] | None = None
    probabilities: list[Any] | None = None  # predict_proba rows (for the probing watch)
    client: str | None = None
    forced: bool = False


async def invoke(state: ServerState, request: Request) -> Response:
    """Answer one scoring request; never raises."""
    headers = header_map(request)
    call = _Call(time.perf_counter(), time.time(), "", state.routes, headers)  # the one read of the table
    call.client = request.client.host if request.client is not None else None
    code: str | None = None
    try:
        call.request_id = request_id_of(headers)
        status, content = 200, encode_json(await _answer(state, call, request))
    except RequestError as exc:
        status, payload, code = exc.status, exc.body(), exc.code
    except PredictionError as exc:
        log.warning("request %s: the model raised: %s", call.request_id, exc)
        status, code = 500, "prediction_failed"
        payload = error_body(code, f"the model failed on this request: {exc}")
    except TimeoutError:
        status, code = 504, "prediction_timeout"
        payload = error_body(code, f"no prediction within {state.config.request_timeout_s} s")
    except ClientDisconnect:
        status, code = 400, "client_disconnected"
        payload = error_body(code, "the client closed the connection before sending the whole body")
    except Exception:  # noqa: BLE001 - a defect here must not kill the worker or leak a traceback
        log.exception("request %s: unexpected server error", call.request_id)
        status, code = 500, "internal_error"
        payload = error_body(code, "unexpected server error; it is logged with this request id")
    call.request_id = call.request_id or new_request_id()  # an invalid X-Request-Id is replaced
    if code is not None:
        payload["error"]["request_id"] = call.request_id
        content = encode_json(payload)
    _after(state, call, status, code, payload["error"]["message"] if code is not None else None)
    response = _json_response(status, content, call)
    if code is None and call.outliers is not None:
        response.headers.update(outlier_headers(call.outliers, state.config.outliers.max_header_rows))
    return response


async def _answer(state: ServerState, call: _Call, request: Request) -> dict[str, Any]:
    """Route, read, check and predict; the response body."""
    config, headers = state.config, call.headers
    name = forced_variant(call.routes.table, headers, config.routing.forced_variants)
    call.forced = name is not None
    call.key = headers.get(ROUTING_KEY_HEADER) or None
    if name is None and call.key is None and config.routing.key_column is not None:
        call.parsed = await read_parsed(request, headers, config)
        call.key = column_key(call.parsed, config.routing.key_column)
    if name is None:
        name = state.router.choose(call.routes.table, call.key, call.routes.versions)
    call.runtime = call.routes.runtime(name)
    variant = call.runtime.variant
    method = predict_method(request, headers, variant)
    if call.parsed is None:
        call.parsed = await read_parsed(request, headers, config)
    call.batch = await checked_batch(call.parsed, variant, config)
    rows = await call.runtime.batcher.submit(call.batch, method, config.request_timeout_s)
    call.outliers = outlier_flags(rows)
    return _body(call, variant, method, rows)


def _body(call: _Call, variant: Variant, method: PredictMethod, rows: list[Any]) -> dict[str, Any]:
    """The response body; labels and scores kept for the log."""
    if method == "predict_scored":
        call.labels, call.scores = [row[0] for row in rows], [row[1] for row in rows]
        return {"predictions": call.labels}
    if method == "predict_proba":
        classes = list(variant.classes or ())
        call.labels = [classes[max(range(len(p)), key=p.__getitem__)] if classes else None for p in rows]
        call.probabilities = rows
        call.scores = [p[variant.positive_index] for p in rows] if variant.scored else None
        return {"predictions": rows, "classes": classes}
    call.labels = rows
    return {"predictions": rows}


def _after(state: ServerState, call: _Call, status: int, code: str | None, message: str | None) -> None:
    """Count the request, log what its variant answered and mirror it to the shadows."""
    seconds = time.perf_counter() - call.started
    runtime = call.runtime
    state.metrics.observe_request(runtime.variant.name if runtime else UNROUTED, status, seconds, code)
    if runtime is None:
        return
    variant, parsed = runtime.variant, call.parsed
    if status == 413:
        parsed = None  # refused for its size: one log row without its features
    columns = call.batch.columns if call.batch is not None else parsed_columns(parsed)
    state.record(PredictionEntry(
        call.request_id, call.key, variant.name, variant.version, False, call.ts, seconds * 1000.0, status,
        None if code is None else f"{code}: {message}", columns, parsed.n_rows if parsed else 0,
        call.labels, call.scores, forced=call.forced, route_version=call.routes.table.version,
        outliers=call.outliers if code is None else None))
    if code is None:
        _watch(state, call, parsed.n_rows if parsed else 0)
    if parsed is not None and parsed.n_rows > 0:
        job = ShadowJob(call.request_id, call.key, call.ts, parsed, variant, call.batch, call.labels, call.forced,
                        call.routes.table.version)
        for runner in call.routes.shadow_runners(variant.name):
            runner.offer(job)


def _watch(state: ServerState, call: _Call, rows: int) -> None:
    """Count an answered request's outliers (per variant) and its suspicious rows (per key, for probing)."""
    if call.outliers is not None:
        state.metrics.observe_outliers(call.runtime.variant.name, len(call.outliers), sum(call.outliers))
    probing = state.probing
    if probing is not None and (call.key or call.client):
        suspicious = suspicious_rows(call.outliers, call.scores, call.probabilities, probing.config.boundary_margin)
        probing.observe(call.key or f"client:{call.client}", rows, suspicious)


def outlier_headers(flags: list[bool], max_rows: int) -> dict[str, str]:
    """X-Outlier-Count (exact) and X-Outlier-Rows (the first `max_rows` flagged row indices)."""
    flagged = [i for i, flag in enumerate(flags) if flag]
    return {"X-Outlier-Count": str(len(flagged)), "X-Outlier-Rows": ",".join(map(str, flagged[:max_rows]))}


def header_map(request: Request) -> dict[str, str]:
    """The request's headers as a plain dict, built in one pass: Starlette's `Headers.get` scans the
    list on every lookup and raises inside for each absent header, and a request looks up six. A
    repeated header keeps its first value, as `Headers.get` does (ASGI servers send names lowercased)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(request.scope["headers"])}


def new_request_id() -> str:
    """A random version-4 UUID in hex, as `uuid.uuid4().hex` gives, without building a UUID object."""
    value = int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET
    return f"{value:032x}"


def request_id_of(headers: Mapping[str, str]) -> str:
    """The caller's X-Request-Id (kept for joining delayed labels), or a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is None:
        return new_request_id()
    if not REQUEST_ID.fullmatch(given):
        raise bad_request("invalid_header", "X-Request-Id must be 1-128 characters of A-Z a-z 0-9 . _ : @ / + = -")
    return given


def predict_method(request: Request, headers: Mapping[str, str], variant: Variant) -> PredictMethod:
    """`predict`, or `predict_proba` when asked by `?proba=true` or `X-Predict-Proba: true`."""
    flag = request.query_params.get("proba") if request.scope.get("query_string") else None
    if flag is None:
        flag = headers.get(PROBA_HEADER)
    if flag is None or flag.strip().lower() in _FALSE:
        return variant.answer_method
    if flag.strip().lower() not in _TRUE:
        raise bad_request("invalid_parameter", f"proba must be true or false, not {flag[:40]!r}")
    if not variant.supports_proba:
        raise bad_request("proba_unsupported", f"variant {variant.name!r} has no predict_proba")
    return "predict_proba"


async def read_body(request: Request, limit: int, headers: Mapping[str, str] | None = None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes (`headers`:
    the request's, when the caller already has them as a dict)."""
    declared = (request.headers if headers is None else headers).get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("body_too_large", f"the body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large("body_too_large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_parsed(request: Request, headers: Mapping[str, str], config: ServingConfig) -> ParsedInput:
    """The body read (bounded) and parsed; in a thread when it is large."""
    content_type = headers.get("content-type")
    media_type_of(content_type)  # 415 before reading a body we cannot parse
    body = await read_body(request, config.max_body_bytes, headers)
    if len(body) > OFFLOAD_BYTES:
        return await asyncio.to_thread(parse_body, body, content_type)
    return parse_body(body, content_type)


async def checked_batch(parsed: ParsedInput, variant: Variant, config: ServingConfig) -> FeatureBatch:
    """The parsed rows validated against the variant's signature (in a thread when there are many)."""

    def check() -> FeatureBatch:
        return validate(parsed, variant.schema, config.max_batch_rows, config.extra_columns,
                        strict_integers=variant.strict_integers)

    if parsed.n_rows * max(len(parsed.columns), 1) > OFFLOAD_CELLS:
        return await asyncio.to_thread(check)
    return check()


def column_key(parsed: ParsedInput, column: str) -> str | None:
    """The routing key from the entity-id column: its value in the first row (None when absent)."""
    if column not in parsed.columns or parsed.n_rows == 0:
        return None
    value = parsed.data[parsed.columns.index(column)][0]
    return None if value is None else str(value)


def parsed_columns(parsed: ParsedInput | None) -> dict[str, list[Any]] | None:
    """The request's columns as sent (for logging a request that failed its checks)."""
    return None if parsed is None else dict(zip(parsed.columns, parsed.data, strict=True))


def encode_json(payload: dict[str, Any]) -> bytes:
    """JSON bytes; NaN becomes null (JSON has no NaN), numpy values and non-string keys are allowed.
    Text orjson refuses (a lone surrogate echoed in an error message) is escaped instead of failing."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json_text(payload).encode()


def _json_response(status: int, content: bytes, call: _Call) -> Response:
    headers = {"X-Request-Id": call.request_id, "X-Route-Version": str(call.routes.table.version)}
    if call.runtime is not None:
        headers["X-Model-Variant"] = call.runtime.variant.name
        headers["X-Model-Version"] = call.runtime.variant.version
    return Response(content, status_code=status, headers=headers, media_type="application/json")
