"""Special task, misc and TKO methods as server/frontend.py, atest and the web UI call them."""
from __future__ import annotations

import datetime
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from afe.models import (
    AclGroup, DroneSet, Host, HostQueueEntry, Job, Label, SpecialTask, TkoIterationAttribute, TkoIterationResult,
    TkoJob, TkoJobKeyval, TkoKernel, TkoMachine, TkoStatus, TkoTest, TkoTestAttribute, TkoTestLabel, User,
)
from tests.rpc_client import AfeRpc, RpcFailed

CONTROL = "job.run_test('sleeptest')\n"
DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
T0 = datetime.datetime(2026, 1, 5, 10, 0, 0)


@pytest.fixture
def rpc(client, db, alice) -> AfeRpc:
    return AfeRpc(client)


@pytest.fixture
def bob_rpc(client, db) -> AfeRpc:
    User.objects.get_or_create(login="bob")
    return AfeRpc(client, login="bob")


@pytest.fixture
def root_rpc(client, system_user) -> AfeRpc:
    return AfeRpc(client, login="autotest_system")


@pytest.fixture
def tko_rpc(client, db, alice) -> AfeRpc:
    return AfeRpc(client, path="/new_tko/server/noauth/rpc/")


@pytest.fixture
def private_host(make_host, private_group):
    """host-p, in alice's group team-a (so no longer in Everyone)."""
    host = make_host("host-p", ["board:x"])
    private_group.hosts.add(host)
    AclGroup.rebalance_everyone()
    return host


def raw_call(rpc: AfeRpc, body: str) -> object:
    answer = rpc.raw(body)
    if answer["error"] is not None:
        raise RpcFailed(answer["error"])
    return answer["result"]


def _entry(owner: User, host: Host, name: str = "job", **fields) -> HostQueueEntry:
    job = Job.objects.create(owner=owner.login, name=name, control_file=CONTROL)
    return HostQueueEntry.objects.create(job=job, host=host, execution_subdir=host.hostname, **fields)


def _task(host: Host, task: str, by: User, started=None, finished=None, **fields) -> SpecialTask:
    row = SpecialTask.objects.create(host=host, task=task, requested_by=by, **fields)
    SpecialTask.objects.filter(pk=row.pk).update(time_started=started, time_finished=finished)
    row.refresh_from_db()
    return row


# --- reverify_hosts / repair_hosts -----------------------------------------------------------------


def test_reverify_exactly_as_server_frontend_sends_it(rpc, lab, alice):
    body = json.dumps({"method": "reverify_hosts", "params": [{
        "locked": False, "aclgroup__users__login": "alice", "hostname__in": ["host2", "host1", "locked1", "ghost"]}],
        "id": "jsonrpc"})
    assert raw_call(rpc, body) == ["host1", "host2"]  # locked1 is locked, ghost does not exist
    tasks = SpecialTask.objects.order_by("host__hostname")
    assert [(t.host.hostname, t.task, t.requested_by.login, t.is_active) for t in tasks] == [
        ("host1", "Verify", "alice", False), ("host2", "Verify", "alice", False)]


def test_repair_by_id_as_the_ui_sends_it_and_a_queued_task_is_not_doubled(rpc, lab):
    ids = [str(lab["host3"].pk), lab["host1"].pk]
    assert rpc.repair_hosts(id__in=ids) == ["host1", "host3"]
    assert rpc.repair_hosts(id__in=ids) == ["host1", "host3"]
    assert SpecialTask.objects.filter(task="Repair").count() == 2
    assert rpc.reverify_hosts(id=lab["host1"].pk) == ["host1"]
    assert SpecialTask.objects.count() == 3


def test_reverify_refuses_an_empty_or_bad_filter_and_writes_nothing(rpc, lab):
    with pytest.raises(RpcFailed) as failed:
        rpc.reverify_hosts()
    assert "filter" in failed.value.problem_keys
    with pytest.raises(RpcFailed) as failed:
        rpc.repair_hosts(nonsense="x")
    assert "nonsense" in failed.value.problem_keys
    with pytest.raises(RpcFailed) as failed:
        rpc.repair_hosts(hostname__in="host1")
    assert failed.value.name == "ValidationError"
    assert not SpecialTask.objects.exists()


