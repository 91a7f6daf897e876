"""mlgate: pre-deploy gates, shadow and canary rollout with statistics, automatic rollback.

One import package. The repository's folders `gates/`, `pipelines/` and `serving/` install as
`mlgate.gates`, `mlgate.pipelines` and `mlgate.serving` (pyproject.toml's package-dir mapping), so
no generic top-level module name is ever taken from the user's environment or working directory.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlgate")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
