"""The scheduler's own table: who holds the right to schedule this database."""
from __future__ import annotations

from django.db import models


class SchedulerLock(models.Model):
    """One row per lock name; the holder refreshes ``heartbeat_at`` every tick.

    A second scheduler (on this machine or another) may take the lock only
    when the holder's heartbeat is older than the lock's expiry.
    """

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=255, blank=True, default="")
    hostname = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "scheduler_lock"

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"