class TestReverifyAcl:
    @pytest.mark.parametrize("method", ["reverify_hosts", "repair_hosts"])
    def test_a_non_member_cannot_touch_a_host_of_a_private_group(self, bob_rpc, private_host, method):
        with pytest.raises(RpcFailed) as failed:
            bob_rpc.call(method, hostname__in=["host-p"])
        assert failed.value.name == "AclAccessViolation" and failed.value.message.startswith("host_acl:")
        assert "host-p" in failed.value.message
        assert not SpecialTask.objects.exists()

    def test_one_refused_host_refuses_the_whole_call(self, bob_rpc, private_host, lab):
        with pytest.raises(RpcFailed):
            bob_rpc.reverify_hosts(hostname__in=["host1", "host-p"])
        assert not SpecialTask.objects.exists()

    @pytest.mark.parametrize("method", ["reverify_hosts", "repair_hosts"])
    def test_a_member_may(self, rpc, private_host, method):
        assert rpc.call(method, hostname__in=["host-p"]) == ["host-p"]
        assert SpecialTask.objects.get().requested_by.login == "alice"

    def test_the_frontend_filter_only_finds_the_callers_hosts(self, bob_rpc, private_host):
        assert bob_rpc.reverify_hosts(locked=False, aclgroup__users__login="bob", hostname__in=["host-p"]) == []
        assert not SpecialTask.objects.exists()

    @pytest.mark.parametrize("method", ["reverify_hosts", "repair_hosts"])
    def test_a_host_only_in_everyone_is_anyones(self, bob_rpc, lab, method):
        assert bob_rpc.call(method, locked=False, aclgroup__users__login="bob", hostname__in=["host1"]) == ["host1"]
        assert SpecialTask.objects.get().requested_by.login == "bob"

    def test_root_may_touch_any_host(self, root_rpc, private_host):
        assert root_rpc.repair_hosts(hostname="host-p") == ["host-p"]


# --- abort_special_tasks ---------------------------------------------------------------------------


def test_abort_special_tasks_aborts_only_active_tasks(rpc, lab, alice):
    running = _task(lab["host1"], "Verify", alice, started=T0, is_active=True)
    queued = _task(lab["host2"], "Repair", alice)
    done = _task(lab["host3"], "Cleanup", alice, started=T0, finished=T0, is_complete=True)
    assert rpc.abort_special_tasks(id__in=[str(running.pk), queued.pk, done.pk]) is None
    assert dict(SpecialTask.objects.values_list("pk", "is_aborted")) == {running.pk: True, queued.pk: False,
                                                                          done.pk: False}


def test_abort_special_tasks_refuses_a_missing_or_bad_filter(rpc, lab, alice):
    running = _task(lab["host1"], "Verify", alice, started=T0, is_active=True)
    for kwargs in ({}, {"bogus": 1}, {"id__in": 5}, {"id": "x"}):
        with pytest.raises(RpcFailed) as failed:
            rpc.abort_special_tasks(**kwargs)
        assert failed.value.name == "ValidationError", kwargs
    assert not SpecialTask.objects.get(pk=running.pk).is_aborted


def test_abort_special_tasks_pages_like_other_filters(rpc, lab, alice):
    first = _task(lab["host1"], "Verify", alice, started=T0, is_active=True)
    second = _task(lab["host2"], "Verify", alice, started=T0, is_active=True)
    rpc.abort_special_tasks(is_active=True, query_limit=1, sort_by=["-id"])
    assert dict(SpecialTask.objects.values_list("pk", "is_aborted")) == {first.pk: False, second.pk: True}


# --- get_special_tasks and friends -----------------------------------------------------------------


