"""Aborts of entries in every state (§3.12) and of running special tasks."""
from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from afe.models import AbortedHostQueueEntry, Host, HostQueueEntry, SpecialTask, User
from drones.models import Process

from . import results
from .agents.postjob import announce_completion
from .agents.special_tasks import PROCESS_KIND
from .context import SchedulerContext
from .groups import group_entries, latest_processes
from .isolation import best_effort
from .synch import stop_if_necessary
from .transitions import EntryStatus, HostStatus, move_entries, move_hosts

log = logging.getLogger(__name__)
Task = SpecialTask.Task



def handle_aborted_entries(ctx: SchedulerContext) -> int:
    """Act on every entry whose abort was requested and that is not complete; returns how many changed.

    Entries that are Gathering or Parsing need nothing: their final status
    will be Aborted. A Running job's process is killed once; its normal
    epilog then takes the entries through Gathering.
    """
    entries = list(
        HostQueueEntry.objects.filter(aborted=True, complete=False)
        .exclude(status__in=HostQueueEntry.POST_JOB_STATUSES)
        .select_related("job", "host")
    )
    if not entries:
        return 0
    by_status: dict[str, list[HostQueueEntry]] = defaultdict(list)
    for entry in entries:
        by_status[entry.status].append(entry)
    changed = 0
    with transaction.atomic():
        changed += _abort_queued(ctx, by_status.pop(EntryStatus.QUEUED, []))
        changed += _abort_prejob(ctx, [e for s in HostQueueEntry.PRE_JOB_TASK_STATUSES for e in by_status.pop(s, [])])
        changed += _abort_pending(ctx, by_status.pop(EntryStatus.PENDING, []))
        running = by_status.pop(EntryStatus.STARTING, []) + by_status.pop(EntryStatus.RUNNING, [])
        changed += _abort_running(ctx, running)
        stop_if_necessary({e.job_id for e in entries})
    return changed


def _abort_queued(ctx: SchedulerContext, entries: list[HostQueueEntry]) -> int:
    ids = [e.pk for e in entries]
    # A queued repair still runs: the host needs it whatever became of the entry.
    SpecialTask.objects.filter(queue_entry_id__in=ids, is_active=False, is_complete=False).exclude(
        task=Task.REPAIR).update(is_complete=True)
    moved = move_entries(ids, EntryStatus.ABORTED, from_statuses=[EntryStatus.QUEUED])
    announce_completion(ctx, entries, EntryStatus.ABORTED)
    return moved


def _abort_pending(ctx: SchedulerContext, entries: list[HostQueueEntry]) -> int:
    move_hosts([e.host_id for e in entries if e.host_id], HostStatus.READY, from_statuses=[HostStatus.PENDING])
    moved = move_entries([e.pk for e in entries], EntryStatus.ABORTED, from_statuses=[EntryStatus.PENDING])
    announce_completion(ctx, entries, EntryStatus.ABORTED)
    return moved


def _abort_prejob(ctx: SchedulerContext, entries: list[HostQueueEntry]) -> int:
    """Kill the running pre-job task; the host gets a cleanup (a repair after a provision)."""
    if not entries:
        return 0
    ids = [e.pk for e in entries]
    # The entry's pre-job task stops; a repair it caused (maybe on another host) goes on.
    chain = SpecialTask.objects.filter(queue_entry_id__in=ids, is_complete=False).exclude(task=Task.REPAIR)
    running = list(chain.filter(is_active=True).values_list("pk", flat=True))
    kill_task_processes(ctx, running, handled=True)
    chain.update(is_active=False, is_complete=True, success=False, time_finished=ctx.clock())
    owners = User.ids_for_logins(e.job.owner for e in entries)
    follow_up = [
        SpecialTask(
            host_id=e.host_id,
            task=Task.REPAIR if e.status == EntryStatus.PROVISIONING else Task.CLEANUP,
            requested_by_id=owners[e.job.owner],
        )
        for e in entries if e.host_id
    ]
    SpecialTask.objects.bulk_create(follow_up)
    moved = move_entries(ids, EntryStatus.ABORTED, from_statuses=HostQueueEntry.PRE_JOB_TASK_STATUSES)
    announce_completion(ctx, entries, EntryStatus.ABORTED)
    return moved


