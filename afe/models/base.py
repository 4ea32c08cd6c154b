"""Soft deletion (AFE's ``ModelWithInvalid``) shared by hosts and labels."""
from __future__ import annotations

from typing import Any, ClassVar

from django.db import models, transaction


class SoftDeleteQuerySet(models.QuerySet):
    def delete(self) -> tuple[int, dict[str, int]]:  # type: ignore[override]
        """Soft-delete every row in bulk; returns Django's ``(count, per-model)`` shape."""
        with transaction.atomic():
            ids = list(self.filter(invalid=False).values_list("pk", flat=True))
            if ids:
                self.model.soft_delete_many(ids)
        return len(ids), {self.model._meta.label: len(ids)}


class AllObjectsManager(models.Manager.from_queryset(SoftDeleteQuerySet)):  # type: ignore[misc]
    """Every row, valid or not (AFE's plain ``objects``)."""


class ValidObjectsManager(models.Manager.from_queryset(SoftDeleteQuerySet)):  # type: ignore[misc]
    """Only rows that have not been soft-deleted."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(invalid=False)


class SoftDeleteModel(models.Model):
    """A row that is marked ``invalid`` instead of deleted, and resurrected by name.

    Creating a row whose name matches an invalid row takes over that row's id,
    so history (jobs, special tasks) stays attached to the same host or label.
    """

    name_field: ClassVar[str] = "name"

    invalid = models.BooleanField(default=False)

    objects = AllObjectsManager()
    valid_objects = ValidObjectsManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding and self.pk is None and self._resurrect_if_deleted():
            kwargs.pop("force_insert", None)  # objects.create() asks for an INSERT
        super().save(*args, **kwargs)

    def _resurrect_if_deleted(self) -> bool:
        """Take over the id of a deleted row of the same name; returns whether one existed."""
        name = getattr(self, self.name_field)
        # Without case, as MariaDB's unique index compares names, so both databases agree.
        old = type(self).objects.filter(invalid=True, **{f"{self.name_field}__iexact": name}).first()
        if old is None:
            return False
        self.pk = old.pk
        self._state.adding = False
        self.invalid = False
        self.on_resurrect(old)
        return True

    def on_resurrect(self, old: SoftDeleteModel) -> None:
        """Hook: adjust a resurrected row from its deleted predecessor."""

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:  # type: ignore[override]
        if self.invalid:
            raise ValueError(f"{self} is already deleted")
        type(self).soft_delete_many([self.pk])
        self.invalid = True
        return 1, {self._meta.label: 1}

    @classmethod
    def soft_delete_many(cls, ids: list[int]) -> None:
        """Mark rows invalid and drop their relations, in a fixed number of queries."""
        with transaction.atomic():
            cls.objects.filter(pk__in=ids).update(invalid=True)
            cls.clear_relations(ids)

    @classmethod
    def clear_relations(cls, ids: list[int]) -> None:
        """Hook: remove the many-to-many links of deleted rows."""
