"""Running a job: the autoserv process of a group of entries (or of a hostless entry)."""
from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from afe.models import HostQueueEntry, JobKeyval
from drones.models import Process

from .. import results
from ..commands import AUTOSERV_PIDFILE, JobIdentity, job_command
from ..context import SchedulerContext
from ..groups import EntryGroup
from .postjob import claim_processes
from ..labels import host_label_names
from ..throttle import StartRequest
from ..transitions import EntryStatus, HostStatus, move_entries, move_hosts

log = logging.getLogger(__name__)


def start_request(group: EntryGroup, allowed: frozenset[str] | None) -> StartRequest:
    """A request for as many process slots as the group has entries, on ``allowed`` drones (None: any)."""
    return StartRequest(
        key=("job", group.key), num_processes=max(len(group.entries), 1), owner=group.job.owner,
        allowed_drones=allowed,
    )


def start_groups(ctx: SchedulerContext, groups: list[EntryGroup], drones: dict[tuple[int, str], str]) -> None:
    """Move admitted Starting groups to Running and write their job processes, in one transaction.

    Before the database changes, each group's directory gets its ``keyval``,
    ``host_keyvals`` and control file (rewriting them is harmless if a crash
    makes this run again).
    """
    if not groups:
        return
    keyvals: dict[int, dict[str, str]] = defaultdict(dict)
    for job_id, key, value in JobKeyval.objects.filter(job_id__in={g.job.pk for g in groups}).values_list(
        "job_id", "key", "value"
    ):
        keyvals[job_id][key] = value
    host_labels = host_label_names({h for g in groups for h in g.host_ids})
    now = ctx.clock()
    processes = []
    for group in groups:
        directory = ctx.path(group.execution_path)
        results.write_keyvals(directory, {**keyvals[group.job.pk], "job_queued": results.epoch(group.job.created_on)})
        for entry in group.entries:
            if entry.host_id is not None:
                platform, labels = host_labels.get(entry.host_id, (None, set()))
                results.write_host_keyvals(directory, entry.host.hostname, platform, labels)
        control = ctx.results_dir / "drone_tmp" / f"control.{group.job.pk}.{group.execution_subdir}"
        results.write_control_file(control, group.job.control_file or "")
        command = job_command(
            ctx.config.autoserv_path, str(directory), group.hostnames,
            JobIdentity(group.job.owner, group.job.name, group.job.control_type),
            group.execution_path, str(control), group.job.parent_job_id,
        )
        processes.append(Process(
            kind=Process.Kind.JOB, command=command, working_dir=str(directory),
            log_file=str(directory / ".autoserv_execute.log"), pidfile_name=AUTOSERV_PIDFILE,
            num_processes=max(len(group.entries), 1), owner=group.job.owner, drone=drones[group.key],
            job=group.job, execution_subdir=group.execution_subdir,
        ))
    with transaction.atomic():
        entry_ids = [pk for g in groups for pk in g.entry_ids]
        moved = move_entries(entry_ids, EntryStatus.RUNNING, from_statuses=[EntryStatus.STARTING], started_on=now)
        if moved != len(entry_ids):
            # Something else moved these entries since they were read; try again next tick.
            transaction.set_rollback(True)
            log.warning("starting %d entries: only %d were still Starting; retrying", len(entry_ids), moved)
            return
        move_hosts([h for g in groups for h in g.host_ids], HostStatus.RUNNING, dirty=True)
        Process.objects.bulk_create(processes)
    log.info("started %d job process(es)", len(groups))


def finish_jobs(ctx: SchedulerContext, ended: list[tuple[Process, list[HostQueueEntry]]]) -> int:
    """Jobs' autoserv processes ended (or were lost): record that and move their entries on, once.

    Host entries go to Gathering; hostless entries straight to Parsing.
    Returns how many processes were applied; queries do not grow with their number.
    """
    with transaction.atomic():
        won = claim_processes([process for process, _ in ended])
        ended = [(process, entries) for process, entries in ended if process.pk in won]
        for process, _ in ended:
            directory = ctx.path(f"{process.job.tag()}/{process.execution_subdir}")
            results.append_keyvals_once(directory, {"job_finished": results.epoch(ctx.clock())})
            if process.state == Process.State.LOST:
                results.write_lost_process_error(directory)
        entries = [entry for _, group in ended for entry in group]
        move_entries([e.pk for e in entries if e.is_hostless()], EntryStatus.PARSING,
                     from_statuses=[EntryStatus.RUNNING])
        move_entries([e.pk for e in entries if not e.is_hostless()], EntryStatus.GATHERING,
                     from_statuses=[EntryStatus.STARTING, EntryStatus.RUNNING])
        move_hosts([e.host_id for e in entries if e.host_id], HostStatus.RUNNING)
    return len(ended)
