"""Host queue entry methods: list entries, abort them."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from ...identity import Caller
from ...models import HostQueueEntry
from ...permissions import check_abort
from .. import query, render
from ..registry import rpc
from ..wire import InvalidArguments

_PAGING = ("query_start", "query_limit", "sort_by")


def entry_queryset(start_time: Any = None, end_time: Any = None, **filter_data: Any) -> QuerySet:
    """Entries matching the filter, started within ``[start_time, end_time]`` when given."""
    lookups, paging = query.split_filter(filter_data)
    if start_time is not None:
        lookups["started_on__gte"] = start_time
    if end_time is not None:
        lookups["started_on__lte"] = end_time
    entries = query.filtered(HostQueueEntry.objects.order_by("pk"), lookups)
    return query.paged(entries, **paging)


def _unpaged(filter_data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filter_data.items() if k not in _PAGING}


@rpc
def get_host_queue_entries(caller: Caller, start_time: Any = None, end_time: Any = None,
                           **filter_data: Any) -> list[dict[str, Any]]:
    """Every field of each entry, ``job`` and ``host`` as nested dicts, ``meta_host`` by name, ``full_status``."""
    rows = render.entry_dicts(entry_queryset(start_time, end_time, **filter_data))
    for row in rows:
        # AFE's full status, from the row's own columns (whatever render put there).
        row["full_status"] = HostQueueEntry.compute_full_status(row["status"], row["aborted"], row["complete"])
    return rows


@rpc
def get_num_host_queue_entries(caller: Caller, start_time: Any = None, end_time: Any = None,
                               **filter_data: Any) -> int:
    return entry_queryset(start_time, end_time, **_unpaged(filter_data)).count()


@rpc
def get_hqe_percentage_complete(caller: Caller, **filter_data: Any) -> float:
    """The fraction of matching entries that are complete; 1 when none match."""
    counts = entry_queryset(**_unpaged(filter_data)).aggregate(
        total=Count("pk"), complete=Count("pk", filter=Q(complete=True)))
    if not counts["total"]:
        return 1
    return counts["complete"] / counts["total"]


@rpc(writes=True)
def abort_host_queue_entries(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """Abort the matching entries that are neither complete nor aborted (and their child jobs' entries).

    The job's owner may abort its entries; anyone else only entries on hosts of
    an ACL group they are in (not Everyone); part of a started synchronous group
    never. Returns ``[{'HostQueueEntry': id, 'Job': job id, 'Job name': name}]``.
    """
    lookups, paging = query.split_filter(filter_data)
    if not lookups:
        raise InvalidArguments({"filter": "Say which entries to abort, e.g. job__id__in=[...], job_id=... or id__in=[...]."})
    pending = query.filtered(HostQueueEntry.objects.order_by("pk"), lookups).filter(complete=False, aborted=False)
    entries = query.rows(query.paged(pending.select_related("job"), **paging))
    if not entries:
        return []
    check_abort(caller.user, entries)
    HostQueueEntry.objects.filter(pk__in=[e.pk for e in entries]).abort(by=caller.user)
    return [{"HostQueueEntry": e.pk, "Job": e.job_id, "Job name": e.job.name} for e in entries]
