"""The failures autoserv reports as ordinary results (never as a crash)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .result import Result


class AutoservError(Exception):
    """A failure of the job or host action; its message is the status.log reason."""


class ControlFileError(AutoservError):
    """The control file cannot be read or compiled."""


class ResultsPathError(AutoservError):
    """A results path built from data (a hostname, a test name or tag) would leave the results directory."""


class HostError(AutoservError):
    """A host cannot be used (unknown, unreachable, refused us, misbehaved)."""


class HostInfoError(HostError):
    """The AFE database could not tell us about a host."""


class HostUnreachable(HostError):
    """No connection to the host (refused, timed out, name not resolved)."""


class AuthenticationFailed(HostError):
    """The host's SSH server refused our credentials."""


class CommandTimeout(HostError):
    """A command ran longer than its timeout and was killed; ``result`` holds its output so far."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


class CommandFailed(AutoservError):
    """A command run with ``ignore_status=False`` exited non-zero."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


class TestFail(AutoservError):
    """Raised by a test function: the test ran and failed (status FAIL)."""


class TestError(AutoservError):
    """Raised by a test function: the test could not run properly (status ERROR)."""


class TestNA(AutoservError):
    """Raised by a test function: the test does not apply here (status TEST_NA)."""


class Aborted(BaseException):
    """The run was aborted (SIGTERM). A BaseException so ``except Exception`` does not swallow it."""
