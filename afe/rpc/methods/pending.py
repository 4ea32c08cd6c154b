"""Why pending: the scheduler's latest reason each waiting entry has not started."""
from __future__ import annotations

from typing import Any

from ...identity import Caller
from ...models import HostQueueEntry, HostQueueEntryPending
from .. import query
from ..registry import rpc


@rpc
def get_pending_reasons(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """The scheduler's explanation for each matching entry that is still waiting, first in the queue first.

    ``filter_data`` filters host queue entries as ``get_host_queue_entries`` does
    (``job__id__in=[...]``, ``host__hostname=...``, paging). Each row is
    ``{"id": entry id, "job": job id, "reason": text, "position": 1-based place in
    the scheduler's serving order, "estimated_start": a guess or None,
    "computed_on": when the scheduler wrote it}``. Entries the scheduler has not
    explained (running, complete, or created since its last tick) are absent.
    Two queries at most.
    """
    lookups, paging = query.split_filter(filter_data)
    entries = query.filtered(HostQueueEntry.objects.order_by("pk"), lookups)
    if paging:
        entries = HostQueueEntry.objects.filter(pk__in=query.rows(query.paged(entries, **paging).values_list(
            "pk", flat=True)))
    rows = HostQueueEntryPending.objects.filter(queue_entry__in=entries.values("pk")).order_by(
        "position", "queue_entry_id").values_list(
        "queue_entry_id", "queue_entry__job_id", "reason", "position", "estimated_start", "computed_on")
    return [
        {"id": pk, "job": job_id, "reason": reason, "position": position, "estimated_start": estimate,
         "computed_on": computed_on}
        for pk, job_id, reason, position, estimate, computed_on in query.rows(rows)
    ]