def test_get_special_tasks_renders_what_server_frontend_reads(rpc, lab, alice):
    entry = _entry(alice, lab["host1"])
    with_entry = _task(lab["host1"], "Verify", alice, queue_entry=entry)
    plain = _task(lab["host2"], "Repair", alice, started=T0, finished=T0 + datetime.timedelta(minutes=5),
                  is_complete=True, success=True)
    rows = rpc.get_special_tasks(sort_by=["id"])
    assert [r["id"] for r in rows] == [with_entry.pk, plain.pk]
    first, second = rows
    assert first["task"] == "Verify" and first["requested_by"] == "alice"
    assert first["host"]["hostname"] == "host1" and first["host"]["labels"] == ["board:x", "pool:a"]
    assert first["queue_entry"]["id"] == entry.pk and first["queue_entry"]["job"]["id"] == entry.job_id
    assert DATETIME.match(first["time_requested"])
    assert first["is_active"] is False and first["is_complete"] is False and first["success"] is False
    assert first["time_started"] is None
    assert second["queue_entry"] is None and second["host"]["hostname"] == "host2"
    assert second["time_started"] == "2026-01-05 10:00:00" and second["time_finished"] == "2026-01-05 10:05:00"
    assert second["success"] is True and second["is_complete"] is True
    assert [r["id"] for r in rpc.get_special_tasks(task="Repair")] == [plain.pk]
    assert [r["id"] for r in rpc.get_special_tasks(host__hostname="host1", time_started__isnull=True)] == [with_entry.pk]
    assert rpc.get_special_tasks(time_started__gte="2026-01-05 09:00:00")[0]["id"] == plain.pk
    assert rpc.get_num_special_tasks() == 2 and rpc.get_num_special_tasks(task="Verify", query_limit=0) == 1


def test_get_special_tasks_refuses_bad_filters(rpc, db):
    for kwargs in ({"bogus": 1}, {"host__apitoken__key": "x"}, {"query_limit": -1}, {"sort_by": ["nope"]},
                   {"time_started__gte": "yesterday"}):
        with pytest.raises(RpcFailed) as failed:
            rpc.get_special_tasks(**kwargs)
        assert failed.value.name == "ValidationError", kwargs


def test_host_special_tasks_by_id_or_hostname(rpc, lab, alice):
    mine = _task(lab["host1"], "Verify", alice)
    _task(lab["host1"], "Cleanup", alice)
    _task(lab["host2"], "Verify", alice)
    assert [r["id"] for r in rpc.get_host_special_tasks(lab["host1"].pk, task="Verify")] == [mine.pk]
    assert len(rpc.get_host_special_tasks(host_id="host1", sort_by=["-id"], query_limit=5)) == 2
    assert rpc.get_host_num_special_tasks(host="host1") == 2
    assert rpc.get_host_num_special_tasks(host=str(lab["host2"].pk), task="Cleanup") == 0
    with pytest.raises(RpcFailed) as failed:
        rpc.get_host_special_tasks(host_id="ghost")
    assert failed.value.name == "DoesNotExist" and "ghost" in failed.value.message
    with pytest.raises(RpcFailed) as failed:
        rpc.get_host_num_special_tasks()
    assert "arguments" in failed.value.problem_keys


def test_get_special_tasks_reads_a_fixed_number_of_queries(rpc, make_host, alice, figures):
    counts = []
    hosts = []
    for size in (10, 100):
        while len(hosts) < size:
            n = len(hosts)
            host = make_host(f"st{n:03d}", ["board:s", f"pool:{n % 3}"])
            host.set_attribute("ssh_port", "22")
            entry = _entry(alice, host, name=f"j{n}") if n % 2 else None
            _task(host, "Verify" if n % 3 else "Repair", alice, queue_entry=entry)
            hosts.append(host)
        rpc.get_num_special_tasks()
        with CaptureQueriesContext(connection) as queries:
            rows = rpc.get_special_tasks(host__labels__name="board:s")
        assert len(rows) == size
        counts.append(len(queries))
        figures.append(f"get_special_tasks on {connection.vendor}: {size} tasks → {len(queries)} queries")
    assert counts[0] == counts[1] and counts[0] <= 16


# --- host history ----------------------------------------------------------------------------------


@pytest.fixture
def history(lab, alice):
    """host1's history, oldest first: a repair, a verify for job A, job A, a cleanup after it."""
    host = lab["host1"]
    repair = _task(host, "Repair", alice, started=T0, finished=T0 + datetime.timedelta(minutes=1),
                   is_complete=True, success=True)
    entry = _entry(alice, host, name="A", status="Completed", complete=True,
                   started_on=T0 + datetime.timedelta(minutes=10))
    verify = _task(host, "Verify", alice, queue_entry=entry, started=T0 + datetime.timedelta(minutes=9),
                   finished=T0 + datetime.timedelta(minutes=10), is_complete=True, success=True)
    cleanup = _task(host, "Cleanup", alice, started=T0 + datetime.timedelta(minutes=30), is_active=True)
    _task(lab["host2"], "Verify", alice, started=T0)  # another host's
    return {"repair": repair, "entry": entry, "verify": verify, "cleanup": cleanup}


