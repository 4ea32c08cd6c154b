"""Why each waiting host queue entry has not started, in words its owner can act on (tick step).

:func:`explain` is the decision: pure, over the plain values of a
:class:`PendingSnapshot`, like :mod:`scheduler.matching` and
:mod:`scheduler.throttle`. :func:`explain_pending` is the tick step: it reads
the rows around the waiting entries in a fixed number of queries (never one
per entry), and unless they are what the stored answers were computed from,
groups them into a snapshot, explains, and stores the answers in
``afe_host_queue_entry_pending`` in a few more.

Waiting entries are those neither complete nor aborted in status Queued (no
host yet, or a host and its pre-job task still to run), Pending (a
synchronous group still gathering) or Starting (no drone room yet).
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from afe.models import (
    AclGroup, Host, HostQueueEntry, HostQueueEntryPending, IneligibleHostQueue, Job, Label, SpecialTask,
)
from afe.models.pending import PendingRow

from .assign import RequestBuilder, SetInterner, grouped
from .labels import LabelIndex
from .matching import EntryKind, EntryRequest, pending_order
from .throttle import DroneSlot
from .transitions import EntryStatus
from .unchanged import LastRun

WAITING_STATUSES = (EntryStatus.QUEUED, EntryStatus.PENDING, EntryStatus.STARTING)
#: How many recently finished entries the run-time estimate looks at.
HISTORY_SIZE = 500
#: How many hosts or jobs a reason names before it says "and N more".
NAMED_AT_MOST = 5


@dataclass(frozen=True)
class Pending:
    """One entry's explanation: ``reason`` in words, ``position`` its 1-based place in the
    scheduler's serving order, ``estimated_start`` a guess (None when history says nothing)."""

    reason: str
    position: int
    estimated_start: datetime | None = None


@dataclass(frozen=True, slots=True)
class WaitingEntry:
    """A waiting entry as :func:`explain` sees it.

    ``request`` is what the matcher would see (its ``host_id`` is the assigned
    host once one is). ``status`` is the entry's status and ``active`` whether
    it already holds its host. ``synch_count`` is the job's group size;
    ``prejob_task`` the name of the entry's incomplete pre-job special task, if
    any, and ``prejob_task_running`` whether it has started.
    """

    request: EntryRequest
    status: str
    active: bool = False
    synch_count: int = 1
    prejob_task: str | None = None
    prejob_task_running: bool = False

    @property
    def entry_id(self) -> int:
        return self.request.entry_id


@dataclass(frozen=True, slots=True)
class HostState:
    """A host as :func:`explain` sees it: every valid host, and the one-time hosts entries name.

    ``job_ids`` are the jobs with an active entry on the host, ``busy_since``
    the earliest ``started_on`` of those entries; ``task`` the special task
    running on it, if any.
    """

    id: int
    hostname: str
    label_ids: frozenset[int] = frozenset()
    acl_ids: frozenset[int] = frozenset()
    locked: bool = False
    locked_by: str | None = None
    lock_reason: str = ""
    leased: bool = False
    invalid: bool = False
    status: str = "Ready"
    job_ids: tuple[int, ...] = ()
    busy_since: datetime | None = None
    task: str | None = None

    @property
    def busy(self) -> bool:
        """Whether something holds the host now (a job, a special task, or a not-Ready lease)."""
        return bool(self.job_ids) or self.task is not None or (self.leased and self.status not in ("Ready", None))

    def lock_words(self) -> str:
        """``host1 is locked by alice: broken screen``."""
        by = f" by {self.locked_by}" if self.locked_by else ""
        return f"{self.hostname} is locked{by}: {self.lock_reason}" if self.lock_reason else \
            f"{self.hostname} is locked{by}"


@dataclass(frozen=True)
class PendingSnapshot:
    """Everything :func:`explain` needs, as plain values.

    ``durations`` are recent run times in seconds per host id; ``drones`` the
    drones with their load after this tick's starts; ``label_names`` the names
    of at least the labels the entries ask for; ``only_if_needed`` the ids of
    labels flagged ``only_if_needed``.
    """

    entries: Sequence[WaitingEntry]
    hosts: Sequence[HostState]
    label_names: Mapping[int, str]
    now: datetime
    only_if_needed: frozenset[int] = frozenset()
    drones: Sequence[DroneSlot] = ()
    durations: Mapping[int, Sequence[float]] = field(default_factory=dict)


