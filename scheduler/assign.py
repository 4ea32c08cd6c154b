"""Give queued entries their hosts and queue their pre-job tasks (tick step: schedule new jobs)."""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from django.db import transaction
from django.db.models import OuterRef, Subquery

from afe.models import (
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
from .labels import LabelIndex, load_label_index
from .matching import EntryRequest, HostCandidate, match_entries
from .models import HostAssignment
from .synch import put_pending, run_ready_jobs
from .transitions import EntryStatus
from .unchanged import LastRun

log = logging.getLogger(__name__)
K = TypeVar("K")
#: Rows per insert statement: one statement for thousands of rows holds tens of MB while it is built.
WRITE_BATCH = 1000

def grouped(pairs: Iterable[tuple[K, int]]) -> defaultdict[K, set[int]]:
    """``[(a, 1), (a, 2), (b, 3)]`` → ``{a: {1, 2}, b: {3}}`` (missing keys read as empty sets)."""
    result: defaultdict[K, set[int]] = defaultdict(set)
    for key, value in pairs:
        result[key].add(value)
    return result


class SetInterner:
    """Equal sets read for thousands of entries and hosts, kept once: the entries of one owner share
    their ACL groups, most jobs share a few dependency sets and have no blocked hosts."""

    EMPTY: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self._sets: dict[frozenset[int], frozenset[int]] = {}

    def __call__(self, ids: Iterable[int]) -> frozenset[int]:
        if not ids:
            return self.EMPTY
        found = ids if isinstance(ids, frozenset) else frozenset(ids)
        return self._sets.setdefault(found, found)


class RequestBuilder:
    """Builds the matcher's :class:`EntryRequest` of an entry from rows read in bulk (used by
    host assignment and by the pending explanations), with equal sets shared."""

    def __init__(self, labels: LabelIndex, job_labels: Mapping[int, set[int]],
                 owner_acls: Mapping[str, set[int]], blocks: Mapping[int, set[int]]) -> None:
        self.labels = labels
        self.job_labels = job_labels
        self.owner_acls = owner_acls
        self.blocks = blocks
        self.frozen = SetInterner()
        self._job_sets: dict[int, tuple[frozenset[int], frozenset[int], frozenset[int]]] = {}
        self._owner_sets: dict[str, frozenset[int]] = {}
        # A job's dependency labels → (hard dependencies, provisionable labels): many jobs share a set.
        self._splits: dict[frozenset[int], tuple[frozenset[int], frozenset[int]]] = {}

    def request(self, *, entry_id: int, job_id: int, priority: int, parent_job_id: int | None,
                host_id: int | None, meta_host_id: int | None, owner: str) -> EntryRequest:
        job_sets = self._job_sets.get(job_id)
        if job_sets is None:
            job_sets = self._job_sets[job_id] = (*self._split(job_id), self.frozen(self.blocks.get(job_id, ())))
        acls = self._owner_sets.get(owner)
        if acls is None:
            acls = self._owner_sets[owner] = self.frozen(self.owner_acls.get(owner, ()))
        dependencies, preferred, blocked = job_sets
        return EntryRequest(
            entry_id=entry_id, job_id=job_id, priority=priority, parent_job_id=parent_job_id,
            host_id=host_id, meta_host_id=meta_host_id, dependency_ids=dependencies, preferred_ids=preferred,
            acl_ids=acls, blocked_host_ids=blocked,
        )

    def _split(self, job_id: int) -> tuple[frozenset[int], frozenset[int]]:
        deps = self.frozen(self.job_labels.get(job_id, ()))
        split = self._splits.get(deps)
        if split is None:
            hard, preferred = self.labels.split_dependencies(deps)
            split = self._splits[deps] = (self.frozen(hard), self.frozen(preferred))
        return split


class QueuedEntry(NamedTuple):
    """A Queued entry as matching reads it: plain values, not a model (thousands are read every tick)."""

    pk: int
    job_id: int
    host_id: int | None
    meta_host_id: int | None
    priority: int
    parent_job_id: int | None
    owner: str


def queued_entries() -> list[QueuedEntry]:
    """Every Queued entry that has no host bound yet (one query)."""
    return [QueuedEntry(*row) for row in HostQueueEntry.objects.filter(
        status=EntryStatus.QUEUED, active=False, complete=False, aborted=False,
    ).values_list("pk", "job_id", "host_id", "meta_host_id", "job__priority", "job__parent_job_id", "job__owner")]


def schedule_new_jobs(ctx: SchedulerContext, fruitless: LastRun | None = None) -> int:
    """Start queued hostless entries and assign hosts to the others; returns how many entries moved.

    ``fruitless``: the last matching pass that gave no entry a host. Matching
    is a pure function of the rows :class:`LabSnapshot` reads, so a pass on
    the same rows (within ``fruitless.max_age``) is skipped.
    """
    pending = queued_entries()
    hostless = [e.pk for e in pending if e.host_id is None and e.meta_host_id is None]
    if hostless:
        # The subdirectory is written with the status, so a restart never sees one without the other.
        HostQueueEntry.objects.filter(pk__in=hostless, status=EntryStatus.QUEUED).update(
            execution_subdir="hostless", status=EntryStatus.STARTING, active=True
        )
    with_hosts = [e for e in pending if e.host_id is not None or e.meta_host_id is not None]
    if not with_hosts:
        return len(hostless)
    lab = LabSnapshot.load(with_hosts)
    now = ctx.clock()
    if fruitless is not None and fruitless.still_holds(lab.digest, now):
        return len(hostless)
    assignments = match_entries(lab.requests(with_hosts), lab.candidates(), lab.only_if_needed)
    if fruitless is not None:
        fruitless.ran(None if assignments else lab.digest, now)
    if assignments:
        entries = list(HostQueueEntry.objects.filter(pk__in=list(assignments)).select_related("job"))
        assign_hosts(ctx, entries, assignments, lab)
    return len(hostless) + len(assignments)


@dataclass
class LabSnapshot:
    """What matching and pre-job selection need, read in a fixed number of queries."""

    job_labels: defaultdict[int, set[int]]
    owner_acls: defaultdict[str, set[int]]
    blocks: defaultdict[int, set[int]]
    hosts: dict[int, dict]
    host_labels: defaultdict[int, set[int]]
    host_acls: defaultdict[int, set[int]]
    labels: LabelIndex
    only_if_needed: frozenset[int]
    #: A fingerprint of the rows read (and the entries): equal digests match alike.
    digest: int = 0

    @classmethod
    def load(cls, entries: list[QueuedEntry]) -> LabSnapshot:
        """Read the lab for ``entries`` (the Queued entries of ``queued_entries``).

        The rows of their jobs and of the free hosts are selected by subqueries,
        not by lists of thousands of ids, which cost more to build than to run.
        """
        queued_jobs = HostQueueEntry.objects.filter(
            status=EntryStatus.QUEUED, active=False, complete=False, aborted=False).values("job_id")
        owners = {e.owner for e in entries}
        # A host running a special task (a reverify asked for in the admin, say) is not free.
        busy = SpecialTask.objects.filter(is_active=True, is_complete=False).values("host_id")
        free = Host.objects.filter(leased=False, locked=False).exclude(pk__in=busy)
        hosts = {h["id"]: h for h in free.values(
            "id", "hostname", "leased", "locked", "invalid", "dirty", "protection")}
        rows = {
            "job_labels": list(Job.dependency_labels.through.objects.filter(job_id__in=queued_jobs).values_list(
                "job_id", "label_id")),
            "host_labels": list(Host.labels.through.objects.filter(host_id__in=free.values("id")).values_list(
                "host_id", "label_id")),
            "owner_acls": list(AclGroup.users.through.objects.filter(user__login__in=owners).values_list(
                "user__login", "aclgroup_id")),
            "blocks": list(IneligibleHostQueue.objects.filter(job_id__in=queued_jobs).values_list(
                "job_id", "host_id")),
            "host_acls": list(AclGroup.hosts.through.objects.filter(host_id__in=free.values("id")).values_list(
                "host_id", "aclgroup_id")),
        }
        label_ids = {label_id for _, label_id in (*rows["job_labels"], *rows["host_labels"])}
        label_ids |= {e.meta_host_id for e in entries if e.meta_host_id}
        labels = load_label_index(label_ids)
        only_if_needed = frozenset(Label.objects.filter(only_if_needed=True).values_list("id", flat=True))
        digest = hash((
            tuple(entries), tuple(tuple(h.values()) for h in hosts.values()), *(tuple(r) for r in rows.values()),
            tuple(sorted(labels.names.items())), only_if_needed,
        ))
        return cls(
            job_labels=grouped(rows["job_labels"]), owner_acls=grouped(rows["owner_acls"]),
            blocks=grouped(rows["blocks"]), hosts=hosts, host_labels=grouped(rows["host_labels"]),
            host_acls=grouped(rows["host_acls"]), labels=labels, only_if_needed=only_if_needed, digest=digest,
        )

    def requests(self, entries: list[QueuedEntry]) -> list[EntryRequest]:
        build = RequestBuilder(self.labels, self.job_labels, self.owner_acls, self.blocks).request
        return [
            build(entry_id=e.pk, job_id=e.job_id, priority=e.priority, parent_job_id=e.parent_job_id,
                  host_id=e.host_id, meta_host_id=e.meta_host_id, owner=e.owner)
            for e in entries
        ]

    def candidates(self) -> list[HostCandidate]:
        frozen = SetInterner()
        return [
            HostCandidate(
                id=pk, hostname=h["hostname"], leased=h["leased"], locked=h["locked"], invalid=h["invalid"],
                label_ids=frozen(self.host_labels.get(pk, ())), acl_ids=frozen(self.host_acls.get(pk, ())),
            )
            for pk, h in self.hosts.items()
        ]

    def job_label_names(self, entry: HostQueueEntry) -> frozenset[str]:
        """The metahost label and the dependency labels of the entry's job."""
        ids = self.job_labels[entry.job_id] | ({entry.meta_host_id} - {None})
        return frozenset(self.labels.names[l] for l in ids)

    def host_label_names(self, host_id: int) -> frozenset[str]:
        """The host's labels, platform excluded."""
        return frozenset(self.labels.names[l] for l in self.host_labels[host_id] if l not in self.labels.platforms)


def assign_hosts(
    ctx: SchedulerContext, entries: list[HostQueueEntry], assignments: dict[int, int], lab: LabSnapshot
) -> None:
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
        bind_hosts({e.pk: e.host_id for e in entries})
        IneligibleHostQueue.objects.bulk_create(
            [IneligibleHostQueue(job_id=e.job_id, host_id=e.host_id) for e in entries], ignore_conflicts=True,
            batch_size=WRITE_BATCH,
        )
        ready = queue_prejob_tasks(entries, lab)
        put_pending(ready)
        run_ready_jobs({e.job_id for e in ready}, ctx.notifier)
    log.info("assigned %d host(s)", len(entries))


def bind_hosts(hosts: dict[int, int]) -> None:
    """Set each entry's host (``{entry id: host id}``) and mark it active, in four set-based
    statements whatever the number (through the scratch table ``scheduler_host_assignments``)."""
    HostAssignment.objects.bulk_create([HostAssignment(queue_entry_id=e, host_id=h) for e, h in hosts.items()],
                                       batch_size=WRITE_BATCH)
    host = HostAssignment.objects.filter(queue_entry_id=OuterRef("pk")).values("host_id")[:1]
    HostQueueEntry.objects.filter(pk__in=HostAssignment.objects.values("queue_entry_id")).update(
        host_id=Subquery(host), active=True)
    HostAssignment.objects.all().delete()


def queue_prejob_tasks(entries: list[HostQueueEntry], lab: LabSnapshot) -> list[HostQueueEntry]:
    """Create each entry's pre-job special tasks; returns the entries that need none."""
    owners = User.ids_for_logins(e.job.owner for e in entries)

    tasks: list[SpecialTask] = []
    ready: list[HostQueueEntry] = []
    for entry in entries:
        job, host = entry.job, lab.hosts[entry.host_id]
        wanted = prejob.prejob_tasks(
            reboot_before=job.reboot_before,
            run_verify=job.run_verify,
            run_reset=job.run_reset,
            host_dirty=host["dirty"],
            host_protection=host["protection"],
            job_label_names=lab.job_label_names(entry),
            host_label_names=lab.host_label_names(entry.host_id),
        )
        if not wanted:
            ready.append(entry)
            continue
        tasks += [
            SpecialTask(host_id=entry.host_id, task=task, queue_entry_id=entry.pk, requested_by_id=owners[job.owner])
            for task in wanted
        ]
    SpecialTask.objects.bulk_create(tasks, batch_size=WRITE_BATCH)
    return ready
