"""A model with a known fault: an existing MLflow model wrapped so that it is worse in one measured way.

The demo's degraded candidate and the decision audit (benchmarks/decisions.py) need challengers whose
right verdict is known whatever the champion is: the champion itself, with a share of its outputs
perturbed (a label swapped to another class, or a regression value shifted), extra CPU work per call
(a slower model, not a sleep), a share of rows whose requests raise, or every call raising. It is an
MLflow "models from code" pyfunc: the class below is a .py file copied into the model, its artifact is
the wrapped MLflow model (loaded by mlgate's loader under the policy of the load it runs inside: skops
with the project's trust list, no pickle without consent), and nothing is pickled. Which rows are perturbed is a hash of the row's values, so one row always gets one answer.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODEL_CODE = '''
import time
import zlib

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class FaultyModel(PythonModel):
    """The wrapped model with the faults in model_config (see pipelines/demo/faulty_model.py)."""

    def load_context(self, context):
        from mlgate.serving.loading import load_model, nested_policy
        from mlgate.serving.variants import served_predict

        # The wrapped model loads under the policy of the load this runs inside: the project's pickle
        # consent and skops trust list (e.g. LightGBM's types), never a list carried by the model. It
        # predicts as mlgate's server predicts with it (numpy feature step and trees where they apply), so
        # only the fault and the wrapper's own overhead tell the two apart.
        loaded = load_model(context.artifacts["model"], nested_policy())
        self.model = loaded.model
        self.predict_served = served_predict(loaded)
        self.config = dict(context.model_config)

    def predict(self, context, model_input, params=None):
        config = self.config
        if config["raise_always"]:
            raise RuntimeError("faulty model: this model raises on every call (mlgate fault injection)")
        chosen = _chosen(model_input, config["error_share"], salt=1)
        if chosen.any():
            raise RuntimeError(f"faulty model: {int(chosen.sum())} row(s) of this call are set to fail")
        _burn_cpu(config["cpu_ms_per_call"] / 1000.0)
        out = np.asarray(self.predict_served(model_input)).copy()
        flip = _chosen(model_input, config["perturb_share"], salt=0)
        if flip.any():
            classes = config["classes"]
            if classes:
                index = {str(c): i for i, c in enumerate(classes)}
                swapped = [classes[(index.get(str(v), -1) + 1) % len(classes)] for v in out[flip]]
                out = out.astype(object)
                out[flip] = swapped
            else:
                out = out.astype(float)
                out[flip] += config["shift"]
        return out


def _chosen(frame, share, salt):
    """Rows selected by a hash of their values (CRC-32 of their text, salted): share of them, the same rows on
    every call. Per row in Python: pandas' astype(str) of a frame cost more than the wrapped model's call."""
    if share <= 0 or len(frame) == 0:
        return np.zeros(len(frame), dtype=bool)
    rows = pd.DataFrame(frame).to_numpy(dtype=object)
    hashed = np.fromiter((zlib.crc32(f"{salt}\x1f{chr(31).join(map(str, row))}".encode()) for row in rows),
                         dtype=np.int64, count=len(rows))
    return (hashed % 1_000_000) < share * 1_000_000


def _burn_cpu(seconds):
    """Busy work on this thread for `seconds` of CPU time: a slower model, not a sleep."""
    if seconds <= 0:
        return
    end, x = time.thread_time() + seconds, 0.0
    while time.thread_time() < end:
        for i in range(2000):
            x += i * 0.5


mlflow.models.set_model(FaultyModel())
'''


@dataclass(frozen=True)
class Faults:
    """What is wrong with the wrapped model; all zero is the wrapped model itself."""

    perturb_share: float = 0.0  # share of rows whose output is perturbed
    classes: list[Any] = field(default_factory=list)  # classifier: a perturbed row gets the next class
    shift: float = 0.0  # regression: added to a perturbed row's value
    cpu_ms_per_call: float = 0.0  # CPU work added to every predict call
    error_share: float = 0.0  # share of rows whose calls raise (a request with one of them fails)
    raise_always: bool = False

    def describe(self) -> str:
        parts = []
        if self.perturb_share:
            how = "label swapped to another class" if self.classes else f"value shifted by {self.shift:+.4g}"
            parts.append(f"{self.perturb_share:.1%} of rows with their {how}")
        if self.cpu_ms_per_call:
            parts.append(f"{self.cpu_ms_per_call:g} ms of extra CPU work per call")
        if self.error_share:
            parts.append(f"{self.error_share:.1%} of rows raising")
        if self.raise_always:
            parts.append("raising on every call")
        return ", ".join(parts) or "no fault"


def save_faulty_model(model_dir: str | Path, out_dir: str | Path, faults: Faults) -> Path:
    """Write the pyfunc wrapping the MLflow model at `model_dir` with `faults` to `out_dir` (same signature)."""
    import mlflow.pyfunc

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hints about type hints and input examples
        mlflow.pyfunc.save_model(str(out_dir), **_model_arguments(model_dir, faults, out_dir.parent / out_dir.name))
    return out_dir


def log_faulty_model(model_dir: str | Path, faults: Faults, scratch: Path) -> str:
    """Log the same pyfunc to the active MLflow run; its model URI (for registration)."""
    import mlflow.pyfunc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(name="model", **_model_arguments(model_dir, faults, scratch / "logged"))
    return info.model_uri


def _model_arguments(model_dir: str | Path, faults: Faults, stem: Path) -> dict[str, Any]:
    from mlflow.models import Model

    code = stem.parent / f"{stem.name}_code.py"
    code.parent.mkdir(parents=True, exist_ok=True)
    code.write_text(MODEL_CODE, encoding="utf-8")
    return {"python_model": str(code), "artifacts": {"model": str(model_dir)},
            "model_config": {**asdict(faults), "classes": [_plain(c) for c in faults.classes]},
            "signature": Model.load(str(Path(model_dir) / "MLmodel")).signature,
            "pip_requirements": ["scikit-learn", "skops", "pandas", "numpy"]}


def _plain(value: Any) -> Any:
    """A class label as a YAML-safe Python value (numpy scalars become int/float/str)."""
    return value.item() if hasattr(value, "item") else value