def test_host_history_interleaves_jobs_and_tasks_newest_first(rpc, lab, history):
    rows = rpc.get_host_queue_entries_and_special_tasks(host=lab["host1"].pk)
    assert [r["type"] for r in rows] == ["Cleanup", "Job", "Verify", "Repair"]
    cleanup, job, verify, repair = rows
    entry = history["entry"]
    assert job == {
        "type": "Job", "host": job["host"], "job": job["job"], "execution_path": f"{entry.job_id}-alice/host1",
        "status": "Completed", "started_on": "2026-01-05 10:10:00", "id": f"{entry.pk}Job", "oid": entry.pk}
    assert job["host"]["hostname"] == "host1" and job["job"]["id"] == entry.job_id and job["job"]["name"] == "A"
    assert cleanup["id"] == f"{history['cleanup'].pk}Cleanup" and cleanup["oid"] == history["cleanup"].pk
    assert cleanup["status"] == "Running" and cleanup["job"] is None
    assert cleanup["execution_path"] == f"hosts/host1/{history['cleanup'].pk}-cleanup"
    assert verify["job"]["id"] == entry.job_id and verify["status"] == "Completed"
    assert repair["job"] is None and repair["started_on"] == "2026-01-05 10:00:00"
    assert rpc.get_num_host_queue_entries_and_special_tasks(host="host1") == 4


def test_host_history_pages_and_bounds_by_time(rpc, lab, history):
    paged = rpc.get_host_queue_entries_and_special_tasks(host="host1", query_start=1, query_limit=2)
    assert [r["type"] for r in paged] == ["Job", "Verify"]
    assert rpc.get_host_queue_entries_and_special_tasks(host="host1", query_start="3", query_limit="5")[0]["type"] == "Repair"
    window = rpc.get_host_queue_entries_and_special_tasks(host="host1", start_time="2026-01-05 10:05:00",
                                                          end_time="2026-01-05 10:20:00")
    assert [r["type"] for r in window] == ["Job", "Verify"]
    assert rpc.get_num_host_queue_entries_and_special_tasks(host="host1", start_time="2026-01-05 10:05:00",
                                                            end_time="2026-01-05 10:20:00") == 2


def test_host_history_refuses_bad_arguments(rpc, lab, history):
    for kwargs in ({"host": "ghost"}, {"host": "host1", "query_limit": -3}, {"host": "host1", "query_start": "x"},
                   {"host": "host1", "start_time": "soon"}, {"host": "host1", "query_limit": 10**9},
                   {"host": "host1", "query_start": 9_000, "query_limit": 9_000}, {"host": "host1", "bogus": 1}):
        with pytest.raises(RpcFailed) as failed:
            rpc.get_host_queue_entries_and_special_tasks(**kwargs)
        assert failed.value.name in ("ValidationError", "DoesNotExist"), kwargs


def test_host_history_reads_a_fixed_number_of_queries(rpc, lab, alice, figures):
    host = lab["host1"]
    counts = []
    made = 0
    for size in (10, 100):
        while made < size:
            entry = _entry(alice, host, name=f"h{made}", started_on=T0 + datetime.timedelta(minutes=made))
            _task(host, "Verify", alice, queue_entry=entry, started=T0 + datetime.timedelta(minutes=made))
            _task(host, "Cleanup", alice, started=T0 + datetime.timedelta(minutes=made, seconds=30))
            made += 1
        rpc.get_num_special_tasks()
        with CaptureQueriesContext(connection) as queries:
            rows = rpc.get_host_queue_entries_and_special_tasks(host="host1")
        assert len(rows) == 3 * size
        assert [r["type"] for r in rows[:3]] == ["Cleanup", "Job", "Verify"]
        counts.append(len(queries))
        figures.append(f"get_host_queue_entries_and_special_tasks on {connection.vendor}: {3 * size} rows → "
                       f"{len(queries)} queries")
    assert counts[0] == counts[1]


