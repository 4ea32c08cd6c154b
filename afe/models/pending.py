"""Why each not-yet-running host queue entry is still waiting, as the scheduler last saw it.

AFE's own tables have no place for this, so it lives beside them: one row per
waiting entry, rewritten every tick by ``scheduler.pending`` and deleted once
the entry is no longer waiting.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from django.db import connections, models
from django.utils import timezone

REASON_MAX_LENGTH = 2000


class PendingRow(NamedTuple):
    """One entry's explanation as the writer gets it: the words, the 1-based queue position, a guess."""

    reason: str
    position: int
    estimated_start: datetime | None


class HostQueueEntryPendingQuerySet(models.QuerySet):
    def replace_all(self, rows: Mapping[int, PendingRow], now: datetime | None = None) -> int:
        """Make the table hold exactly ``{entry id: row}``; returns how many rows were written.

        Two queries whatever the size: one upsert of every row (stamped
        ``computed_on=now``) and one delete of the rows not written now, i.e.
        of entries that are no longer waiting.
        """
        now = now or timezone.now()
        if rows:
            # MySQL's upsert takes no conflict target (the primary key is the only unique key here).
            target = ["queue_entry_id"] if connections[self.db].features.supports_update_conflicts_with_target \
                else None
            self.bulk_create(
                [self.model(queue_entry_id=pk, reason=row.reason[:REASON_MAX_LENGTH], position=row.position,
                            estimated_start=row.estimated_start, computed_on=now) for pk, row in rows.items()],
                update_conflicts=True, unique_fields=target,
                update_fields=["reason", "position", "estimated_start", "computed_on"],
            )
        (self.exclude(computed_on=now) if rows else self.all()).delete()
        return len(rows)

    def for_entries(self, entry_ids: Iterable[int]) -> HostQueueEntryPendingQuerySet:
        """The rows of these entries, first in the queue first."""
        return self.filter(queue_entry_id__in=list(entry_ids)).order_by("position", "queue_entry_id")


class HostQueueEntryPending(models.Model):
    """The scheduler's latest explanation of why an entry has not started yet.

    ``position`` is the entry's 1-based place in the scheduler's own serving
    order; ``estimated_start`` is a guess from recent run times (None when
    history says nothing), never a promise.
    """

    queue_entry = models.OneToOneField(
        "afe.HostQueueEntry", primary_key=True, on_delete=models.CASCADE, related_name="pending_reason"
    )
    reason = models.TextField()
    position = models.PositiveIntegerField()
    computed_on = models.DateTimeField(default=timezone.now)
    estimated_start = models.DateTimeField(null=True, blank=True)

    objects = HostQueueEntryPendingQuerySet.as_manager()

    class Meta:
        db_table = "afe_host_queue_entry_pending"
        verbose_name = "pending reason"

    def __str__(self) -> str:
        return f"#{self.position}: {self.reason}"
