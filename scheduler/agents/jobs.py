"""Running a job: the autoserv process of a group of entries (or of a hostless entry)."""
from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from afe.models import EntryReason, Host, HostQueueEntry, JobKeyval
from drones.models import Process

from .. import results
from ..commands import AUTOSERV_PIDFILE, JobIdentity, job_command
from ..context import SchedulerContext
from ..groups import EntryGroup
from ..isolation import best_effort, prepare_each
from .postjob import announce_completion, claim_processes
from ..labels import host_label_names
from ..throttle import StartRequest
from ..transitions import EntryStatus, HostStatus, move_entries, move_hosts
from . import Family

log = logging.getLogger(__name__)


def start_request(group: EntryGroup, allowed: frozenset[str] | None) -> StartRequest:
    """A request for as many process slots as the group has entries, on ``allowed`` drones (None: any)."""
    return StartRequest(
        key=(Family.JOB, group.key), num_processes=max(len(group.entries), 1), owner=group.job.owner,
        allowed_drones=allowed,
    )


def start_groups(ctx: SchedulerContext, admitted: list[tuple[EntryGroup, str]]) -> None:
    """Move admitted Starting groups (each with its drone) to Running and write their job processes,
    in one transaction.

    Before the database changes, each group's directory gets its ``keyval``,
    ``host_keyvals`` and control file (rewriting them is harmless if a crash
    makes this run again). A group whose files cannot be written fails
    (bad data) or waits for a later tick (the file system); the others start.
    """
    if not admitted:
        return
    groups = [group for group, _ in admitted]
    drones = {group.key: drone for group, drone in admitted}
    keyvals: dict[int, dict[str, str]] = defaultdict(dict)
    for job_id, key, value in JobKeyval.objects.filter(job_id__in={g.job.pk for g in groups}).values_list(
        "job_id", "key", "value"
    ):
        keyvals[job_id][key] = value
    host_labels = host_label_names({h for g in groups for h in g.host_ids})
    prepared = prepare_each(groups, lambda g: _job_process(ctx, g, keyvals[g.job.pk], host_labels, drones[g.key]))
    fail_groups(ctx, prepared.failed)
    hold_groups(prepared.deferred)
    if not prepared.ready:
        return
    groups = [g for g, _ in prepared.ready]
    now = ctx.clock()
    with transaction.atomic():
        entry_ids = [pk for g in groups for pk in g.entry_ids]
        moved = move_entries(entry_ids, EntryStatus.RUNNING, from_statuses=[EntryStatus.STARTING],
                             started_on=now)
        if moved != len(entry_ids):
            # Something else moved these entries since they were read; try again next tick.
            transaction.set_rollback(True)
            log.warning("starting %d entries: only %d were still Starting; retrying", len(entry_ids), moved)
            return
        move_hosts([h for g in groups for h in g.host_ids], HostStatus.RUNNING, from_statuses=Host.JOB_STATUSES, dirty=True)
        ctx.drones.queue_many([process for _, process in prepared.ready])
        EntryReason.objects.filter(queue_entry_id__in=entry_ids).delete()
    ctx.metrics.observe_started((g.job.priority, g.job.created_on, now) for g in groups for _ in g.entry_ids)
    log.info("started %d job process(es)", len(groups))


def _job_process(
    ctx: SchedulerContext, group: EntryGroup, keyvals: dict[str, str],
    host_labels: dict[int, tuple[str | None, set[str]]], drone: str,
) -> Process:
    """Write the group's keyval, host keyvals and control file; returns its (unsaved) job process."""
    directory = ctx.path(group.execution_path)
    results.write_keyvals(directory, {**keyvals, "job_queued": results.epoch(group.job.created_on)})
    for entry in group.entries:
        if entry.host_id is not None:
            platform, labels = host_labels.get(entry.host_id, (None, set()))
            results.write_host_keyvals(directory, entry.host.hostname, platform, labels)
    control = ctx.path("drone_tmp", f"control.{group.job.pk}.{group.execution_subdir}")
    results.write_control_file(control, group.job.control_file or "")
    command = job_command(
        ctx.config.autoserv_path, str(directory), group.hostnames,
        JobIdentity(group.job.owner, group.job.name, group.job.control_type),
        group.execution_path, str(control), group.job.parent_job_id,
    )
    return Process(
        kind=Process.Kind.JOB, command=command, working_dir=str(directory),
        log_file=str(directory / ".autoserv_execute.log"), pidfile_name=AUTOSERV_PIDFILE,
        num_processes=max(len(group.entries), 1), owner=group.job.owner, drone=drone,
        job=group.job, execution_subdir=group.execution_subdir,
    )


def fail_groups(ctx: SchedulerContext, failed: list[tuple[EntryGroup, str]]) -> int:
    """Groups that can never start: their entries fail with the reason, their hosts go back to Ready.

    Returns how many entries failed; queries do not grow with their number.
    """
    if not failed:
        return 0
    with transaction.atomic():
        reasons = {pk: f"The job could not start: {reason}" for g, reason in failed for pk in g.entry_ids}
        moved = move_entries(reasons, EntryStatus.FAILED, from_statuses=[EntryStatus.STARTING])
        move_hosts([h for g, _ in failed for h in g.host_ids], HostStatus.READY, from_statuses=Host.JOB_STATUSES)
        EntryReason.objects.record(reasons)
        announce_completion(ctx, [e for g, _ in failed for e in g.entries], EntryStatus.FAILED)
    for group, reason in failed:
        log.warning("job %s (%s) failed before it started: %s", group.job.pk, group.execution_subdir, reason)
    return moved


def hold_groups(deferred: list[tuple[EntryGroup, str]]) -> None:
    """Groups whose files cannot be written now stay Starting; each new reason is logged once."""
    reasons = {pk: f"Waiting to start: {reason}" for g, reason in deferred for pk in g.entry_ids}
    changed = EntryReason.objects.record(reasons)
    for group, reason in deferred:
        if changed & set(group.entry_ids):
            log.warning("job %s (%s) cannot start yet, will retry: %s", group.job.pk, group.execution_subdir, reason)


def _record_job_end(ctx: SchedulerContext, process: Process) -> None:
    directory = ctx.path(process.job.tag(), process.execution_subdir)
    results.append_keyvals_once(directory, {"job_finished": results.epoch(ctx.clock())})
    if process.state == Process.State.LOST:
        results.write_lost_process_error(directory)


def finish_jobs(ctx: SchedulerContext, ended: list[tuple[Process, list[HostQueueEntry]]]) -> int:
    """Jobs' autoserv processes ended (or were lost): record that and move their entries on, once.

    Host entries go to Gathering; hostless entries straight to Parsing.
    Returns how many processes were applied; queries do not grow with their number.
    """
    with transaction.atomic():
        won = claim_processes([process for process, _ in ended])
        ended = [(process, entries) for process, entries in ended if process.pk in won]
        for process, _ in ended:
            best_effort(f"the end of job {process.job_id}", lambda p=process: _record_job_end(ctx, p), log)
        entries = [entry for _, group in ended for entry in group]
        move_entries([e.pk for e in entries if e.is_hostless()], EntryStatus.PARSING,
                     from_statuses=[EntryStatus.RUNNING])
        move_entries([e.pk for e in entries if not e.is_hostless()], EntryStatus.GATHERING,
                     from_statuses=HostQueueEntry.JOB_STATUSES)
        move_hosts([e.host_id for e in entries if e.host_id], HostStatus.RUNNING, from_statuses=Host.JOB_STATUSES)
    return len(ended)
