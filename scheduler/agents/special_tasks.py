"""Special tasks (verify, cleanup, reset, provision, repair): starting them and applying their results."""
from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction

from afe.models import (
    EntryReason, Host, HostQueueEntry, IneligibleHostQueue, Protection, SpecialTask, SpecialTaskReason,
)
from drones.models import Process

from .. import prejob, results
from ..commands import AUTOSERV_PIDFILE, JobIdentity, special_task_command
from ..context import SchedulerContext
from ..isolation import best_effort, prepare_each
from ..labels import host_label_names, job_label_names
from ..synch import put_pending, run_ready_jobs
from ..throttle import StartRequest
from ..transitions import EntryStatus, HostStatus, move_entries, move_hosts
from . import Family
from .postjob import announce_completion, claim_processes

log = logging.getLogger(__name__)
Task = SpecialTask.Task

# Repair first, provision last (§3.11).
TASK_ORDER = {Task.REPAIR: 0, Task.CLEANUP: 1, Task.VERIFY: 2, Task.RESET: 3, Task.PROVISION: 4}
HOST_STATUS = {
    Task.VERIFY: HostStatus.VERIFYING, Task.CLEANUP: HostStatus.CLEANING, Task.RESET: HostStatus.RESETTING,
    Task.PROVISION: HostStatus.PROVISIONING, Task.REPAIR: HostStatus.REPAIRING,
}
ENTRY_STATUS = {
    Task.VERIFY: EntryStatus.VERIFYING, Task.CLEANUP: EntryStatus.CLEANING,
    Task.RESET: EntryStatus.RESETTING, Task.PROVISION: EntryStatus.PROVISIONING,
}
PROCESS_KIND = {
    Task.VERIFY: Process.Kind.VERIFY, Task.CLEANUP: Process.Kind.CLEANUP, Task.RESET: Process.Kind.RESET,
    Task.PROVISION: Process.Kind.PROVISION, Task.REPAIR: Process.Kind.REPAIR,
}
# Starting one of these deletes the queued frontend tasks it makes redundant.
SUPERSEDES = {Task.VERIFY: [Task.VERIFY], Task.RESET: [Task.CLEANUP, Task.VERIFY, Task.RESET]}


def runnable_tasks() -> list[SpecialTask]:
    """Queued tasks whose host is free, at most one per host, Repair first (§3.11).

    A host is busy while it has a running task, or an active entry that the
    task does not belong to.
    """
    queued = list(
        SpecialTask.objects.filter(is_active=False, is_complete=False, is_aborted=False, host__locked=False)
        .select_related("host", "queue_entry__job", "queue_entry__meta_host", "requested_by")
    )
    if not queued:
        return []
    host_ids = {t.host_id for t in queued}
    busy_with_task = set(
        SpecialTask.objects.filter(host_id__in=host_ids, is_active=True, is_complete=False).values_list("host_id", flat=True)
    )
    active_entries: dict[int, set[int]] = defaultdict(set)
    for host_id, entry_id in HostQueueEntry.objects.filter(host_id__in=host_ids, active=True).values_list("host_id", "id"):
        active_entries[host_id].add(entry_id)
    chosen: list[SpecialTask] = []
    taken: set[int] = set()
    for task in sorted(queued, key=lambda t: (TASK_ORDER[t.task], t.pk)):
        entries = active_entries.get(task.host_id, set())
        if task.host_id in taken or task.host_id in busy_with_task:
            continue
        if entries and entries != {task.queue_entry_id}:
            continue
        taken.add(task.host_id)
        chosen.append(task)
    return chosen


def start_request(task: SpecialTask, allowed: frozenset[str] | None) -> StartRequest:
    """One process slot for the task, on ``allowed`` drones (None: any)."""
    return StartRequest(key=(Family.SPECIAL_TASK, task.pk), num_processes=1, owner=task.requested_by.login,
                        allowed_drones=allowed)


