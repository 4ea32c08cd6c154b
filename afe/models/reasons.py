"""Why the scheduler failed or is holding back an entry or a special task, in words for its owner.

AFE's own tables have no column for this, so the reasons live beside them,
one row per entry or task, replaced when the reason changes.
"""
from __future__ import annotations

from collections.abc import Mapping

from django.db import connections, models
from django.utils import timezone

REASON_MAX_LENGTH = 2000


class ReasonQuerySet(models.QuerySet):
    def record(self, reasons: Mapping[int, str]) -> set[int]:
        """Store ``{row id: reason}``; returns the ids whose reason is new or changed (two queries).

        Callers log only those, so the same trouble is reported once, not every tick.
        """
        if not reasons:
            return set()
        key = self.model.owner_field
        reasons = {pk: text[:REASON_MAX_LENGTH] for pk, text in reasons.items()}
        known = dict(self.filter(**{f"{key}__in": list(reasons)}).values_list(key, "reason"))
        changed = {pk for pk, text in reasons.items() if known.get(pk) != text}
        if changed:
            now = timezone.now()
            # MySQL's upsert takes no conflict target (the primary key is the only one here).
            target = [key] if connections[self.db].features.supports_update_conflicts_with_target else None
            self.bulk_create(
                [self.model(**{key: pk}, reason=reasons[pk], recorded_on=now) for pk in changed],
                update_conflicts=True, unique_fields=target, update_fields=["reason", "recorded_on"],
            )
        return changed


class EntryReason(models.Model):
    """The scheduler's latest word on a host queue entry it failed or could not start."""

    owner_field = "queue_entry_id"

    queue_entry = models.OneToOneField(
        "afe.HostQueueEntry", primary_key=True, on_delete=models.CASCADE, related_name="scheduler_reason"
    )
    reason = models.TextField()
    recorded_on = models.DateTimeField(default=timezone.now)

    objects = ReasonQuerySet.as_manager()

    class Meta:
        db_table = "afe_host_queue_entry_reasons"

    def __str__(self) -> str:
        return self.reason


class SpecialTaskReason(models.Model):
    """The scheduler's latest word on a special task it failed or could not start."""

    owner_field = "special_task_id"

    special_task = models.OneToOneField(
        "afe.SpecialTask", primary_key=True, on_delete=models.CASCADE, related_name="scheduler_reason"
    )
    reason = models.TextField()
    recorded_on = models.DateTimeField(default=timezone.now)

    objects = ReasonQuerySet.as_manager()

    class Meta:
        db_table = "afe_special_task_reasons"

    def __str__(self) -> str:
        return self.reason
