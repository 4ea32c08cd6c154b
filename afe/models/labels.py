"""Labels: what a host is (platform, board, pool, installed build)."""
from __future__ import annotations

from django.db import models

from .base import SoftDeleteModel

# Labels with these prefixes name something a Provision task installs.
PROVISION_PREFIXES = ("cros-version:", "cheets-version:", "fwrw-version:", "fwro-version:", "fw-version:")


class AtomicGroup(SoftDeleteModel):
    """Legacy AFE table, kept so existing schemas and foreign keys stay valid."""

    name = models.CharField(max_length=255, unique=True)
    description = models.TextField(blank=True, default="")
    max_number_of_machines = models.IntegerField(default=333333333)

    class Meta:
        db_table = "afe_atomic_groups"

    def __str__(self) -> str:
        return self.name


class Label(SoftDeleteModel):
    name = models.CharField(max_length=255, unique=True)
    kernel_config = models.CharField(max_length=255, blank=True, default="")
    platform = models.BooleanField(default=False)
    only_if_needed = models.BooleanField(default=False)
    atomic_group = models.ForeignKey(
        AtomicGroup, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        db_table = "afe_labels"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_provisionable(self) -> bool:
        return self.name.startswith(PROVISION_PREFIXES)

    @classmethod
    def clear_relations(cls, ids: list[int]) -> None:
        from .hosts import Host
        from .jobs import Job

        Host.labels.through.objects.filter(label_id__in=ids).delete()
        Job.dependency_labels.through.objects.filter(label_id__in=ids).delete()
