"""Autoserv pidfiles (spec §5.2) and wait statuses.

A pidfile is ``<working_dir>/<pidfile_name>`` and holds up to three lines::

    <pid>                 written when the command starts
    <exit_status>         a wait() status: ((code & 0xFF) << 8) | (signal & 0xFF)
    <num_tests_failed>    written at exit

Three lines mean the command has finished; fewer mean it is still running (or
has not started); more lines, or a line that is not an integer, make the file
invalid.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Pidfile:
    pid: int | None = None
    exit_status: int | None = None
    tests_failed: int | None = None
    valid: bool = True

    @property
    def finished(self) -> bool:
        """Whether the file records an exit status and a failed-test count."""
        return self.valid and self.exit_status is not None and self.tests_failed is not None


def read_pidfile(path: str | os.PathLike[str]) -> Pidfile | None:
    """The parsed pidfile at ``path``; ``None`` if there is no such file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return Pidfile(valid=False)
    lines = text.splitlines()
    if len(lines) > 3:
        return Pidfile(valid=False)
    try:
        values = [int(line.strip()) for line in lines]
    except ValueError:
        return Pidfile(valid=False)
    values += [None] * (3 - len(values))
    return Pidfile(pid=values[0], exit_status=values[1], tests_failed=values[2])


def wait_status(returncode: int) -> int:
    """The wait() status for a ``subprocess`` return code.

    ``-N`` (killed by signal N) becomes ``N``; an exit code ``C`` becomes
    ``C << 8`` — what ``os.waitpid`` would have reported and autoserv stores.
    """
    if returncode < 0:
        return -returncode & 0x7F
    return (returncode & 0xFF) << 8


#: The status recorded for a command that could not be started (a shell's 127).
CANNOT_START_STATUS = 127 << 8
