"""After the job: gathering crash information, parsing results, and the final status (§3.7)."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

from django.db import transaction

from afe.models import HostQueueEntry, SpecialTask, User
from drones.models import Process

from .. import prejob
from ..commands import CRASHINFO_LOG, CRASHINFO_PIDFILE, PARSE_LOG, PARSER_PIDFILE, crashinfo_command, parse_command
from ..context import SchedulerContext
from ..groups import EntryGroup
from ..notify import EntryOutcome
from ..synch import stop_if_necessary
from ..throttle import StartRequest
from ..transitions import EntryStatus, HostStatus, move_entries, move_hosts

log = logging.getLogger(__name__)


def gather_request(group: EntryGroup, job_process: Process) -> StartRequest:
    """Crash-info collection uses one slot per entry, on the drone that ran the job."""
    return StartRequest(
        key=("gather", group.key), num_processes=len(group.entries), owner=group.job.owner,
        pinned_drone=job_process.drone,
    )


def parse_request(group: EntryGroup, job_process: Process | None) -> StartRequest:
    return StartRequest(
        key=("parse", group.key), num_processes=0, owner=group.job.owner,
        pinned_drone=job_process.drone if job_process else None,
    )


def start_gathering(ctx: SchedulerContext, admitted: list[tuple[EntryGroup, Process, str]]) -> None:
    """Write a crash-info process for each admitted (group, job process, drone)."""
    Process.objects.bulk_create([
        Process(
            kind=Process.Kind.GATHER,
            command=crashinfo_command(ctx.config.autoserv_path, str(ctx.path(group.execution_path)), group.hostnames),
            working_dir=str(ctx.path(group.execution_path)),
            log_file=str(ctx.path(group.execution_path) / CRASHINFO_LOG), pidfile_name=CRASHINFO_PIDFILE,
            num_processes=len(group.entries), owner=group.job.owner, drone=drone, job=group.job,
            execution_subdir=group.execution_subdir, paired_with=job_process,
        )
        for group, job_process, drone in admitted
    ])


def start_parsing(ctx: SchedulerContext, admitted: list[tuple[EntryGroup, Process | None, str]]) -> None:
    Process.objects.bulk_create([
        Process(
            kind=Process.Kind.PARSE,
            command=parse_command(ctx.config.parser_path, str(ctx.path(group.execution_path))),
            working_dir=str(ctx.path(group.execution_path)),
            log_file=str(ctx.path(group.execution_path) / PARSE_LOG), pidfile_name=PARSER_PIDFILE,
            num_processes=0, owner=group.job.owner, drone=drone, job=group.job,
            execution_subdir=group.execution_subdir, paired_with=job_process,
        )
        for group, job_process, drone in admitted
    ])


def finish_gathering(ctx: SchedulerContext, group: EntryGroup, job_process: Process | None,
                     gather_process: Process | None = None) -> None:
    """Entries go to Parsing; each host gets its post-job cleanup and/or reset, or is Ready."""
    with transaction.atomic():
        if gather_process is not None and not gather_process.mark_handled():
            return
        if move_entries(group.entry_ids, EntryStatus.PARSING, from_statuses=[EntryStatus.GATHERING]) == 0:
            return
        exit_status = job_process.exit_status if job_process else None
        final_success = job_process is not None and prejob.final_status(
            aborted=group.aborted, exit_status=exit_status) == EntryStatus.COMPLETED
        tests_failed = (job_process.tests_failed if job_process.tests_failed is not None else -1) if job_process else 0
        cleanup, reset = prejob.postjob_tasks(
            aborted=group.aborted, reboot_after=group.job.reboot_after, run_reset=group.job.run_reset,
            final_success=final_success, tests_failed=tests_failed,
        )
        owner = User.objects.get_or_create(login=group.job.owner)[0]
        tasks = []
        if cleanup:
            tasks += [SpecialTask(host_id=h, task=SpecialTask.Task.CLEANUP, requested_by=owner) for h in group.host_ids]
        else:
            move_hosts(group.host_ids, HostStatus.READY)
        if reset:
            tasks += [SpecialTask(host_id=h, task=SpecialTask.Task.RESET, requested_by=owner) for h in group.host_ids]
        SpecialTask.objects.bulk_create(tasks)


def finish_parsing(ctx: SchedulerContext, group: EntryGroup, job_process: Process | None,
                   parse_process: Process | None = None) -> None:
    """Every entry of the group reaches its final status: Aborted, Completed or Failed."""
    status = prejob.final_status(
        aborted=group.aborted, exit_status=job_process.exit_status if job_process else None
    )
    with transaction.atomic():
        if parse_process is not None and not parse_process.mark_handled():
            return
        if move_entries(group.entry_ids, status, from_statuses=[EntryStatus.PARSING]) == 0:
            return
        if status != EntryStatus.ABORTED:
            stop_if_necessary([group.job.pk])
    announce_completion(ctx, group.entries, status)


def announce_completion(ctx: SchedulerContext, entries: list[HostQueueEntry], status: str) -> None:
    """Mail that these entries reached ``status``, and summarise each job that is now complete.

    One query, however many entries and jobs.
    """
    if not entries:
        return
    jobs = {e.job_id: e.job for e in entries}
    for entry in entries:
        job = jobs[entry.job_id]
        ctx.notifier.entry_reached(EntryOutcome(
            job.pk, job.name, entry.host.hostname if entry.host_id else None, status, tuple(job.email_addresses()),
        ))
    statuses: dict[int, Counter[str]] = defaultdict(Counter)
    for job_id, entry_status in HostQueueEntry.objects.filter(job_id__in=jobs).values_list("job_id", "status"):
        statuses[job_id][entry_status] += 1
    for job_id, counts in statuses.items():
        if all(s in HostQueueEntry.COMPLETE_STATUSES for s in counts):
            job = jobs[job_id]
            ctx.notifier.job_completed(job.pk, job.name, dict(counts), tuple(job.email_addresses()))
