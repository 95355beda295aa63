"""The small exception hierarchy of rmt.

Every error that reaches the command line is one of these; the CLI prints ``rmt: error: <message>`` on one line
and exits with :attr:`RmtError.exit_code`. Messages name the fix.
"""

from __future__ import annotations


class RmtError(Exception):
    """Base of all rmt errors; ``str(err)`` is a one-line, actionable message."""

    exit_code: int = 2


class ConfigError(RmtError):
    """Bad user input: a flag, a scenario file, a model configuration, a path."""


class ServerError(RmtError):
    """The embedded Triton server could not be found, staged, started or stopped."""


class ServerExtraMissing(ServerError):
    """The ``server`` extra (the ``nvidia-pytriton`` wheel with tritonserver) is not installed."""


class ServerStartError(ServerError):
    """tritonserver exited or did not become ready; the message carries the tail of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class SourceUnavailable(RmtError):
    """A measurement source (NVML, a metrics endpoint, a process) cannot be read."""


class CheckFailed(RmtError):
    """One or more post-run checks failed."""

    exit_code = 3


class RunIncomplete(RmtError):
    """The run lost data (a worker died, it was interrupted, the server restarted): its verdicts rest on partial
    data, so it is not a pass whatever they say (a failing verdict other than completeness exits 3 instead)."""

    exit_code = 4