def explain(snapshot: PendingSnapshot) -> dict[int, Pending]:
    """``{entry id: Pending}`` for every entry of the snapshot; the dict is in serving order.

    Positions follow :func:`scheduler.matching.pending_order` over all the
    waiting entries. Estimated starts simulate the busy matching hosts coming
    free (a running job ends at ``started_on`` + the median recent run time on
    that host, or in the whole lab) and being taken by the waiting entries in
    serving order. Cost: O(entries × (hosts + distinct host sets)).
    """
    return _Explainer(snapshot).run()


class _Explainer:
    """One :func:`explain` call's indexes and running counts (never kept between calls)."""

    def __init__(self, snapshot: PendingSnapshot) -> None:
        self.snap = snapshot
        self.hosts = {h.id: h for h in snapshot.hosts}
        self.valid_by_label: dict[int, list[HostState]] = defaultdict(list)
        for host in sorted(snapshot.hosts, key=lambda h: Host.sort_key(h.hostname)):
            if not host.invalid:
                for label_id in host.label_ids:
                    self.valid_by_label[label_id].append(host)
        all_durations = [d for ds in snapshot.durations.values() for d in ds]
        self.lab_typical = statistics.median(all_durations) if all_durations else None
        self.free_at: dict[int, datetime | None] = {h.id: self._first_free(h) for h in snapshot.hosts}
        # Eligible host ids → priority → how many earlier Queued entries wanted exactly those hosts,
        # and host id → the eligible sets seen that contain it (to find overlapping sets quickly).
        self.ahead: dict[frozenset[int], Counter[int]] = defaultdict(Counter)
        self.sets_with_host: dict[int, set[frozenset[int]]] = defaultdict(set)
        self.drone_used = sum(d.active_processes for d in snapshot.drones if d.enabled)
        self.drone_max = sum(d.max_processes for d in snapshot.drones if d.enabled)
        self.carrying: dict[frozenset[int], list[HostState]] = {}
        self.ready_by_job = Counter(e.request.job_id for e in snapshot.entries if e.status == EntryStatus.PENDING)

    def run(self) -> dict[int, Pending]:
        by_id = {e.entry_id: e for e in self.snap.entries}
        result: dict[int, Pending] = {}
        for position, request in enumerate(pending_order(e.request for e in self.snap.entries), start=1):
            entry = by_id[request.entry_id]
            reason, estimate = self._explain(entry)
            result[entry.entry_id] = Pending(reason, position, estimate)
        return result

    # -- per status -------------------------------------------------------------------------

    def _explain(self, entry: WaitingEntry) -> tuple[str, datetime | None]:
        if entry.status == EntryStatus.STARTING:
            return self._starting(entry), None
        if entry.status == EntryStatus.PENDING:
            return self._synchronous(entry), None
        if entry.active and entry.request.host_id is not None:
            return self._prejob(entry), None
        if entry.request.kind == EntryKind.HOSTLESS:
            return "hostless: starts as soon as a drone has room", None
        return self._queued(entry)

    def _drones_full(self, processes: int) -> bool:
        return bool(self.snap.drones) and not any(
            d.enabled and d.active_processes + processes <= d.max_processes for d in self.snap.drones)

    def _capacity_words(self) -> str:
        return f"drone capacity full ({self.drone_used} of {self.drone_max} processes in use)"

    def _starting(self, entry: WaitingEntry) -> str:
        group = max(entry.synch_count, 1)
        if self._drones_full(group):
            return self._capacity_words()
        return "about to start: waiting for a drone of its drone set" if self.snap.drones else "about to start"

    def _synchronous(self, entry: WaitingEntry) -> str:
        need = max(entry.synch_count, 1)
        ready = self.ready_by_job[entry.request.job_id]
        if ready < need:
            more = need - ready
            return f"waiting for {more} more host{'s' * (more != 1)} of a synchronous group ({ready} of {need} ready)"
        return "host ready; waiting for its group to start"

    def _prejob(self, entry: WaitingEntry) -> str:
        host = self.hosts.get(entry.request.host_id)
        name = host.hostname if host else f"host {entry.request.host_id}"
        if entry.prejob_task is None:
            return f"{name} assigned; getting ready to run"
        if entry.prejob_task_running:
            return f"running {entry.prejob_task} on {name} before the job"
        if self._drones_full(1):
            return self._capacity_words()
        if host is not None and host.task is not None:
            return f"{entry.prejob_task} on {name} waits for its {host.task} to finish"
        return f"{entry.prejob_task} on {name} is about to start"

    # -- Queued entries without a host --------------------------------------------------------

    def _queued(self, entry: WaitingEntry) -> tuple[str, datetime | None]:
        request = entry.request
        eligible, refusal = (self._explicit_hosts(request) if request.kind == EntryKind.EXPLICIT
                             else self._metahost_hosts(request))
        if refusal is not None:
            return refusal, None
        key = frozenset(h.id for h in eligible)
        overlapping = {ids for host_id in key for ids in self.sets_with_host.get(host_id, ())}
        higher = sum(n for ids in overlapping for priority, n in self.ahead[ids].items() if priority > request.priority)
        same = sum(self.ahead[ids][request.priority] for ids in overlapping)
        self.ahead[key][request.priority] += 1
        for host_id in key:
            self.sets_with_host[host_id].add(key)
        estimate = self._take_earliest(eligible)
        state = self._host_words(eligible)
        if higher:
            words = f"queued behind {higher} entr{'ies' if higher != 1 else 'y'} of higher priority; {state}"
        elif same:
            words = f"{state}; {same} earlier entr{'ies' if same != 1 else 'y'} wait{'s' * (same == 1)} for them too"
        else:
            words = state
        return words, estimate

    def _explicit_hosts(self, request: EntryRequest) -> tuple[list[HostState], str | None]:
        """The entry's own host if the job may use it, else a refusal in words."""
        host = self.hosts.get(request.host_id)
        if host is None:
            return [], f"host {request.host_id} no longer exists"
        if not host.invalid and host.acl_ids.isdisjoint(request.acl_ids):
            return [], f"{host.hostname} is not in your ACL groups"
        missing = request.dependency_ids - host.label_ids
        if missing:
            return [], f"{host.hostname} lacks label{'s' * (len(missing) > 1)} {self._names(missing)}"
        return [host], None

    def _metahost_hosts(self, request: EntryRequest) -> tuple[list[HostState], str | None]:
        """The valid hosts a metahost entry may get (any state), else a refusal in words."""
        assert request.meta_host_id is not None
        required = request.dependency_ids | {request.meta_host_id}
        carrying = self._carrying(required)
        if not carrying:
            if len(required) == 1:
                return [], f"no host carries label {self._names(required)}"
            return [], f"no host carries all of the labels {self._names(required)}"
        permitted = [h for h in carrying if not h.acl_ids.isdisjoint(request.acl_ids)]
        if not permitted:
            return [], (f"matching hosts are not in your ACL groups ({self._count(carrying)} "
                        f"carr{'ies' if len(carrying) == 1 else 'y'} {self._names(required)})")
        unused = [h for h in permitted if h.id not in request.blocked_host_ids]
        if not unused:
            return [], f"this job already used every matching host ({self._hostnames(permitted)})"
        forbidden = self.snap.only_if_needed - required
        wanted = [h for h in unused if forbidden.isdisjoint(h.label_ids)]
        if not wanted:
            flags = set().union(*(h.label_ids & forbidden for h in unused))
            return [], (f"matching hosts carry only_if_needed label{'s' * (len(flags) > 1)} {self._names(flags)}, "
                        "which the job does not ask for")
        return wanted, None

    def _carrying(self, required: frozenset[int]) -> list[HostState]:
        """The valid hosts carrying every one of these labels (entries of many jobs ask the same)."""
        found = self.carrying.get(required)
        if found is None:
            rarest = min(required, key=lambda label_id: len(self.valid_by_label.get(label_id, ())))
            found = self.carrying[required] = [h for h in self.valid_by_label.get(rarest, ())
                                               if required <= h.label_ids]
        return found

    def _host_words(self, hosts: list[HostState]) -> str:
        """What holds the eligible hosts: ``3 hosts match; all 3 busy (jobs 12, 15, 19)``."""
        locked = [h for h in hosts if h.locked]
        busy = [h for h in hosts if not h.locked and h.busy]
        free = [h for h in hosts if not h.locked and not h.busy]
        if len(hosts) == 1:
            host = hosts[0]
            if host.locked:
                return host.lock_words()
            if host.busy:
                return f"{host.hostname} is busy ({self._busy_words([host])})"
            return f"{host.hostname} is free; the next tick assigns it"
        if len(locked) == len(hosts) and len(locked) <= 2:
            return "; ".join(h.lock_words() for h in locked)
        head = f"{len(hosts)} hosts match"
        if free:
            return f"{head}; {len(free)} free, the next tick assigns one"
        if len(busy) == len(hosts):
            return f"{head}; all {len(busy)} busy ({self._busy_words(busy)})"
        if len(locked) == len(hosts):
            return f"{head}; all {len(locked)} locked ({self._lock_list(locked)})"
        return f"{head}; {len(busy)} busy ({self._busy_words(busy)}), {len(locked)} locked ({self._lock_list(locked)})"

    def _busy_words(self, hosts: list[HostState]) -> str:
        jobs = sorted({j for h in hosts for j in h.job_ids})
        tasks = sorted(h.hostname for h in hosts if not h.job_ids and h.task)
        other = sorted(f"{h.hostname} {h.status}" for h in hosts if not h.job_ids and not h.task)
        parts = []
        if jobs:
            parts.append(f"job{'s' * (len(jobs) > 1)} {self._first(map(str, jobs))}")
        if tasks:
            parts.append("special tasks on " + self._first(tasks))
        if other:
            parts.append(self._first(other))
        return "; ".join(parts)

    def _lock_list(self, hosts: list[HostState]) -> str:
        return self._first(h.lock_words().replace(" is locked", "", 1) for h in hosts)

    # -- estimates ------------------------------------------------------------------------

    def _typical(self, host_id: int) -> float | None:
        mine = self.snap.durations.get(host_id)
        return statistics.median(mine) if mine else self.lab_typical

    def _first_free(self, host: HostState) -> datetime | None:
        """When the host should be free, before any waiting entry takes it; None if unknown."""
        now = self.snap.now
        if host.locked:
            return None
        if not host.busy:
            return now
        typical = self._typical(host.id)
        if not host.job_ids or typical is None:
            return None
        return max(now, (host.busy_since or now) + timedelta(seconds=typical))

    def _take_earliest(self, hosts: list[HostState]) -> datetime | None:
        """The entry takes the eligible host that frees first; returns when (None if unknown)."""
        known = [(when, Host.sort_key(h.hostname), h) for h in hosts if (when := self.free_at.get(h.id))]
        if not known:
            return None
        when, _, host = min(known, key=lambda item: (item[0], item[1]))
        typical = self._typical(host.id)
        self.free_at[host.id] = when + timedelta(seconds=typical) if typical is not None else None
        return when

    # -- words ----------------------------------------------------------------------------

    def _names(self, label_ids: Iterable[int]) -> str:
        return ", ".join(sorted(self.snap.label_names.get(l, f"label {l}") for l in label_ids))

    def _hostnames(self, hosts: list[HostState]) -> str:
        return self._first(h.hostname for h in hosts)

    @staticmethod
    def _count(hosts: list[HostState]) -> str:
        return f"{len(hosts)} host" if len(hosts) == 1 else f"{len(hosts)} hosts"

    @staticmethod
    def _first(items: Iterable[str]) -> str:
        items = list(items)
        shown = ", ".join(items[:NAMED_AT_MOST])
        return shown + (f" and {len(items) - NAMED_AT_MOST} more" if len(items) > NAMED_AT_MOST else "")


