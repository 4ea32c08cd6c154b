"""Waking the scheduler before its next tick is due, when new work has arrived.

A tick is the ceiling on how fast work moves: a job created just after one
waits for the next. Between ticks ``run_scheduler`` asks every
``SCHEDULER_WAKE_SECONDS`` whether an entry was created or a process ended
since the last tick started, two indexed queries, and ticks at once if so.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from afe.models import HostQueueEntry
from drones.models import Process


@dataclass(frozen=True)
class WorkWatch:
    """What a tick had seen when it started: the newest entry, and when."""

    newest_entry_id: int
    since: datetime

    @classmethod
    def start(cls) -> WorkWatch:
        """Taken just before a tick (one query)."""
        newest = HostQueueEntry.objects.aggregate(newest=Max("id"))["newest"] or 0
        return cls(newest, timezone.now())

    def arrived(self) -> bool:
        """Whether an entry was created, or a process ended, since the tick started.

        A process whose result keeps failing to apply ended before, so it
        never keeps the scheduler ticking back to back.
        """
        return (HostQueueEntry.objects.filter(pk__gt=self.newest_entry_id).exists()
                or Process.objects.unhandled_finished().filter(finished_at__gte=self.since).exists())
