"""Status changes name the statuses they move from: a stale decision changes nothing."""
from __future__ import annotations

import pytest

from afe.models import Host, HostQueueEntry, Job, RebootBefore, User
from scheduler.transitions import move_entries, move_hosts

HostStatus = Host.Status
EntryStatus = HostQueueEntry.Status


@pytest.fixture
def hosts(make_host) -> dict[str, Host]:
    return {
        "ready": make_host("ready1"),
        "pending": make_host("pending1", status=HostStatus.PENDING),
        "repairing": make_host("repairing1", status=HostStatus.REPAIRING),
    }


def statuses() -> dict[str, str]:
    return dict(Host.objects.values_list("hostname", "status"))


def test_a_host_moves_only_from_the_statuses_named(hosts):
    ids = [host.pk for host in hosts.values()]
    moved = move_hosts(ids, HostStatus.RUNNING, from_statuses=Host.JOB_STATUSES, dirty=True)
    assert moved == 1
    assert statuses() == {"ready1": "Ready", "pending1": "Running", "repairing1": "Repairing"}
    assert Host.objects.get(hostname="pending1").dirty


def test_a_repair_result_leaves_a_host_that_moved_on_alone(hosts):
    """The repair's decision was made while the host was Repairing; it is Ready now (say, recovered)."""
    Host.objects.filter(pk=hosts["repairing"].pk).update(status=HostStatus.READY)
    assert move_hosts([hosts["repairing"].pk], HostStatus.REPAIR_FAILED, from_statuses=[HostStatus.REPAIRING]) == 0
    assert statuses()["repairing1"] == "Ready"


def test_a_transition_must_name_its_from_statuses(hosts):
    with pytest.raises(TypeError):
        move_hosts([hosts["ready"].pk], HostStatus.PENDING)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        move_entries([], EntryStatus.QUEUED)  # type: ignore[call-arg]


def test_an_entry_moves_only_from_the_statuses_named(hosts, db):
    job = Job.create(owner=User.system_user(), name="j", control_file="x", hosts=["ready1", "pending1"],
                     reboot_before=RebootBefore.NEVER)
    first, second = job.hostqueueentry_set.order_by("id")
    HostQueueEntry.objects.filter(pk=second.pk).update(status=EntryStatus.PARSING)
    moved = move_entries([first.pk, second.pk], EntryStatus.RUNNING, from_statuses=HostQueueEntry.JOB_STATUSES |
                         {EntryStatus.QUEUED})
    assert moved == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.active, first.complete) == ("Running", True, False)
    assert second.status == "Parsing"


def test_the_shared_status_sets_fit_together():
    assert HostQueueEntry.PRE_JOB_TASK_STATUSES < HostQueueEntry.AWAITING_PRE_JOB_STATUSES
    assert HostQueueEntry.PROCESS_STEP_STATUSES.isdisjoint(HostQueueEntry.COMPLETE_STATUSES)
    assert not HostQueueEntry.JOB_STATUSES & HostQueueEntry.POST_JOB_STATUSES
    assert Host.TASK_STATUSES | Host.IDLE_STATES | {HostStatus.RUNNING} == Host.TASK_START_STATUSES
    assert HostStatus.PENDING not in Host.TASK_START_STATUSES  # a host held for a job runs no task
