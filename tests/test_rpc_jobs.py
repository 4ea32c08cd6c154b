"""Job and host queue entry methods as atest, server/frontend.py and the web UI call them."""
from __future__ import annotations

import ast
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from afe.models import AbortedHostQueueEntry, AclGroup, DroneSet, Host, HostQueueEntry, Job, Label, User
from tests.rpc_client import AfeRpc, RpcFailed

CONTROL = 'AUTHOR = "afe_clients acceptance"\njob.run_test(\'sleeptest\', seconds=1)\n'


@pytest.fixture
def rpc(client, db) -> AfeRpc:
    return AfeRpc(client)


@pytest.fixture
def bob_rpc(client, db) -> AfeRpc:
    return AfeRpc(client, login="bob")


@pytest.fixture
def root_rpc(client, system_user) -> AfeRpc:
    return AfeRpc(client, login="autotest_system")


@pytest.fixture
def private_host(make_host, private_group):
    """host-p, in alice's private group (so no longer in Everyone)."""
    host = make_host("host-p", ["board:x"])
    private_group.hosts.add(host)
    AclGroup.rebalance_everyone()
    return host


def snapshot() -> tuple[int, ...]:
    return (Job.objects.count(), HostQueueEntry.objects.count(), Host.objects.count(), Label.objects.count(),
            AbortedHostQueueEntry.objects.count())


def raw_call(rpc: AfeRpc, body: str) -> object:
    """Send a captured request body byte for byte; the result, or RpcFailed."""
    answer = rpc.raw(body)
    if answer["error"] is not None:
        raise RpcFailed(answer["error"])
    return answer["result"]


# --- create_job ------------------------------------------------------------------------------------


def test_create_job_exactly_as_server_frontend_sends_it(rpc, make_host):
    make_host("acc352776a1-dut2.invalid")
    body = json.dumps({"method": "create_job", "params": [{
        "name": "acc352776a1-job2", "priority": 40, "control_file": CONTROL, "control_type": "Client",
        "hosts": ["acc352776a1-dut2.invalid"]}], "id": "jsonrpc"})
    job_id = raw_call(rpc, body)
    job = Job.objects.get(pk=job_id)
    assert job.owner == "alice" and job.name == "acc352776a1-job2" and job.control_file == CONTROL
    assert [e.host.hostname for e in job.hostqueueentry_set.all()] == ["acc352776a1-dut2.invalid"]
    # AFE.create_job then reads the job back with get_jobs(id=...)
    [row] = rpc.get_jobs(id=job_id)
    assert row["name"] == "acc352776a1-job2" and row["owner"] == "alice" and row["control_type"] == "Client"


def test_create_job_exactly_as_atest_job_create_sends_it(rpc, make_host):
    make_host("h1"), make_host("h2")
    Label.objects.create(name="dep1")
    for host in Host.objects.all():
        host.labels.add(Label.objects.get(name="dep1"))
    body = ('{"params": [{"control_file": "job.run_test(\'sleeptest\')", "control_type": "Server", '
            '"dependencies": ["dep1"], "email_list": "a@b", "hosts": ["h2", "h1"], "max_runtime_mins": "60", '
            '"meta_hosts": [], "name": "jname", "one_time_hosts": ["oth1"], "parse_failed_repair": true, '
            '"priority": 50, "reboot_after": "Never", "reboot_before": "Always", "require_ssp": false, '
            '"run_verify": false, "synch_count": 2, "timeout_mins": "30"}], "method": "create_job", "id": "jsonrpc"}')
    job = Job.objects.get(pk=raw_call(rpc, body))
    assert (job.timeout_mins, job.max_runtime_mins, job.priority, job.synch_count) == (30, 60, 50, 2)
    assert (job.get_control_type_display(), job.get_reboot_before_display(), job.get_reboot_after_display()) == (
        "Server", "Always", "Never")
    assert job.parse_failed_repair is True and job.run_verify is False and job.require_ssp is False
    assert job.email_list == "a@b" and [l.name for l in job.dependency_labels.all()] == ["dep1"]
    hosts = sorted(e.host.hostname for e in job.hostqueueentry_set.all())
    assert hosts == ["h1", "h2", "oth1"] and Host.objects.get(hostname="oth1").invalid


