"""Why pending: each waiting entry's reason, position and estimated start (scheduler/pending.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from afe.models import AclGroup, Host, HostQueueEntry, HostQueueEntryPending, Job, Label, RebootBefore, User
from scheduler.matching import EntryRequest
from scheduler.pending import HostState, PendingSnapshot, WaitingEntry, explain, explain_pending, load_snapshot
from scheduler.throttle import DroneSlot

from .rpc_client import AfeRpc

Status = HostQueueEntry.Status
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=dt_timezone.utc)
BOARD, POOL, CTS = 1, 2, 3
NAMES = {BOARD: "board:x", POOL: "pool:a", CTS: "cts"}
EVERYONE_ACL, TEAM_ACL = 10, 11


# -- the pure decision ----------------------------------------------------------------------------


def waiting(entry_id: int, job_id: int | None = None, *, priority: int = 20, meta: int | None = BOARD,
            host: int | None = None, acls: frozenset[int] = frozenset({EVERYONE_ACL}), status: str = "Queued",
            **kwargs) -> WaitingEntry:
    request = EntryRequest(entry_id=entry_id, job_id=job_id or entry_id, priority=priority, parent_job_id=None,
                           host_id=host, meta_host_id=meta, acl_ids=acls,
                           dependency_ids=kwargs.pop("deps", frozenset()))
    return WaitingEntry(request=request, status=status, **kwargs)


def lab_host(pk: int, **kwargs) -> HostState:
    kwargs.setdefault("label_ids", frozenset({BOARD}))
    kwargs.setdefault("acl_ids", frozenset({EVERYONE_ACL}))
    return HostState(id=pk, hostname=f"host{pk}", **kwargs)


def snapshot(entries, hosts, **kwargs) -> PendingSnapshot:
    return PendingSnapshot(entries=entries, hosts=hosts, label_names=NAMES, now=NOW, **kwargs)


def test_pure_no_host_carries_the_label():
    result = explain(snapshot([waiting(1, meta=POOL)], [lab_host(1)]))
    assert result == {1: result[1]} and result[1].reason == "no host carries label pool:a"
    assert result[1].position == 1 and result[1].estimated_start is None
    both = explain(snapshot([waiting(2, deps=frozenset({CTS}))], [lab_host(1)]))[2]
    assert both.reason == "no host carries all of the labels board:x, cts"


def test_pure_acl_lock_and_explicit_host_words():
    hosts = [lab_host(1, acl_ids=frozenset({TEAM_ACL})), lab_host(2, acl_ids=frozenset({TEAM_ACL}))]
    assert explain(snapshot([waiting(1)], hosts))[1].reason.startswith("matching hosts are not in your ACL groups")
    locked = [lab_host(1, locked=True, locked_by="alice", lock_reason="broken screen")]
    assert explain(snapshot([waiting(1)], locked))[1].reason == "host1 is locked by alice: broken screen"
    assert explain(snapshot([waiting(1, meta=None, host=1)], locked))[1].reason == \
        "host1 is locked by alice: broken screen"
    three = [lab_host(i, locked=True, locked_by="bob", lock_reason="lab move") for i in (1, 2, 3)]
    assert explain(snapshot([waiting(1)], three))[1].reason == \
        "3 hosts match; all 3 locked (host1 by bob: lab move, host2 by bob: lab move, host3 by bob: lab move)"
    assert explain(snapshot([waiting(1, meta=None, host=1, deps=frozenset({CTS}))], [lab_host(1)]))[1].reason == \
        "host1 lacks label cts"


def test_pure_busy_hosts_positions_and_estimates():
    started = NOW - timedelta(minutes=50)
    hosts = [lab_host(1, leased=True, status="Running", job_ids=(12,), busy_since=started),
             lab_host(2, leased=True, status="Running", job_ids=(15,), busy_since=started - timedelta(minutes=5)),
             lab_host(3, leased=True, status="Running", job_ids=(19,), busy_since=started + timedelta(minutes=5))]
    entries = [waiting(7, priority=20), waiting(8, priority=80), waiting(9, priority=20)]
    history = {1: [3600.0], 2: [3600.0], 3: [3600.0, 3600.0]}
    result = explain(snapshot(entries, hosts, durations=history))
    assert list(result) == [8, 7, 9]  # serving order: priority first, then age
    assert [result[pk].position for pk in (8, 7, 9)] == [1, 2, 3]
    assert result[8].reason == "3 hosts match; all 3 busy (jobs 12, 15, 19)"
    assert result[7].reason == "queued behind 1 entry of higher priority; 3 hosts match; all 3 busy (jobs 12, 15, 19)"
    assert result[9].reason.startswith("queued behind 1 entry of higher priority;")
    # Each takes the host that frees first: host2 (in 5 min), host1 (10), host3 (15).
    assert result[8].estimated_start == NOW + timedelta(minutes=5)
    assert result[7].estimated_start == NOW + timedelta(minutes=10)
    assert result[9].estimated_start == NOW + timedelta(minutes=15)
    # Without any history there is no estimate.
    assert explain(snapshot(entries, hosts))[8].estimated_start is None


def test_pure_synchronous_group_drone_capacity_and_prejob():
    entries = [waiting(1, job_id=5, meta=None, host=1, status="Pending", active=True, synch_count=3),
               waiting(2, job_id=6, meta=None, host=2, status="Starting", active=True),
               waiting(3, job_id=7, meta=None, host=3, status="Queued", active=True, prejob_task="Reset")]
    hosts = [lab_host(i, leased=True) for i in (1, 2, 3)]
    full = [DroneSlot("localhost", max_processes=2, active_processes=2)]
    result = explain(snapshot(entries, hosts, drones=full))
    assert result[1].reason == "waiting for 2 more hosts of a synchronous group (1 of 3 ready)"
    assert result[2].reason == "drone capacity full (2 of 2 processes in use)"
    assert result[3].reason == "drone capacity full (2 of 2 processes in use)"
    room = explain(snapshot(entries, hosts, drones=[DroneSlot("localhost", 10, 2)]))
    assert room[3].reason == "Reset on host3 is about to start"


def test_pure_only_if_needed_and_blocked_hosts():
    hosts = [lab_host(1, label_ids=frozenset({BOARD, POOL}))]
    assert explain(snapshot([waiting(1)], hosts, only_if_needed=frozenset({POOL})))[1].reason == \
        "matching hosts carry only_if_needed label pool:a, which the job does not ask for"
    blocked = WaitingEntry(request=EntryRequest(1, 1, 20, None, None, BOARD, acl_ids=frozenset({EVERYONE_ACL}),
                                                blocked_host_ids=frozenset({1})), status="Queued")
    assert explain(snapshot([blocked], hosts))[1].reason == "this job already used every matching host (host1)"


# -- from real scheduler ticks --------------------------------------------------------------------


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def make_job(owner: User, **kwargs) -> Job:
    kwargs.setdefault("name", "sleeptest")
    kwargs.setdefault("control_file", "job.run_test('sleeptest')")
    return Job.create(owner=owner, **kwargs)


def pending_of(job: Job) -> HostQueueEntryPending:
    return HostQueueEntryPending.objects.get(queue_entry__job=job)


def job_on_vanished_label(owner: User, make_host, label: str) -> Job:
    """A job on ``label`` whose only host lost the label after the job was created."""
    host = make_host(f"only-{label.replace(':', '-')}", [label])
    job = make_job(owner, meta_hosts=[label])
    host.labels.clear()
    return job


def test_tick_no_host_carries_the_label(scheduler, lab, owner, make_host):
    job = job_on_vanished_label(owner, make_host, "board:z")
    scheduler.tick()
    row = pending_of(job)
    assert row.reason == "no host carries label board:z"
    assert row.position == 1 and row.computed_on and row.estimated_start is None


def test_tick_hosts_outside_the_acls_and_locked_host(scheduler, lab, owner):
    bob = User.objects.create(login="bob")
    private = AclGroup.objects.create(name="private")
    private.hosts.add(*Host.objects.filter(hostname__in=["host1", "host2", "host3"]))
    AclGroup.rebalance_everyone()
    outside = make_job(bob, meta_hosts=["board:x"])
    Host.objects.filter(hostname="locked1").update(locked_by=User.objects.create(login="carol"),
                                                   lock_reason="broken screen")
    on_locked = make_job(owner, meta_hosts=["board:y"])
    scheduler.tick(2)
    assert pending_of(outside).reason.startswith("matching hosts are not in your ACL groups")
    assert pending_of(on_locked).reason == "locked1 is locked by carol: broken screen"


def test_tick_busy_hosts_and_higher_priority(scheduler, autoserv, lab, owner):
    earlier = make_job(owner, hosts=["host2"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until_idle()  # one finished run: history for the estimate
    autoserv.set("job", "hold")
    running = [make_job(owner, hosts=[h], reboot_before=RebootBefore.NEVER, run_reset=False)
               for h in ("host1", "host2", "host3")]
    scheduler.run_until(lambda: len(autoserv.calls("job")) == 4, "three jobs to run")
    low = make_job(owner, meta_hosts=["board:x"], priority=10)
    high = make_job(owner, meta_hosts=["board:x"], priority=80)
    scheduler.tick()
    jobs = ", ".join(str(j.pk) for j in running)
    assert pending_of(high).reason == f"3 hosts match; all 3 busy (jobs {jobs})"
    assert pending_of(low).reason == f"queued behind 1 entry of higher priority; 3 hosts match; all 3 busy (jobs {jobs})"
    assert (pending_of(high).position, pending_of(low).position) == (1, 2)
    assert pending_of(high).estimated_start is not None  # from the earlier run's time
    assert HostQueueEntry.objects.get(job=earlier).status == Status.COMPLETED
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert not HostQueueEntryPending.objects.exists()  # nothing waits any more: the rows are gone


def test_tick_synchronous_group_waits_for_more_hosts(scheduler, lab, owner):
    Host.objects.filter(hostname__in=["host2", "host3"]).update(locked=True, lock_reason="maintenance")
    job = make_job(owner, hosts=["host1", "host2", "host3"], synch_count=3, reboot_before=RebootBefore.NEVER,
                   run_reset=False)
    scheduler.run_until(lambda: job.hostqueueentry_set.filter(status=Status.PENDING).exists(), "host1 to be Pending")
    scheduler.tick()
    rows = {r.queue_entry.host.hostname: r.reason for r in
            HostQueueEntryPending.objects.filter(queue_entry__job=job).select_related("queue_entry__host")}
    assert rows["host1"] == "waiting for 2 more hosts of a synchronous group (1 of 3 ready)"
    assert rows["host2"] == "host2 is locked: maintenance"


def test_tick_drone_capacity_full(scheduler, autoserv, lab, owner):
    scheduler.max_processes = 1
    scheduler.restart()
    autoserv.set("job", "hold")
    first = make_job(owner, hosts=["host1"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until(lambda: autoserv.calls("job"), "the first job to run")
    second = make_job(owner, hosts=["host2"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.tick(2)
    assert HostQueueEntry.objects.get(job=second).status == Status.STARTING
    assert pending_of(second).reason == "drone capacity full (1 of 1 processes in use)"
    assert not HostQueueEntryPending.objects.filter(queue_entry__job=first).exists()
    autoserv.release("job", 0)
    scheduler.run_until_idle()


def waiting_lab(size: int, prefix: str) -> None:
    """``size`` waiting entries: half on a board whose three hosts are locked, half on a label no host has."""
    owner = User.system_user()
    board = Label.objects.create(name=f"board:{prefix}")
    gone = Label.objects.create(name=f"gone:{prefix}")
    for i in range(3):
        host = Host.objects.create(hostname=f"{prefix}{i}", locked=True, lock_reason="lab move")
        host.labels.add(board, gone)
    for i in range(size):
        label = board.name if i % 2 else gone.name
        Job.create(owner=owner, name=f"{prefix}{i}", control_file="x", meta_hosts=[label])
    Host.labels.through.objects.filter(label=gone).delete()


def test_pending_step_costs_the_same_for_10_or_200_entries(scheduler, figures):
    counts = []
    for size, prefix in ((10, "few"), (200, "many")):
        HostQueueEntry.objects.update(status=Status.COMPLETED, active=False, complete=True)
        waiting_lab(size, prefix)
        scheduler.tick()
        slots = scheduler.dispatcher._drone_slots()
        with CaptureQueriesContext(connection) as queries:
            assert explain_pending(slots) == size
        counts.append(len(queries))
        assert HostQueueEntryPending.objects.count() == size  # the last lab's rows were deleted
    figures.append(f"pending step on {connection.vendor}: 10 entries → {counts[0]} queries, "
                   f"200 entries → {counts[1]} queries")
    assert counts[0] == counts[1]


def test_stored_explanations_are_written_a_batch_at_a_time_and_only_when_changed(db, monkeypatch):
    from afe.models import pending as stored
    from afe.models.pending import PendingRow

    monkeypatch.setattr(stored, "WRITE_BATCH", 2)
    owner = User.system_user()
    job = Job.create(owner=owner, name="many", control_file="x", hosts=[
        Host.objects.create(hostname=f"batch{i}").hostname for i in range(5)])
    ids = sorted(job.hostqueueentry_set.values_list("pk", flat=True))
    rows = {pk: PendingRow(f"reason {pk}", place, None) for place, pk in enumerate(ids, start=1)}
    first = datetime(2024, 5, 1, 12, 0)  # AFE's times are naive
    later = first + timedelta(minutes=1)
    assert HostQueueEntryPending.objects.replace_all(rows, first) == 5
    stored_rows = {p.queue_entry_id: (p.reason, p.position) for p in HostQueueEntryPending.objects.all()}
    assert stored_rows == {pk: (row.reason, row.position) for pk, row in rows.items()}

    # One entry starts and the rest move up: four rows rewritten (two statements), one deleted.
    moved = {pk: PendingRow(f"reason {pk}", place, None) for place, pk in enumerate(ids[1:], start=1)}
    with CaptureQueriesContext(connection) as queries:
        HostQueueEntryPending.objects.replace_all(moved, later)
    writes = [q["sql"] for q in queries if q["sql"].upper().startswith("INSERT")]
    assert len(writes) == 2
    assert {p.queue_entry_id: p.position for p in HostQueueEntryPending.objects.all()} == \
        {pk: row.position for pk, row in moved.items()}
    assert set(HostQueueEntryPending.objects.values_list("computed_on", flat=True)) == {later}

    # Nothing changed: nothing inserted, every row stamped with the new time.
    with CaptureQueriesContext(connection) as queries:
        HostQueueEntryPending.objects.replace_all(moved, later + timedelta(minutes=1))
    assert not [q for q in queries if q["sql"].upper().startswith("INSERT")]
    assert HostQueueEntryPending.objects.filter(computed_on=later + timedelta(minutes=1)).count() == 4


def test_a_lab_where_nothing_moved_is_not_explained_again_until_it_changes(scheduler, lab, owner, make_host):
    from scheduler.unchanged import LastRun

    job = job_on_vanished_label(owner, make_host, "board:z")
    waiting_host = make_job(owner, hosts=["locked1"])
    last = LastRun()
    first = datetime(2024, 5, 1, 12, 0)
    assert explain_pending([], first, last) == 2
    assert pending_of(job).reason == "no host carries label board:z"

    def explain_at(moment: datetime) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert explain_pending([], moment, last) == 2
        return [q["sql"] for q in queries if q["sql"].upper().startswith(("INSERT", "DELETE"))]

    # Nothing changed: nothing is written; the rows still say when they were computed.
    with CaptureQueriesContext(connection) as queries:
        explain_pending([], first + timedelta(seconds=5), last)
    assert not [q for q in queries if q["sql"].upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert set(HostQueueEntryPending.objects.values_list("computed_on", flat=True)) == {first}
    # A change outside the scheduler (the host's lock reason) is seen on the next tick.
    Host.objects.filter(hostname="locked1").update(lock_reason="moved to rack 3")
    assert explain_at(first + timedelta(seconds=10)) != []
    assert pending_of(waiting_host).reason == "locked1 is locked: moved to rack 3"
    # A row that vanished under the scheduler is written again at once.
    HostQueueEntryPending.objects.filter(queue_entry__job=job).delete()
    explain_at(first + timedelta(seconds=15))
    assert pending_of(job).reason == "no host carries label board:z"
    # While nothing the scheduler reads changes, nothing is explained again (a row edited by hand stays)...
    HostQueueEntryPending.objects.update(reason="edited by hand")
    assert explain_at(first + timedelta(seconds=20)) == []
    assert pending_of(job).reason == "edited by hand"
    # ...until max_age after the last explaining: estimates age with the clock.
    explain_at(first + timedelta(seconds=15) + last.max_age)
    assert pending_of(job).reason == "no host carries label board:z"


def test_snapshot_loads_without_waiting_entries(db):
    assert load_snapshot([]).entries == ()
    assert explain_pending([]) == 0


# -- the RPC method --------------------------------------------------------------------------------


def test_get_pending_reasons(scheduler, lab, owner, make_host):
    missing = job_on_vanished_label(owner, make_host, "board:z")
    locked = make_job(owner, hosts=["locked1"])
    scheduler.tick()
    rpc = AfeRpc(Client(), login="autotest_system")
    rows = rpc.get_pending_reasons(job__id__in=[missing.pk, locked.pk])
    assert [r["job"] for r in rows] == [locked.pk, missing.pk]  # queue order: explicit host first
    assert rows[1] == {"id": HostQueueEntry.objects.get(job=missing).pk, "job": missing.pk,
                       "reason": "no host carries label board:z", "position": 2, "estimated_start": None,
                       "computed_on": rows[1]["computed_on"]}
    assert rows[0]["reason"] == "locked1 is locked: broken"
    assert isinstance(rows[0]["computed_on"], str) and len(rows[0]["computed_on"]) == 19
    assert rpc.get_pending_reasons(job__id=missing.pk) == [rows[1]]
    assert rpc.get_pending_reasons(job__id__in=[10 ** 6]) == []
    with pytest.raises(Exception, match="ValidationError|Unknown field"):
        rpc.get_pending_reasons(no_such_field=1)
