"""Loading skops files with mlgate's trust list (`serving.trusted_types`), never the model's own.

skops builds only the types it knows to be safe unless the caller trusts more. MLflow passes the
`skops_trusted_types` recorded in the model's MLmodel file, so whoever writes the model also decides
what is trusted. mlgate reads the types the file needs and trusts only those on its configured list:
a full type name, or a module prefix ending in ".". A prefix such as `sklearn.` also trusts the sklearn
types skops itself flags (e.g. HistGradientBoosting's `TreePredictor`); `SkopsLoad.flagged` names the
ones a load trusted, so the server and the gates can say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgate.gates.result import first_line
from mlgate.serving.settings import DEFAULT_TRUSTED_TYPES


class UntrustedTypesError(ValueError):
    """The skops file needs types outside the trust list, or cannot be read; the message names them."""


@dataclass(frozen=True)
class SkopsLoad:
    """A loaded skops object and the types skops flags that mlgate's trust list let through."""

    model: Any
    flagged: tuple[str, ...]


def is_trusted(type_name: str, trusted: Sequence[str]) -> bool:
    """`type_name` is on the list: equal to an entry, or inside a module prefix ending in '.'."""
    return any(type_name == t or (t.endswith(".") and type_name.startswith(t)) for t in trusted)


def _refused(flagged: Sequence[str], trusted: Sequence[str]) -> list[str]:
    return [t for t in flagged if not is_trusted(t, trusted)]


def _hint(refused: Sequence[str]) -> str:
    return (f"refusing types outside serving.trusted_types: {', '.join(refused)} (add the ones you trust to "
            "serving.trusted_types in params.yaml; skops flags them as not known to be safe)")


def load_skops(model_file: Path, trusted: Sequence[str] = DEFAULT_TRUSTED_TYPES) -> SkopsLoad:
    """The object in the skops file `model_file`; UntrustedTypesError naming the file and the reason."""
    import skops.io as sio

    if not model_file.is_file():
        raise UntrustedTypesError(f"{model_file}: model file missing")
    try:
        flagged = sio.get_untrusted_types(file=str(model_file))
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-skops file raises many types
        raise UntrustedTypesError(f"{model_file}: not a readable skops file ({first_line(exc)})") from None
    refused = _refused(flagged, trusted)
    if refused:
        raise UntrustedTypesError(f"{model_file}: {_hint(refused)}")
    try:
        return SkopsLoad(sio.load(str(model_file), trusted=flagged), tuple(flagged))
    except Exception as exc:  # noqa: BLE001 - skops raises many types for corrupt files
        raise UntrustedTypesError(f"{model_file}: cannot be loaded ({first_line(exc)})") from None


def trusted_types_for(model: Any, trusted: Sequence[str] = DEFAULT_TRUSTED_TYPES) -> list[str]:
    """The skops types `model` needs beyond skops' own safe list, all on `trusted` (for saving: MLflow
    records them as `skops_trusted_types`). UntrustedTypesError when one is not on the list."""
    import skops.io as sio

    flagged = sio.get_untrusted_types(data=sio.dumps(model))
    refused = _refused(flagged, trusted)
    if refused:
        raise UntrustedTypesError(f"model: {_hint(refused)}")
    return flagged
