"""POST /invocations: one request through routing, size limits, parsing, validation and the batcher.

Every outcome is a value: a JSON body, a status and the headers `X-Request-Id`, `X-Model-Variant`
and `X-Model-Version`. A bad request is a 4xx naming the problem; only a model that raises (500),
a model too slow (504) or a defect in this server (500) give a 5xx, always with the request id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from serving.batching import PredictionError
from serving.config import ServingConfig
from serving.errors import RequestError, bad_request, error_body, too_large
from serving.metrics import UNROUTED
from serving.protocol import media_type_of, parse_body
from serving.state import ServerState
from serving.validation import FeatureBatch, validate
from serving.variants import PredictMethod, Variant

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
PROBA_HEADER = "x-predict-proba"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})
# Bodies above this are parsed and checked in a thread, so the event loop keeps answering others.
OFFLOAD_BYTES = 256 * 1024


async def invoke(state: ServerState, request: Request) -> Response:
    """Answer one scoring request; never raises."""
    started = time.perf_counter()
    request_id, variant = new_request_id(), None
    try:
        request_id = request_id_of(request.headers)
        variant = state.variant_for(request.headers)
        status, code = 200, None
        content = encode_json(await _predict(state, variant, request))
    except RequestError as exc:
        status, payload, code = exc.status, exc.body(), exc.code
    except PredictionError as exc:
        log.warning("request %s: the model raised: %s", request_id, exc)
        status, code = 500, "prediction_failed"
        payload = error_body(code, f"the model failed on this request: {exc}")
    except TimeoutError:
        status, code = 504, "prediction_timeout"
        payload = error_body(code, f"no prediction within {state.config.request_timeout_s} s")
    except ClientDisconnect:
        status, code = 400, "client_disconnected"
        payload = error_body(code, "the client closed the connection before sending the whole body")
    except Exception:  # noqa: BLE001 - a defect here must not kill the worker or leak a traceback
        log.exception("request %s: unexpected server error", request_id)
        status, code = 500, "internal_error"
        payload = error_body(code, "unexpected server error; it is logged with this request id")
    if code is not None:
        payload["error"]["request_id"] = request_id
        content = encode_json(payload)
    label = variant.name if variant is not None else UNROUTED
    state.metrics.observe_request(label, status, time.perf_counter() - started, code)
    return _json_response(status, content, request_id, variant)


async def _predict(state: ServerState, variant: Variant, request: Request) -> dict[str, Any]:
    config = state.config
    method = predict_method(request, variant)
    content_type = request.headers.get("content-type")
    media_type_of(content_type)  # 415 before reading a body we cannot parse
    body = await read_body(request, config.max_body_bytes)
    batch = await checked_batch(body, content_type, variant, config)
    submit = state.batchers[variant.name].submit(batch, method)
    rows = await asyncio.wait_for(submit, config.request_timeout_s)
    if method == "predict_proba":
        return {"predictions": rows, "classes": list(variant.classes or ())}
    return {"predictions": rows}


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(headers: Mapping[str, str]) -> str:
    """The caller's X-Request-Id (kept for joining delayed labels), or a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is None:
        return new_request_id()
    if not _REQUEST_ID.fullmatch(given):
        raise bad_request("invalid_header", "X-Request-Id must be 1-128 characters of A-Z a-z 0-9 . _ : @ / + = -")
    return given


def predict_method(request: Request, variant: Variant) -> PredictMethod:
    """`predict`, or `predict_proba` when asked by `?proba=true` or `X-Predict-Proba: true`."""
    flag = request.query_params.get("proba")
    if flag is None:
        flag = request.headers.get(PROBA_HEADER)
    if flag is None or flag.strip().lower() in _FALSE:
        return "predict"
    if flag.strip().lower() not in _TRUE:
        raise bad_request("invalid_parameter", f"proba must be true or false, not {flag[:40]!r}")
    if not variant.supports_proba:
        raise bad_request("proba_unsupported", f"variant {variant.name!r} has no predict_proba")
    return "predict_proba"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("body_too_large", f"the body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large("body_too_large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def checked_batch(body: bytes, content_type: str | None, variant: Variant, config: ServingConfig) -> FeatureBatch:
    """Parse and validate the body against the variant's signature (in a thread when it is large)."""

    def check() -> FeatureBatch:
        parsed = parse_body(body, content_type)
        return validate(parsed, variant.schema, config.max_batch_rows, config.extra_columns,
                        strict_integers=variant.strict_integers)

    if len(body) > OFFLOAD_BYTES:
        return await asyncio.to_thread(check)
    return check()


def encode_json(payload: dict[str, Any]) -> bytes:
    """JSON bytes; NaN becomes null (JSON has no NaN), numpy values and non-string keys are allowed."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _json_response(status: int, content: bytes, request_id: str, variant: Variant | None) -> Response:
    headers = {"X-Request-Id": request_id}
    if variant is not None:
        headers["X-Model-Variant"] = variant.name
        headers["X-Model-Version"] = variant.version
    return Response(content, status_code=status, headers=headers, media_type="application/json")
