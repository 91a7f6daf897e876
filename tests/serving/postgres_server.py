"""A throwaway PostgreSQL server for the tests, from the binaries the `pgserver` wheel ships.

`pgserver` (a dev dependency) puts PostgreSQL 16's `initdb` and `postgres` in the virtualenv, so a fresh
machine with only Python gets a real server from `pip install -e .[dev]`. Its own Python API is not used:
it listens on a unix socket only and, as root, creates a system user and opens up the permissions of
every parent folder. Here the cluster lives in a fresh temporary folder, listens on 127.0.0.1 on a free
port (URLs look like a user's), runs with durability off (a test cluster, thrown away), and dies with the
process that started it (Linux's parent-death signal), so no server outlives a killed test run.

PostgreSQL refuses to run as root. As root, the server runs as `nobody` from a copy of the binaries
in the temporary folder (the virtualenv may sit in a folder only root can enter).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # loaded before any fork
_SETTINGS = {
    "listen_addresses": "127.0.0.1", "unix_socket_directories": "", "fsync": "off", "synchronous_commit": "off",
    "full_page_writes": "off", "shared_buffers": "32MB", "max_connections": "200", "log_min_messages": "warning",
}


class PostgresStartError(RuntimeError):
    """The test PostgreSQL server could not be started (the message says why, with its log)."""


def _binaries() -> Path:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise PostgresStartError("the pgserver package is not installed: run `make install` "
                                 "(or `pip install -e '.[dev]'`), which installs PostgreSQL's binaries")
    root = Path(spec.origin).parent / "pginstall"
    if not (root / "bin" / "postgres").exists():
        raise PostgresStartError(f"pgserver is installed but has no PostgreSQL binaries under {root}")
    return root


def _unprivileged_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        raise PostgresStartError("running as root, the test PostgreSQL server needs the unprivileged user "
                                 "`nobody`, which this machine lacks") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """initdb, start, `url(database)`, `create_database()`, `stop()` (idempotent)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mlgate-postgres-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._user = _unprivileged_user() if os.geteuid() == 0 else None

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        try:
            binaries = self._installed(_binaries())
            self._run([str(binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                       "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"])
            for _ in range(3):  # the free port may be taken before the server binds it
                self.port = _free_port()
                self._spawn(binaries / "postgres")
                if self._wait_ready(timeout_s):
                    return self
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise PostgresStartError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; its SQLAlchemy URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Fast shutdown (SIGINT: clients disconnected), SIGKILL if it takes too long; the folder removed."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        shutil.rmtree(self.root, ignore_errors=True)

    def _installed(self, root: Path) -> Path:
        """The bin folder to run: the wheel's own, or as root a copy that `nobody` can enter."""
        if self._user is None:
            return root / "bin"
        copy = self.root / "pgserver"
        for name in ("initdb", "postgres"):
            (copy / "pginstall" / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / "bin" / name, copy / "pginstall" / "bin" / name)
        for folder in ("lib/postgresql", "share"):
            shutil.copytree(root / folder, copy / "pginstall" / folder)
        libs = root.parent.parent / "pgserver.libs"  # the wheel's bundled libpq, found by initdb's RPATH
        if libs.is_dir():
            shutil.copytree(libs, self.root / "pgserver.libs")
        self.root.chmod(0o755)
        self.data.mkdir(mode=0o700)
        os.chown(self.data, self._user.pw_uid, self._user.pw_gid)
        return copy / "pginstall" / "bin"

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True, env=self._env(), preexec_fn=self._demote,
                              timeout=60, check=False)
        if done.returncode != 0:
            raise PostgresStartError(f"{Path(command[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _spawn(self, postgres: Path) -> None:
        options = [f"--{name.replace('_', '-')}={value}" for name, value in {**_SETTINGS, "port": self.port}.items()]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen([str(postgres), "-D", str(self.data), *options], stdout=log,
                                             stderr=subprocess.STDOUT, env=self._env(), preexec_fn=self._demote_tied)

    def _wait_ready(self, timeout_s: float) -> bool:
        """True once it accepts connections; False when it exited (e.g. its port was taken)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                return False
            try:
                psycopg.connect(self._conninfo("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise PostgresStartError(f"PostgreSQL did not accept connections within {timeout_s} s; its log:\n"
                                 f"{self._log_tail()}")

    def _conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _demote(self) -> None:
        """In the child before exec: become `nobody` when running as root (PostgreSQL refuses root)."""
        if self._user is not None:
            os.setgroups([])
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def _demote_tied(self) -> None:
        """`_demote`, then ask Linux to stop the server (fast shutdown) when this process dies."""
        self._demote()  # first: a change of user clears the parent-death signal
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)

    def _log_tail(self, max_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no log)"