def test_atest_repeated_metahost_names_make_one_entry_each(rpc, lab):
    job_id = rpc.create_job(name="m", priority=40, control_file=CONTROL, control_type="Client",
                            hosts=[], meta_hosts=["board:x", "board:x", "pool:a"], synch_count=1)
    names = sorted(HostQueueEntry.objects.filter(job_id=job_id).values_list("meta_host__name", flat=True))
    assert names == ["board:x", "board:x", "pool:a"]


def test_priority_by_name_or_digits_and_timeout_in_hours(rpc, lab):
    job = Job.objects.get(pk=rpc.create_job(name="p", priority="Super", control_file=CONTROL,
                                            control_type="Client", hosts=["host1"], timeout="2"))
    assert job.priority == 80 and job.timeout_mins == 120
    job = Job.objects.get(pk=rpc.create_job(name="p", priority="60", control_file=CONTROL,
                                            control_type="Client", hosts=["host1"], max_runtime_hrs=3))
    assert job.priority == 60 and job.max_runtime_mins == 180


def test_image_becomes_a_cros_version_dependency(rpc, lab):
    job = Job.objects.get(pk=rpc.create_job(name="i", priority=40, control_file=CONTROL, control_type="Client",
                                            hosts=["host1"], image="board-release/R1-2.0"))
    assert [l.name for l in job.dependency_labels.all()] == ["cros-version:board-release/R1-2.0"]


def test_test_args_are_injected_in_front_of_the_control_file(rpc, lab):
    job = Job.objects.get(pk=rpc.create_job(name="t", priority=40, control_file=CONTROL, control_type="Client",
                                            hosts=["host1"], test_args={"iterations": 3, "mode": "fast"}))
    assert job.control_file == "iterations=3\nmode='fast'\nargs_dict={'iterations': 3, 'mode': 'fast'}\n" + CONTROL
    with pytest.raises(RpcFailed) as failed:
        rpc.create_job(name="t", priority=40, control_file=CONTROL, control_type="Client", hosts=["host1"],
                       test_args={"import os": 1})
    assert set(failed.value.problem_keys) == {"test_args"}


def test_hostless_keyvals_drone_set_and_template(rpc, db):
    DroneSet.objects.create(name="ds1")
    job = Job.objects.get(pk=rpc.create_job(name="suite", priority=40, control_file=CONTROL,
                                            control_type="Server", hostless=True, keyvals={"build": "R1"},
                                            drone_set="ds1", is_template="true"))
    entry = job.hostqueueentry_set.get()
    assert entry.is_hostless() and entry.status == "Template"
    assert job.keyval_dict() == {"build": "R1"} and job.drone_set.name == "ds1"


def test_a_metahost_with_no_eligible_host_is_no_eligible_host_exception(rpc, lab):
    Label.objects.create(name="needs-wifi")
    before = snapshot()
    with pytest.raises(RpcFailed) as failed:
        rpc.create_job(name="m", priority=40, control_file=CONTROL, control_type="Client",
                       meta_hosts=["board:x"], dependencies=["needs-wifi"])
    assert failed.value.name == "NoEligibleHostException" and "board:x" in failed.value.message
    assert snapshot() == before