def start_tasks(ctx: SchedulerContext, admitted: list[tuple[SpecialTask, str]]) -> None:
    """Activate the admitted tasks (each with its drone) and write one process record each, in one transaction.

    The task's host keyvals travel with its process record (the runner writes
    them on the drone); a task whose results directory cannot be named safely
    fails (bad data), the others start. Queries do not grow with the number of tasks.
    """
    if not admitted:
        return
    tasks = [task for task, _ in admitted]
    drones = {task.pk: drone for task, drone in admitted}
    job_labels = job_label_names({t.queue_entry.job_id for t in tasks if t.queue_entry_id})
    host_labels = host_label_names({t.host_id for t in tasks})
    prepared = prepare_each(tasks, lambda t: _process_for(ctx, t, drones[t.pk], job_labels, host_labels))
    fail_unstartable_tasks(ctx, prepared.failed)
    hold_tasks(prepared.deferred)
    processes = {t.pk: process for t, process in prepared.ready}
    now = ctx.clock()
    with transaction.atomic():
        still_queued = set(
            SpecialTask.objects.select_for_update()
            .filter(pk__in=list(processes), is_active=False, is_complete=False)
            .values_list("pk", flat=True)
        )
        tasks = [t for t, _ in prepared.ready if t.pk in still_queued]
        SpecialTask.objects.filter(pk__in=still_queued).update(is_active=True, time_started=now)
        for kind, superseded in SUPERSEDES.items():
            hosts = [t.host_id for t in tasks if t.task == kind]
            if hosts:
                SpecialTask.objects.filter(
                    host_id__in=hosts, task__in=superseded, is_active=False, is_complete=False, queue_entry__isnull=True
                ).exclude(pk__in=still_queued).delete()
        for kind, status in HOST_STATUS.items():
            move_hosts([t.host_id for t in tasks if t.task == kind], status, from_statuses=Host.TASK_START_STATUSES)
        for kind, status in ENTRY_STATUS.items():
            move_entries([t.queue_entry_id for t in tasks if t.task == kind and t.queue_entry_id], status,
                         from_statuses=HostQueueEntry.AWAITING_PRE_JOB_STATUSES)
        ctx.drones.queue_many([processes[t.pk] for t in tasks])
    log.info("started %d special task(s)", len(tasks))


def fail_unstartable_tasks(ctx: SchedulerContext, failed: list[tuple[SpecialTask, str]]) -> None:
    """Tasks that can never start fail with their reason; an entry waiting for one fails with it."""
    if not failed:
        return
    reasons = {t.pk: f"The task could not start: {reason}" for t, reason in failed}
    with transaction.atomic():
        SpecialTask.objects.filter(pk__in=list(reasons), is_active=False, is_complete=False).update(
            is_complete=True, success=False
        )
        SpecialTaskReason.objects.record(reasons)
        entry_reasons = {t.queue_entry_id: reasons[t.pk] for t, _ in failed if t.queue_entry_id}
        move_entries(entry_reasons, EntryStatus.FAILED, from_statuses=HostQueueEntry.AWAITING_PRE_JOB_STATUSES)
        EntryReason.objects.record(entry_reasons)
        announce_completion(ctx, [t.queue_entry for t, _ in failed if t.queue_entry_id], EntryStatus.FAILED)
    for task, reason in failed:
        log.warning("special task %s (%s on %s) failed before it started: %s", task.pk, task.task, task.host, reason)


def hold_tasks(deferred: list[tuple[SpecialTask, str]]) -> None:
    """Tasks whose files cannot be written now stay queued; each new reason is logged once."""
    changed = SpecialTaskReason.objects.record({t.pk: f"Waiting to start: {reason}" for t, reason in deferred})
    for task, reason in deferred:
        if task.pk in changed:
            log.warning("special task %s (%s on %s) cannot start yet, will retry: %s", task.pk, task.task,
                        task.host, reason)