def test_status_task_and_diagnosis_interval(rpc, lab, alice):
    host = lab["host1"]
    minutes = lambda m: T0 + datetime.timedelta(minutes=m)  # noqa: E731
    good = _task(host, "Verify", alice, started=minutes(0), finished=minutes(1), is_complete=True, success=True)
    _task(host, "Verify", alice, started=minutes(2), finished=minutes(3), is_complete=True, success=False)
    broken = _task(host, "Repair", alice, started=minutes(4), finished=minutes(5), is_complete=True, success=False)
    fixed = _task(host, "Repair", alice, started=minutes(6), finished=minutes(8), is_complete=True, success=True)
    assert rpc.get_host_status_task(host.pk, "2026-01-05 10:03:30")["id"] == good.pk  # a failed Verify decides nothing
    task = rpc.get_status_task(host_id="host1", end_time="2026-01-05 10:05:00")
    assert task["id"] == broken.pk and task["host"]["hostname"] == "host1" and task["queue_entry"] is None
    assert rpc.get_host_status_task(host.pk, "2026-01-05 09:00:00") is None
    # Broken at 10:05:30: the interval from the last working task to the failed Repair.
    assert rpc.get_host_diagnosis_interval(host.pk, "2026-01-05 10:05:30", True) == [
        "2026-01-05 10:00:00", "2026-01-05 10:05:00"]
    # Working again at 10:30: from the failed Repair to the Repair that fixed it.
    assert rpc.get_host_diagnosis_interval(host.pk, "2026-01-05 10:30:00", False) == [
        "2026-01-05 10:04:00", "2026-01-05 10:08:00"]
    assert rpc.get_host_status_task(host.pk, "2026-01-05 10:30:00")["id"] == fixed.pk
    # No change of status after the last working task, or none before it at all.
    assert rpc.get_host_diagnosis_interval(host.pk, "2026-01-05 10:30:00", True) == []
    assert rpc.get_host_diagnosis_interval(host.pk, "2026-01-05 10:00:30", "true") == []
    for call in (lambda: rpc.get_host_status_task(host.pk, "not a time"),
                 lambda: rpc.get_host_diagnosis_interval(host.pk, "2026-01-05 10:30:00", "maybe"),
                 lambda: rpc.get_status_task(host_id="ghost", end_time="2026-01-05 10:00:00")):
        with pytest.raises(RpcFailed) as failed:
            call()
        assert failed.value.name in ("ValidationError", "DoesNotExist")


# --- misc ------------------------------------------------------------------------------------------


def test_get_static_data_has_what_the_ui_and_frontend_read(rpc, lab, settings):
    Label.objects.create(name="cros-version:R1-1.0")
    Label.objects.create(name="fwrw-version:x")
    Label.objects.create(name="zplat", platform=True)
    DroneSet.objects.create(name="b-set")
    DroneSet.objects.create(name="a-set")
    settings.SCHEDULER = {**settings.SCHEDULER, "default_drone_set": "b-set"}
    data = rpc.get_static_data()
    assert data["priorities"] == [[10, "Weekly"], [20, "Daily"], [30, "PostBuild"], [40, "Default"], [50, "Build"],
                                  [60, "PFQ"], [70, "CQ"], [80, "Super"]]
    assert data["default_priority"] == "Default" and data["max_schedulable_priority"] == 40
    assert [label["name"] for label in data["labels"]] == ["zplat", "board:x", "board:y", "pool:a"]
    assert data["current_user"]["login"] == "alice" and data["current_user"]["reboot_before"] == "If dirty"
    assert [u["login"] for u in data["users"]] == sorted(u["login"] for u in data["users"])
    assert "Repair Failed" in data["host_statuses"] and data["host_statuses"] == sorted(data["host_statuses"])
    assert "Queued" in data["job_statuses"]
    assert data["job_timeout_mins_default"] == settings.JOB_TIMEOUT_MINS_DEFAULT
    assert data["job_max_runtime_mins_default"] == settings.JOB_MAX_RUNTIME_MINS_DEFAULT
    assert data["parse_failed_repair_default"] is False
    assert data["reboot_before_options"] == ["Never", "If dirty", "Always"]
    assert data["reboot_after_options"] == ["Never", "If all tests passed", "Always"]
    assert data["drone_sets_enabled"] is True and data["drone_sets"] == ["b-set", "a-set"]
    assert data["status_dictionary"]["Starting"] == "Next in host's queue"
    assert data["tests"] == [] and data["profilers"] == [] and data["motd"] == ""
    assert data["wmatrix_url"] == "" and data["stainless_url"] == "" and data["is_moblab"] is False


