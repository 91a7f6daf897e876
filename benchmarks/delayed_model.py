"""A deliberately slow copy of a model: the sklearn model plus a fixed sleep in every predict call.

Used to check that the latency gate catches a real slowdown. It is an MLflow "models from code"
pyfunc (the model class is a .py file, nothing is pickled) whose artifact is the original MLflow
sklearn model, loaded with mlgate's skops allow-list, so serving it needs no
MLFLOW_ALLOW_PICKLE_DESERIALIZATION. The delay applies once per predict call, i.e. once per micro-batch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

MODEL_CODE = '''
import time

import mlflow
from mlflow.pyfunc import PythonModel


class DelayedModel(PythonModel):
    """The wrapped sklearn model, slowed by model_config["delay_ms"] per predict call."""

    def load_context(self, context):
        from mlgate.serving.loading import load_sklearn_model

        self.model = load_sklearn_model(context.artifacts["model"]).model
        self.delay_s = float(context.model_config["delay_ms"]) / 1000.0

    def predict(self, context, model_input, params=None):
        time.sleep(self.delay_s)
        return self.model.predict(model_input)


mlflow.models.set_model(DelayedModel())
'''


def save_delayed_model(model_dir: str | Path, out_dir: str | Path, delay_ms: float = 20.0) -> Path:
    """Write the delayed pyfunc of the MLflow sklearn model at `model_dir` to `out_dir` (same signature)."""
    import mlflow.pyfunc
    from mlflow.models import Model

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    code = out_dir.parent / f"{out_dir.name}_code.py"
    code.write_text(MODEL_CODE, encoding="utf-8")
    signature = Model.load(str(Path(model_dir) / "MLmodel")).signature
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hints about type hints and input examples
        mlflow.pyfunc.save_model(
            str(out_dir), python_model=str(code), artifacts={"model": str(model_dir)},
            model_config={"delay_ms": delay_ms}, signature=signature, pip_requirements=["scikit-learn", "skops"],
        )
    return out_dir
