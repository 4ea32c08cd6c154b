"""Drones (machines that run scheduler processes) and drone sets."""
from __future__ import annotations

from typing import Any

from django.db import models

from .. import names


def effective_capacity(reported: int | None, limit: int | None) -> int:
    """A drone's capacity: what its worker reported (0 if nothing yet), lowered by an admin's limit."""
    return min(reported or 0, limit) if limit is not None else reported or 0


class Drone(models.Model):
    """A machine that runs scheduler processes.

    A Celery drone (``celery -A drones worker -Q drone.<hostname>``) registers
    its row when it starts and refreshes ``heartbeat_at`` with the database's
    clock; ``worker_instance`` names the live worker holding the name (empty:
    none). ``enabled`` is the operator's switch: a disabled drone gets no new
    work, while its running work goes on and is still watched.
    """

    hostname = models.CharField(max_length=255, unique=True, validators=[names.validate_hostname])
    enabled = models.BooleanField(default=True, help_text="off: the drone gets no new work")
    max_processes = models.IntegerField(
        null=True, blank=True, help_text="capacity reported by the drone at registration"
    )
    max_processes_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="lower the capacity below what the drone reported (empty: no limit)"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="database time of the last beat")
    worker_instance = models.CharField(max_length=64, blank=True, help_text="the live worker holding the name")
    worker_machine = models.CharField(max_length=255, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)

    class Meta:
        db_table = "afe_drones"
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, {"hostname": names.validate_hostname})
        super().save(*args, **kwargs)

    @property
    def capacity(self) -> int:
        """What the scheduler may run here at once: the reported capacity, lowered by the admin's limit."""
        return effective_capacity(self.max_processes, self.max_processes_limit)


class DroneSet(models.Model):
    name = models.CharField(max_length=255, unique=True, validators=[names.validate_group_name])
    drones = models.ManyToManyField(Drone, blank=True, db_table="afe_drone_sets_drones")

    class Meta:
        db_table = "afe_drone_sets"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, {"name": names.validate_group_name})
        super().save(*args, **kwargs)

    def get_drone_hostnames(self) -> set[str]:
        return set(self.drones.values_list("hostname", flat=True))


class Shard(models.Model):
    """Kept for schema compatibility; this project runs no shards."""

    hostname = models.CharField(max_length=255, unique=True)
    labels = models.ManyToManyField("afe.Label", blank=True, db_table="afe_shards_labels")

    class Meta:
        db_table = "afe_shards"

    def __str__(self) -> str:
        return self.hostname