def test_get_static_data_without_drone_sets(rpc, db):
    data = rpc.get_static_data()
    assert data["drone_sets_enabled"] is False and data["drone_sets"] == []


def test_small_misc_methods(rpc, db):
    assert rpc.echo(data="hi") == "hi" and rpc.echo() == "" and rpc.echo(data={"a": [1]}) == {"a": [1]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", rpc.get_server_time())
    assert rpc.ping_db() == [True]
    assert rpc.get_motd() == ""
    assert rpc.get_tests(experimental=False) == [] and rpc.get_profilers(sort_by=["name"]) == []
    assert rpc.get_stable_version() == "" and rpc.get_stable_version(board="lumpy") == ""
    assert rpc.get_all_stable_versions() == {}
    with pytest.raises(RpcFailed) as failed:
        rpc.echo(data="x", extra=1)
    assert "arguments" in failed.value.problem_keys
    with pytest.raises(RpcFailed) as failed:
        rpc.get_stable_version(board=["x"])
    assert "board" in failed.value.problem_keys


def test_get_static_data_reads_a_fixed_number_of_queries(rpc, db, figures):
    counts = []
    for size in (10, 100):
        for n in range(Label.objects.count(), size):
            Label.objects.create(name=f"l{n:03d}")
            User.objects.create(login=f"u{n:03d}")
        with CaptureQueriesContext(connection) as queries:
            rpc.get_static_data()
        counts.append(len(queries))
    figures.append(f"get_static_data on {connection.vendor}: 100 labels and users → {counts[1]} queries")
    assert counts[0] == counts[1]


# --- TKO -------------------------------------------------------------------------------------------


@pytest.fixture
def tko(db):
    """Job 12 of alice on host1 (five tests) and job 120 of bob on host2 (one test)."""
    ids = TkoStatus.ids_by_word()
    kernel = TkoKernel.objects.create(kernel_hash="UNKNOWN", base="UNKNOWN", printable="UNKNOWN")
    host1 = TkoMachine.objects.create(hostname="host1", machine_group="board:x")
    host2 = TkoMachine.objects.create(hostname="host2")
    job = TkoJob.objects.create(tag="12-alice/host1", label="alice-job", username="alice", machine=host1,
                                afe_job_id=12, started_time=T0)
    other = TkoJob.objects.create(tag="120-bob/host2", username="bob", machine=host2, afe_job_id=120)
    TkoJobKeyval.objects.create(job=job, key="build", value="R1")

    def test(tko_job, name, status, reason="", machine=host1, **fields):
        return TkoTest.objects.create(job=tko_job, test=name, subdir=name, kernel=kernel, status_id=ids[status],
                                      reason=reason, machine=machine, **fields)

    tests = {
        "server": test(job, "SERVER_JOB", "GOOD", started_time=T0, finished_time=T0 + datetime.timedelta(minutes=3)),
        "sleep": test(job, "sleeptest", "GOOD"),
        "fail": test(job, "failtest", "FAIL", "boom"),
        "fail2": test(job, "failtest2", "FAIL", "boom"),
        "running": test(job, "longtest", "RUNNING"),
        "na": test(job, "natest", "TEST_NA"),
        "other": test(other, "sleeptest", "GOOD", machine=host2),
    }
    TkoTestAttribute.objects.create(test=tests["sleep"], attribute="version", value="1")
    TkoIterationAttribute.objects.create(test=tests["sleep"], iteration=1, attribute="mode", value="fast")
    TkoIterationResult.objects.create(test=tests["sleep"], iteration=1, attribute="seconds", value=1.5)
    TkoIterationResult.objects.create(test=tests["sleep"], iteration=2, attribute="seconds", value=2.5)
    label = TkoTestLabel.objects.create(name="flaky")
    label.tests.add(tests["sleep"])
    return tests


def test_get_status_counts_exactly_as_server_frontend_sends_it(tko_rpc, tko):
    body = json.dumps({"method": "get_status_counts", "params": [{
        "group_by": ["hostname", "test_name", "reason"], "job_tag__startswith": "12-"}], "id": "jsonrpc"})
    result = raw_call(tko_rpc, body)
    groups = {g["test_name"]: g for g in result["groups"]}
    assert set(groups) == {"SERVER_JOB", "sleeptest", "failtest", "failtest2", "longtest", "natest"}
    assert groups["sleeptest"] == {"hostname": "host1", "test_name": "sleeptest", "reason": "", "pass_count": 1,
                                   "complete_count": 1, "incomplete_count": 0, "group_count": 1}
    assert groups["failtest"]["reason"] == "boom" and groups["failtest"]["pass_count"] == 0
    assert groups["failtest"]["complete_count"] == 1
    assert groups["longtest"]["incomplete_count"] == 1 and groups["longtest"]["complete_count"] == 0
    assert groups["natest"]["complete_count"] == 0


def test_status_counts_group_and_header_values(tko_rpc, tko):
    by_status = tko_rpc.get_status_counts(group_by=["status"], job_tag__startswith="12-")
    assert {g["status"]: g["group_count"] for g in by_status["groups"]} == {
        "GOOD": 2, "FAIL": 2, "RUNNING": 1, "TEST_NA": 1}
    totals = tko_rpc.get_status_counts(group_by=[], afe_job_id=12)["groups"]
    assert totals == [{"group_count": 6, "pass_count": 2, "complete_count": 4, "incomplete_count": 1}]
    by_host = tko_rpc.get_status_counts(group_by=["hostname", "status"], header_groups=[["hostname"]],
                                        sort_by=["-group_count", "hostname", "status"])
    assert by_host["groups"][0] == {"hostname": "host1", "status": "FAIL", "group_count": 2, "pass_count": 0,
                                    "complete_count": 2, "incomplete_count": 0}
    assert by_host["header_values"] == [[["host1"], ["host2"]]]
    fixed = tko_rpc.get_group_counts(group_by=["hostname"], header_groups=[["hostname"]],
                                     fixed_headers={"hostname": ["host2", "nohost"]})
    assert fixed["groups"] == [{"hostname": "host2", "group_count": 1}]
    assert fixed["header_values"] == [[["host2"], ["nohost"]]]
    assert tko_rpc.get_status_counts(group_by="test_name", job_tag="none")["groups"] == []


def test_tko_refuses_unknown_fields_and_lookups(tko_rpc, tko):
    cases = [
        (lambda: tko_rpc.get_status_counts(group_by=["hostname"], job__tag="x"), "job__tag"),
        (lambda: tko_rpc.get_status_counts(group_by=["nope"]), "group_by"),
        (lambda: tko_rpc.get_status_counts(group_by=["hostname"], hostname__sounds_like="x"), "hostname__sounds_like"),
        (lambda: tko_rpc.get_status_counts(group_by=["hostname"], sort_by=["test_name"]), "sort_by"),
        (lambda: tko_rpc.get_status_counts(group_by=["hostname"], header_groups=[["status"]]), "header_groups"),
        (lambda: tko_rpc.get_status_counts(group_by=["hostname"], fixed_headers={"status": ["GOOD"]}), "fixed_headers"),
        (lambda: tko_rpc.get_test_views(extra_where="1=1"), "extra_where"),
        (lambda: tko_rpc.get_test_views(test_idx__in=3), "test_idx__in"),
        (lambda: tko_rpc.get_test_views(test_idx="x"), "test_idx"),
        (lambda: tko_rpc.get_test_views(sort_by=["-nope"]), "sort_by"),
        (lambda: tko_rpc.get_num_test_views(status__word="GOOD"), "status__word"),
    ]
    for call, key in cases:
        with pytest.raises(RpcFailed) as failed:
            call()
        assert failed.value.name == "ValidationError", key
        assert key in failed.value.problem_keys, (key, failed.value.problem_keys)
    with pytest.raises(RpcFailed) as failed:
        tko_rpc.get_status_counts(job_tag="x")
    assert "arguments" in failed.value.problem_keys  # group_by is required
    with pytest.raises(RpcFailed) as failed:
        tko_rpc.get_test_views(job_tag__startswith="12-", bogus=1)
    assert "known fields" in failed.value.problem_keys["bogus"]


def test_get_test_views_rows(tko_rpc, tko):
    rows = tko_rpc.get_test_views(job_tag__startswith="12-", status__in=["GOOD", "FAIL"], sort_by=["-test_idx"])
    assert [r["test_name"] for r in rows] == ["failtest2", "failtest", "sleeptest", "SERVER_JOB"]
    server = rows[-1]
    assert server["test_idx"] == tko["server"].test_idx and server["status"] == "GOOD"
    assert server["hostname"] == "host1" and server["platform"] == "board:x" and server["job_tag"] == "12-alice/host1"
    assert server["afe_job_id"] == 12 and server["job_owner"] == "alice" and server["job_name"] == "alice-job"
    assert server["test_started_time"] == "2026-01-05 10:00:00" and server["test_finished_time"] == "2026-01-05 10:03:00"
    assert server["job_started_time"] == "2026-01-05 10:00:00" and server["invalid"] is False
    assert server["kernel"] == "UNKNOWN" and server["reason"] == ""
    assert tko_rpc.get_num_test_views(job_tag__startswith="12-") == 6
    assert tko_rpc.get_num_test_views(hostname="host2", query_limit=0) == 1
    assert len(tko_rpc.get_test_views(query_start=1, query_limit=2)) == 2
    assert [r["reason"] for r in tko_rpc.get_test_views(reason__icontains="BOO")] == ["boom", "boom"]


def test_get_detailed_test_views_adds_attributes_iterations_labels_and_keyvals(tko_rpc, tko):
    rows = {r["test_name"]: r for r in tko_rpc.get_detailed_test_views(afe_job_id=12)}
    sleep = rows["sleeptest"]
    assert sleep["attributes"] == {"version": "1"} and sleep["labels"] == ["flaky"]
    assert sleep["iterations"] == [{"attr_keyval": {"mode": "fast"}, "perf_keyval": {"seconds": 1.5}},
                                   {"attr_keyval": {}, "perf_keyval": {"seconds": 2.5}}]
    assert sleep["job_keyvals"] == {"build": "R1"} and sleep["hostname"] == "host1"
    assert rows["failtest"]["attributes"] == {} and rows["failtest"]["iterations"] == []


def test_tko_methods_live_only_on_the_tko_endpoint(rpc, tko_rpc, tko):
    with pytest.raises(RpcFailed) as failed:
        rpc.get_status_counts(group_by=["hostname"])
    assert failed.value.name == "UnknownMethod"
    with pytest.raises(RpcFailed) as failed:
        tko_rpc.get_hosts()
    assert failed.value.name == "UnknownMethod"


def test_tko_views_read_a_fixed_number_of_queries(tko_rpc, tko, figures):
    job = TkoJob.objects.get(afe_job_id=120)
    kernel = TkoKernel.objects.get()
    good = TkoStatus.objects.get(word="GOOD")
    counts = []
    for size in (10, 100):
        for n in range(TkoTest.objects.filter(job=job).count(), size):
            test = TkoTest.objects.create(job=job, test=f"t{n}", kernel=kernel, status=good)
            TkoTestAttribute.objects.create(test=test, attribute="a", value=str(n))
            TkoIterationResult.objects.create(test=test, iteration=1, attribute="s", value=n)
        with CaptureQueriesContext(connection) as queries:
            assert len(tko_rpc.get_detailed_test_views(afe_job_id=120)) == size
            assert len(tko_rpc.get_test_views(afe_job_id=120)) == size
            tko_rpc.get_status_counts(group_by=["test_name"], afe_job_id=120)
        counts.append(len(queries))
    figures.append(f"TKO views on {connection.vendor}: 100 tests → {counts[1]} queries")
    assert counts[0] == counts[1]


def test_tests_and_profilers_refuse_fields_afe_never_had(rpc, db):
    assert rpc.get_tests(name__startswith="sleep", sort_by=["-name"], query_limit=5) == []
    for call, key in ((lambda: rpc.get_tests(zza=None), "zza"), (lambda: rpc.get_profilers(author="x"), "author"),
                      (lambda: rpc.get_tests(sort_by=["nope"]), "nope"),
                      (lambda: rpc.get_profilers(query_limit=-1), "query_limit")):
        with pytest.raises(RpcFailed) as failed:
            call()
        assert key in failed.value.problem_keys


def test_abort_special_tasks_by_a_lookup_across_relations(rpc, lab, alice):
    running = _task(lab["host1"], "Verify", alice, started=T0, is_active=True)
    other = _task(lab["host2"], "Verify", alice, started=T0, is_active=True)
    rpc.abort_special_tasks(host__hostname__in=["host1"], host__labels__name="board:x")
    assert dict(SpecialTask.objects.values_list("pk", "is_aborted")) == {running.pk: True, other.pk: False}