@pytest.mark.parametrize("kwargs, key", [
    ({"hosts": ["nosuch"]}, "hosts"),
    ({"hosts": ["host1"], "meta_hosts": ["no-such-label"]}, "meta_hosts"),
    ({"hosts": ["host1"], "timeout_mins": "thirty"}, "timeout_mins"),
    ({"hosts": ["host1"], "priority": "Urgentest"}, "priority"),
    ({"hosts": ["host1"], "control_type": "Both"}, "control_type"),
    ({"hosts": ["host1"], "reboot_before": "Sometimes"}, "reboot_before"),
    ({"hosts": ["host1", "host2"], "synch_count": 3}, "synch_count"),
    ({"hosts": ["host1"], "control_file": ""}, "control_file"),
    ({"hosts": "host1,host2"}, None),  # a string is split as names, so this one succeeds
    ({}, "arguments"),
    ({"hosts": ["host1"], "favourite_colour": "blue"}, "favourite_colour"),
    ({"hosts": ["host1"], "dependencies": ["nolabel"]}, "dependencies"),
    ({"hosts": ["host1"], "drone_set": "nosuchset"}, "drone_set"),
    ({"hosts": ["host1"], "parent_job_id": "999"}, "parent_job_id"),
    ({"hosts": ["host1"], "keyvals": ["a"]}, "keyvals"),
    ({"hosts": ["host1"], "test_args": "x"}, "test_args"),
    ({"hostless": True}, "control_type"),
])
def test_bad_create_job_arguments_are_validation_errors_that_write_nothing(rpc, lab, kwargs, key):
    arguments = {"name": "bad", "priority": 40, "control_file": CONTROL, "control_type": "Client", **kwargs}
    before = snapshot()
    if key is None:
        assert rpc.create_job(**arguments)
        return
    with pytest.raises(RpcFailed) as failed:
        rpc.create_job(**arguments)
    assert failed.value.name == "ValidationError", failed.value
    assert key in failed.value.problem_keys
    assert snapshot() == before


def test_create_job_on_a_private_host_needs_its_acl_group(rpc, bob_rpc, private_host):
    assert rpc.create_job(name="ok", priority=40, control_file=CONTROL, control_type="Client", hosts=["host-p"])
    before = snapshot()
    with pytest.raises(RpcFailed) as failed:
        bob_rpc.create_job(name="no", priority=40, control_file=CONTROL, control_type="Client", hosts=["host-p"])
    assert failed.value.name == "AclAccessViolation" and failed.value.message.startswith("host_acl:")
    assert snapshot() == before


def test_root_may_create_jobs_on_any_host(root_rpc, private_host):
    assert root_rpc.create_job(name="r", priority=40, control_file=CONTROL, control_type="Client", hosts=["host-p"])


# --- get_info_for_clone and job clone --------------------------------------------------------------


def test_job_clone_round_trip_as_atest_does_it(rpc, lab, system_user):
    DroneSet.objects.create(name="ds1")
    original = rpc.create_job(name="orig", priority="Build", control_file=CONTROL, control_type="Server",
                              hosts=["host1"], meta_hosts=["2*board:x"], one_time_hosts=["oth9"],
                              dependencies=["board:x"], keyvals={"k": "v"}, drone_set="ds1",
                              timeout_mins="45", reboot_after="Always", synch_count=1)
    info = rpc.get_info_for_clone(id=str(original), preserve_metahosts=True)
    assert info["meta_host_counts"] == {"board:x": 2}
    assert info["hostless"] is False and info["drone_set"] == "ds1"
    assert info["job"]["dependencies"] == ["board:x"] and info["job"]["keyvals"] == {"k": "v"}
    regular, one_time = info["hosts"]
    assert regular["hostname"] == "host1" and regular["other_labels"] == "board:x, pool:a"
    assert one_time == {"hostname": "oth9", "id": Host.objects.get(hostname="oth9").pk,
                        "platform": "(one-time host)", "locked_text": ""}

    # atest job clone --id N -r: every job field but name, created_on, id, owner, parameterized_job
    data = {k: v for k, v in info["job"].items() if k not in ("name", "created_on", "id", "owner", "parameterized_job")}
    data.update(name="copy", hosts=["host1"], one_time_hosts=["oth9"],
                meta_hosts=[label for label, n in info["meta_host_counts"].items() for _ in range(n)])
    copy = Job.objects.get(pk=rpc.create_job(**data))
    orig = Job.objects.get(pk=original)
    for field in ("priority", "control_file", "control_type", "timeout_mins", "max_runtime_mins", "reboot_before",
                  "reboot_after", "drone_set_id", "synch_count", "run_reset", "parse_failed_repair"):
        assert getattr(copy, field) == getattr(orig, field), field
    assert copy.owner == "alice" and copy.keyval_dict() == {"k": "v"}
    assert copy.hostqueueentry_set.count() == 4


