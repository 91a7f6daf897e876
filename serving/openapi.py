"""OpenAPI description of /invocations: the body is read raw (JSON or CSV), so it is declared here."""

from __future__ import annotations

from typing import Any

_ROWS = {"type": "array", "items": {"type": "object"}, "description": "one object per row"}
_COLUMNS = {"type": "object", "additionalProperties": {"type": "array"}, "description": "one list per column"}
_JSON_BODY = {
    "type": "object",
    "description": "Exactly one of the four MLflow scoring formats (other keys, e.g. params, are ignored).",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "required": ["columns", "data"],
            "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                           "data": {"type": "array", "items": {"type": "array"}},
                           "index": {"type": "array"}},
        },
        "dataframe_records": _ROWS,
        "instances": {"oneOf": [_ROWS, _COLUMNS]},
        "inputs": {"oneOf": [_ROWS, _COLUMNS]},
    },
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "column": {"type": "string"}, "request_id": {"type": "string"}}}},
}
_PREDICTIONS = {
    "type": "object",
    "required": ["predictions"],
    "properties": {
        "predictions": {"type": "array", "description": "one entry per row: the label (classifier), "
                        "the value (regressor), or with proba=true the class probabilities in `classes` order"},
        "classes": {"type": "array", "description": "only with proba=true: the class labels"},
    },
}
_HEADERS = {name: {"schema": {"type": "string"}, "description": text} for name, text in (
    ("X-Request-Id", "the caller's request id, or a new one"),
    ("X-Model-Variant", "the variant that answered"),
    ("X-Model-Version", "its model version (registry version, run id, or 'local')"),
    ("X-Route-Version", "the version of the route table that routed the request"),
)}


def _error_response(text: str) -> dict[str, Any]:
    return {"description": text, "headers": _HEADERS, "content": {"application/json": {"schema": _ERROR}}}


INVOCATIONS_OPENAPI: dict[str, Any] = {
    "parameters": [
        {"name": "proba", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
         "description": "return class probabilities instead of labels (classifiers only)"},
        {"name": "X-Predict-Proba", "in": "header", "required": False, "schema": {"type": "boolean"},
         "description": "same as ?proba=true"},
        {"name": "X-Request-Id", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "your inference id (1-128 of A-Z a-z 0-9 . _ : @ / + = -), echoed back"},
        {"name": "X-Target-Variant", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "answer with this variant of the route table instead of the routed one (unknown: 400)"},
        {"name": "X-Routing-Key", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "sticky assignment in weighted mode: the same key gets the same variant while its weight grows"},
    ],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": _JSON_BODY},
        "text/csv": {"schema": {"type": "string", "description": "a header row, then one line per row"}},
    }},
    "responses": {
        "200": {"description": "predictions, one per row", "headers": _HEADERS,
                "content": {"application/json": {"schema": _PREDICTIONS}}},
        "400": _error_response("malformed body, missing/duplicate column, wrong type, non-finite number, empty batch"),
        "413": _error_response("body larger than max_body_bytes or more rows than max_batch_rows"),
        "415": _error_response("Content-Type other than application/json or text/csv (UTF-8)"),
        "500": _error_response("the model raised on this request"),
        "503": _error_response("the model is not loaded yet"),
        "504": _error_response("no prediction within request_timeout_s"),
    },
}
