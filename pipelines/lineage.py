"""Where a model came from: git commit, data and params digests (the `mlgate.*` tags of DESIGN §5)."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlgate.pipelines.datasets import file_md5

TAG_PREFIX = "mlgate."


@dataclass(frozen=True)
class Lineage:
    git_sha: str
    git_dirty: bool
    data_md5: str
    params_md5: str

    def tags(self) -> dict[str, str]:
        return {
            f"{TAG_PREFIX}git_sha": self.git_sha,
            f"{TAG_PREFIX}git_dirty": str(self.git_dirty).lower(),
            f"{TAG_PREFIX}data_md5": self.data_md5,
            f"{TAG_PREFIX}params_md5": self.params_md5,
        }


def git_state(repo: Path = Path(".")) -> tuple[str, bool]:
    """(commit sha, working tree has uncommitted changes); ("unknown", True) outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo, capture_output=True, text=True, check=True, timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", True
    return sha, bool(status.strip())


def data_md5(base_dir: Path, train_rel: Path) -> str:
    """md5 of the training split as DVC recorded it in dvc.lock, else computed the same way from the file."""
    train_path = base_dir / train_rel
    recorded = _md5_from_lock(base_dir / "dvc.lock", train_rel.as_posix())
    current = file_md5(train_path)
    return recorded if recorded == current else current


def _md5_from_lock(lock_path: Path, out_rel: str) -> str | None:
    if not lock_path.is_file():
        return None
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return None
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == out_rel and out.get("md5"):
                return str(out["md5"])
    return None


def directory_digest(path: Path, ignore: tuple[str, ...] = ()) -> str:
    """md5 over every file's relative path and bytes (but the relative paths in `ignore`): identifies
    one exact directory."""
    digest = hashlib.md5()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        if file.relative_to(path).as_posix() in ignore:
            continue
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(file_md5(file).encode())
    return digest.hexdigest()


# MLflow writes this file into every download of a registered version (its name and version): it is
# not part of the model, and a registered version must hash like the directory it was registered from.
MLFLOW_ADDED_FILES = ("registered_model_meta",)


def model_digest(path: Path) -> str:
    """The content digest of an MLflow model directory: what identifies a judged or registered model."""
    return directory_digest(path, MLFLOW_ADDED_FILES)


def model_uri_digest(tracking_uri: str, model_uri: str) -> str:
    """model_digest of the model at an MLflow URI (models:/, runs:/, ...), from a scratch download."""
    from mlgate.pipelines.mlflow_io import download_model

    with tempfile.TemporaryDirectory(prefix="mlgate-digest-") as scratch:
        return model_digest(download_model(tracking_uri, model_uri, Path(scratch)))