def _process_for(
    ctx: SchedulerContext, task: SpecialTask, drone: str,
    job_labels: dict[int, set[str]], host_labels: dict[int, tuple[str | None, set[str]]],
) -> Process:
    task.time_started = ctx.clock()
    directory = ctx.path(task.execution_path())
    platform, labels = host_labels.get(task.host_id, (None, set()))
    # The runner writes the host keyvals on the drone, before the command (no file I/O in the tick).
    keyvals_path, keyvals_text = results.host_keyvals(task.host.hostname, platform, labels)
    entry = task.queue_entry
    identity = labels_for_task = None
    if entry is not None:
        identity = JobIdentity(entry.job.owner, entry.job.name, entry.job.control_type)
        labels_for_task = job_labels.get(entry.job_id, set()) | ({entry.meta_host.name} if entry.meta_host_id else set())
    wanted = labels_for_task or set()
    if task.task == Task.PROVISION:
        wanted = set(prejob.provision_labels(frozenset(wanted), frozenset(labels)))
    command = special_task_command(
        ctx.config.autoserv_path, str(directory), task.host.hostname, task.task, identity, wanted, task.host.protection
    )
    return Process(
        kind=PROCESS_KIND[task.task], command=command, working_dir=str(directory),
        log_file=str(directory / ".autoserv_execute.log"), pidfile_name=AUTOSERV_PIDFILE, num_processes=1,
        owner=task.requested_by.login, drone=drone, special_task=task,
        files={keyvals_path: keyvals_text},
        job_id=entry.job_id if entry else None, execution_subdir=entry.execution_subdir if entry else "",
    )


def finish_tasks(ctx: SchedulerContext, processes: list[Process]) -> int:
    """Apply finished special-task processes together, exactly once each; returns how many.

    The common outcome, a pre-job or frontend task that succeeded and needs
    nothing more than moving its host and entry on, is applied in a fixed
    number of queries however many there are; the others (repairs,
    provisions, failures, a cleanup followed by a verify) one by one through
    ``task_finished``. All in one transaction: if anything fails, nothing is
    applied and the caller retries the processes one at a time.
    """
    tasks = (
        SpecialTask.objects.select_related("host", "queue_entry__job", "queue_entry__meta_host", "requested_by")
        .in_bulk([p.special_task_id for p in processes])
    )
    with transaction.atomic():
        won = claim_processes(processes)
        plain: list[tuple[SpecialTask, bool]] = []
        for process in processes:
            task = tasks.get(process.special_task_id)
            if process.pk not in won or task is None:
                continue
            success = process.exit_status == 0 and not task.is_aborted
            if _plain_success(task, success):
                plain.append((task, success))
            else:
                task_finished(ctx, task, success)
        _plain_successes_finished(ctx, plain)
    return len(won)


def _plain_success(task: SpecialTask, success: bool) -> bool:
    """Whether the task's epilog is only "complete; host (and entry) move on" (see ``_prejob_succeeded``)."""
    if task.task in (Task.REPAIR, Task.PROVISION):
        return False
    if not success and task.host.protection != Protection.DO_NOT_VERIFY:
        return False
    entry = task.queue_entry
    return not (entry is not None and task.task == Task.CLEANUP and entry.job.run_verify
                and task.host.protection != Protection.DO_NOT_VERIFY)


def _plain_successes_finished(ctx: SchedulerContext, finished: list[tuple[SpecialTask, bool]]) -> None:
    """``task_finished`` for plain successes, in bulk: rows complete, hosts cleaned and moved,
    entries whose pre-job work is done put Pending and their jobs started when ready."""
    if not finished:
        return
    now = ctx.clock()
    for success in (True, False):  # a failure ignored on a Do-not-verify host is still recorded as one
        for started in (True, False):
            ids = [t.pk for t, ok in finished if ok == success and bool(t.time_started) == started]
            if ids:
                SpecialTask.objects.filter(pk__in=ids).update(
                    is_active=False, is_complete=True, success=success, time_finished=now if started else None)
    _prejob_tasks_succeeded(ctx, [t for t, _ in finished])


