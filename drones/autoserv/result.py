"""The outcome of one command on a host."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """What a command did: ``exit_status`` is its exit code (a negative N: killed by signal N)."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.exit_status == 0

    def describe(self) -> str:
        """A one-line account of a failure: the exit status and the last line of stderr."""
        if self.exit_status < 0:
            text = f"killed by signal {-self.exit_status}"
        else:
            text = f"exit status {self.exit_status}"
        last = next((line.strip() for line in reversed(self.stderr.splitlines()) if line.strip()), "")
        return f"{text}: {last}" if last else text
