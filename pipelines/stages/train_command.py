"""Stage `train` with the team's own training code: `train.command` (README, "Your own training code").

The command runs through the shell in the project root (the params file's directory) with the
environment of `command_environment`; it must exit 0 having written an MLflow model with a signature at
MLGATE_MODEL_DIR, a directory that does not exist yet. mlgate then loads that model as every gate will
(the project's LoadPolicy: skops with `serving.trusted_types`, no pickle without consent), measures it
on the test split like its own trainer, logs the directory unchanged to an MLflow run with the lineage
tags, and only then moves it to `train.model_dir` (the previous model stays until then). A failing
command, or a model that is missing, unloadable or cannot predict the test split, is the user's to fix:
exit 2, naming the command and its exit status with its stderr's last lines, or the path and the problem.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import IO

import pandas as pd

from mlgate.gates.result import first_line
from mlgate.pipelines import console
from mlgate.pipelines.datasets import load_split, split_path
from mlgate.pipelines.errors import UsageError
from mlgate.pipelines.files import replace_directory
from mlgate.pipelines.mlflow_io import log_model_directory
from mlgate.pipelines.params import Params
from mlgate.pipelines.stages import holdout_metrics
from mlgate.pipelines.stages.bundle import write_bundle
from mlgate.pipelines.stages.train import (
    TrainOutcome,
    current_lineage,
    features_and_target,
    load_checked_splits,
)
from mlgate.serving.loading import (
    BUNDLE_FOLDER,
    LoadedModel,
    LoadPolicy,
    ModelLoadError,
    load_model,
    read_mlmodel,
    signature_inputs,
)

MODEL_DIR_ENV = "MLGATE_MODEL_DIR"
TAIL_LINES = 5  # stderr lines quoted in the error of a failed command (all of it was relayed above)
TAIL_CHARS = 600
_SAVE_HINT = ("e.g. mlflow.sklearn.save_model(model, os.environ['MLGATE_MODEL_DIR'], serialization_format='skops', "
              "signature=mlflow.models.infer_signature(X, model.predict(X)))")


def run_and_log(params: Params, params_path: Path, tracking_uri: str, base_dir: Path) -> TrainOutcome:
    """Run `train.command`, check the model it wrote, log it unchanged with lineage, move it to train.model_dir."""
    command, name = str(params.train.command), params.model.name
    _, test = load_checked_splits(params, base_dir)  # the splits the command is told about exist and fit
    target = base_dir / params.train.model_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-train-", dir=target.parent))
    try:
        written = scratch / target.name
        run_command(command, base_dir, command_environment(params, params_path, base_dir, written, tracking_uri))
        metrics = measure(params, load_written_model(written, params), test, base_dir)
        write_bundle(written / BUNDLE_FOLDER, params, load_split(params.data, "train", base_dir), test)
        lineage = current_lineage(params, base_dir)
        tags = {**lineage.tags(), "mlgate.stage": "trained", "mlgate.model_name": name,
                "mlgate.train_command": command[:5000]}
        run = log_model_directory(tracking_uri, name, written, tags, metrics=metrics,
                                  params={"model": params.model.model_dump(), "train": params.train.model_dump()})
        replace_directory(written, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return TrainOutcome(run, metrics, lineage)


def command_environment(params: Params, params_path: Path, base_dir: Path, model_dir: Path,
                        tracking_uri: str) -> dict[str, str]:
    """This process's environment plus the contract's variables (absolute paths). PATH starts with this
    Python's bin directory, so `python` in the command is the interpreter that runs mlgate."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLGATE_PARAMS": str(Path(params_path).resolve()),
        "MLGATE_TRAIN_DATA": str(split_path(params.data, "train", base_dir).resolve()),
        "MLGATE_TEST_DATA": str(split_path(params.data, "test", base_dir).resolve()),
        "MLGATE_TARGET": params.model.target,
        "MLGATE_FEATURES": json.dumps(params.data.features),
        MODEL_DIR_ENV: str(Path(model_dir).resolve()),
        "MLFLOW_TRACKING_URI": _absolute_sqlite(tracking_uri),
    }


