"""Bulk status changes for entries and hosts, each one UPDATE.

Every change names the statuses it moves from (the sets shared by several
modules are defined on the models), so a stale decision (the row moved on
since it was read) changes nothing; callers compare the returned count with
what they expected.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable

from django.utils import timezone

from afe.models import Host, HostQueueEntry

EntryStatus = HostQueueEntry.Status
HostStatus = Host.Status


def move_entries(
    entry_ids: Iterable[int],
    to: str,
    *,
    from_statuses: Collection[str],
    **fields: object,
) -> int:
    """Set the status (and its active/complete flags) of entries now in ``from_statuses``; returns how many moved."""
    entries = HostQueueEntry.objects.filter(pk__in=list(entry_ids), status__in=list(from_statuses))
    values = {**HostQueueEntry.status_flags(to), **fields}
    if to in HostQueueEntry.COMPLETE_STATUSES:
        values.setdefault("finished_on", timezone.now())
    return entries.update(status=to, **values)


def move_hosts(host_ids: Iterable[int], to: str, *, from_statuses: Collection[str], **fields: object) -> int:
    """Set the status of hosts now in ``from_statuses``; returns how many moved."""
    return Host.objects.filter(pk__in=list(host_ids), status__in=list(from_statuses)).update(status=to, **fields)