def test_clone_without_preserving_metahosts_gives_assigned_entries_back_as_metahosts(rpc, lab):
    job_id = rpc.create_job(name="m", priority=40, control_file=CONTROL, control_type="Client", meta_hosts=["board:x"])
    HostQueueEntry.objects.filter(job_id=job_id).update(host=Host.objects.get(hostname="host2"))
    assert rpc.get_info_for_clone(id=job_id, preserve_metahosts=False)["meta_host_counts"] == {"board:x": 1}
    kept = rpc.get_info_for_clone(id=job_id, preserve_metahosts=True)
    assert kept["meta_host_counts"] == {} and [h["hostname"] for h in kept["hosts"]] == ["host2"]


def test_clone_info_of_a_hostless_job_and_with_an_entry_filter(rpc, lab):
    suite = rpc.create_job(name="s", priority=40, control_file=CONTROL, control_type="Server", hostless=True)
    assert rpc.get_info_for_clone(id=suite, preserve_metahosts=False)["hostless"] is True
    job_id = rpc.create_job(name="j", priority=40, control_file=CONTROL, control_type="Client", hosts=["host1", "host2"])
    HostQueueEntry.objects.filter(job_id=job_id, host__hostname="host2").update(status="Failed", complete=True)
    info = rpc.get_info_for_clone(id=job_id, preserve_metahosts=True, queue_entry_filter_data={"status": "Failed"})
    assert [h["hostname"] for h in info["hosts"]] == ["host2"]


def test_clone_of_an_unknown_job_and_bad_filters(rpc, lab):
    with pytest.raises(RpcFailed) as failed:
        rpc.get_info_for_clone(id="12345", preserve_metahosts=True)
    assert failed.value.name == "DoesNotExist"
    with pytest.raises(RpcFailed) as failed:
        rpc.get_info_for_clone(id="abc", preserve_metahosts=True)
    assert failed.value.name == "ValidationError"
    job_id = rpc.create_job(name="j", priority=40, control_file=CONTROL, control_type="Client", hosts=["host1"])
    with pytest.raises(RpcFailed) as failed:
        rpc.get_info_for_clone(id=job_id, preserve_metahosts=True, queue_entry_filter_data={"nosuch": 1})
    assert failed.value.name == "ValidationError"
    with pytest.raises(RpcFailed) as failed:
        rpc.get_info_for_clone(id=job_id, preserve_metahosts=True, queue_entry_filter_data=["x"])
    assert failed.value.name == "ValidationError"


# --- get_jobs, get_num_jobs, get_jobs_summary ------------------------------------------------------


def _job(owner: User, name: str, hosts=("host1",), **kwargs) -> Job:
    kwargs.setdefault("control_file", CONTROL)
    return Job.create(owner=owner, name=name, hosts=list(hosts), **kwargs)


def test_get_jobs_summary_exactly_as_atest_job_list_sends_it(rpc, lab, alice):
    job = _job(alice, "one", hosts=["host1", "host2", "host3"])
    HostQueueEntry.objects.filter(job=job, host__hostname="host1").update(status="Running", active=True)
    HostQueueEntry.objects.filter(job=job, host__hostname="host2").update(aborted=True)
    _job(alice, "other")
    rows = raw_call(rpc, '{"params": [{"running": null, "id__in": ["%d"]}], "method": "get_jobs_summary", "id": "jsonrpc"}' % job.pk)
    assert [r["id"] for r in rows] == [job.pk]
    [row] = rows
    assert row["status_counts"] == {"Running": 1, "Aborted (Queued)": 1, "Queued": 1}
    assert (row["owner"], row["name"], row["priority"], row["control_type"]) == ("alice", "one", 40, "Client")
    assert len(row["created_on"]) == 19 and row["dependencies"] == "" and row["keyvals"] == {}


