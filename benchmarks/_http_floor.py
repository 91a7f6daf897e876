"""The HTTP floor: a bare FastAPI app under the same uvicorn settings as `mlgate serve`, which reads the
body, parses it as JSON and answers a constant prediction per row. No model, no checks, no log: what the
server framework and the load generator cost on this machine, the floor any model server stands on.

    python -m uvicorn benchmarks._http_floor:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI()


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    """A constant label per row of a `dataframe_split` body."""
    document = json.loads(await request.body())
    rows = len(document["dataframe_split"]["data"])
    return Response(json.dumps({"predictions": [0] * rows}), media_type="application/json")


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    """What `wait_until_ready` polls, as on the model server."""
    return {"status": "ready"}
