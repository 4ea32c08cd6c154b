"""Drones (machines that run scheduler processes) and drone sets."""
from __future__ import annotations

from typing import Any

from django.db import models

from .. import names


class Drone(models.Model):
    hostname = models.CharField(max_length=255, unique=True, validators=[names.validate_hostname])

    class Meta:
        db_table = "afe_drones"
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, {"hostname": names.validate_hostname})
        super().save(*args, **kwargs)


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
