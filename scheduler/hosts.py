"""Host release: a leased host that is idle and Ready goes back to the pool (§3.10)."""
from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from afe.models import Host, HostQueueEntry, SpecialTask


def release_idle_hosts() -> int:
    """Unlease every idle, unlocked, Ready host in one UPDATE; returns how many were released.

    Idle means no active entry and no incomplete special task on the host.
    """
    active_entry = HostQueueEntry.objects.filter(host=OuterRef("pk"), active=True)
    open_task = SpecialTask.objects.filter(host=OuterRef("pk"), is_complete=False)
    idle = (
        Host.objects.filter(leased=True, locked=False)
        .filter(Q(status=Host.Status.READY) | Q(status__isnull=True))
        .filter(~Exists(active_entry), ~Exists(open_task))
    )
    return Host.objects.filter(pk__in=list(idle.values_list("pk", flat=True))).update(leased=False)