def test_status_and_type_flags(rpc, lab, alice):
    queued = _job(alice, "queued")
    running = _job(alice, "running", hosts=["host1", "host2"])
    HostQueueEntry.objects.filter(job=running, host__hostname="host1").update(status="Running", active=True)
    done = _job(alice, "done")
    HostQueueEntry.objects.filter(job=done).update(status="Completed", complete=True)
    suite = Job.create(owner=alice, name="suite", control_file=CONTROL, control_type="Server", hostless=True)
    child = _job(alice, "child", parent_job=suite.pk)

    def names(**flags):
        return sorted(j["name"] for j in rpc.get_jobs(**flags))

    assert names(running=None) == ["child", "done", "queued", "running", "suite"]
    assert names(not_yet_run=True) == ["child", "queued", "suite"]
    assert names(running=True) == ["running"]
    assert names(finished=True) == ["done"]
    assert names(suite=True) == ["suite"]
    assert names(sub=True) == ["child"]
    assert names(standalone=True) == ["done", "queued", "running"]
    assert names(not_yet_run="true", sub=True) == ["child"]
    assert rpc.get_num_jobs(running=True) == 1 and rpc.get_num_jobs(query_limit=1, sort_by=["name"]) == 5
    assert [j["name"] for j in rpc.get_jobs(sort_by=["name"], query_start=1, query_limit=2)] == ["done", "queued"]
    assert [j["parent_job"] for j in rpc.get_jobs(name="child")] == [suite.pk]
    del queued, child


@pytest.mark.parametrize("kwargs", [
    {"running": True, "finished": True}, {"suite": True, "sub": True}, {"running": "maybe"},
    {"nosuchfield": 1}, {"id__in": "1"}, {"owner__login": "x"}, {"query_limit": -1}, {"sort_by": ["nosuch"]},
])
def test_bad_job_filters_are_validation_errors(rpc, lab, alice, kwargs):
    _job(alice, "j")
    for method in ("get_jobs", "get_jobs_summary", "get_num_jobs"):
        if method == "get_num_jobs" and set(kwargs) & {"query_limit", "sort_by"}:
            continue  # the count ignores paging
        with pytest.raises(RpcFailed) as failed:
            rpc.call(method, **kwargs)
        assert failed.value.name == "ValidationError"
        assert isinstance(ast.literal_eval(failed.value.message), dict)


def test_owner_filter_as_atest_sends_it(rpc, lab, alice):
    _job(alice, "mine")
    _job(User.objects.create(login="carol"), "theirs")
    assert [j["name"] for j in rpc.get_jobs_summary(running=None, owner="alice")] == ["mine"]


@pytest.mark.parametrize("count", [10, 500])
def test_get_jobs_summary_reads_a_fixed_number_of_queries(rpc, lab, alice, figures, count):
    Label.objects.create(name="dep-q")
    for host in Host.objects.all():
        host.labels.add(Label.objects.get(name="dep-q"))
    for n in range(count):
        Job.create(owner=alice, name=f"q{n}", control_file=CONTROL, hosts=["host1", "host2"], synch_count=1,
                   dependencies=["dep-q"], keyvals={"n": str(n)})
    rpc.get_num_jobs()  # the caller exists from here on
    with CaptureQueriesContext(connection) as queries:
        rows = rpc.get_jobs_summary(running=None, owner="alice")
    assert len(rows) == count and all(r["status_counts"] == {"Queued": 2} for r in rows)
    figures.append(f"get_jobs_summary on {connection.vendor}: {count} jobs → {len(queries)} queries")
    assert len(queries) <= 8


# --- generate_control_file -------------------------------------------------------------------------