# -- the tick step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingRows:
    """The rows explanations are computed from, as read (tuples, not yet grouped), and the drones.

    :meth:`digest` fingerprints them: equal digests give the same reasons and
    positions, so an unchanged lab is recognised before anything is built.
    """

    entries: list[tuple]
    labels: list[tuple] = field(default_factory=list)
    job_labels: list[tuple] = field(default_factory=list)
    owner_acls: list[tuple] = field(default_factory=list)
    blocks: list[tuple] = field(default_factory=list)
    hosts: list[tuple] = field(default_factory=list)
    host_labels: list[tuple] = field(default_factory=list)
    host_acls: list[tuple] = field(default_factory=list)
    on_host: list[tuple] = field(default_factory=list)
    tasks: list[tuple] = field(default_factory=list)
    history: list[tuple] = field(default_factory=list)
    drones: Sequence[DroneSlot] = ()

    def digest(self) -> int:
        return hash(tuple(tuple(getattr(self, f.name)) for f in fields(self)))


def read_rows(drones: Sequence[DroneSlot]) -> PendingRows:
    """Read the waiting entries and the lab around them in eleven queries, however many there are."""
    waiting = HostQueueEntry.objects.filter(status__in=WAITING_STATUSES, complete=False, aborted=False)
    entries = list(waiting.order_by("id").values_list(
        "id", "job_id", "host_id", "meta_host_id", "status", "active", "job__owner", "job__priority",
        "job__parent_job_id", "job__synch_count"))
    if not entries:
        return PendingRows(entries=entries, drones=drones)
    job_ids = waiting.values("job_id")
    in_scope = Host.objects.filter(Q(invalid=False) | Q(pk__in=waiting.filter(host__isnull=False).values("host_id")))
    return PendingRows(
        entries=entries,
        labels=list(Label.objects.order_by("id").values_list("id", "name", "only_if_needed")),
        job_labels=list(Job.dependency_labels.through.objects.filter(job_id__in=job_ids).values_list(
            "job_id", "label_id")),
        owner_acls=list(AclGroup.users.through.objects.filter(
            user__login__in=waiting.values("job__owner")).values_list("user__login", "aclgroup_id")),
        blocks=list(IneligibleHostQueue.objects.filter(job_id__in=job_ids).values_list("job_id", "host_id")),
        hosts=list(in_scope.order_by("id").values_list(
            "id", "hostname", "locked", "locked_by__login", "lock_reason", "leased", "invalid", "status")),
        host_labels=list(Host.labels.through.objects.filter(host__in=in_scope).values_list("host_id", "label_id")),
        host_acls=list(AclGroup.hosts.through.objects.filter(host__in=in_scope).values_list(
            "host_id", "aclgroup_id")),
        on_host=list(HostQueueEntry.objects.filter(active=True, host__isnull=False).values_list(
            "host_id", "job_id", "started_on")),
        tasks=list(SpecialTask.objects.filter(is_complete=False).values_list(
            "host_id", "queue_entry_id", "task", "is_active")),
        history=list(HostQueueEntry.objects.filter(
            complete=True, host__isnull=False, started_on__isnull=False, finished_on__isnull=False,
            status__in=[EntryStatus.COMPLETED, EntryStatus.FAILED],
        ).order_by("-finished_on").values_list("host_id", "started_on", "finished_on")[:HISTORY_SIZE]),
        drones=drones,
    )


