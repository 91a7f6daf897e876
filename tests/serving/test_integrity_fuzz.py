"""10,000+ malformed requests to /invocations, /feedback and /routes of a real server, with valid ones mixed in.

What a user relies on: no answer is a 5xx (a lone surrogate, a value nested hundreds deep, garbage,
wrong types, wrong tokens), every valid request answered 200 is in the prediction log after a clean
stop, and the server's resident memory after warm-up grows by less than 10% over the run. Seeded and
bounded: the same requests every run, in well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest

from mlgate.serving.log.prediction_log import read_predictions
from mlgate.serving.runtime import ServerProcess
from mlgate.serving.settings import PredictionLogConfig, ServingConfig
from tests.serving.conftest import FEEDBACK_TOKEN

pytestmark = pytest.mark.slow
ADMIN_TOKEN = "fuzz-admin-token"
MALFORMED, VALID, SEED = 10_500, 1_000, 20261207
Request = tuple[str, str, bytes, dict[str, str], str | None]  # method, path, body, headers, valid request id


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _invocation(rng: random.Random, row: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A /invocations body broken in one of many ways (JSON text built by hand where json.dumps can't)."""
    text_column = next(k for k, v in row.items() if isinstance(v, str))
    number_column = next(k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    base = json.dumps({"dataframe_records": [row]})
    swap = lambda column, raw: base.replace(f'"{column}": {json.dumps(row[column])}', f'"{column}": {raw}', 1)  # noqa: E731
    choices = [
        lambda: swap(text_column, '"\\ud800"'), lambda: swap(text_column, '"a\\udfffb"'),
        lambda: swap(number_column, '"\\ud800"'), lambda: swap(text_column, _nested(rng.randint(200, 300))),
        lambda: swap(number_column, _nested(rng.randint(200, 300))), lambda: _nested(rng.randint(500, 3000)),
        lambda: swap(number_column, "1e999"), lambda: swap(number_column, str(10 ** rng.randint(20, 400))),
        lambda: swap(number_column, "NaN"), lambda: swap(text_column, "{}"), lambda: swap(text_column, "[1, 2]"),
        lambda: base[: rng.randint(0, len(base) - 1)], lambda: "",
        lambda: base.replace(f'"{text_column}"', '"\\ud800col"', 1), lambda: '{"dataframe_records": []}',
        lambda: '{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', lambda: '{"inputs": "x"}',
        lambda: json.dumps({"instances": [{**row, "extra\u0000": 1}]}), lambda: "[" + base + "]",
    ]
    body = rng.choice(choices)().encode("utf-8", "surrogatepass")
    headers = {"Content-Type": rng.choice(["application/json"] * 6 + ["text/csv", "text/plain", "application/xml"])}
    if rng.random() < 0.05:
        headers["X-Request-Id"] = rng.choice(["", "x" * 200, "bad id", "\u00e9t\u00e9"])
    if rng.random() < 0.05:
        headers["X-Target-Variant"] = rng.choice(["nope", "", "default" * 30])
    return body, headers


def _feedback(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    items = [
        '{"request_id": "valid-1", "label": "\\ud800"}', '{"request_id": "\\ud800", "label": "no"}',
        '{"request_id": "valid-2", "label": ' + _nested(rng.randint(200, 400)) + "}", _nested(rng.randint(300, 2000)),
        '{"request_id": 5, "label": "no"}', '{"request_id": "valid-3"}', '{"request_id": "valid-4", "reward": "x"}',
        '[{"request_id": "valid-5", "label": "no", "extra": 1}]', '{"feedback": 7}', "not json", "",
        '{"request_id": "valid-6", "label": "no", "correction": "yes"}', '{"request_id": "' + "r" * 500 + '"}',
    ]
    body = rng.choice(items).encode("utf-8", "surrogatepass")
    token = rng.choice([FEEDBACK_TOKEN] * 4 + [ADMIN_TOKEN, "wrong", ""])
    headers = {"Content-Type": rng.choice(["application/json"] * 5 + ["text/plain"])}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return body, headers


def _routes(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    bodies = [
        '{"mode": "weighted", "variants": [{"name": "default", "weight": 50}]}', '{"mode": "nope", "variants": []}',
        '{"mode": "single", "variants": [{"name": "\\ud800", "weight": 100}]}', _nested(rng.randint(300, 2000)),
        '{"mode": "single", "variants": [{"name": "ghost", "weight": 100}]}', "[]", "{", "",
        '{"mode": "single", "version": "one", "variants": [{"name": "default", "weight": 100}]}',
    ]
    headers = {"Content-Type": "application/json"}
    if rng.random() < 0.8:
        headers["Authorization"] = f"Bearer {rng.choice([ADMIN_TOKEN, FEEDBACK_TOKEN, 'wrong'])}"
    return rng.choice(bodies).encode("utf-8", "surrogatepass"), headers


def _requests(row: dict[str, Any]) -> list[Request]:
    rng = random.Random(SEED)
    out: list[Request] = []
    for _ in range(MALFORMED):
        kind = rng.random()
        if kind < 0.6:
            out.append(("POST", "/invocations", *_invocation(rng, row), None))
        elif kind < 0.85:
            out.append(("POST", "/feedback", *_feedback(rng), None))
        else:
            out.append(("PUT", "/routes", *_routes(rng), None))
    body = json.dumps({"dataframe_records": [row]}).encode()
    for i in range(VALID):
        request_id = f"valid-{i}"
        out.insert(rng.randrange(len(out) + 1), ("POST", "/invocations", body,
                                                  {"Content-Type": "application/json", "X-Request-Id": request_id},
                                                  request_id))
    return out


async def _send(base: str, requests: list[Request], concurrency: int = 8) -> list[tuple[int, str | None]]:
    answers: list[tuple[int, str | None]] = [(0, None)] * len(requests)
    cursor = iter(range(len(requests)))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:

        async def client() -> None:
            for i in cursor:
                method, path, body, headers, request_id = requests[i]
                async with session.request(method, base + path, data=body, headers=headers) as response:
                    await response.read()
                    answers[i] = (response.status, request_id)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_ten_thousand_malformed_requests_give_no_5xx_lose_no_valid_row_and_do_not_grow_memory(
        model_dir: Path, holdout: pd.DataFrame, tmp_path: Path) -> None:
    row = json.loads(holdout.head(1).to_json(orient="records"))[0]
    requests = _requests(row)
    log_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    config = ServingConfig(prediction_log=PredictionLogConfig(url=log_url))
    env = {"MLGATE_ADMIN_TOKEN": ADMIN_TOKEN, "MLGATE_FEEDBACK_TOKEN": FEEDBACK_TOKEN}
    with ServerProcess({"default": str(model_dir)}, config, env=env) as server:
        warm = len(requests) // 5
        answers = asyncio.run(_send(server.url, requests[:warm]))
        after_warm_up = _rss_kb(server.pid)
        answers += asyncio.run(_send(server.url, requests[warm:]))
        at_end = _rss_kb(server.pid)
    statuses = Counter(status for status, _ in answers)
    assert not [s for s in statuses if s >= 500 or s == 0], f"answers by status: {dict(statuses)}"
    valid = {request_id for status, request_id in answers if request_id is not None and status == 200}
    assert len(valid) == VALID
    logged = set(read_predictions(log_url)["request_id"])
    assert not valid - logged, f"{len(valid - logged)} valid answered requests are missing from the log"
    assert at_end < after_warm_up * 1.10, f"RSS grew from {after_warm_up} kB to {at_end} kB"
    print(f"fuzz: {len(requests)} requests ({MALFORMED} malformed), statuses {dict(sorted(statuses.items()))}, "
          f"{len(valid)} valid rows all logged, RSS {after_warm_up} -> {at_end} kB")
