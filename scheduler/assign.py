"""Give queued entries their hosts and queue their pre-job tasks (tick step: schedule new jobs)."""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction

from afe.models import (
    PROVISION_PREFIXES,
    AclGroup,
    Host,
    HostQueueEntry,
    IneligibleHostQueue,
    Job,
    Label,
    SpecialTask,
    User,
)

from . import prejob
from .context import SchedulerContext
from .matching import EntryRequest, HostCandidate, match_entries
from .synch import put_pending, run_ready_jobs
from .transitions import EntryStatus

log = logging.getLogger(__name__)

# Labels that ask for a host action rather than describe a host; never a hard dependency.
SPECIAL_ACTION_LABELS = frozenset({"skip_provision", "modem_repair", "rpm", "cleanup-reboot"})


@dataclass
class LabelIndex:
    """Label names and kinds by id, for the labels a tick looks at."""

    names: dict[int, str]
    platforms: set[int]

    def is_hard_dependency(self, label_id: int) -> bool:
        name = self.names.get(label_id, "")
        return not name.startswith(PROVISION_PREFIXES) and name not in SPECIAL_ACTION_LABELS

    def is_provisionable(self, label_id: int) -> bool:
        return self.names.get(label_id, "").startswith(PROVISION_PREFIXES)


def schedule_new_jobs(ctx: SchedulerContext) -> int:
    """Start queued hostless entries and assign hosts to the others; returns how many entries moved."""
    pending = list(
        HostQueueEntry.objects.filter(
            status=EntryStatus.QUEUED, active=False, complete=False, aborted=False
        ).select_related("job")
    )
    hostless = [e.pk for e in pending if e.is_hostless()]
    if hostless:
        # The subdirectory is written with the status, so a restart never sees one without the other.
        HostQueueEntry.objects.filter(pk__in=hostless, status=EntryStatus.QUEUED).update(
            execution_subdir="hostless", status=EntryStatus.STARTING, active=True
        )
    with_hosts = [e for e in pending if not e.is_hostless()]
    if not with_hosts:
        return len(hostless)
    assignments = match_entries(*_matching_inputs(with_hosts))
    if assignments:
        assign_hosts(ctx, [e for e in with_hosts if e.pk in assignments], assignments)
    return len(hostless) + len(assignments)


def _matching_inputs(entries: list[HostQueueEntry]) -> tuple[list[EntryRequest], list[HostCandidate], frozenset[int]]:
    """Load, in a fixed number of queries, everything the host matcher needs."""
    job_ids = {e.job_id for e in entries}
    deps: dict[int, set[int]] = defaultdict(set)
    for job_id, label_id in Job.dependency_labels.through.objects.filter(job_id__in=job_ids).values_list(
        "job_id", "label_id"
    ):
        deps[job_id].add(label_id)
    owners = {e.job.owner for e in entries}
    acls: dict[str, set[int]] = defaultdict(set)
    for login, group_id in AclGroup.users.through.objects.filter(user__login__in=owners).values_list(
        "user__login", "aclgroup_id"
    ):
        acls[login].add(group_id)
    blocks: dict[int, set[int]] = defaultdict(set)
    for job_id, host_id in IneligibleHostQueue.objects.filter(job_id__in=job_ids).values_list("job_id", "host_id"):
        blocks[job_id].add(host_id)

    hosts = list(Host.objects.filter(leased=False, locked=False).values("id", "hostname", "leased", "locked", "invalid"))
    host_ids = [h["id"] for h in hosts]
    host_labels: dict[int, set[int]] = defaultdict(set)
    for host_id, label_id in Host.labels.through.objects.filter(host_id__in=host_ids).values_list("host_id", "label_id"):
        host_labels[host_id].add(label_id)
    host_acls: dict[int, set[int]] = defaultdict(set)
    for host_id, group_id in AclGroup.hosts.through.objects.filter(host_id__in=host_ids).values_list("host_id", "aclgroup_id"):
        host_acls[host_id].add(group_id)

    labels = load_label_index({label for ids in deps.values() for label in ids})
    only_if_needed = frozenset(Label.objects.filter(only_if_needed=True).values_list("id", flat=True))

    requests = [
        EntryRequest(
            entry_id=e.pk,
            job_id=e.job_id,
            priority=e.job.priority,
            parent_job_id=e.job.parent_job_id,
            host_id=e.host_id,
            meta_host_id=e.meta_host_id,
            dependency_ids=frozenset(d for d in deps[e.job_id] if labels.is_hard_dependency(d)),
            preferred_ids=frozenset(d for d in deps[e.job_id] if labels.is_provisionable(d)),
            acl_ids=frozenset(acls[e.job.owner]),
            blocked_host_ids=frozenset(blocks[e.job_id]),
        )
        for e in entries
    ]
    candidates = [
        HostCandidate(
            id=h["id"], hostname=h["hostname"], leased=h["leased"], locked=h["locked"], invalid=h["invalid"],
            label_ids=frozenset(host_labels[h["id"]]), acl_ids=frozenset(host_acls[h["id"]]),
        )
        for h in hosts
    ]
    return requests, candidates, only_if_needed


