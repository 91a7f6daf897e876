"""The server's loader freezes what a load leaves alive out of the garbage collector and makes full
collections rarer (issue 18): under load they walked the model and its libraries, 60-100 ms each."""

from __future__ import annotations

import gc
from pathlib import Path

from mlgate.serving.settings import ServingConfig
from mlgate.serving.variants import FULL_COLLECTION_EVERY, variant_loader


def test_a_loaded_model_is_outside_the_collected_generations(model_dir: Path) -> None:
    thresholds = gc.get_threshold()
    try:
        variant = variant_loader(ServingConfig())("default", str(model_dir))
        tracked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
        assert gc.get_freeze_count() > 0 and id(variant.model) not in tracked
        assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
