"""Pending entries become runnable groups once enough hosts of a job are ready (§3.8)."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable


from afe.models import Host, HostQueueEntry, Job, SpecialTask

from .notify import Notifier
from .transitions import EntryStatus, HostStatus, move_entries, move_hosts

_GROUP = re.compile(r"^group(\d+)$")


def put_pending(entries: Iterable[HostQueueEntry]) -> None:
    """Pre-job work is done for these entries: they and their hosts wait in Pending."""
    entries = list(entries)
    move_entries([e.pk for e in entries], EntryStatus.PENDING, from_statuses=HostQueueEntry.AWAITING_PRE_JOB_STATUSES)
    move_hosts([e.host_id for e in entries], HostStatus.PENDING, from_statuses={HostStatus.READY} | Host.TASK_STATUSES)


def run_ready_jobs(job_ids: Iterable[int], notifier: Notifier) -> None:
    """Start every group of Pending entries that is large enough; stop jobs that can never run.

    A job with ``synch_count`` N starts its Pending entries N at a time, in
    AFE's host order; each group gets its own execution subdirectory
    (the hostname for N=1, else ``group<k>``). Queries do not grow with the
    number of jobs or entries.
    """
    job_ids = set(job_ids)
    if not job_ids:
        return
    jobs = Job.objects.in_bulk(job_ids)
    entries_by_job: dict[int, list[HostQueueEntry]] = defaultdict(list)
    for entry in HostQueueEntry.objects.filter(job_id__in=job_ids).select_related("host"):
        entries_by_job[entry.job_id].append(entry)

    starting: list[HostQueueEntry] = []
    stopping: list[int] = []
    for job_id, entries in entries_by_job.items():
        job = jobs[job_id]
        synch_count = max(job.synch_count, 1)
        pending = sorted(
            (e for e in entries if e.status == EntryStatus.PENDING and not e.aborted and e.host_id),
            key=lambda e: Host.sort_key(e.host.hostname),
        )
        next_group = 1 + max(
            (int(m.group(1)) for e in entries if (m := _GROUP.match(e.execution_subdir))), default=0
        )
        started_any = len(pending) >= synch_count
        while len(pending) >= synch_count:
            group, pending = pending[:synch_count], pending[synch_count:]
            subdir = group[0].host.hostname if synch_count == 1 else f"group{next_group}"
            next_group += synch_count > 1
            for entry in group:
                entry.execution_subdir = subdir
                entry.status = EntryStatus.STARTING
            starting.extend(group)
        if pending and synch_count == 1:
            notifier.operator("Asynchronous job stuck in Pending", f"job {job_id}")
        if not started_any:
            stopping.extend(entries_to_stop(job, entries))

    if starting:
        HostQueueEntry.objects.bulk_update(starting, ["execution_subdir", "status"])
    if stopping:
        stop_entries(stopping)


def entries_to_stop(job: Job, entries: list[HostQueueEntry]) -> list[int]:
    """Entries to stop because the job can no longer gather ``synch_count`` hosts."""
    waiting = [e for e in entries if e.status in HostQueueEntry.PRE_JOB_STATUSES and not e.aborted]
    if len(waiting) >= max(job.synch_count, 1):
        return []
    return [e.pk for e in waiting if e.status in HostQueueEntry.IDLE_PRE_JOB_STATUSES]


def stop_entries(entry_ids: list[int]) -> None:
    """Stop idle entries of jobs that cannot run; their Pending hosts become Ready."""
    pending_hosts = list(
        HostQueueEntry.objects.filter(pk__in=entry_ids, status=EntryStatus.PENDING, host__isnull=False)
        .values_list("host_id", flat=True)
    )
    move_entries(entry_ids, EntryStatus.STOPPED, from_statuses=HostQueueEntry.IDLE_PRE_JOB_STATUSES)
    move_hosts(pending_hosts, HostStatus.READY, from_statuses=[HostStatus.PENDING])
    # Their queued pre-job tasks will not run; repairs do, the hosts need them.
    SpecialTask.objects.filter(queue_entry_id__in=entry_ids, is_active=False, is_complete=False).exclude(
        task=SpecialTask.Task.REPAIR).update(is_complete=True)


def stop_if_necessary(job_ids: Iterable[int]) -> None:
    """Stop the idle entries of jobs that lost too many entries to ever run."""
    job_ids = set(job_ids)
    if not job_ids:
        return
    jobs = Job.objects.in_bulk(job_ids)
    entries_by_job: dict[int, list[HostQueueEntry]] = defaultdict(list)
    for entry in HostQueueEntry.objects.filter(job_id__in=job_ids):
        entries_by_job[entry.job_id].append(entry)
    stopping = [pk for job_id, entries in entries_by_job.items() for pk in entries_to_stop(jobs[job_id], entries)]
    if stopping:
        stop_entries(stopping)
