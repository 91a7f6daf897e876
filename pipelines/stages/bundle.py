"""What mlgate adds to a trained model's bundle, in `mlgate/` of its MLflow model directory: the outlier
detector fitted on the training features (`mlgate.serving.outliers`, docs/OUTLIERS.md) and the background
sample of training rows the explainers compare each row against (`mlgate.serving.explain_background`,
docs/EXPLANATIONS.md). The bundle is logged and judged as one directory, so the gates, the digest and the
registered version all cover it, whatever the model's flavor.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlgate.pipelines import console
from mlgate.pipelines.params import Params


def write_bundle(folder: Path, params: Params, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Write mlgate's part of the bundle into `folder` (it becomes `<model dir>/mlgate`): the background
    sample, and the outlier detector unless train.outliers.enabled is false."""
    from mlgate.serving.explain_background import write_background

    features = params.data.features
    write_background(folder, train[features], params.serving.explain.background_rows, params.train.seed)
    if params.train.outliers.enabled:
        _write_detector(folder, params, train[features], test[features])


def _write_detector(folder: Path, params: Params, train: pd.DataFrame, test: pd.DataFrame) -> None:
    from mlgate.serving.outliers import DETECTOR_DIR, fit_detector, save_detector, with_holdout_rate

    config = params.train.outliers
    detector = fit_detector(train, params.data.numeric, params.data.categorical, share=config.share,
                            n_estimators=config.n_estimators, max_samples=config.max_samples, seed=params.train.seed)
    detector = with_holdout_rate(detector, test)
    save_detector(detector, folder / DETECTOR_DIR.name)
    console.info(f"train: outlier detector flags {detector.training_rate:.2%} of the training rows "
                 f"(train.outliers.share {config.share:.2%}) and {detector.holdout_rate:.2%} of the test split")