def _prejob_tasks_succeeded(ctx: SchedulerContext, tasks: list[SpecialTask]) -> None:
    """Succeeded tasks move their hosts and entries on, in a fixed number of queries: hosts
    cleaned by a cleanup or reset; a host without an entry, or whose entry has more tasks
    queued, Ready; entries whose pre-job work is done Pending, their jobs started when ready."""
    cleaned = [t.host_id for t in tasks if t.task in (Task.CLEANUP, Task.RESET)]
    if cleaned:
        Host.objects.filter(pk__in=cleaned).update(dirty=False)
    for_entries = [t for t in tasks if t.queue_entry_id is not None]
    ready_hosts = {t.host_id for t in tasks if t.queue_entry_id is None}
    more = set(
        SpecialTask.objects.filter(queue_entry_id__in=[t.queue_entry_id for t in for_entries], is_active=False,
                                   is_complete=False).values_list("queue_entry_id", "host_id")
    ) if for_entries else set()
    ready_hosts |= {t.host_id for t in for_entries if (t.queue_entry_id, t.host_id) in more}
    if ready_hosts:
        move_hosts(ready_hosts, HostStatus.READY, from_statuses=Host.TASK_STATUSES)
    done = [t.queue_entry for t in for_entries
            if (t.queue_entry_id, t.host_id) not in more and not t.queue_entry.aborted and not t.queue_entry.complete]
    if done:
        put_pending(done)
        run_ready_jobs({e.job_id for e in done}, ctx.notifier)


def task_finished(ctx: SchedulerContext, task: SpecialTask, success: bool) -> None:
    """The task's row is complete; move its host and entry on."""
    SpecialTask.objects.filter(pk=task.pk).update(
        is_active=False, is_complete=True, success=success, time_finished=ctx.clock() if task.time_started else None
    )
    if task.task == Task.REPAIR:
        _repair_finished(ctx, task, success)
        return
    if task.host.protection == Protection.DO_NOT_VERIFY:
        success = True  # failures on Do-not-verify hosts are ignored (§3.4)
    if success:
        _prejob_succeeded(ctx, task)
    elif task.queue_entry_id is None:
        SpecialTask.schedule_special_task(task.host, Task.REPAIR, task.requested_by)
    else:
        _prejob_failed(ctx, task)


def _repair_finished(ctx: SchedulerContext, task: SpecialTask, success: bool) -> None:
    if success:
        move_hosts([task.host_id], HostStatus.READY, from_statuses=[HostStatus.REPAIRING])
        return
    move_hosts([task.host_id], HostStatus.REPAIR_FAILED, from_statuses=[HostStatus.REPAIRING])
    entry = task.queue_entry
    if entry is not None and not entry.is_meta_host_entry() and entry.status == EntryStatus.QUEUED and not entry.complete:
        fail_entry(ctx, entry, task)


def _prejob_succeeded(ctx: SchedulerContext, task: SpecialTask) -> None:
    """A provision's labels move to the host; a cleanup that a verify must follow queues it;
    otherwise as every succeeded task (``_prejob_tasks_succeeded``)."""
    entry = task.queue_entry
    if task.task == Task.PROVISION:
        _apply_provisioned_labels(task)
    if (entry is not None and task.task == Task.CLEANUP and entry.job.run_verify
            and task.host.protection != Protection.DO_NOT_VERIFY):
        Host.objects.filter(pk=task.host_id).update(dirty=False)
        move_hosts([task.host_id], HostStatus.READY, from_statuses=Host.TASK_STATUSES)
        SpecialTask.objects.create(host=task.host, task=Task.VERIFY, queue_entry=entry, requested_by=task.requested_by)
        return
    _prejob_tasks_succeeded(ctx, [task])


def _apply_provisioned_labels(task: SpecialTask) -> None:
    """After a provision the host carries the job's build labels and loses the old ones of each prefix."""
    entry = task.queue_entry
    if entry is None:
        return
    wanted = [label for label in entry.job.dependency_labels.all() if label.is_provisionable]
    if entry.meta_host_id and entry.meta_host.is_provisionable:
        wanted.append(entry.meta_host)
    host = task.host
    for label in wanted:
        prefix = label.name.split(":", 1)[0] + ":"
        old = host.labels.filter(name__startswith=prefix).exclude(pk=label.pk)
        host.labels.remove(*old)
        host.labels.add(label)


