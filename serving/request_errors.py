"""Request errors as values with an HTTP status, and the one JSON shape every error response uses."""

from __future__ import annotations

from typing import Any

# Bounded messages: a 10,000-character value or a list of 500 columns never floods a response.
_MAX_SHOWN = 10
_MAX_VALUE_CHARS = 60


class RequestError(Exception):
    """A problem with one request, answered with `status` and `{"error": {code, message, column?}}`."""

    def __init__(self, status: int, code: str, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.column = column

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.column)


def error_body(code: str, message: str, column: str | None = None, **extra: Any) -> dict[str, Any]:
    """The JSON error envelope shared by every non-2xx response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if column is not None:
        error["column"] = column
    error.update(extra)
    return {"error": error}


def bad_request(code: str, message: str, column: str | None = None) -> RequestError:
    return RequestError(400, code, message, column)


def too_large(code: str, message: str) -> RequestError:
    return RequestError(413, code, message)


def shown(values: list[str]) -> str:
    """A short, quoted listing of names: at most ten, then a count of the rest."""
    head = ", ".join(repr(v) for v in values[:_MAX_SHOWN])
    rest = len(values) - _MAX_SHOWN
    return head + (f" and {rest} more" if rest > 0 else "")


def preview(value: Any) -> str:
    """A value as it appears in an error message, cut to a readable length."""
    text = repr(value)
    if len(text) <= _MAX_VALUE_CHARS:
        return text
    return text[:_MAX_VALUE_CHARS] + f"... ({len(text)} chars)"
