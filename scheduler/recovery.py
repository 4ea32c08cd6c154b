"""What a starting scheduler repairs: leftovers of a crash or kill -9 (§3.15, fixing §6.1 #3).

Processes need no re-attaching here: their records live in the database and
the drones settle or relaunch them every tick. What is left is state that
the original scheduler could strand.
"""
from __future__ import annotations

import logging
from collections.abc import Collection

from django.db import transaction
from django.db.models import Exists, OuterRef

from afe.models import Host, HostQueueEntry, SpecialTask
from drones.models import Process

from .agents.special_tasks import requeue_entry
from .context import SchedulerContext
from .synch import run_ready_jobs
from .transitions import EntryStatus, HostStatus

log = logging.getLogger(__name__)



def recover(ctx: SchedulerContext, recover_hosts: bool = False) -> None:
    """Bring the database back to states the tick knows how to move on."""
    with transaction.atomic():
        requeued = requeue_prejob_entries_without_tasks()
        reset = reset_stranded_hosts(ctx, Host.TASK_STATUSES)
        if recover_hosts:
            reset += reset_stranded_hosts(ctx, [HostStatus.REPAIR_FAILED])
        killed = kill_orphan_processes(ctx)
        pending_jobs = set(
            HostQueueEntry.objects.filter(status=EntryStatus.PENDING).values_list("job_id", flat=True)
        )
        run_ready_jobs(pending_jobs, ctx.notifier)
    log.info("recovery: %d entries requeued, %d hosts queued for reset, %d orphan processes killed",
             requeued, reset, killed)


def requeue_prejob_entries_without_tasks() -> int:
    """Entries stuck in a pre-job status with no task left to move them go back to Queued.

    Their host is marked dirty and Ready, so the next assignment cleans it.
    """
    open_task = SpecialTask.objects.filter(queue_entry=OuterRef("pk"), is_complete=False)
    stuck = list(
        HostQueueEntry.objects.filter(status__in=HostQueueEntry.PRE_JOB_TASK_STATUSES, aborted=False)
        .filter(~Exists(open_task)).select_related("job")
    )
    Host.objects.filter(pk__in=[e.host_id for e in stuck if e.host_id]).update(dirty=True, status=HostStatus.READY)
    for entry in stuck:
        requeue_entry(entry)
    return len(stuck)


def reset_stranded_hosts(ctx: SchedulerContext, statuses: Collection[str]) -> int:
    """Hosts in ``statuses`` that nothing is working on get a Reset task."""
    open_task = SpecialTask.objects.filter(host=OuterRef("pk"), is_complete=False)
    active_entry = HostQueueEntry.objects.filter(host=OuterRef("pk"), active=True)
    stranded = Host.valid_objects.filter(status__in=list(statuses), locked=False).filter(
        ~Exists(open_task), ~Exists(active_entry)
    )
    return SpecialTask.schedule_for_hosts(list(stranded.only("pk")), SpecialTask.Task.RESET, ctx.system_user)


def kill_orphan_processes(ctx: SchedulerContext) -> int:
    """Kill running processes whose task or entries no longer expect them.

    A special-task process is an orphan when its task is complete; a job
    process when none of its entries is Starting or Running any more.
    """
    live = list(Process.objects.active().select_related("special_task"))
    running_groups = set(
        HostQueueEntry.objects.filter(status__in=HostQueueEntry.JOB_STATUSES)
        .values_list("job_id", "execution_subdir")
    )
    orphans = [
        p for p in live
        if (p.special_task_id and p.special_task.is_complete)
        or (p.kind == Process.Kind.JOB and (p.job_id, p.execution_subdir) not in running_groups)
    ]
    for process in orphans:
        log.warning("killing orphan process %s (%s)", process.pk, process.kind)
        ctx.drones.kill(process)
    return len(orphans)
