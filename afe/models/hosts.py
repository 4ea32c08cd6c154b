"""Hosts (devices under test) and their attributes."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from .. import names
from .base import AllObjectsManager, SoftDeleteModel, SoftDeleteQuerySet, ValidObjectsManager

if TYPE_CHECKING:
    from .labels import Label
    from .users import User


class Protection(models.IntegerChoices):
    NO_PROTECTION = 0, "No protection"
    REPAIR_SOFTWARE_ONLY = 1, "Repair software only"
    REPAIR_FILESYSTEM_ONLY = 2, "Repair filesystem only"
    DO_NOT_REPAIR = 3, "Do not repair"
    DO_NOT_VERIFY = 4, "Do not verify"


def default_protection() -> int:
    return settings.DEFAULT_HOST_PROTECTION


class HostQuerySet(SoftDeleteQuerySet):
    def lock(self, by: User, reason: str, force: bool = False) -> int:
        """Lock every unlocked host (every host when ``force``) in one update.

        Returns how many hosts were locked.
        """
        reason = _lock_reason(reason)
        hosts = self if force else self.filter(locked=False)
        return hosts.update(
            locked=True,
            locked_by=by,
            lock_time=timezone.now(),
            lock_reason=reason,
            dirty=True,
        )

    def unlock(self) -> int:
        """Unlock every locked host in one update; returns how many were unlocked."""
        return self.filter(locked=True).update(
            locked=False, locked_by=None, lock_time=None, lock_reason=""
        )


def _lock_reason(reason: object) -> str:
    """A lock reason: non-empty text, stripped; raises ValidationError naming ``lock_reason``."""
    try:
        reason = names.text(reason, "lock reason").strip()
    except ValidationError as exc:
        raise ValidationError({"lock_reason": exc.messages}) from None
    if not reason:
        raise ValidationError({"lock_reason": "Please provide a lock reason"})
    if len(reason) > LOCK_REASON_MAX_LENGTH:
        raise ValidationError({"lock_reason": f"The lock reason is longer than {LOCK_REASON_MAX_LENGTH} characters."})
    return reason


LOCK_REASON_MAX_LENGTH = 4096


class HostManager(AllObjectsManager.from_queryset(HostQuerySet)):  # type: ignore[misc]
    pass


class ValidHostManager(ValidObjectsManager.from_queryset(HostQuerySet)):  # type: ignore[misc]
    pass


class Host(SoftDeleteModel):
    name_field = "hostname"

    class Status(models.TextChoices):
        VERIFYING = "Verifying"
        RUNNING = "Running"
        READY = "Ready"
        REPAIRING = "Repairing"
        REPAIR_FAILED = "Repair Failed"
        CLEANING = "Cleaning"
        PENDING = "Pending"
        RESETTING = "Resetting"
        PROVISIONING = "Provisioning"

    IDLE_STATES = frozenset({Status.READY, Status.REPAIR_FAILED})
    #: A special task runs (or is being started) on the host.
    TASK_STATUSES = frozenset({
        Status.VERIFYING, Status.REPAIRING, Status.CLEANING, Status.RESETTING, Status.PROVISIONING,
    })
    #: Where a special task may start: idle, after a job (its post-job cleanup or reset), after another task.
    TASK_START_STATUSES = IDLE_STATES | {Status.RUNNING} | TASK_STATUSES
    #: Held for a job: waiting for the rest of its group, or running it.
    JOB_STATUSES = frozenset({Status.PENDING, Status.RUNNING})
    UNAVAILABLE_STATES = frozenset({Status.REPAIR_FAILED, Status.REPAIRING, Status.VERIFYING})

    hostname = models.CharField(max_length=255, unique=True, validators=[names.validate_hostname])
    locked = models.BooleanField(default=False)
    leased = models.BooleanField(default=True)
    synch_id = models.IntegerField(null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=255, choices=Status.choices, default=Status.READY, editable=False
    )
    protection = models.SmallIntegerField(choices=Protection.choices, default=default_protection)
    locked_by = models.ForeignKey(
        "afe.User", null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    lock_time = models.DateTimeField(null=True, blank=True, editable=False)
    dirty = models.BooleanField(default=True)
    lock_reason = models.TextField(null=True, blank=True, default="")
    shard = models.ForeignKey(
        "afe.Shard", null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    labels = models.ManyToManyField("afe.Label", blank=True, db_table="afe_hosts_labels")

    objects = HostManager()
    valid_objects = ValidHostManager()

    class Meta:
        db_table = "afe_hosts"
        ordering = ["hostname"]
        indexes = [
            models.Index(fields=["leased", "locked", "status"], name="afe_hosts_lease_idx"),
            models.Index(fields=["status"], name="afe_hosts_status_idx"),
        ]
        constraints = [
            # Whatever path saves a host (the ORM, the admin, another AFE tool), a lock has a reason.
            models.CheckConstraint(
                condition=models.Q(locked=False) | (models.Q(lock_reason__isnull=False) & ~models.Q(lock_reason="")),
                name="afe_hosts_locked_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.hostname

    def clean(self) -> None:
        self.check_invariants()

    def check_invariants(self) -> None:
        """Raise ValidationError unless the hostname follows the rules and a lock has a reason."""
        if isinstance(self.hostname, str):
            self.hostname = self.hostname.strip()
        names.check_fields(self, {"hostname": names.validate_hostname})
        if self.locked:
            self.lock_reason = _lock_reason(self.lock_reason)
        taken = Host.objects.filter(hostname__iexact=self.hostname).exclude(pk=self.pk)
        if self._state.adding:
            taken = taken.filter(invalid=False)  # a deleted host of that name is resurrected
        if taken.exists():
            # Compared without case, as MariaDB's collation does, so both databases agree.
            raise ValidationError({"hostname": f"A host named {taken.first().hostname} already exists."})

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.check_invariants()
        if self.locked:
            if self.lock_time is None:
                self.lock_time = timezone.now()
                self.dirty = True
        else:
            self.locked_by = None
            self.lock_time = None
            self.lock_reason = ""
        is_new = self._state.adding
        with transaction.atomic():
            super().save(*args, **kwargs)
            if is_new:
                from .users import AclGroup

                AclGroup.hosts.through.objects.get_or_create(
                    aclgroup_id=AclGroup.everyone().pk, host_id=self.pk
                )

    def on_resurrect(self, old: SoftDeleteModel) -> None:
        # A resurrected host keeps its old status but not its old attributes.
        self.status = old.status  # type: ignore[attr-defined]
        HostAttribute.objects.filter(host_id=old.pk).delete()

    @classmethod
    def clear_relations(cls, ids: list[int]) -> None:
        from .entries import HostQueueEntry
        from .users import AclGroup, User

        entries = HostQueueEntry.objects.filter(host_id__in=ids)
        entries.update(deleted=True)
        entries.filter(complete=False).abort(by=User.system_user())
        HostAttribute.objects.filter(host_id__in=ids).delete()
        cls.labels.through.objects.filter(host_id__in=ids).delete()
        AclGroup.hosts.through.objects.filter(host_id__in=ids).delete()

    @classmethod
    def create_one_time_host(cls, hostname: str) -> Host:
        """A host named only for one job: invalid, never repaired, never leased by metahosts."""
        try:
            hostname = names.validate_hostname(names.text(hostname, "hostname").strip())
        except ValidationError as exc:
            raise ValidationError({"hostname": exc.messages}) from None
        if cls.valid_objects.filter(hostname__iexact=hostname).exists():
            raise ValidationError(
                {"hostname": f"{hostname} already exists in the autotest DB. "
                 "Select it rather than entering it as a one time host."}
            )
        host = cls.objects.filter(hostname__iexact=hostname).first() or cls(hostname=hostname, invalid=True)
        host.protection = Protection.DO_NOT_REPAIR
        host.locked = False
        host.save()
        cls.clear_relations([host.pk])
        return host

    def lock(self, by: User, reason: str, force: bool = False) -> None:
        """Lock this host, recording who, when and why."""
        if self.locked and not force:
            raise ValidationError(
                {"locked": f"Host {self.hostname} already locked by {self.locked_by} on {self.lock_time}."}
            )
        Host.objects.filter(pk=self.pk).lock(by, reason, force=force)
        self.refresh_from_db()

    def unlock(self, force: bool = False) -> None:
        if not self.locked and not force:
            raise ValidationError({"locked": f"Host {self.hostname} already unlocked."})
        Host.objects.filter(pk=self.pk).unlock()
        self.refresh_from_db()

    def platform(self) -> Label | None:
        return self.labels.filter(platform=True).first()

    def is_dead(self) -> bool:
        return self.status == Host.Status.REPAIR_FAILED

    def attributes(self) -> dict[str, str]:
        return dict(self.hostattribute_set.values_list("attribute", "value"))

    def set_attribute(self, attribute: str, value: str | None) -> None:
        """Set a host attribute; ``None`` deletes it. Raises ValidationError for a bad name or value."""
        names.check_fields(probe := HostAttribute(attribute=attribute, value="" if value is None else value),
                           HostAttribute.CHECKED)
        attribute, value = probe.attribute, None if value is None else probe.value
        rows = HostAttribute.objects.filter(host=self, attribute=attribute)
        if value is None:
            rows.delete()
        elif not rows.update(value=value):
            HostAttribute.objects.create(host=self, attribute=attribute, value=value)

    @staticmethod
    def sort_key(hostname: str) -> tuple[str, int, str]:
        """Order like AFE: alphabetic prefix, then numeric suffix, ignoring case."""
        match = re.fullmatch(r"(.*?)(\d*)", hostname.lower(), re.DOTALL)  # any legacy name sorts
        assert match is not None
        prefix, number = match.groups()
        return prefix, int(number) if number else -1, hostname


class HostAttribute(models.Model):
    host = models.ForeignKey(Host, on_delete=models.CASCADE)
    attribute = models.CharField(max_length=90, validators=[names.validate_attribute_name])
    value = models.CharField(max_length=300, validators=[names.validate_attribute_value])

    CHECKED = {"attribute": names.validate_attribute_name, "value": names.validate_attribute_value}

    class Meta:
        db_table = "afe_host_attributes"
        indexes = [models.Index(fields=["host", "attribute"], name="afe_hostattr_host_idx")]

    def __str__(self) -> str:
        return f"{self.attribute}={self.value}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        names.check_fields(self, self.CHECKED)
        super().save(*args, **kwargs)
