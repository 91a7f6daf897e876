"""The pinned deepchecks side environment (DESIGN §9): build it once, cache it, run suites in it.

deepchecks 0.19.1 does not import with numpy>=2 or scikit-learn>=1.6, so its suites run in their own
virtual environment under `$MLGATE_CACHE_DIR` (default ~/.cache/mlgate), keyed by a hash of the pins
and the Python version, like pre-commit's hook environments. Data crosses as Parquet, predictions as
.npy files: never a pickled model. `deepchecks_runner.py` is the script run there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV_VAR = "MLGATE_CACHE_DIR"
# Tested together on CPython 3.11 (2025): numpy<2 (np.Inf), scikit-learn<1.6 (get_scorer('max_error')),
# pyarrow<19 still supports numpy 1.x, setuptools for pkg_resources; the rest pinned to the tested set.
DEEPCHECKS_PINS: tuple[str, ...] = (
    "deepchecks==0.19.1", "numpy==1.26.4", "pandas==2.2.3", "scikit-learn==1.5.2", "scipy==1.14.1",
    "pyarrow==18.1.0", "plotly==5.24.1", "matplotlib==3.9.4", "statsmodels==0.14.4",
    "category-encoders==2.6.4", "setuptools==75.6.0", "ipython==9.18.1", "ipykernel==7.4.0",
    "ipywidgets==8.1.9", "jsonpickle==4.1.4", "PyNomaly==0.4.0", "tqdm==4.70.1",
)
READY_MARKER = ".mlgate-ready"  # written last, atomically: an env without it is never used
SMOKE_TEST = "import deepchecks.tabular.suites, pyarrow.parquet; print(deepchecks.__version__)"
Log = Callable[[str], None]


class EnvBuildError(Exception):
    """The side environment could not be built or found; the message names the cause."""


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_cache_dir() -> Path:
    """`$MLGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/mlgate`, else ~/.cache/mlgate."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlgate"


def side_env_vars() -> dict[str, str]:
    """The environment for side-env processes: none of the main env's paths, no telemetry calls."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PYTHONNOUSERSITE="1", DISABLE_DEEPCHECKS_ANONYMOUS_TELEMETRY="True", MPLBACKEND="Agg",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def python_tag(base_python: str) -> str:
    """Implementation, major.minor and machine of `base_python` (what binary wheels depend on)."""
    code = "import platform,sys;print(platform.python_implementation(),'%d.%d'%sys.version_info[:2],platform.machine())"
    if base_python == sys.executable:
        return f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]} {platform.machine()}"
    try:
        done = subprocess.run([base_python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvBuildError(f"base python {base_python!r} cannot run: {exc}") from None
    if done.returncode != 0:
        raise EnvBuildError(f"base python {base_python!r} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def env_path(cache_dir: Path, pins: Sequence[str], tag: str) -> Path:
    digest = hashlib.sha256("\n".join([tag, *sorted(pins)]).encode()).hexdigest()[:16]
    return cache_dir / f"deepchecks-{digest}"


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def is_ready(env: Path) -> bool:
    return (env / READY_MARKER).is_file() and env_python(env).exists()


def ensure_env(
    cache_dir: Path | None = None,
    *,
    pins: Sequence[str] = DEEPCHECKS_PINS,
    base_python: str | None = None,
    log: Log = log_to_stderr,
    timeout_s: float = 1800.0,
) -> Path:
    """The side env's python, building the env first if no finished one is cached. Raises EnvBuildError."""
    base_python = base_python or sys.executable
    env = env_path(Path(cache_dir) if cache_dir else default_cache_dir(), pins, python_tag(base_python))
    if is_ready(env):
        return env_python(env)
    deadline = time.monotonic() + timeout_s
    try:
        env.parent.mkdir(parents=True, exist_ok=True)
        with build_lock(env.parent / f"{env.name}.lock", deadline, log):
            if not is_ready(env):  # another process may have finished it while we waited
                build_env(env, pins, base_python, deadline, log)
    except OSError as exc:  # e.g. a read-only or full cache directory
        raise EnvBuildError(f"cannot build in {env.parent}: {exc}") from None
    return env_python(env)


@contextmanager
def build_lock(path: Path, deadline: float, log: Log) -> Iterator[None]:
    """An exclusive lock on `path`, so concurrent callers build one env once."""
    with path.open("a") as handle:
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EnvBuildError(f"timed out waiting for another build holding {path}") from None
                if not waited:
                    log(f"mlgate: waiting for another process building the deepchecks environment ({path})")
                    waited = True
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_env(env: Path, pins: Sequence[str], base_python: str, deadline: float, log: Log) -> None:
    """Create the venv in place, install the pins, smoke-test the import, then write the marker.

    Built in place, not renamed from a temp dir: a venv is not relocatable (script shebangs and
    compiled paths name its directory). The marker, written last and atomically, publishes it.
    """
    started, build_log = time.monotonic(), env.parent / f"{env.name}.build.log"
    shutil.rmtree(env, ignore_errors=True)  # leftovers of a build that died half-way
    log(f"mlgate: building the deepchecks environment in {env} (first use; takes a few minutes)")
    python = str(env_python(env))
    steps = (("creating the virtual environment", [base_python, "-m", "venv", str(env)]),
             (f"installing the pinned packages ({len(pins)})", [python, "-m", "pip", "install", *pins]),
             ("checking that deepchecks imports", [python, "-c", SMOKE_TEST]))
    with build_log.open("w", encoding="utf-8") as sink:
        try:
            for what, command in steps:
                log(f"mlgate: {what}")
                run_step(command, sink, deadline)
        except EnvBuildError as exc:
            shutil.rmtree(env, ignore_errors=True)
            raise EnvBuildError(f"{exc}; last lines of {build_log}:\n{tail(build_log)}") from None
    marker = {"pins": list(pins), "python": base_python, "build_s": round(time.monotonic() - started, 1)}
    (env / f"{READY_MARKER}.tmp").write_text(json.dumps(marker), encoding="utf-8")
    os.replace(env / f"{READY_MARKER}.tmp", env / READY_MARKER)
    log(f"mlgate: deepchecks environment ready in {marker['build_s']:.0f} s")


def run_step(command: list[str], sink, deadline: float) -> None:
    """Run one build command with its output going to the build log; failure is an EnvBuildError."""
    sink.write(f"$ {' '.join(command)}\n")
    sink.flush()
    try:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=side_env_vars(),
                              timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        raise EnvBuildError(f"`{' '.join(command[:4])} ...` did not finish before the build timeout") from None
    except OSError as exc:
        raise EnvBuildError(f"cannot run {command[0]!r}: {exc}") from None
    if done.returncode != 0:
        raise EnvBuildError(f"`{' '.join(command[:4])} ...` exited {done.returncode}")


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a text file (pip's error is at the end), or a note that there is none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
