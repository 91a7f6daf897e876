"""What every command gets: validated params and the settings read from the environment at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlgate.pipelines.mlflow_io import resolve_tracking_uri
from mlgate.pipelines.params import Params, load_params
from mlgate.pipelines.pickle_consent import with_consent


@dataclass(frozen=True)
class RunContext:
    params_path: Path
    params: Params
    tracking_uri: str
    base_dir: Path

    @classmethod
    def load(cls, params_path: str | Path, tracking_uri: str | None = None) -> RunContext:
        """Validate params first (nothing runs on a bad config), then resolve the tracking URI. This run's
        pickle consent (MLGATE_ALLOW_PICKLE, set by `mlgate --allow-pickle`) turns on serving.allow_pickle."""
        path = Path(params_path)
        params = load_params(path)
        params = params.model_copy(update={"serving": with_consent(params.serving)})
        return cls(path, params, tracking_uri or resolve_tracking_uri(), path.resolve().parent)

    def path(self, relative: str | Path) -> Path:
        return self.base_dir / relative

    @property
    def gate_reports(self) -> Path:
        return self.base_dir / "reports" / "gates"
