"""Stage entry points (I/O + composition), CLI, MLflow/DVC adapters, rollout controller."""