def test_generate_control_file_wraps_a_client_control_file_into_steps(rpc, db):
    result = rpc.generate_control_file(client_control_file="job.run_test('sleeptest')")
    assert result == {
        "control_file": "def step_init():\n    job.next_step('step0')\n\n"
                        "def step0():\n    job.run_test('sleeptest')\n    return locals()",
        "is_server": False, "synch_count": 1, "dependencies": [],
    }
    compile(result["control_file"], "control", "exec")


def test_generate_control_file_keeps_triple_quoted_text_and_nested_steps(rpc, db):
    cf = 'DOC = """\nkeep me\n"""\ndef step_init():\n    pass'
    text = rpc.generate_control_file(client_control_file=cf, profile_only=True)["control_file"]
    assert text.startswith("def step_init():\n    job.next_step('step0')\n    job.next_step('step1')\n")
    assert "def step0():\n    job.default_profile_only = True" in text
    assert '    DOC = """\nkeep me\n"""\n    def step_init():\n        pass\n    return locals()' in text
    assert text.endswith("return locals() # Boilerplate magic for nested sets of steps")


def test_generate_control_file_with_nothing_gives_an_empty_control_file(rpc, db):
    assert rpc.generate_control_file() == {"control_file": "", "is_server": False, "synch_count": 1, "dependencies": []}


@pytest.mark.parametrize("kwargs, key", [
    ({"tests": ["sleeptest", "dummy_Pass"]}, "tests"),
    ({"profilers": ["oprofile"], "client_control_file": "pass"}, "profilers"),
    ({"client_control_file": 5}, "client_control_file"),
    ({"client_control_file": "pass", "profile_only": "perhaps"}, "profile_only"),
])
def test_generate_control_file_refuses_what_it_cannot_do(rpc, db, kwargs, key):
    with pytest.raises(RpcFailed) as failed:
        rpc.generate_control_file(**kwargs)
    assert set(failed.value.problem_keys) == {key}
    if key == "tests":
        assert "sleeptest, dummy_Pass" in failed.value.problem_keys["tests"]


# --- get_host_queue_entries and friends ------------------------------------------------------------


def test_get_host_queue_entries_as_atest_job_stat_and_host_jobs_send_them(rpc, lab, alice):
    job = _job(alice, "stat", hosts=["host1", "host2"])
    meta = Job.create(owner=alice, name="meta", control_file=CONTROL, meta_hosts=["board:x"])
    rows = rpc.get_host_queue_entries(job__in=[str(job.pk)])
    assert sorted(r["host"]["hostname"] for r in rows) == ["host1", "host2"]
    row = rows[0]
    assert row["job"]["id"] == job.pk and row["job"]["owner"] == "alice" and row["job"]["name"] == "stat"
    assert row["status"] == "Queued" and row["full_status"] == "Queued" and row["aborted"] is False
    assert row["host"]["labels"] and row["meta_host"] is None
    assert [r["job"]["name"] for r in rpc.get_host_queue_entries(job__name__in=["stat"])] == ["stat", "stat"]
    assert rpc.get_host_queue_entries(job=str(meta.pk))[0]["meta_host"] == "board:x"
    assert rpc.get_host_queue_entries(job=meta.pk)[0]["host"] is None
    host_jobs = rpc.get_host_queue_entries(host__hostname="host1", query_limit=20, sort_by=["-job__id"])
    assert [r["job"]["id"] for r in host_jobs] == [job.pk]
    host1 = Host.objects.get(hostname="host1")
    assert [r["id"] for r in rpc.get_host_queue_entries(host=host1.pk)] == [r["id"] for r in host_jobs]
    assert rpc.get_num_host_queue_entries(job__in=[str(job.pk)], query_limit=1) == 2


