"""Errors raised at the pipeline edge, each carrying its exit code from the contract (DESIGN §3)."""

from __future__ import annotations

from mlgate.gates.result import ExitCode


class MlgateError(Exception):
    """An expected failure with a one-line message for the user and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(MlgateError):
    """Bad usage, configuration or input data: a file, column, key or value that is wrong. Exit 2."""

    exit_code = ExitCode.USAGE


class GateRefused(MlgateError):
    """A command refused because a gate or verdict does not allow it (e.g. register a failed model). Exit 1."""

    exit_code = ExitCode.GATE_FAILED
