"""SIGTERM handling: turn the signal into an ``Aborted`` exception and a cancel event.

The handler (which Python always runs in the main thread) sets ``event`` so
worker threads and command loops stop, and raises ``Aborted`` in the main
thread so whatever it is doing (a command, a test function, a join) unwinds
and records ABORT on its way out. Code that must not be cut in half (writing a
status line or the pidfile) runs inside ``shield()``: a signal that arrives
there is raised when the shield ends. After ``disarm()`` the handler only sets
the event, so the final bookkeeping runs undisturbed.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Aborted

ABORT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AbortController:
    """The abort state of one autoserv run."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.signal_number = 0
        self._shield_depth = 0
        self._pending = False
        self._armed = True

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on (call from the main thread)."""
        for signum in ABORT_SIGNALS:
            signal.signal(signum, self._handle)

    @property
    def aborted(self) -> bool:
        """Whether an abort signal has arrived."""
        return self.event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            return  # already aborting: a second signal changes nothing
        self.signal_number = signum
        self.reason = f"autoserv received {signal.Signals(signum).name}"
        self.event.set()
        if not self._armed:
            return
        if self._shield_depth:
            self._pending = True
            return
        raise Aborted(self.reason)

    @contextmanager
    def shield(self) -> Iterator[None]:
        """Delay an abort that arrives inside the block until the block ends (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._shield_depth += 1
        try:
            yield
        finally:
            self._shield_depth -= 1
            if not self._shield_depth and self._pending and self._armed:
                self._pending = False
                raise Aborted(self.reason)

    def check(self) -> None:
        """Raise ``Aborted`` if an abort signal has arrived (for loops in any thread)."""
        if self.event.is_set():
            raise Aborted(self.reason or "aborted")

    def disarm(self) -> None:
        """Stop raising: later signals only set the event."""
        self._armed = False
        self._pending = False