def load_label_index(label_ids: set[int]) -> LabelIndex:
    rows = Label.objects.filter(pk__in=label_ids).values_list("id", "name", "platform")
    return LabelIndex({pk: name for pk, name, _ in rows}, {pk for pk, _, platform in rows if platform})


def assign_hosts(ctx: SchedulerContext, entries: list[HostQueueEntry], assignments: dict[int, int]) -> None:
    """Lease the matched hosts, bind them to their entries and queue pre-job tasks, all at once.

    A host that was locked or leased since it was read is skipped; its entry
    stays Queued for the next tick.
    """
    with transaction.atomic():
        free = set(
            Host.objects.select_for_update()
            .filter(pk__in=set(assignments.values()), leased=False, locked=False)
            .values_list("pk", flat=True)
        )
        entries = [e for e in entries if assignments[e.pk] in free]
        if not entries:
            return
        Host.objects.filter(pk__in=[assignments[e.pk] for e in entries]).update(leased=True)
        for entry in entries:
            entry.host_id = assignments[entry.pk]
            entry.active = True  # Queued but holding its host, as the original scheduler marks it
        HostQueueEntry.objects.bulk_update(entries, ["host", "active"])
        IneligibleHostQueue.objects.bulk_create(
            [IneligibleHostQueue(job_id=e.job_id, host_id=e.host_id) for e in entries], ignore_conflicts=True
        )
        ready = queue_prejob_tasks(entries)
        put_pending(ready)
        run_ready_jobs({e.job_id for e in ready}, ctx.notifier)
    log.info("assigned %d host(s)", len(entries))


def queue_prejob_tasks(entries: list[HostQueueEntry]) -> list[HostQueueEntry]:
    """Create each entry's pre-job special tasks; returns the entries that need none."""
    job_ids = {e.job_id for e in entries}
    host_ids = {e.host_id for e in entries}
    job_labels: dict[int, set[int]] = defaultdict(set)
    for job_id, label_id in Job.dependency_labels.through.objects.filter(job_id__in=job_ids).values_list("job_id", "label_id"):
        job_labels[job_id].add(label_id)
    host_labels: dict[int, set[int]] = defaultdict(set)
    for host_id, label_id in Host.labels.through.objects.filter(host_id__in=host_ids).values_list("host_id", "label_id"):
        host_labels[host_id].add(label_id)
    all_label_ids = {l for s in (*job_labels.values(), *host_labels.values()) for l in s}
    all_label_ids |= {e.meta_host_id for e in entries if e.meta_host_id}
    labels = load_label_index(all_label_ids)
    hosts = Host.objects.in_bulk(host_ids)
    logins = {e.job.owner for e in entries}
    owners = dict(User.objects.filter(login__in=logins).values_list("login", "pk"))
    for login in logins - set(owners):  # owners normally exist: Job.create needs one
        owners[login] = User.objects.get_or_create(login=login)[0].pk

    tasks: list[SpecialTask] = []
    ready: list[HostQueueEntry] = []
    for entry in entries:
        job, host = entry.job, hosts[entry.host_id]
        wanted = prejob.prejob_tasks(
            reboot_before=job.reboot_before,
            run_verify=job.run_verify,
            run_reset=job.run_reset,
            host_dirty=host.dirty,
            host_protection=host.protection,
            job_label_names=frozenset(
                labels.names[l] for l in job_labels[job.pk] | ({entry.meta_host_id} - {None})
            ),
            host_label_names=frozenset(
                labels.names[l] for l in host_labels[host.pk] if l not in labels.platforms
            ),
        )
        if not wanted:
            ready.append(entry)
            continue
        tasks += [
            SpecialTask(host_id=host.pk, task=task, queue_entry_id=entry.pk, requested_by_id=owners[job.owner])
            for task in wanted
        ]
    SpecialTask.objects.bulk_create(tasks)
    return ready
