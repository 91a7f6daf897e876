"""The `serving` section of params.yaml, owned here so the server can run without the pipelines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gates.schema import StrictModel


class MicroBatchConfig(StrictModel):
    """Concurrent requests are coalesced into one predict call, bounded in rows and wait."""

    enabled: bool = True
    max_batch_rows: int = Field(256, ge=1)
    max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0)
    # Native threads (OpenMP, BLAS) per model call. 1 leaves a core to the event loop and avoids
    # OpenMP spin-waiting when cores are shared; 0 keeps the libraries' own default.
    model_threads: int = Field(1, ge=0)


class PredictionLogConfig(StrictModel):
    """Where every prediction is recorded; SQLite in WAL mode unless a database URL is given."""

    url: str = "sqlite:///reports/predictions.db"
    batch_size: int = Field(256, ge=1)
    flush_interval_s: float = Field(0.5, gt=0.0)


class ServingConfig(StrictModel):
    """How the model server accepts requests and runs."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    runtime: Literal["process", "docker"] = "process"
    max_batch_rows: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(20_000_000, ge=1024)
    extra_columns: Literal["ignore", "reject"] = "ignore"
    request_timeout_s: float = Field(30.0, gt=0.0)
    startup_timeout_s: float = Field(60.0, gt=0.0)
    microbatch: MicroBatchConfig = MicroBatchConfig()
    prediction_log: PredictionLogConfig = PredictionLogConfig()