def _abort_running(ctx: SchedulerContext, entries: list[HostQueueEntry]) -> int:
    """Starting or Running entries: kill the job (logging who aborted it), or end it if it never ran."""
    if not entries:
        return 0
    groups = group_entries(entries)
    processes = latest_processes({g.job.pk for g in groups}, [Process.Kind.JOB])
    aborted_by = {
        a.queue_entry_id: a for a in AbortedHostQueueEntry.objects.filter(
            queue_entry_id__in=[e.pk for e in entries]).select_related("aborted_by")
    }
    changed = 0
    never_ran: list[HostQueueEntry] = []
    for group in groups:
        process = processes.get((group.job.pk, group.execution_subdir, Process.Kind.JOB))
        if process is not None and process.is_active:
            if not process.kill_requested:
                _log_abort(ctx, group.execution_path, [aborted_by.get(pk) for pk in group.entry_ids])
                ctx.drones.kill(process)
                changed += len(group.entries)
        elif process is None or process.handled:
            never_ran.extend(group.entries)
    hostless = [e for e in never_ran if e.is_hostless()]
    with_hosts = _whole_groups([e for e in never_ran if not e.is_hostless()])
    changed += move_entries([e.pk for e in hostless], EntryStatus.ABORTED,
                            from_statuses=[EntryStatus.STARTING, EntryStatus.QUEUED])
    announce_completion(ctx, hostless, EntryStatus.ABORTED)
    # A job aborted before it ran still ends like one that ran: gathering, parsing, a cleanup.
    changed += move_entries([e.pk for e in with_hosts], EntryStatus.GATHERING, from_statuses=[EntryStatus.STARTING])
    move_hosts([e.host_id for e in with_hosts], HostStatus.RUNNING, from_statuses=Host.JOB_STATUSES)
    return changed


def _whole_groups(entries: list[HostQueueEntry]) -> list[HostQueueEntry]:
    """All Starting entries of the groups these entries belong to: a group ends together."""
    keys = {(e.job_id, e.execution_subdir) for e in entries}
    if not keys:
        return []
    candidates = HostQueueEntry.objects.filter(
        job_id__in={job for job, _ in keys}, status=EntryStatus.STARTING
    ).select_related("job", "host")
    return [e for e in candidates if (e.job_id, e.execution_subdir) in keys]


def _log_abort(ctx: SchedulerContext, execution_path: str, records: list[AbortedHostQueueEntry | None]) -> None:
    known = [r for r in records if r is not None]
    who = known[0].aborted_by.login if known else "autotest_system"
    when = max((r.aborted_on for r in known), default=ctx.clock())

    def write() -> None:
        directory = ctx.path(execution_path)
        results.append_keyvals_once(directory, {"aborted_by": who, "aborted_on": results.epoch(when)})
        results.append_status_comment(directory, f"Job aborted by {who} on {when:%Y-%m-%d %H:%M:%S}")

    best_effort(f"the abort of {execution_path!r}", write, log)


def kill_task_processes(ctx: SchedulerContext, task_ids: list[int], handled: bool = False) -> None:
    """Kill the processes of these special tasks; ``handled`` means their results will be ignored."""
    processes = Process.objects.filter(special_task_id__in=task_ids, kind__in=list(PROCESS_KIND.values()))
    for process in processes:
        if process.is_active and not process.kill_requested:
            ctx.drones.kill(process)
    if handled:
        processes.update(handled=True)


def handle_aborted_special_tasks(ctx: SchedulerContext) -> int:
    """Kill running tasks whose abort was requested; their epilog then takes the failure path."""
    running = list(
        SpecialTask.objects.filter(is_aborted=True, is_active=True, is_complete=False).values_list("pk", flat=True)
    )
    kill_task_processes(ctx, running)
    return len(running)
