"""The Django admin of the lab, driven through the test client as a superuser.

Covers every changelist and the host/job change pages, the host filters and
search, the host actions (lock with a reason, unlock, reverify, repair, soft
delete), the special task state filter and abort action, job and entry aborts,
and that every action costs the same number of queries for 2 rows as for 10.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from afe.models import (
    AbortedHostQueueEntry,
    Drone,
    DroneSet,
    Host,
    HostQueueEntry,
    Job,
    Label,
    SpecialTask,
    User,
)

pytestmark = pytest.mark.django_db

Status = HostQueueEntry.Status
Task = SpecialTask.Task


# --------------------------------------------------------------------------- helpers


def changelist_url(model_name: str) -> str:
    return reverse(f"admin:afe_{model_name}_changelist")


def change_url(obj: Any) -> str:
    return reverse(f"admin:afe_{obj._meta.model_name}_change", args=[obj.pk])


def post_action(client, model_name: str, action: str, objs, **extra):
    """Run an admin action on ``objs`` the way the changelist's action form does."""
    data = {"action": action, "_selected_action": [obj.pk for obj in objs], **extra}
    return client.post(changelist_url(model_name), data)


def shown(response) -> list:
    """The rows of the changelist page that ``response`` rendered."""
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def shown_hostnames(response) -> set[str]:
    return {host.hostname for host in shown(response)}


def make_job(owner: User, name: str, hosts, parent_job: Job | None = None) -> Job:
    return Job.create(
        owner=owner, name=name, control_file="job.run_test('dummy')",
        hosts=list(hosts), parent_job=parent_job,
    )


def make_task(host: Host, requested_by: User, state: str, task: str = Task.VERIFY) -> SpecialTask:
    """A special task in ``state``: Queued, Running, Completed or Failed."""
    special_task = SpecialTask.objects.create(host=host, task=task, requested_by=requested_by)
    if state != "Queued":
        special_task.activate()
    if state in ("Completed", "Failed"):
        special_task.finish(success=state == "Completed")
    assert special_task.status == state
    return special_task


def refreshed(objs):
    return [type(obj).objects.get(pk=obj.pk) for obj in objs]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def admin_afe_user(admin_user) -> User:
    """The AFE user the admin acts as: its login is the superuser's username."""
    return User.objects.get(login=admin_user.get_username())


@pytest.fixture
def populated_lab(lab, system_user, alice, private_group):
    """The conftest lab plus a row in every table the admin lists."""
    host1 = lab["host1"]
    host1.set_attribute("serial", "SN-0001")
    private_group.hosts.add(lab["host3"])
    drone = Drone.objects.create(hostname="drone1.example.com")
    DroneSet.objects.create(name="default-drones").drones.add(drone)
    job = make_job(system_user, "dummy_Pass", ["host1", "host2"])
    task = make_task(lab["host2"], system_user, "Queued")
    return {**lab, "job": job, "task": task, "drone": drone}


# --------------------------------------------------------------------------- pages


EVERY_CHANGELIST = {
    "host": "host1",
    "specialtask": "Verify",
    "job": "dummy_Pass",
    "hostqueueentry": "dummy_Pass",
    "label": "board:x",
    "aclgroup": "team-a",
    "user": "alice",
    "drone": "drone1.example.com",
    "droneset": "default-drones",
}


@pytest.mark.parametrize("model_name, expected_text", EVERY_CHANGELIST.items())
def test_every_changelist_loads_with_its_rows(admin_client, populated_lab, model_name, expected_text):
    response = admin_client.get(changelist_url(model_name))
    assert len(shown(response)) >= 1
    assert expected_text in response.content.decode()