def run_command(command: str, cwd: Path, env: dict[str, str]) -> None:
    """Run `command` through the shell, relaying its output; UsageError naming it, its exit status and
    its stderr's last lines when it fails. Interrupted, its whole process group is stopped."""
    console.info(f"train: running train.command `{command}` in {cwd}")
    process = subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE,  # noqa: S602
                               stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    relays = [threading.Thread(target=_relay, args=(process.stdout, False, None), daemon=True),
              threading.Thread(target=_relay, args=(process.stderr, True, tail), daemon=True)]
    for relay in relays:
        relay.start()
    try:
        status = process.wait()
    except BaseException:  # Ctrl-C or any failure here: the command must not outlive mlgate
        _stop_group(process)
        raise
    finally:
        for relay in relays:
            relay.join(timeout=5)
    if status != 0:
        said = f"; its stderr ended with: {_quoted(tail)}" if tail else "; it wrote nothing to stderr"
        raise UsageError(f"train.command `{command}` {_ended(status)}{said}")


def load_written_model(path: Path, params: Params) -> LoadedModel:
    """The model at MLGATE_MODEL_DIR loaded with the project's policy; UsageError saying what is wrong."""
    where = f"{MODEL_DIR_ENV} ({path})"
    if not path.exists():
        raise UsageError(f"train.command exited 0 but wrote nothing at {where}: it must write an MLflow model "
                         f"directory there, {_SAVE_HINT}")
    if not (path / "MLmodel").is_file():
        raise UsageError(f"train.command wrote {where} without an MLmodel file: not an MLflow model directory; "
                         f"write one with mlflow.<flavor>.save_model, {_SAVE_HINT}")
    try:
        if signature_inputs(read_mlmodel(path), str(path)) is None:
            raise UsageError(f"the model train.command wrote at {where} has no signature (the gates build requests "
                             "from it and the server checks them against it); save it with "
                             "signature=mlflow.models.infer_signature(X, model.predict(X))")
        return load_model(str(path), LoadPolicy.of(params.serving))
    except ModelLoadError as exc:
        raise UsageError(f"the model train.command wrote at {MODEL_DIR_ENV} cannot be loaded: {exc}") from None


def measure(params: Params, model: LoadedModel, test: pd.DataFrame, base_dir: Path) -> dict[str, float]:
    """The holdout metrics mlgate's own trainer logs, of the loaded model on the test split."""
    x, y = features_and_target(test, params)
    try:
        return holdout_metrics.compute(params.model, model.model, x, y)
    except Exception as exc:  # noqa: BLE001 - the team's model may raise anything; the message names it
        test_path = split_path(params.data, "test", base_dir)
        raise UsageError(f"the model train.command wrote cannot be measured on {test_path}: "
                         f"{type(exc).__name__}: {first_line(exc)}") from None


def _relay(stream: IO[str], to_stderr: bool, tail: deque[str] | None) -> None:
    with stream:
        for line in stream:
            console.relay(line, stderr=to_stderr)
            if tail is not None and line.strip():
                tail.append(line.strip())


def _stop_group(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _ended(status: int) -> str:
    if status < 0:
        return f"was killed by signal {signal.Signals(-status).name}"
    return f"exited with status {status}"


def _quoted(lines: deque[str]) -> str:
    text = " | ".join(lines)
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]


def _absolute_sqlite(tracking_uri: str) -> str:
    """A relative SQLite store (the default sqlite:///mlflow.db) as this process resolves it, absolute,
    so the command, which runs in the project root, names the same store."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not tracking_uri.startswith(prefix + "/") and ":memory:" not in tracking_uri:
        return prefix + str(Path(tracking_uri[len(prefix):]).resolve())
    return tracking_uri