def test_full_status_and_time_bounds(rpc, lab, alice):
    job = _job(alice, "t", hosts=["host1", "host2"])
    e1, e2 = job.hostqueueentry_set.order_by("host__hostname")
    HostQueueEntry.objects.filter(pk=e1.pk).update(status="Running", active=True, aborted=True,
                                                   started_on="2026-01-02 10:00:00")
    HostQueueEntry.objects.filter(pk=e2.pk).update(started_on="2026-01-05 10:00:00")
    rows = rpc.get_host_queue_entries(job=job.pk, start_time="2026-01-01 00:00:00", end_time="2026-01-03 00:00:00")
    assert [(r["id"], r["full_status"], r["started_on"]) for r in rows] == [
        (e1.pk, "Aborted (Running)", "2026-01-02 10:00:00")]
    assert rpc.get_num_host_queue_entries(start_time="2026-01-04 00:00:00") == 1
    with pytest.raises(RpcFailed) as failed:
        rpc.get_host_queue_entries(start_time="yesterday")
    assert failed.value.name == "ValidationError"


def test_hqe_percentage_complete(rpc, lab, alice):
    assert rpc.get_hqe_percentage_complete(job=999) == 1
    job = _job(alice, "p", hosts=["host1", "host2", "host3"])
    HostQueueEntry.objects.filter(job=job, host__hostname="host1").update(status="Completed", complete=True)
    assert rpc.get_hqe_percentage_complete(job=job.pk) == pytest.approx(1 / 3)


@pytest.mark.parametrize("kwargs", [{"job": "abc"}, {"nosuch": 1}, {"job__in": 5}, {"host__acl": 1},
                                    {"query_limit": "many"}])
def test_bad_entry_filters_are_validation_errors(rpc, lab, kwargs):
    with pytest.raises(RpcFailed) as failed:
        rpc.get_host_queue_entries(**kwargs)
    assert failed.value.name == "ValidationError"


@pytest.mark.parametrize("count", [10, 500])
def test_get_host_queue_entries_reads_a_fixed_number_of_queries(rpc, make_host, alice, figures, count):
    hosts = [make_host(f"e{n:04d}", ["board:e", f"pool:{n % 3}"]) for n in range(count)]
    for host in hosts[:3]:
        host.set_attribute("ssh_port", "22")
    Job.create(owner=alice, name="wide", control_file=CONTROL, hosts=[h.hostname for h in hosts], keyvals={"a": "b"})
    Job.create(owner=alice, name="meta", control_file=CONTROL, meta_hosts=["board:e"])
    rpc.get_num_jobs()
    with CaptureQueriesContext(connection) as queries:
        rows = rpc.get_host_queue_entries(job__name__in=["wide", "meta"])
    assert len(rows) == count + 1
    figures.append(f"get_host_queue_entries on {connection.vendor}: {count + 1} entries → {len(queries)} queries")
    assert len(queries) <= 12


# --- abort_host_queue_entries ----------------------------------------------------------------------


def test_abort_exactly_as_server_frontend_and_atest_send_it(rpc, lab, alice):
    first, second = _job(alice, "a1"), _job(alice, "a2", hosts=["host2", "host3"])
    result = raw_call(rpc, json.dumps({"method": "abort_host_queue_entries", "params": [{"job_id": first.pk}],
                                       "id": "jsonrpc"}))
    entry = first.hostqueueentry_set.get()
    assert result == [{"HostQueueEntry": entry.pk, "Job": first.pk, "Job name": "a1"}]
    result = raw_call(rpc, '{"params": [{"job__id__in": ["%d"]}], "method": "abort_host_queue_entries", "id": "jsonrpc"}'
                      % second.pk)
    assert sorted(r["HostQueueEntry"] for r in result) == sorted(second.hostqueueentry_set.values_list("pk", flat=True))
    assert HostQueueEntry.objects.filter(aborted=True).count() == 3
    assert set(AbortedHostQueueEntry.objects.values_list("aborted_by__login", flat=True)) == {"alice"}
    # the status is the scheduler's to change; the entry shows as being aborted
    assert rpc.get_host_queue_entries(job=first.pk)[0]["full_status"] == "Aborted (Queued)"
    assert rpc.abort_host_queue_entries(job_id=first.pk) == []  # already aborted: nothing to do