def snapshot_of(rows: PendingRows, now: datetime) -> PendingSnapshot:
    """The rows grouped into the plain values :func:`explain` reads."""
    if not rows.entries:
        return PendingSnapshot(entries=(), hosts=(), label_names={}, now=now, drones=rows.drones)
    index = LabelIndex({pk: name for pk, name, _ in rows.labels}, set())
    host_labels, host_acls = grouped(rows.host_labels), grouped(rows.host_acls)
    on_host: dict[int, list[tuple[int, datetime | None]]] = defaultdict(list)
    for host_id, job_id, started_on in rows.on_host:
        on_host[host_id].append((job_id, started_on))
    running_task: dict[int, str] = {}
    prejob: dict[int, tuple[str, bool]] = {}
    for host_id, entry_id, task, is_active in rows.tasks:
        if is_active:
            running_task[host_id] = task
        if entry_id is not None and (entry_id not in prejob or is_active):
            prejob[entry_id] = (task, is_active)
    durations: dict[int, list[float]] = defaultdict(list)
    for host_id, started_on, finished_on in rows.history:
        durations[host_id].append(max((finished_on - started_on).total_seconds(), 0.0))

    frozen = SetInterner()
    hosts = []
    for pk, hostname, locked, locked_by, lock_reason, leased, invalid, status in rows.hosts:
        jobs = on_host.get(pk, [])
        starts = [s for _, s in jobs if s is not None]
        hosts.append(HostState(
            id=pk, hostname=hostname, label_ids=frozen(host_labels.get(pk, ())),
            acl_ids=frozen(host_acls.get(pk, ())), locked=locked, locked_by=locked_by,
            lock_reason=lock_reason or "", leased=leased, invalid=invalid, status=status,
            job_ids=tuple(sorted({j for j, _ in jobs})), busy_since=min(starts, default=None),
            task=running_task.get(pk),
        ))
    build = RequestBuilder(index, grouped(rows.job_labels), grouped(rows.owner_acls), grouped(rows.blocks)).request
    return PendingSnapshot(
        entries=[_waiting_entry(e, build, prejob) for e in rows.entries],
        hosts=hosts,
        label_names=index.names,
        now=now,
        only_if_needed=frozenset(pk for pk, _, flag in rows.labels if flag),
        drones=rows.drones,
        durations=durations,
    )


