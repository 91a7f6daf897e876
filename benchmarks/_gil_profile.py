"""Where a server's GIL time goes: py-spy samples of the thread holding the GIL, sorted into the stages
of the request path. Used by `benchmarks.serving_speed --profile` (needs py-spy; the benchmark does not).

Each sample is a stack of the one thread that held the GIL at that instant (`py-spy record --gil`); a
stack is put in the first stage whose marker appears in it, reading from the innermost frame outwards,
so the JSON parser called by mlgate's protocol module counts as parsing, not as the framework.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# (stage, markers): a frame whose text contains a marker belongs to the stage; first match from the leaf.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model: frame building", ("serving/frames.py",)),
    ("model: trees", ("_hist_gradient_boosting/predictor.py", "_predict_iterations", "_raw_predict")),
    ("model: pipeline transform", ("sklearn/", "pandas/", "numpy/", "narwhals/", "pyarrow/")),
    ("log: encoding", ("prediction_log.py", "_encoded (serving/log", "_entry_rows", "log_rows (")),
    ("log: insert (SQLAlchemy + sqlite3)", ("sqlalchemy/", "sqlite3")),
    ("parsing (JSON body -> columns)", ("serving/protocol.py", "json/decoder.py", "json/__init__.py")),
    ("validation", ("serving/validation.py",)),
    ("response JSON", ("encode_json",)),
    ("metrics", ("serving/telemetry.py", "prometheus_client/")),
    ("log: enqueue", ("server_state.py", "serving/log/writer.py", "PredictionEntry")),
    ("shadow mirror", ("serving/shadow/",)),
    ("micro-batcher", ("serving/batching.py", "concurrent/futures/")),
    ("mlgate request handling (routing, ids, headers)", ("serving/invocations.py", "serving/routing/", "uuid.py")),
    ("HTTP server + framework (uvicorn, Starlette, FastAPI)", ("uvicorn/", "starlette/", "fastapi/", "httptools")),
)
# Stages known by a frame anywhere in the stack, before the markers above: numpy called by mlgate's own
# model code (the flat trees, the numpy feature step, the outlier detector) belongs to that code.
OWNERS: tuple[tuple[str, str], ...] = (
    ("model: trees", "serving/fast_trees.py"),
    ("model: pipeline transform", "serving/fast_features.py"),
    ("outlier flags", "serving/outliers.py"),
)
EVENT_LOOP = "event loop (asyncio/uvloop)"
OTHER = "other"


@dataclass(frozen=True)
class GilProfile:
    """Samples by thread and by stage; `possible` is the number of sampling instants."""

    by_stage: Counter[str]
    by_thread: Counter[str]
    samples: int
    possible: int

    def share(self, count: int) -> float:
        return count / self.possible if self.possible else 0.0


def stage_of(frames: list[str]) -> str:
    """The stage of one stack (outermost frame first, as py-spy writes it)."""
    for stage, owner in OWNERS:
        if any(owner in frame for frame in frames):
            return stage
    for frame in reversed(frames):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    return EVENT_LOOP if any("asyncio" in f or "uvloop" in f or "Runner.run" in f for f in frames) else OTHER


def read_samples(path: Path, seconds: float, rate: int) -> GilProfile:
    """Parse py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    by_stage: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # not a sample line (py-spy may end a file it could not finish cleanly with a message)
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[-1].strip().rstrip("_0123456789") or "?"
        by_thread[thread] += int(count)
        by_stage[stage_of(frames[1:])] += int(count)
    return GilProfile(by_stage, by_thread, sum(by_thread.values()), int(seconds * rate))


def record(pid: int, seconds: float, out: Path, rate: int = 500) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` for `seconds` (it stops by itself); raise when py-spy is not installed."""
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    command = [spy, "record", "--pid", str(pid), "--duration", str(max(int(seconds), 1)), "--rate", str(rate),
               "--format", "raw", "--output", str(out), "--gil", "--threads", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
