"""What an idle tick may skip: the fingerprint of the inputs a pure step last ran on, and when.

Matching and the pending explanations are pure functions of rows the tick
reads anyway. When the rows read now hash to what the step last ran on, its
result would be the same, so the tick skips the step. A result stands for at
most ``max_age``: estimated starts age with the clock, and a fingerprint is a
hash, so even an unlikely collision cannot hide a change for longer.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class LastRun:
    """The fingerprint of the inputs a step last ran on, and when; held by the dispatcher between
    ticks and never stored, so a restarted scheduler runs every step in full on its first tick."""

    max_age: timedelta = timedelta(minutes=1)
    digest: int | None = None
    at: datetime | None = None

    def still_holds(self, digest: int, now: datetime) -> bool:
        """Whether the last result, computed from inputs with ``digest``, may stand at ``now``."""
        return self.digest == digest and self.at is not None and timedelta(0) <= now - self.at < self.max_age

    def ran(self, digest: int | None, now: datetime) -> None:
        """Remember a run on inputs with ``digest`` (None: its result must not stand for the next tick)."""
        self.digest, self.at = digest, now
