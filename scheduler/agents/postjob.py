"""After the job: gathering crash information, parsing results, and the final status (§3.7)."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

from afe.models import EntryReason, Host, HostQueueEntry, SpecialTask, User
from drones.models import Process

from .. import postjob_rules
from ..commands import CRASHINFO_LOG, CRASHINFO_PIDFILE, PARSE_LOG, PARSER_PIDFILE, crashinfo_command, parse_command
from ..context import SchedulerContext
from ..groups import EntryGroup
from ..isolation import prepare_each
from ..notify import EntryOutcome
from ..synch import stop_if_necessary
from ..throttle import StartRequest
from ..transitions import EntryStatus, HostStatus, move_entries, move_hosts
from . import Family

log = logging.getLogger(__name__)


def gather_request(group: EntryGroup, job_process: Process, pinned: bool = True) -> StartRequest:
    """Crash-info collection uses one slot per entry, on the drone that ran the job when ``pinned``
    (else on any drone: the results directory is shared)."""
    return StartRequest(
        key=(Family.GATHER, group.key), num_processes=len(group.entries), owner=group.job.owner,
        pinned_drone=job_process.drone if pinned else None,
    )


def parse_request(group: EntryGroup, job_process: Process | None, pinned: bool = True) -> StartRequest:
    """Parsing uses no slot; on the drone that ran the job when ``pinned``."""
    return StartRequest(
        key=(Family.PARSE, group.key), num_processes=0, owner=group.job.owner,
        pinned_drone=job_process.drone if job_process and pinned else None,
    )


def start_gathering(ctx: SchedulerContext, admitted: list[tuple[Ending, str]]) -> None:
    """Write a crash-info process for each admitted group (with its job's process) on its drone.

    A group whose results directory cannot be named safely gathers nothing and moves on to parsing.
    """
    def process_for(item: tuple[Ending, str]) -> Process:
        (ending, drone) = item
        group, job_process = ending.group, ending.job_process
        directory = ctx.path(group.execution_path)
        return Process(
            kind=Process.Kind.GATHER,
            command=crashinfo_command(ctx.config.autoserv_path, str(directory), group.hostnames),
            working_dir=str(directory), log_file=str(directory / CRASHINFO_LOG), pidfile_name=CRASHINFO_PIDFILE,
            num_processes=len(group.entries), owner=group.job.owner, drone=drone, job=group.job,
            execution_subdir=group.execution_subdir, paired_with=job_process,
        )

    prepared = prepare_each(admitted, process_for)
    ctx.drones.queue_many([process for _, process in prepared.ready])
    _skip_step("gathering", [(ending, why) for (ending, _), why in prepared.failed], finish_gathering, ctx)


def start_parsing(ctx: SchedulerContext, admitted: list[tuple[Ending, str]]) -> None:
    """Write a parse process for each admitted group (with its job's process, if any) on its drone.

    A group whose results directory cannot be named safely is not parsed and gets its final status.
    """
    def process_for(item: tuple[Ending, str]) -> Process:
        (ending, drone) = item
        group, job_process = ending.group, ending.job_process
        directory = ctx.path(group.execution_path)
        return Process(
            kind=Process.Kind.PARSE, command=parse_command(ctx.config.parser_path, str(directory)),
            working_dir=str(directory), log_file=str(directory / PARSE_LOG), pidfile_name=PARSER_PIDFILE,
            num_processes=0, owner=group.job.owner, drone=drone, job=group.job,
            execution_subdir=group.execution_subdir, paired_with=job_process,
        )

    prepared = prepare_each(admitted, process_for)
    ctx.drones.queue_many([process for _, process in prepared.ready])
    _skip_step("parsing", [(ending, why) for (ending, _), why in prepared.failed], finish_parsing, ctx)


def _skip_step(
    step: str, skipped: list[tuple[Ending, str]], finish: Callable[[SchedulerContext, list[Ending]], int],
    ctx: SchedulerContext,
) -> None:
    """End a post-job step without running it, for groups whose step cannot run; each is logged once."""
    if not skipped:
        return
    finish(ctx, [ending for ending, _ in skipped])
    EntryReason.objects.record({pk: f"Skipped {step}: {why}" for e, why in skipped for pk in e.group.entry_ids})
    for ending, why in skipped:
        log.warning("job %s (%s): skipped %s: %s", ending.group.job.pk, ending.group.execution_subdir, step, why)


@dataclass(frozen=True)
class Ending:
    """A group at a post-job step (gathering or parsing): its job's process, and the step's own
    process once it ran. What the step's start and its end are given."""

    group: EntryGroup
    job_process: Process | None
    step_process: Process | None = None


def claim_processes(processes: list[Process]) -> set[int]:
    """Mark finished processes handled, in bulk; returns the ids this caller won (inside a transaction)."""
    ids = [p.pk for p in processes]
    if not ids:
        return set()
    won = set(
        Process.objects.select_for_update()
        .filter(pk__in=ids, handled=False, state__in=Process.FINISHED_STATES)
        .values_list("pk", flat=True)
    )
    Process.objects.filter(pk__in=won).update(handled=True)
    return won


def _still(endings: list[Ending], status: str) -> list[Ending]:
    """The endings whose process this caller claimed and whose entries are all still in ``status``."""
    won = claim_processes([e.step_process for e in endings if e.step_process])
    endings = [e for e in endings if e.step_process is None or e.step_process.pk in won]
    ids = [pk for e in endings for pk in e.group.entry_ids]
    current = set(
        HostQueueEntry.objects.select_for_update().filter(pk__in=ids, status=status).values_list("pk", flat=True)
    )
    return [e for e in endings if set(e.group.entry_ids) <= current]


def finish_gathering(ctx: SchedulerContext, endings: list[Ending]) -> int:
    """Entries go to Parsing; each host gets its post-job cleanup and/or reset, or is Ready.

    Returns how many groups moved on. Queries do not grow with the number of groups.
    """
    with transaction.atomic():
        endings = _still(endings, EntryStatus.GATHERING)
        if not endings:
            return 0
        move_entries([pk for e in endings for pk in e.group.entry_ids], EntryStatus.PARSING,
                     from_statuses=[EntryStatus.GATHERING])
        owners = User.ids_for_logins(e.group.job.owner for e in endings)
        tasks: list[SpecialTask] = []
        ready: list[int] = []
        for ending in endings:
            group, job_process = ending.group, ending.job_process
            final_success = job_process is not None and postjob_rules.final_status(
                aborted=group.aborted, exit_status=job_process.exit_status) == EntryStatus.COMPLETED
            if job_process is None:
                tests_failed = 0
            else:
                tests_failed = job_process.tests_failed if job_process.tests_failed is not None else -1
            cleanup, reset = postjob_rules.postjob_tasks(
                aborted=group.aborted, reboot_after=group.job.reboot_after, run_reset=group.job.run_reset,
                final_success=final_success, tests_failed=tests_failed,
            )
            owner = owners[group.job.owner]
            wanted = [SpecialTask.Task.CLEANUP] * cleanup + [SpecialTask.Task.RESET] * reset
            tasks += [SpecialTask(host_id=h, task=t, requested_by_id=owner) for t in wanted for h in group.host_ids]
            if not cleanup:
                ready += group.host_ids
        move_hosts(ready, HostStatus.READY, from_statuses=Host.JOB_STATUSES)
        SpecialTask.objects.bulk_create(tasks)
    return len(endings)


def finish_parsing(ctx: SchedulerContext, endings: list[Ending]) -> int:
    """Every entry of each group reaches its final status: Aborted, Completed or Failed.

    Returns how many groups ended. Queries do not grow with the number of groups.
    """
    by_status: dict[str, list[Ending]] = defaultdict(list)
    with transaction.atomic():
        endings = _still(endings, EntryStatus.PARSING)
        for ending in endings:
            exit_status = ending.job_process.exit_status if ending.job_process else None
            by_status[postjob_rules.final_status(aborted=ending.group.aborted, exit_status=exit_status)].append(ending)
        for status, group_endings in by_status.items():
            move_entries([pk for e in group_endings for pk in e.group.entry_ids], status,
                         from_statuses=[EntryStatus.PARSING])
        stop_if_necessary({e.group.job.pk for s, es in by_status.items() if s != EntryStatus.ABORTED for e in es})
    for status, group_endings in by_status.items():
        announce_completion(ctx, [entry for e in group_endings for entry in e.group.entries], status)
    return len(endings)


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