def test_host_change_page_shows_its_attribute_inline(admin_client, populated_lab):
    response = admin_client.get(change_url(populated_lab["host1"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="hostattribute_set-TOTAL_FORMS"' in page
    assert 'value="serial"' in page and 'value="SN-0001"' in page


def test_job_change_page_shows_its_entries_inline(admin_client, populated_lab):
    job = populated_lab["job"]
    response = admin_client.get(change_url(job))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="hostqueueentry_set-TOTAL_FORMS"' in page
    for entry in job.hostqueueentry_set.all():
        assert change_url(entry) in page  # show_change_link on each entry row
    assert "host1" in page and "host2" in page


# --------------------------------------------------------------------------- host filters and search


class TestHostChangelistFiltersAndSearch:
    def test_unfiltered_list_shows_every_valid_host(self, admin_client, lab):
        response = admin_client.get(changelist_url("host"))
        assert shown_hostnames(response) == {"host1", "host2", "host3", "locked1"}

    def test_status_filter_shows_only_hosts_in_that_status(self, admin_client, lab):
        Host.objects.filter(hostname="host2").update(status=Host.Status.REPAIR_FAILED)
        ready = admin_client.get(changelist_url("host"), {"status": "Ready"})
        assert shown_hostnames(ready) == {"host1", "host3", "locked1"}
        # The sidebar's own link uses status__exact.
        failed = admin_client.get(changelist_url("host"), {"status__exact": "Repair Failed"})
        assert shown_hostnames(failed) == {"host2"}

    def test_locked_filter_shows_only_locked_hosts(self, admin_client, lab):
        locked = admin_client.get(changelist_url("host"), {"locked__exact": "1"})
        assert shown_hostnames(locked) == {"locked1"}
        unlocked = admin_client.get(changelist_url("host"), {"locked__exact": "0"})
        assert shown_hostnames(unlocked) == {"host1", "host2", "host3"}

    def test_label_filter_shows_only_hosts_with_that_label(self, admin_client, lab):
        pool_a = Label.objects.get(name="pool:a")
        board_x = Label.objects.get(name="board:x")
        response = admin_client.get(changelist_url("host"), {"labels__id__exact": pool_a.pk})
        assert shown_hostnames(response) == {"host1"}
        response = admin_client.get(changelist_url("host"), {"labels__id__exact": board_x.pk})
        assert shown_hostnames(response) == {"host1", "host2", "host3"}

    def test_search_by_hostname(self, admin_client, lab):
        response = admin_client.get(changelist_url("host"), {"q": "host1"})
        assert shown_hostnames(response) == {"host1"}
        response = admin_client.get(changelist_url("host"), {"q": "host"})
        assert shown_hostnames(response) == {"host1", "host2", "host3"}


# --------------------------------------------------------------------------- host actions


class TestLockHostsAction:
    def test_first_post_asks_for_a_reason_and_locks_nothing(self, admin_client, lab):
        hosts = [lab["host1"], lab["host2"]]
        response = post_action(admin_client, "host", "lock_hosts", hosts)
        assert response.status_code == 200
        assert "admin/afe/host/lock_hosts.html" in [t.name for t in response.templates]
        page = response.content.decode()
        assert 'name="lock_reason"' in page
        assert "host1" in page and "host2" in page
        assert not any(host.locked for host in refreshed(hosts))

    def test_applying_with_a_reason_locks_every_selected_host(self, admin_client, lab, admin_afe_user):
        hosts = [lab["host1"], lab["host2"]]
        response = post_action(
            admin_client, "host", "lock_hosts", hosts, apply="1", lock_reason="  servo broken  "
        )
        assert response.status_code == 302
        for host in refreshed(hosts):
            assert host.locked
            assert host.locked_by == admin_afe_user
            assert host.lock_time is not None
            assert host.lock_reason == "servo broken"
            assert host.dirty
        assert not Host.objects.get(hostname="host3").locked

    def test_locking_marks_clean_hosts_dirty(self, admin_client, make_host):
        host = make_host("clean1", dirty=False)
        post_action(admin_client, "host", "lock_hosts", [host], apply="1", lock_reason="flaky")
        host.refresh_from_db()
        assert host.locked and host.dirty

    def test_an_already_locked_host_keeps_its_original_lock(self, admin_client, lab):
        before = Host.objects.get(hostname="locked1")
        post_action(
            admin_client, "host", "lock_hosts", [lab["host1"], before], apply="1", lock_reason="new"
        )
        after = Host.objects.get(hostname="locked1")
        assert (after.lock_reason, after.lock_time, after.locked_by_id) == (
            before.lock_reason, before.lock_time, before.locked_by_id,
        )
        assert Host.objects.get(hostname="host1").lock_reason == "new"

    @pytest.mark.parametrize("reason", ["", "   "])
    def test_an_empty_reason_locks_nothing_and_shows_the_form_again(self, admin_client, lab, reason):
        hosts = [lab["host1"], lab["host2"]]
        response = post_action(admin_client, "host", "lock_hosts", hosts, apply="1", lock_reason=reason)
        assert response.status_code == 200
        assert response.context["form"].errors["lock_reason"]
        assert 'name="lock_reason"' in response.content.decode()
        assert not any(host.locked for host in refreshed(hosts))


def test_unlock_hosts_clears_who_when_and_why(admin_client, lab, admin_afe_user):
    post_action(admin_client, "host", "lock_hosts", [lab["host1"]], apply="1", lock_reason="x")
    hosts = [lab["host1"], lab["locked"]]
    response = post_action(admin_client, "host", "unlock_hosts", hosts)
    assert response.status_code == 302
    for host in refreshed(hosts):
        assert not host.locked
        assert host.locked_by is None
        assert host.lock_time is None
        assert not host.lock_reason


@pytest.mark.parametrize("action, task", [("reverify_hosts", Task.VERIFY), ("repair_hosts", Task.REPAIR)])
class TestScheduleSpecialTaskActions:
    def queued(self, task):
        return SpecialTask.objects.queued().filter(task=task)

    def test_queues_one_task_per_selected_host(self, admin_client, lab, admin_afe_user, action, task):
        hosts = [lab["host1"], lab["host2"], lab["locked"]]
        response = post_action(admin_client, "host", action, hosts)
        assert response.status_code == 302
        queued = self.queued(task)
        assert sorted(t.host.hostname for t in queued) == ["host1", "host2", "locked1"]
        assert {t.requested_by for t in queued} == {admin_afe_user}
        assert not SpecialTask.objects.exclude(task=task).exists()

    def test_running_it_again_does_not_queue_duplicates(self, admin_client, lab, action, task):
        post_action(admin_client, "host", action, [lab["host1"]])
        post_action(admin_client, "host", action, [lab["host1"], lab["host2"]])
        assert sorted(self.queued(task).values_list("host__hostname", flat=True)) == ["host1", "host2"]

    def test_finished_or_running_tasks_do_not_count_as_queued(
        self, admin_client, lab, system_user, action, task
    ):
        make_task(lab["host1"], system_user, "Completed", task=task)
        make_task(lab["host2"], system_user, "Running", task=task)
        post_action(admin_client, "host", action, [lab["host1"], lab["host2"]])
        assert sorted(self.queued(task).values_list("host__hostname", flat=True)) == ["host1", "host2"]


class TestDeletingHosts:
    def test_bulk_delete_is_a_soft_delete_hidden_from_the_changelist(self, admin_client, lab):
        hosts = [lab["host1"], lab["host2"]]
        confirm = post_action(admin_client, "host", "delete_selected", hosts)
        assert confirm.status_code == 200
        assert not any(host.invalid for host in refreshed(hosts))

        response = post_action(admin_client, "host", "delete_selected", hosts, post="yes")
        assert response.status_code == 302
        assert all(host.invalid for host in refreshed(hosts))
        assert shown_hostnames(admin_client.get(changelist_url("host"))) == {"host3", "locked1"}

    def test_delete_page_soft_deletes_the_host(self, admin_client, lab):
        host = lab["host3"]
        url = reverse("admin:afe_host_delete", args=[host.pk])
        response = admin_client.post(url, {"post": "yes"})
        assert response.status_code == 302
        assert Host.objects.get(pk=host.pk).invalid
        assert admin_client.get(change_url(host)).status_code == 302  # no longer reachable

    def test_hosts_with_history_can_be_soft_deleted_too(self, admin_client, lab, system_user):
        make_task(lab["host1"], system_user, "Completed")
        make_job(system_user, "old_job", ["host2"])
        hosts = [lab["host1"], lab["host2"]]
        response = post_action(admin_client, "host", "delete_selected", hosts, post="yes")
        assert "Cannot delete" not in response.content.decode()
        assert response.status_code == 302
        assert all(host.invalid for host in refreshed(hosts))
        # The history stays attached to the (now invalid) rows.
        assert SpecialTask.objects.filter(host=lab["host1"]).exists()
        assert HostQueueEntry.objects.filter(host=lab["host2"]).exists()


def test_labels_used_as_metahosts_can_be_soft_deleted(admin_client, lab, system_user):
    Job.create(owner=system_user, name="any_pool_a", control_file="x", meta_hosts=["pool:a"])
    label = Label.objects.get(name="pool:a")
    response = post_action(admin_client, "label", "delete_selected", [label], post="yes")
    assert "Cannot delete" not in response.content.decode()
    assert Label.objects.get(pk=label.pk).invalid


# --------------------------------------------------------------------------- special tasks


@pytest.fixture
def tasks_in_every_state(lab, system_user) -> dict[str, SpecialTask]:
    return {
        state: make_task(lab[host], system_user, state)
        for state, host in [
            ("Queued", "host1"), ("Running", "host2"), ("Completed", "host3"), ("Failed", "locked"),
        ]
    }


@pytest.mark.parametrize("state", ["Queued", "Running", "Completed", "Failed"])
def test_special_task_state_filter_shows_only_tasks_in_that_state(admin_client, tasks_in_every_state, state):
    response = admin_client.get(changelist_url("specialtask"), {"state": state})
    assert shown(response) == [tasks_in_every_state[state]]


def test_special_task_changelist_shows_every_task_without_a_filter(admin_client, tasks_in_every_state):
    response = admin_client.get(changelist_url("specialtask"))
    assert {task.pk for task in shown(response)} == {t.pk for t in tasks_in_every_state.values()}


def test_abort_tasks_flags_only_the_active_ones(admin_client, tasks_in_every_state, lab, system_user):
    second_running = make_task(lab["host3"], system_user, "Running", task=Task.REPAIR)
    selected = [*tasks_in_every_state.values(), second_running]
    response = post_action(admin_client, "specialtask", "abort_tasks", selected)
    assert response.status_code == 302
    aborted = {task.pk: task.is_aborted for task in refreshed(selected)}
    assert aborted == {
        tasks_in_every_state["Queued"].pk: False,
        tasks_in_every_state["Running"].pk: True,
        tasks_in_every_state["Completed"].pk: False,
        tasks_in_every_state["Failed"].pk: False,
        second_running.pk: True,
    }


# --------------------------------------------------------------------------- job and entry aborts


@pytest.fixture
def suite(lab, system_user):
    """A parent job on host1+host2 (host2's entry already complete), a child, a grandchild
    and an unrelated job."""
    parent = make_job(system_user, "suite", ["host1", "host2"])
    done = parent.hostqueueentry_set.get(host__hostname="host2")
    done.status = Status.COMPLETED
    done.save()
    child = make_job(system_user, "child", ["host3"], parent_job=parent)
    grandchild = make_job(system_user, "grandchild", ["host1"], parent_job=child)
    other = make_job(system_user, "other", ["host2", "host3"])
    return {"parent": parent, "done": done, "child": child, "grandchild": grandchild, "other": other}


def aborted_entries() -> set[tuple[str, str]]:
    return {
        (entry.job.name, entry.host.hostname)
        for entry in HostQueueEntry.objects.filter(aborted=True).select_related("job", "host")
    }


def recorded_aborts() -> dict[tuple[str, str], User]:
    return {
        (row.queue_entry.job.name, row.queue_entry.host.hostname): row.aborted_by
        for row in AbortedHostQueueEntry.objects.select_related("queue_entry__job", "queue_entry__host", "aborted_by")
    }


EXPECTED_SUITE_ABORT = {("suite", "host1"), ("child", "host3"), ("grandchild", "host1")}


def test_abort_jobs_aborts_incomplete_entries_of_the_job_and_its_children(admin_client, suite, admin_afe_user):
    response = post_action(admin_client, "job", "abort_jobs", [suite["parent"]])
    assert response.status_code == 302
    assert aborted_entries() == EXPECTED_SUITE_ABORT
    assert recorded_aborts() == {key: admin_afe_user for key in EXPECTED_SUITE_ABORT}
    # The complete entry and the unrelated job are untouched; statuses are left to the scheduler.
    done = HostQueueEntry.objects.get(pk=suite["done"].pk)
    assert (done.aborted, done.status) == (False, Status.COMPLETED)
    assert not suite["other"].hostqueueentry_set.filter(aborted=True).exists()
    assert set(HostQueueEntry.objects.filter(aborted=True).values_list("status", flat=True)) == {Status.QUEUED}


def test_abort_jobs_twice_records_each_abort_once(admin_client, suite):
    post_action(admin_client, "job", "abort_jobs", [suite["parent"]])
    post_action(admin_client, "job", "abort_jobs", [suite["parent"], suite["child"]])
    assert AbortedHostQueueEntry.objects.count() == len(EXPECTED_SUITE_ABORT)


def test_abort_entries_aborts_only_the_chosen_incomplete_entries_and_their_jobs_children(
    admin_client, suite, admin_afe_user
):
    chosen = [
        suite["parent"].hostqueueentry_set.get(host__hostname="host1"),
        suite["done"],
        suite["other"].hostqueueentry_set.get(host__hostname="host3"),
    ]
    response = post_action(admin_client, "hostqueueentry", "abort_entries", chosen)
    assert response.status_code == 302
    expected = {("suite", "host1"), ("other", "host3"), ("child", "host3"), ("grandchild", "host1")}
    assert aborted_entries() == expected
    assert recorded_aborts() == {key: admin_afe_user for key in expected}
    assert not HostQueueEntry.objects.get(pk=suite["done"].pk).aborted
    assert not suite["other"].hostqueueentry_set.get(host__hostname="host2").aborted


# --------------------------------------------------------------------------- query counts


def _hosts(tag: str, n: int, **fields) -> list[Host]:
    return [Host.objects.create(hostname=f"{tag}-{i}", **fields) for i in range(n)]


def _jobs_with_children(tag: str, n: int) -> list[Job]:
    owner = User.system_user()
    jobs = []
    for i, host in enumerate(_hosts(tag, n)):
        job = make_job(owner, f"{tag}-job-{i}", [host])
        make_job(owner, f"{tag}-child-{i}", [host], parent_job=job)
        jobs.append(job)
    return jobs


def _all_entries_aborted(jobs: list[Job]) -> bool:
    entries = HostQueueEntry.objects.filter(job__in=jobs) | HostQueueEntry.objects.filter(job__parent_job__in=jobs)
    return entries.count() == 2 * len(jobs) and not entries.filter(aborted=False).exists()


@dataclass
class ActionCase:
    model_name: str
    action: str
    make_rows: Callable[[str, int], list]
    succeeded: Callable[[list], bool]
    extra: dict = field(default_factory=dict)


ACTION_CASES = {
    "lock_hosts": ActionCase(
        "host", "lock_hosts", lambda tag, n: _hosts(tag, n),
        lambda hosts: all(h.locked for h in refreshed(hosts)),
        extra={"apply": "1", "lock_reason": "bulk maintenance"},
    ),
    "unlock_hosts": ActionCase(
        "host", "unlock_hosts", lambda tag, n: _hosts(tag, n, locked=True, lock_reason="old"),
        lambda hosts: not any(h.locked for h in refreshed(hosts)),
    ),
    "reverify_hosts": ActionCase(
        "host", "reverify_hosts", lambda tag, n: _hosts(tag, n),
        lambda hosts: SpecialTask.objects.queued().filter(host__in=hosts, task=Task.VERIFY).count() == len(hosts),
    ),
    "repair_hosts": ActionCase(
        "host", "repair_hosts", lambda tag, n: _hosts(tag, n),
        lambda hosts: SpecialTask.objects.queued().filter(host__in=hosts, task=Task.REPAIR).count() == len(hosts),
    ),
    "abort_tasks": ActionCase(
        "specialtask", "abort_tasks",
        lambda tag, n: [make_task(h, User.system_user(), "Running") for h in _hosts(tag, n)],
        lambda tasks: all(t.is_aborted for t in refreshed(tasks)),
    ),
    "abort_jobs": ActionCase(
        "job", "abort_jobs", _jobs_with_children, _all_entries_aborted,
    ),
    "abort_entries": ActionCase(
        "hostqueueentry", "abort_entries",
        lambda tag, n: [job.hostqueueentry_set.get() for job in _jobs_with_children(tag, n)],
        lambda entries: _all_entries_aborted([e.job for e in entries]),
    ),
}


@pytest.mark.parametrize("case", ACTION_CASES.values(), ids=ACTION_CASES.keys())
def test_every_admin_action_costs_the_same_queries_for_2_and_for_10_rows(admin_client, case):
    def run(n: int) -> list[str]:
        rows = case.make_rows(f"q{n}", n)
        with CaptureQueriesContext(connection) as captured:
            response = post_action(admin_client, case.model_name, case.action, rows, **case.extra)
        assert response.status_code == 302
        assert case.succeeded(rows), f"{case.action} did not act on all {n} rows"
        return [query["sql"] for query in captured.captured_queries]

    run(1)  # warm up per-process caches (content types, the session, the AFE user)
    two, ten = run(2), run(10)
    assert len(two) == len(ten), "\n".join(["2 rows:", *two, "", "10 rows:", *ten])


def test_the_drone_list_shows_each_drones_state_and_lowers_capacity_or_disables(admin_client, db):
    from datetime import timedelta

    from django.test.utils import CaptureQueriesContext
    from django.db import connection
    from django.utils import timezone

    from afe.models import Drone
    from drones.models import Process

    live = Drone.objects.create(hostname="live1", max_processes=8, heartbeat_at=timezone.now(),
                                worker_machine="rack1", worker_pid=4321)
    Drone.objects.create(hostname="dead1", max_processes=4, heartbeat_at=timezone.now() - timedelta(hours=1))
    Process.objects.create(kind="job", command=["true"], working_dir="/r", log_file="/r/l", drone="live1",
                           state="running", num_processes=3)
    Process.objects.create(kind="job", command=["true"], working_dir="/r", log_file="/r/l", drone="live1",
                           state="exited", num_processes=5)
    url = changelist_url("drone")
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url)
    assert page.status_code == 200
    rows = {row.split("</th>")[0].rsplit(">", 2)[-2].split("<")[0]: row for row in
            page.content.decode().split('<tr')[1:] if "field-hostname" in row}
    assert 'alt="True"' in rows["live1"] and 'alt="False"' in rows["dead1"]
    assert '<td class="field-running">3</td>' in rows["live1"]
    assert '<td class="field-running">0</td>' in rows["dead1"]
    few = len(queries)
    for i in range(10):
        Drone.objects.create(hostname=f"more{i}", max_processes=1, heartbeat_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(url)
    assert len(queries) == few  # one query for the rows, whatever their number

    change = admin_client.get(change_url(live))
    assert change.status_code == 200
    response = admin_client.post(change_url(live),
                                 {"hostname": "live1", "enabled": "", "max_processes_limit": "2"})
    assert response.status_code == 302, response.content.decode()[:2000]
    live.refresh_from_db()
    assert (live.enabled, live.max_processes_limit, live.capacity) == (False, 2, 2)
    assert live.max_processes == 8 and live.worker_pid == 4321  # what the drone reported stays
