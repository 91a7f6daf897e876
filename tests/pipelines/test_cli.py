"""Command-line conventions users know from MLflow and DVC: --version, a fast --help, one error
prefix, exit 130 on Ctrl-C (DESIGN §3)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

MLGATE = [sys.executable, "-m", "mlgate"]


def test_version_names_the_installed_distribution() -> None:
    done = subprocess.run([*MLGATE, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"mlgate {version('mlgate')}"


def test_help_loads_no_data_science_library() -> None:
    probe = ("import sys\nfrom mlgate.pipelines.cli.main import main\ntry:\n    main(['--help'])\n"
             "except SystemExit:\n    pass\nheavy = [m for m in ('pandas', 'sklearn', 'mlflow', 'scipy', 'fastapi', 'dvc')"
             " if m in sys.modules]\nprint('HEAVY', heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in done.stdout, done.stdout[-500:] + done.stderr[-500:]


def test_help_answers_in_under_a_second() -> None:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run([*MLGATE, "--help"], capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0 and "rollout" in done.stdout
    assert min(times) < 1.0, f"mlgate --help took {min(times):.2f} s at best of 3"


@pytest.mark.parametrize("argv", [["gate", "nope"], ["approve", "--stage"], ["serve"], ["nope"]])
def test_usage_errors_have_one_prefix_and_exit_2(argv: list[str]) -> None:
    done = subprocess.run([*MLGATE, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlgate: error: "), done.stderr
    assert "mlgate: error: mlgate" not in lines[0] and lines[0].count("error:") == 1


def test_gate_help_lists_each_gates_own_options() -> None:
    done = subprocess.run([*MLGATE, "gate", "data", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--suggest" in done.stdout and "--batch" in done.stdout
    done = subprocess.run([*MLGATE, "gate", "latency", "--help"], capture_output=True, text=True, timeout=60)
    assert "--candidate" in done.stdout and "--suggest" not in done.stdout


def _as_from_a_terminal() -> None:
    """The child starts with SIGINT as a terminal leaves it: handled by default and not blocked (a test
    worker may have inherited or set otherwise; Python only installs KeyboardInterrupt over SIG_DFL)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_masks(pid: int) -> str:
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return "unknown"
    return "; ".join(line for line in status.read_text().splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def _stacks(pid: int) -> str:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.is_file():
        return "(py-spy not installed)"
    return subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout


def test_ctrl_c_exits_130(repo_root) -> None:
    # A tracking server that accepts the connection and never answers: the command blocks inside
    # MLflow's client, where a user would press Ctrl-C.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = subprocess.Popen([*MLGATE, "approvals", "--version", "1", "--tracking-uri", uri,
                                    "--params", str(repo_root / "params.yaml")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_as_from_a_terminal)
        try:
            silent.settimeout(60)
            connection, _ = silent.accept()  # the command is past its imports and waits for the answer
            time.sleep(0.5)
            assert process.poll() is None, process.communicate()[1]
            masks = _signal_masks(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                _, err = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"no exit 30 s after SIGINT; the command's signal masks: {masks}; its stacks:\n"
                            + _stacks(process.pid))
            connection.close()
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "mlgate: error: interrupted"
