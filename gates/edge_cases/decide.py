"""Edge-case gate: each generated request, the answer the real server gave, and the verdict on it.

A case expects either `ok` (2xx with one valid prediction per row: a model class, or a probability
row that is finite and sums to 1) or `client_error` (4xx whose JSON error has a message, naming the
offending column where there is one). A 5xx, a timeout, a lost connection or a dead server is FAIL
for every case, whatever it expected. The pipeline stage sends the requests; this module only judges.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlgate.gates.result import Check, GateResult, Status

GATE = "edge_cases"
Expect = Literal["ok", "client_error"]
Output = Literal["labels", "proba"]
_EXCERPT_CHARS = 300
_LISTED = 10


@dataclass(frozen=True)
class HttpRequest:
    """A POST to /invocations: body bytes, content type, query string and extra headers."""

    body: bytes
    content_type: str = "application/json"
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def summary(self) -> dict[str, Any]:
        path = "/invocations" + (f"?{self.query}" if self.query else "")
        return {"method": "POST", "path": path, "content_type": self.content_type, "bytes": len(self.body),
                "body": _excerpt(self.body)}


@dataclass(frozen=True)
class Case:
    """One generated request and the outcome a correct server gives."""

    name: str
    request: HttpRequest
    expect: Expect
    description: str
    rows: int = 1  # predictions expected when `ok`
    status: int | None = None  # the exact status the contract fixes (413, 415), else any of the class
    column: str | None = None  # the column a client error must name
    output: Output = "labels"
    classes: tuple[Any, ...] | None = None  # valid labels; None: any finite number (regression)
    sent: dict[str, Any] | None = None  # what the case is about, for the report (a value, a row)

    def expected_text(self) -> str:
        if self.expect == "client_error":
            status = str(self.status) if self.status else "4xx"
            return f"{status} with an error message" + (f" naming column {self.column!r}" if self.column else "")
        what = "probability rows" if self.output == "proba" else "predictions"
        domain = f" in {list(self.classes)}" if self.classes is not None and self.output == "labels" else ""
        return f"2xx with {self.rows} {what}{domain}"


@dataclass(frozen=True)
class Answer:
    """What came back: an HTTP status and body, or no answer (`status` None) and why."""

    status: int | None
    body: bytes = b""
    problem: str = ""
    elapsed_s: float = 0.0
    outliers: int | None = None  # X-Outlier-Count (None: absent, the model's bundle has no outlier detector)


def judge(case: Case, answer: Answer) -> Check:
    """PASS when the answer is of the expected class and well formed; FAIL naming the case otherwise."""
    problem = _problem(case, answer)
    details = {"description": case.description, "sent": case.sent or {}, "request": case.request.summary(),
               "expected": {"class": case.expect, "status": case.status, "column": case.column, "rows": case.rows},
               "status": answer.status, "body": _excerpt(answer.body), "elapsed_ms": round(answer.elapsed_s * 1e3, 2)}
    observed = answer.status if answer.status is not None else "no answer"
    if problem:
        return Check(f"case.{case.name}", Status.FAIL, observed, case.expected_text(),
                     f"{case.name}: {problem}", details)
    return Check(f"case.{case.name}", Status.PASS, observed, case.expected_text(),
                 f"{case.name}: {answer.status} as expected ({case.description})", details)


def _problem(case: Case, answer: Answer) -> str:
    if answer.status is None:
        return f"no answer from the server ({answer.problem or 'unknown transport error'})"
    if answer.status >= 500:
        return f"server error {answer.status}: {_error_message(answer.body) or _excerpt(answer.body)}"
    if case.status is not None and answer.status != case.status:
        return f"status {answer.status}, the contract says {case.status} ({_error_message(answer.body)})"
    if case.expect == "ok":
        if not 200 <= answer.status < 300:
            return f"a valid request was refused with {answer.status}: {_error_message(answer.body)}"
        return _prediction_problem(case, answer.body)
    if not 400 <= answer.status < 500:
        return f"an invalid request got {answer.status} instead of a 4xx: {_excerpt(answer.body)}"
    return _client_error_problem(case, answer.body)


def _prediction_problem(case: Case, body: bytes) -> str:
    predictions = _json(body).get("predictions")
    if not isinstance(predictions, list):
        return f"the body has no 'predictions' list: {_excerpt(body)}"
    if len(predictions) != case.rows:
        return f"{len(predictions)} predictions for {case.rows} rows"
    check = _proba_problem if case.output == "proba" else _label_problem
    for row, value in enumerate(predictions):
        if problem := check(value, case.classes):
            return f"prediction of row {row}: {problem}"
    return ""


def _label_problem(value: Any, classes: tuple[Any, ...] | None) -> str:
    if classes is not None:
        return "" if value in classes else f"{value!r} is not one of the classes {list(classes)}"
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return "" if finite else f"{value!r} is not a finite number"


def _proba_problem(value: Any, classes: tuple[Any, ...] | None) -> str:
    width = len(classes) if classes is not None else None
    if not isinstance(value, list) or (width is not None and len(value) != width):
        return f"{value!r} is not a list of {width} probabilities"
    if not all(isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in value):
        return f"{value!r} has a value outside [0, 1] or not finite"
    return "" if math.isclose(sum(value), 1.0, abs_tol=1e-6) else f"{value!r} does not sum to 1"


def _client_error_problem(case: Case, body: bytes) -> str:
    error = _json(body).get("error")
    if not isinstance(error, dict) or not str(error.get("message") or "").strip():
        return f"the 4xx body has no error message: {_excerpt(body)}"
    if case.column and error.get("column") != case.column and case.column not in str(error["message"]):
        return f"the error does not name column {case.column!r}: {error.get('message')!r}"
    return ""


def health_check(answer: Answer, alive: bool) -> Check:
    """After every case the server process must be alive and /healthz must answer 200."""
    ok = alive and answer.status == 200
    observed = answer.status if answer.status is not None else "no answer"
    message = ("the server is alive and /healthz answers 200 after every case" if ok else
               f"after the cases the server is {'alive' if alive else 'dead'} and /healthz gave "
               f"{observed} {answer.problem}".rstrip())
    return Check("server.healthy_after_cases", Status.PASS if ok else Status.FAIL, observed,
                 "process alive and /healthz 200", message)


def cases_summary(case_checks: Sequence[Check]) -> Check:
    """One line over every case: how many passed, and the failing ones by name."""
    if not case_checks:
        return Check("cases", Status.ERROR, 0, "at least one case", "no edge cases were generated or judged")
    failed = [c for c in case_checks if c.status.blocks]
    status = Status.FAIL if failed else Status.PASS
    names = [c.name.removeprefix("case.") for c in failed]
    shown = ", ".join(names[:_LISTED]) + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
    message = (f"{len(failed)} of {len(case_checks)} cases failed: {shown}" if failed
               else f"all {len(case_checks)} cases answered as expected, none with a 5xx")
    server_errors = [c.name.removeprefix("case.") for c in failed
                     if (isinstance(c.observed, int) and c.observed >= 500) or c.observed == "no answer"]
    return Check("cases", status, len(case_checks) - len(failed), f"all {len(case_checks)} cases as expected",
                 message, {"failed": names, "server_errors_or_no_answer": server_errors, "total": len(case_checks)})


def assemble(case_checks: Sequence[Check], other_checks: Sequence[Check], duration_s: float,
             artifacts: dict[str, str] | None = None) -> GateResult:
    """The gate result: the summary first (what a reader looks at), then the server and consistency
    checks, then every case."""
    checks = [cases_summary(case_checks), *other_checks, *case_checks]
    return GateResult.from_checks(GATE, checks, duration_s, artifacts)


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def _error_message(body: bytes) -> str:
    error = _json(body).get("error")
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}"[:_EXCERPT_CHARS]
    return ""


def _excerpt(body: bytes) -> str:
    text = body[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + f"... ({len(body)} bytes)"

