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
#: Rows built and upserted per statement.
WRITE_BATCH = 1000


class PendingRow(NamedTuple):
    """One entry's explanation as the writer gets it: the words, the 1-based queue position, a guess."""

    reason: str
    position: int
    estimated_start: datetime | None


def _to_minute(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(second=0, microsecond=0)


class HostQueueEntryPendingQuerySet(models.QuerySet):
    def replace_all(self, rows: Mapping[int, PendingRow], now: datetime | None = None) -> int:
        """Make the table hold exactly ``{entry id: row}``, all stamped ``computed_on=now``;
        returns how many rows were given.

        Only changes are written, in a few queries however many rows there
        are: one read of the rows there, the upsert of the rows that are new
        or changed (a statement per thousand rows, so that no statement holds
        tens of MB while it is built), one delete of the rows of entries no
        longer waiting, and one set-based update stamping the rest with
        ``now``. Estimates
        are kept to the minute (they are shown to the minute), so an
        unchanged guess is not rewritten every tick.
        """
        now = now or timezone.now()
        wanted = {pk: PendingRow(row.reason[:REASON_MAX_LENGTH], row.position, _to_minute(row.estimated_start))
                  for pk, row in rows.items()}
        there = {pk: PendingRow(reason, position, estimate) for pk, reason, position, estimate in
                 self.values_list("queue_entry_id", "reason", "position", "estimated_start")}
        changed = [pk for pk, row in wanted.items() if there.get(pk) != row]
        if changed:
            # MySQL's upsert takes no conflict target (the primary key is the only unique key here).
            target = ["queue_entry_id"] if connections[self.db].features.supports_update_conflicts_with_target \
                else None
            # Built and written a batch at a time: thousands of model instances at once cost tens of MB.
            for start in range(0, len(changed), WRITE_BATCH):
                self.bulk_create(
                    [self.model(queue_entry_id=pk, reason=wanted[pk].reason, position=wanted[pk].position,
                                estimated_start=wanted[pk].estimated_start, computed_on=now)
                     for pk in changed[start:start + WRITE_BATCH]],
                    update_conflicts=True, unique_fields=target,
                    update_fields=["reason", "position", "estimated_start", "computed_on"],
                )
        gone = [pk for pk in there if pk not in wanted]
        for start in range(0, len(gone), 10_000):
            self.filter(pk__in=gone[start:start + 10_000]).delete()
        if len(changed) < len(wanted):
            self.exclude(computed_on=now).update(computed_on=now)
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