def _prejob_failed(ctx: SchedulerContext, task: SpecialTask) -> None:
    entry = task.queue_entry
    SpecialTask.objects.filter(queue_entry=entry, host_id=task.host_id, is_complete=False).exclude(
        task=Task.REPAIR).update(is_active=False, is_complete=True, success=False)
    outcome = prejob.prejob_failure(
        provision_attempts=SpecialTask.objects.filter(queue_entry=entry, task=Task.PROVISION).count(),
        max_provision_retries=ctx.config.max_provision_retries,
        repairs_for_entry_on_host=SpecialTask.objects.filter(
            queue_entry=entry, host_id=task.host_id, task=Task.REPAIR
        ).count(),
        max_repair_limit=ctx.config.max_repair_limit,
        is_metahost=entry.is_meta_host_entry(),
    )
    if outcome.host_repair_failed:
        move_hosts([task.host_id], HostStatus.REPAIR_FAILED, from_statuses=Host.TASK_STATUSES)
    if outcome.fail_entry:
        fail_entry(ctx, entry, task)
    elif outcome.requeue:
        requeue_entry(entry)
    if outcome.repair:
        SpecialTask.objects.create(host=task.host, task=Task.REPAIR, queue_entry=entry, requested_by=task.requested_by)


def requeue_entry(entry: HostQueueEntry) -> None:
    """Back to Queued; a metahost entry gives its host back and may get another one."""
    fields: dict[str, object] = {"started_on": None, "finished_on": None, "execution_subdir": ""}
    if entry.is_meta_host_entry():
        IneligibleHostQueue.objects.filter(job_id=entry.job_id, host_id=entry.host_id).delete()
        fields["host"] = None
    move_entries([entry.pk], EntryStatus.QUEUED, from_statuses=HostQueueEntry.AWAITING_PRE_JOB_STATUSES, **fields)


def fail_entry(ctx: SchedulerContext, entry: HostQueueEntry, task: SpecialTask) -> None:
    """The entry fails on its pre-job task: the task's results become the entry's, then it is parsed."""
    hostname = task.host.hostname

    def copy_results() -> None:
        task_dir = ctx.path(task.execution_path())
        results.append_keyvals_once(task_dir, {
            "job_queued": results.epoch(entry.job.created_on), "job_finished": results.epoch(ctx.clock()),
        })
        results.copy_task_results(task_dir, ctx.path(entry.job.tag(), hostname))

    best_effort(f"the results of task {task.pk} for entry {entry.pk}", copy_results, log)
    move_entries([entry.pk], EntryStatus.PARSING, from_statuses=HostQueueEntry.AWAITING_PRE_JOB_STATUSES,
                 execution_subdir=hostname)
    SpecialTask.objects.filter(queue_entry=entry, is_complete=False).exclude(task=Task.REPAIR).update(
        is_active=False, is_complete=True, success=False
    )


def cancel_unwanted_queued_tasks() -> int:
    """Queued tasks nobody wants any more are cancelled, not run; returns how many.

    That is an aborted task that never started (the original ran it, §6.1 #6)
    and a pre-job task of an entry that is already complete (stopped or
    aborted). Repairs always run: the host needs them.
    """
    queued = SpecialTask.objects.filter(is_active=False, is_complete=False)
    doomed = list(
        (queued.filter(is_aborted=True) | queued.filter(queue_entry__complete=True).exclude(task=Task.REPAIR))
        .values_list("pk", "queue_entry_id", "queue_entry__status", "queue_entry__active")
    )
    if not doomed:
        return 0
    SpecialTask.objects.filter(pk__in=[pk for pk, *_ in doomed]).update(is_complete=True, success=False)
    waiting = {hqe for _, hqe, status, active in doomed if hqe and status == EntryStatus.QUEUED and active}
    still_busy = set(
        SpecialTask.objects.filter(queue_entry_id__in=waiting, is_complete=False).values_list("queue_entry_id", flat=True)
    )
    for entry in HostQueueEntry.objects.filter(pk__in=waiting - still_busy):
        requeue_entry(entry)
    return len(doomed)
