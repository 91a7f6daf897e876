"""Prometheus's server and promtool for the tests, from Debian's `prometheus` package.

No PyPI package ships a Prometheus server. Debian does: `apt-get download prometheus` fetches the .deb
(no install, no service started, no root needed for the download into a folder we own) and `dpkg-deb -x`
unpacks its binaries into a cache folder (`$MLGATE_TEST_CACHE`, default ~/.cache/mlgate-tests). A
`prometheus` already on PATH is used as it is. Where neither works (no apt, no network to the Debian
mirror), the caller skips, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

TIMEOUT_S = 300


def cache_dir() -> Path:
    return Path(os.environ.get("MLGATE_TEST_CACHE", Path.home() / ".cache" / "mlgate-tests")) / "prometheus"


def prometheus_bin_dir() -> tuple[Path | None, str]:
    """The folder holding `prometheus` and `promtool`, or None and why it could not be had."""
    found = shutil.which("prometheus")
    if found:
        return Path(found).parent, ""
    unpacked = cache_dir() / "usr" / "bin"
    if (unpacked / "prometheus").is_file() and (unpacked / "promtool").is_file():
        return unpacked, ""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return None, "no prometheus on PATH and no apt-get/dpkg-deb to fetch Debian's package"
    with tempfile.TemporaryDirectory(prefix="mlgate-prometheus-") as scratch:
        try:
            fetched = subprocess.run(["apt-get", "download", "prometheus"], cwd=scratch, capture_output=True,
                                     text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, f"apt-get download prometheus took over {TIMEOUT_S} s"
        debs = sorted(Path(scratch).glob("prometheus_*.deb"))
        if fetched.returncode != 0 or not debs:
            return None, f"apt-get download prometheus failed: {(fetched.stderr or fetched.stdout).strip()[-300:]}"
        staging = Path(tempfile.mkdtemp(prefix="prometheus-", dir=_parent()))
        unpack = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(staging)], capture_output=True, text=True)
        if unpack.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            return None, f"dpkg-deb -x failed: {unpack.stderr.strip()[-300:]}"
        shutil.rmtree(cache_dir(), ignore_errors=True)
        staging.rename(cache_dir())  # whole or not at all: a concurrent test process may do the same
    return (unpacked, "") if (unpacked / "prometheus").is_file() else (None, "the package holds no prometheus binary")


def _parent() -> Path:
    parent = cache_dir().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent
