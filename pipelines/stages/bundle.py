"""What mlgate adds to a trained model's bundle, in `mlgate/` of its MLflow model directory: the outlier
detector fitted on the training features (`mlgate.serving.outliers`). The bundle is logged and judged as
one directory, so the gates, the digest and the registered version all cover it, whatever the model's flavor.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlgate.pipelines import console
from mlgate.pipelines.params import Params

BUNDLE_DIR = "mlgate"  # inside the MLflow model directory (mlgate.serving.outliers.DETECTOR_DIR's parent)


def write_bundle(folder: Path, params: Params, train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Write mlgate's part of the bundle into `folder` (it becomes `<model dir>/mlgate`)."""
    from mlgate.serving.outliers import DETECTOR_DIR, fit_detector, save_detector, with_holdout_rate

    config = params.train.outliers
    if not config.enabled:
        return
    features = params.data.features
    detector = fit_detector(train[features], params.data.numeric, params.data.categorical, share=config.share,
                            n_estimators=config.n_estimators, max_samples=config.max_samples, seed=params.train.seed)
    detector = with_holdout_rate(detector, test[features])
    save_detector(detector, folder / DETECTOR_DIR.name)
    console.info(f"train: outlier detector flags {detector.training_rate:.2%} of the training rows "
                 f"(train.outliers.share {config.share:.2%}) and {detector.holdout_rate:.2%} of the test split")
