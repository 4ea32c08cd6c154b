"""Labels: what a host is (platform, board, pool, installed build)."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from .. import names
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
    name = models.CharField(max_length=255, unique=True, validators=[names.validate_label_name])
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

    def clean(self) -> None:
        self.check_invariants()

    def check_invariants(self) -> None:
        """Raise ValidationError unless the name follows the rules and no other label has it (in any case)."""
        names.check_fields(self, {"name": names.validate_label_name})
        if len(self.kernel_config or "") > 255:  # SQLite would store it; MariaDB would refuse it
            raise ValidationError({"kernel_config": "The kernel config is longer than 255 characters."})
        taken = Label.objects.filter(name__iexact=self.name).exclude(pk=self.pk)
        if self._state.adding:
            taken = taken.filter(invalid=False)  # a deleted label of that name is resurrected
        if taken.exists():
            raise ValidationError({"name": f"A label named {taken.first().name} already exists."})

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.check_invariants()
        super().save(*args, **kwargs)

    @property
    def is_provisionable(self) -> bool:
        return self.name.startswith(PROVISION_PREFIXES)

    @classmethod
    def clear_relations(cls, ids: list[int]) -> None:
        from .hosts import Host
        from .jobs import Job

        Host.labels.through.objects.filter(label_id__in=ids).delete()
        Job.dependency_labels.through.objects.filter(label_id__in=ids).delete()
