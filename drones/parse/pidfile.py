"""The parser's own pidfile, ``<results dir>/.parser_execute`` (spec scheduler-behaviour.md §5.2).

Written like autoserv's: the pid when the parser starts, then at exit the
wait status (``exit_code << 8``) and the failed-test count, which is always 0
for the parser::

    <pid>
    <exit_code << 8>
    0
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("drones.parse")

PIDFILE_NAME = ".parser_execute"


class ParserPidfile:
    """Writes the pidfile in ``directory``; a directory that does not exist gets none (and a warning)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / PIDFILE_NAME
        self.started = False

    def start(self) -> bool:
        """Write the pid; returns whether the file could be written."""
        try:
            self.path.write_text(f"{os.getpid()}\n")
        except OSError as exc:
            log.warning("cannot write pidfile %s: %s", self.path, exc)
            return False
        self.started = True
        return True

    def finish(self, exit_code: int) -> None:
        """Append the wait status of ``exit_code`` and the failed-test count (0)."""
        if not self.started:
            return
        try:
            with self.path.open("a") as pidfile:
                pidfile.write(f"{(exit_code & 0xFF) << 8}\n0\n")
        except OSError as exc:
            log.warning("cannot complete pidfile %s: %s", self.path, exc)