def load_snapshot(drones: Sequence[DroneSlot], now: datetime | None = None) -> PendingSnapshot:
    """Read the waiting entries and the lab around them (see :func:`read_rows`) as a snapshot."""
    return snapshot_of(read_rows(drones), now or timezone.now())


def _waiting_entry(row: tuple, build: Callable[..., EntryRequest],
                   prejob: Mapping[int, tuple[str, bool]]) -> WaitingEntry:
    pk, job_id, host_id, meta_host_id, status, active, owner, priority, parent_job_id, synch_count = row
    task, running = prejob.get(pk, (None, False))
    return WaitingEntry(
        request=build(entry_id=pk, job_id=job_id, priority=priority, parent_job_id=parent_job_id,
                      host_id=host_id, meta_host_id=meta_host_id, owner=owner),
        status=status, active=active, synch_count=synch_count or 1,
        prejob_task=task, prejob_task_running=running,
    )


def explain_pending(drones: Sequence[DroneSlot], now: datetime | None = None, last: LastRun | None = None) -> int:
    """The tick step: explain every waiting entry and store the answers; returns how many.

    Queries do not grow with the entries that wait: the eleven reads of
    :func:`read_rows`, then four inside one transaction (see
    ``HostQueueEntryPending.objects.replace_all``: only what changed is
    written, a statement per thousand changed rows). With ``last``: when
    nothing the explanations are computed from has changed since they were
    stored (within ``last.max_age``, as estimates age), they are left as they
    are, ``computed_on`` included (a lab where nothing moves costs the reads
    and a count, not the explaining and a write per row).
    """
    now = now or timezone.now()
    rows = read_rows(drones)
    digest = rows.digest()
    if last is not None and last.still_holds(digest, now):
        # Every row must still be there; anything else means the table changed under us.
        if HostQueueEntryPending.objects.count() == len(rows.entries):
            return len(rows.entries)
    answers = explain(snapshot_of(rows, now))
    stored = {pk: PendingRow(p.reason, p.position, p.estimated_start) for pk, p in answers.items()}
    with transaction.atomic():
        explained = HostQueueEntryPending.objects.replace_all(stored, now)
    if last is not None:
        last.ran(digest, now)
    return explained
