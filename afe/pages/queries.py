"""Reads shared by the pages, each a fixed number of queries however many rows are shown."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, F, Prefetch, QuerySet

from afe.models import AclGroup, Host, HostQueueEntry, HostQueueEntryPending, Job, Label, SpecialTask

Status = HostQueueEntry.Status


def status_counts(job_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """``{job id: {full status: count}}`` in one query."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (HostQueueEntry.objects.filter(job_id__in=list(job_ids)).order_by()
            .values_list("job_id", "status", "aborted", "complete").annotate(n=Count("id")))
    for job_id, status, aborted, complete, n in rows:
        full = HostQueueEntry.compute_full_status(status, aborted, complete)
        counts[job_id][full] = counts[job_id].get(full, 0) + n
    return dict(counts)


def filter_jobs(jobs: QuerySet[Job], state: str | None, kind: str | None) -> QuerySet[Job]:
    """AFE's state (queued/running/finished) and type (parent/child) filters."""
    started = HostQueueEntry.objects.exclude(status=Status.QUEUED).values("job_id")
    unfinished = HostQueueEntry.objects.filter(complete=False).values("job_id")
    if state == "queued":
        jobs = jobs.exclude(pk__in=started)
    elif state == "running":
        jobs = jobs.filter(pk__in=started).filter(pk__in=unfinished)
    elif state == "finished":
        jobs = jobs.exclude(pk__in=unfinished)
    if kind == "parent":
        jobs = jobs.filter(pk__in=Job.objects.filter(parent_job__isnull=False).values("parent_job_id"))
    elif kind == "child":
        jobs = jobs.filter(parent_job__isnull=False)
    return jobs


def hosts_with_details(hosts: QuerySet[Host]) -> QuerySet[Host]:
    """Hosts with labels, ACL groups, the locker and the active entries (with jobs) prefetched."""
    return hosts.select_related("locked_by").prefetch_related(
        Prefetch("labels", queryset=Label.objects.order_by("name")),
        Prefetch("aclgroup_set", queryset=AclGroup.objects.order_by("name")),
        Prefetch("hostqueueentry_set", to_attr="active_entries",
                 queryset=HostQueueEntry.objects.filter(active=True).select_related("job")),
        Prefetch("specialtask_set", to_attr="active_tasks",
                 queryset=SpecialTask.objects.filter(is_active=True, is_complete=False)),
    )


def platform_of(host: Host) -> Label | None:
    """The host's platform label, from its prefetched labels."""
    return next((label for label in host.labels.all() if label.platform), None)


def pending_by_job(job_ids: Iterable[int]) -> dict[int, HostQueueEntryPending]:
    """``{job id: the reason of its first waiting entry}`` (the one nearest the head of the queue), one query."""
    first: dict[int, HostQueueEntryPending] = {}
    rows = (HostQueueEntryPending.objects.filter(queue_entry__job_id__in=list(job_ids))
            .annotate(job_id=F("queue_entry__job_id")).order_by("position", "queue_entry_id"))
    for row in rows:
        first.setdefault(row.job_id, row)
    return first


def pending_of(entry: HostQueueEntry) -> HostQueueEntryPending | None:
    """The scheduler's explanation of why ``entry`` waits (select_related ``pending_reason``), or None."""
    try:
        return entry.pending_reason
    except ObjectDoesNotExist:
        return None
