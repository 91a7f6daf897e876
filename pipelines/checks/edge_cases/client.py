"""The HTTP side of the edge-case gate: send each case to the running server, and the holdout in chunks.

Every outcome becomes a value (`Answer`, `ServerPredictions`): a timeout or a refused connection is
an answer without a status, never an exception, so the gate judges it like any other case.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mlgate.gates.edge_cases.consistency import ServerPredictions
from mlgate.gates.edge_cases.decide import Answer, Case, HttpRequest

INVOCATIONS = "/invocations"


def send_cases(base_url: str, cases: Sequence[Case], timeout_s: float, alive: Callable[[], bool]) -> list[Answer]:
    """One answer per case, in order; once the server process is dead the rest are not sent."""
    answers: list[Answer] = []
    dead_after = ""
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        for case in cases:
            if dead_after:
                answers.append(Answer(None, problem=f"not sent: the server process died during case {dead_after}"))
                continue
            answer = send(client, case.request, timeout_s)
            answers.append(answer)
            if answer.status is None and not alive():
                dead_after = case.name
    return answers


def send(client: httpx.Client, request: HttpRequest, timeout_s: float) -> Answer:
    """POST one request; a transport failure is an Answer with status None and the reason."""
    headers = {"content-type": request.content_type, **dict(request.headers)}
    path = INVOCATIONS + (f"?{request.query}" if request.query else "")
    started = time.perf_counter()
    try:
        response = client.post(path, content=request.body, headers=headers)
    except httpx.TimeoutException:
        return Answer(None, problem=f"no answer within {timeout_s:g} s", elapsed_s=time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return Answer(None, problem=f"{type(exc).__name__}: {exc}", elapsed_s=time.perf_counter() - started)
    count = response.headers.get("x-outlier-count")
    return Answer(response.status_code, response.content, elapsed_s=time.perf_counter() - started,
                  outliers=int(count) if count is not None and count.isdigit() else None)


def get(url: str, timeout_s: float) -> Answer:
    """GET `url` (e.g. /healthz) as an Answer."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Answer(None, problem=f"{type(exc).__name__}: {exc}")
    return Answer(response.status_code, response.content)


def predict_holdout(base_url: str, frame: pd.DataFrame, columns: list[str], chunk_rows: int,
                    max_body_bytes: int, timeout_s: float, proba: bool) -> ServerPredictions:
    """The server's labels (or probability rows) for every row of `frame`, sent in chunks."""
    predictions: list[Any] = []
    what, query = ("probabilities", "proba=true") if proba else ("labels", "")
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        for start, stop, body in holdout_bodies(frame, columns, chunk_rows, max_body_bytes):
            answer = send(client, HttpRequest(body, query=query), timeout_s)
            rows = _predictions(answer)
            if rows is None:
                problem = answer.problem or f"status {answer.status}: {answer.body[:300].decode('utf-8', 'replace')}"
                return ServerPredictions(None, None, f"holdout rows {start}-{stop - 1} ({what}): {problem}")
            predictions.extend(rows)
    return ServerPredictions(None, predictions) if proba else ServerPredictions(predictions)


def _predictions(answer: Answer) -> list[Any] | None:
    if answer.status != 200:
        return None
    try:
        rows = json.loads(answer.body).get("predictions")
    except (ValueError, AttributeError):
        return None
    return rows if isinstance(rows, list) else None


def holdout_bodies(frame: pd.DataFrame, columns: list[str], chunk_rows: int,
                   max_body_bytes: int) -> Iterator[tuple[int, int, bytes]]:
    """(first row, end row, dataframe_split body) per chunk; a chunk over the body limit is halved."""
    data = _json_rows(frame[columns])
    start = 0
    while start < len(data):
        size = min(chunk_rows, len(data) - start)
        body = _split_body(columns, data[start:start + size])
        while len(body) > max_body_bytes and size > 1:
            size //= 2
            body = _split_body(columns, data[start:start + size])
        yield start, start + size, body
        start += size


def _json_rows(frame: pd.DataFrame) -> list[list[Any]]:
    """Rows of plain Python values with nulls (NaN, None, pd.NA) as None."""
    values = frame.astype(object).to_numpy()
    mask = frame.isna().to_numpy()
    values[mask] = None
    return [[v.item() if isinstance(v, np.generic) else v for v in row] for row in values.tolist()]


def _split_body(columns: list[str], rows: list[list[Any]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}, separators=(",", ":")).encode()
