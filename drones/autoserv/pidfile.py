"""Writing autoserv's pidfile (spec §5.2).

Three lines: the pid, written at start; then, at exit, the wait status
``((exit_code & 0xFF) << 8) | (signal & 0xFF)`` and the number of failed
tests. The scheduler reads 1 or 2 lines as "running" and 3 as "finished".
"""
from __future__ import annotations

import os
from pathlib import Path


def wait_status(exit_code: int, signal_number: int = 0) -> int:
    """The wait() status recorded for an exit code (and the signal that caused it, if any)."""
    return ((exit_code & 0xFF) << 8) | (signal_number & 0xFF)


class PidfileWriter:
    """The pidfile of this run; ``finish`` may be called once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._finished = False

    def start(self, pid: int | None = None) -> None:
        """Write the pid line (replacing any older file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write("w", f"{os.getpid() if pid is None else pid}\n")

    def finish(self, exit_code: int, tests_failed: int, signal_number: int = 0) -> None:
        """Append the wait status and failed-test count lines."""
        if self._finished:
            return
        self._finished = True
        self._write("a", f"{wait_status(exit_code, signal_number)}\n{tests_failed}\n")

    def _write(self, mode: str, text: str) -> None:
        with open(self.path, mode, encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