def test_abort_keeps_complete_entries_and_cascades_to_child_jobs(rpc, lab, alice):
    suite = Job.create(owner=alice, name="suite", control_file=CONTROL, control_type="Server", hostless=True)
    child = _job(alice, "child", hosts=["host1", "host2"], parent_job=suite.pk)
    HostQueueEntry.objects.filter(job=child, host__hostname="host2").update(status="Completed", complete=True)
    suite_entry = suite.hostqueueentry_set.get()
    assert rpc.abort_host_queue_entries(id__in=[str(suite_entry.pk)]) == [
        {"HostQueueEntry": suite_entry.pk, "Job": suite.pk, "Job name": "suite"}]
    aborted = dict(HostQueueEntry.objects.filter(job=child).values_list("host__hostname", "aborted"))
    assert aborted == {"host1": True, "host2": False}


def test_abort_needs_a_filter_and_refuses_bad_ones(rpc, lab, alice):
    _job(alice, "j")
    for kwargs in ({}, {"query_limit": 5}, {"job__id__in": "1"}, {"nosuch": 1}, {"job_id": "x"}):
        with pytest.raises(RpcFailed) as failed:
            rpc.abort_host_queue_entries(**kwargs)
        assert failed.value.name == "ValidationError"
    assert not HostQueueEntry.objects.filter(aborted=True).exists()


def test_a_non_owner_may_abort_entries_on_hosts_of_their_acl_group_only(rpc, bob_rpc, lab, private_host,
                                                                       private_group, system_user):
    bob = User.objects.create(login="bob")
    private_group.users.add(bob)  # bob may queue on host-p while in the group; then he leaves it
    owned_by_bob = _job(bob, "bobs", hosts=["host-p"])
    private_group.users.remove(bob)
    # alice shares a real ACL group with host-p: allowed
    assert len(rpc.abort_host_queue_entries(job__id__in=[str(owned_by_bob.pk)])) == 1
    # a public host (Everyone only): refused to a non-owner, allowed to the owner
    public = _job(bob, "public", hosts=["host1"])
    before = snapshot()
    with pytest.raises(RpcFailed) as failed:
        rpc.abort_host_queue_entries(job_id=public.pk)
    assert failed.value.name == "AclAccessViolation" and failed.value.message.startswith("abort_owner_or_acl:")
    assert snapshot() == before
    assert len(bob_rpc.abort_host_queue_entries(job_id=public.pk)) == 1
    # a metahost entry of someone else's job: refused; root may
    meta = Job.create(owner=bob, name="meta", control_file=CONTROL, meta_hosts=["board:x"])
    with pytest.raises(RpcFailed) as failed:
        rpc.abort_host_queue_entries(job_id=meta.pk)
    assert failed.value.name == "AclAccessViolation"
    # bob is in no group with host-p, so not even for alice's job there
    alices = _job(User.objects.get(login="alice"), "alices", hosts=["host-p"])
    with pytest.raises(RpcFailed) as failed:
        bob_rpc.abort_host_queue_entries(job_id=alices.pk)
    assert failed.value.name == "AclAccessViolation"
    assert len(AfeRpc(rpc.client, login="autotest_system").abort_host_queue_entries(job_id=meta.pk)) == 1


def test_part_of_a_started_synchronous_group_is_never_aborted(rpc, root_rpc, lab, alice):
    job = _job(alice, "sync", hosts=["host1", "host2"], synch_count=2)
    HostQueueEntry.objects.filter(job=job).update(status="Running", active=True, execution_subdir="group0")
    one = job.hostqueueentry_set.order_by("pk").first()
    for caller in (rpc, root_rpc):
        with pytest.raises(RpcFailed) as failed:
            caller.abort_host_queue_entries(id__in=[one.pk])
        assert failed.value.name == "AclAccessViolation" and failed.value.message.startswith("abort_synchronous:")
    assert not HostQueueEntry.objects.filter(aborted=True).exists()
    assert len(rpc.abort_host_queue_entries(job_id=job.pk)) == 2
