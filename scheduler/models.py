"""The scheduler's own tables: who holds the right to schedule this database, and its metrics."""
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


class MetricsSnapshot(models.Model):
    """The scheduler's own metrics in Prometheus' text format, as it last published them,
    for the web server's ``/metrics`` (see ``scheduler.metrics``)."""

    name = models.CharField(max_length=64, unique=True)
    text = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "scheduler_metrics"

    def __str__(self) -> str:
        return f"metrics of {self.name} at {self.updated_at}"


class HostAssignment(models.Model):
    """Scratch rows of one tick's host assignments (entry → host), written and emptied inside the
    assigning transaction, so entries are bound to their hosts by one set-based UPDATE instead of
    a CASE with one branch per row (which costs time quadratic in the number of entries)."""

    queue_entry_id = models.IntegerField(primary_key=True)
    host_id = models.IntegerField()

    class Meta:
        db_table = "scheduler_host_assignments"
