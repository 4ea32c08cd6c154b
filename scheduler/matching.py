"""Which pending host queue entries get which hosts (pure decisions, no database).

The caller loads the pending entries and the candidate hosts into the plain
values below, calls :func:`match_entries`, and then leases and assigns the
hosts it got back. Nothing here reads or writes the database.

Rules (spec §3.9 and Appendix B, with the upstream rules the ChromeOS fork
dropped restored, see §6.1 #5):

* Entries are served in :func:`pending_order`; a host goes to at most one
  entry per call, so an earlier entry wins.
* A host is *available* when it is neither leased nor locked. Host status is
  not looked at: a host that is not Ready stays leased (§3.10).
* Explicit-host entries (``host_id`` set) get exactly that host, if it is
  available and the job may use it: the ACLs intersect or the host is invalid
  (a one-time host), and the host carries every hard dependency.
* Metahost entries get a valid host that carries the metahost label and every
  hard dependency, shares an ACL group with the job owner, is not blocked for
  the job, and carries no ``only_if_needed`` label the job did not ask for.
  Among those, hosts carrying more preferred (provisionable) labels win, then
  :meth:`afe.models.Host.sort_key` order.
* Hostless entries are never matched.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar
from enum import IntEnum

from afe.models import Host


class EntryKind(IntEnum):
    """What an entry asks for; the value is its rank within one priority."""

    EXPLICIT = 0
    METAHOST = 1
    HOSTLESS = 2


@dataclass(frozen=True, slots=True)
class HostCandidate:
    """A host as the matcher sees it.

    ``invalid`` is true for deleted hosts and one-time hosts; such a host may
    only be used by an explicit-host entry. ``label_ids`` are all the host's
    label ids, ``acl_ids`` the ACL groups it is in.
    """

    id: int
    hostname: str
    leased: bool
    locked: bool
    invalid: bool
    label_ids: frozenset[int]
    acl_ids: frozenset[int]

    @property
    def available(self) -> bool:
        """Whether the host may be handed out at all (not leased, not locked)."""
        return not self.leased and not self.locked


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """A Queued, inactive, not aborted host queue entry waiting for a host.

    ``dependency_ids`` are the job's hard dependency label ids (provision and
    special-action labels already removed by the caller); ``preferred_ids``
    the provisionable dependency label ids a host is preferred for carrying;
    ``acl_ids`` the ACL groups of the job owner; ``blocked_host_ids`` the hosts
    the job already used (``afe_ineligible_host_queues``).
    """

    entry_id: int
    job_id: int
    priority: int
    parent_job_id: int | None
    host_id: int | None
    meta_host_id: int | None
    dependency_ids: frozenset[int] = frozenset()
    preferred_ids: frozenset[int] = frozenset()
    acl_ids: frozenset[int] = frozenset()
    blocked_host_ids: frozenset[int] = frozenset()

    @property
    def kind(self) -> EntryKind:
        """Explicit when a host is named (even if a metahost label is also set),
        metahost when only a label is named, hostless when neither is."""
        if self.host_id is not None:
            return EntryKind.EXPLICIT
        if self.meta_host_id is not None:
            return EntryKind.METAHOST
        return EntryKind.HOSTLESS


def pending_order(entries: Iterable[EntryRequest]) -> list[EntryRequest]:
    """The entries in the order they are served (spec §3.9, the pending query).

    Returns a new list sorted by priority descending; within a priority,
    explicit-host entries, then metahost entries, then hostless entries; then
    ``parent_job_id`` ascending (no parent counts as 0, so top-level jobs come
    before child jobs), then ``job_id``, then ``entry_id``, which makes the
    order total and deterministic. Hostless entries are kept (the caller may
    start them in this order); :func:`match_entries` skips them.
    """
    return sorted(entries, key=_pending_key)


def _pending_key(entry: EntryRequest) -> tuple[int, int, int, int, int]:
    return (-entry.priority, entry.kind, entry.parent_job_id or 0, entry.job_id, entry.entry_id)


def match_entries(
    entries: Iterable[EntryRequest],
    hosts: Iterable[HostCandidate],
    only_if_needed_label_ids: frozenset[int],
) -> dict[int, int]:
    """Choose a host for as many entries as possible; returns ``{entry_id: host_id}``.

    Entries that get no host (and hostless entries) are absent from the
    result; the dict's iteration order is the order the entries were served.
    No host id appears twice. ``hosts`` must have distinct ids; hosts that are
    leased or locked are ignored. ``only_if_needed_label_ids`` are the ids of
    the labels flagged ``only_if_needed``.

    Cost: each metahost entry scans only the available valid hosts carrying
    its rarest required label, so the worst case is O(entries × hosts).
    """
    pool = _HostPool.build(hosts)
    assignments: dict[int, int] = {}
    for entry in pending_order(entries):
        host = _choose_host(entry, pool, only_if_needed_label_ids)
        if host is not None:
            pool.taken.add(host.id)
            assignments[entry.entry_id] = host.id
    return assignments


@dataclass
class _HostPool:
    """The available hosts of one :func:`match_entries` call, indexed for lookup.

    ``by_label`` holds only valid hosts (the metahost path never uses invalid
    ones), each list in :meth:`Host.sort_key` order. ``taken`` grows as hosts
    are handed out during the call.
    """

    by_id: dict[int, HostCandidate]
    by_label: dict[int, list[HostCandidate]]
    taken: set[int] = field(default_factory=set)
    #: Metahost requests already found to have no eligible host: hosts are only taken during a
    #: call, never given back, so an equal request later in the call finds none either.
    hopeless: set[tuple[frozenset[int], frozenset[int], frozenset[int]]] = field(default_factory=set)

    #: A label's host list is rebuilt without taken hosts once most of its first hosts are taken.
    COMPACT_WINDOW: ClassVar[int] = 64

    @classmethod
    def build(cls, hosts: Iterable[HostCandidate]) -> _HostPool:
        available = sorted((h for h in hosts if h.available), key=lambda h: Host.sort_key(h.hostname))
        by_label: dict[int, list[HostCandidate]] = {}
        for host in available:
            if not host.invalid:
                for label_id in host.label_ids:
                    by_label.setdefault(label_id, []).append(host)
        return cls(by_id={h.id: h for h in available}, by_label=by_label)

    def candidates_for(self, label_ids: frozenset[int]) -> list[HostCandidate]:
        """The valid hosts carrying the rarest of ``label_ids`` (a superset of
        those carrying all of them), in sort order."""
        rarest = min(label_ids, key=lambda label_id: len(self.by_label.get(label_id, ())))
        hosts = self.by_label.get(rarest, [])
        window = self.COMPACT_WINDOW
        if len(hosts) > window and sum(1 for h in hosts[:window] if h.id in self.taken) > window // 2:
            # Taken hosts pile up at the front of busy labels' lists: drop them once, not on every scan.
            hosts = self.by_label[rarest] = [h for h in hosts if h.id not in self.taken]
        return hosts


def _choose_host(
    entry: EntryRequest, pool: _HostPool, only_if_needed_label_ids: frozenset[int]
) -> HostCandidate | None:
    """The host ``entry`` gets now, or None (no eligible host is left, or hostless)."""
    match entry.kind:
        case EntryKind.EXPLICIT:
            return _choose_explicit_host(entry, pool)
        case EntryKind.METAHOST:
            return _choose_metahost_host(entry, pool, only_if_needed_label_ids)
        case _:
            return None


def _choose_explicit_host(entry: EntryRequest, pool: _HostPool) -> HostCandidate | None:
    """The entry's own host if it is available, untaken and usable by the job, else None.

    An invalid (one-time) host bypasses the ACL check; dependencies are always
    checked. ``only_if_needed`` labels and blocks do not apply to explicit hosts.
    """
    host = pool.by_id.get(entry.host_id) if entry.host_id is not None else None
    if host is None or host.id in pool.taken:
        return None
    acl_ok = host.invalid or not host.acl_ids.isdisjoint(entry.acl_ids)
    if acl_ok and entry.dependency_ids <= host.label_ids:
        return host
    return None


def _choose_metahost_host(
    entry: EntryRequest, pool: _HostPool, only_if_needed_label_ids: frozenset[int]
) -> HostCandidate | None:
    """The best eligible valid host for a metahost entry, or None.

    Best = most of ``entry.preferred_ids`` present; ties go to the earliest
    host in :meth:`Host.sort_key` order.
    """
    assert entry.meta_host_id is not None
    required = entry.dependency_ids | {entry.meta_host_id}
    request = (required, entry.acl_ids, entry.blocked_host_ids)
    if request in pool.hopeless:
        return None
    forbidden = only_if_needed_label_ids - required
    best: HostCandidate | None = None
    best_score = -1
    for host in pool.candidates_for(required):
        if (
            host.id in pool.taken
            or host.id in entry.blocked_host_ids
            or host.acl_ids.isdisjoint(entry.acl_ids)
            or not required <= host.label_ids
            or not forbidden.isdisjoint(host.label_ids)
        ):
            continue
        score = len(entry.preferred_ids & host.label_ids)
        if score > best_score:
            best, best_score = host, score
            if score == len(entry.preferred_ids):
                break  # nothing later can beat it, and ties keep the earlier host
    if best is None:
        pool.hopeless.add(request)
    return best
