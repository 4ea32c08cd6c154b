"""Host methods as atest and server/frontend.py call them, with AFE's access rules from both sides."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from afe.models import AclGroup, Host, Label
from tests.rpc_client import AfeRpc, RpcFailed


@pytest.fixture
def rpc(client, db) -> AfeRpc:
    return AfeRpc(client)


@pytest.fixture
def bob_rpc(client, db) -> AfeRpc:
    return AfeRpc(client, login="bob")


@pytest.fixture
def private_host(make_host, private_group):
    """host-p, in alice's private group (so no longer in Everyone)."""
    host = make_host("host-p", ["board:x"])
    private_group.hosts.add(host)
    AclGroup.rebalance_everyone()
    return host


def test_atest_host_create_then_unlock(rpc):
    # atest host create: locked with the forced reason, then unlocked by the same user.
    host_id = rpc.add_host(hostname="dut1", status="Ready", locked=True, lock_reason="Forced lock on device creation")
    host = Host.objects.get(pk=host_id)
    assert host.locked and host.locked_by.login == "alice" and host.lock_reason == "Forced lock on device creation"
    rpc.host_add_labels(id="dut1", labels=["board:z", "pool:p"])
    rpc.set_host_attribute(attribute="ssh_port", value="2222", hostname="dut1")
    rpc.modify_host(id="dut1", locked=False, lock_reason="")
    host = rpc.get_hosts(hostname="dut1")[0]
    assert host["locked"] is False and host["labels"] == ["board:z", "pool:p"]
    assert host["attributes"] == {"ssh_port": "2222"}


def test_a_lock_needs_a_reason_and_a_locked_host_cannot_be_locked_again(rpc, lab):
    with pytest.raises(RpcFailed) as failed:
        rpc.add_host(hostname="dut2", locked=True)
    assert "lock_reason" in failed.value.problem_keys
    with pytest.raises(RpcFailed) as failed:
        rpc.modify_host(id="locked1", locked=True, lock_reason="again")
    assert "already locked" in failed.value.problem_keys["locked"]
    rpc.modify_host(id="locked1", locked=True, lock_reason="again", force_modify_locking=True)
    assert Host.objects.get(hostname="locked1").lock_reason == "again"


def test_frontend_lock_and_unlock_through_modify_hosts(rpc, lab):
    rpc.modify_hosts(host_filter_data={"hostname": "host1"}, update_data={"locked": True, "lock_reason": "flaky"})
    assert Host.objects.get(hostname="host1").locked
    rpc.modify_hosts(host_filter_data={"hostname__in": ["host1", "locked1"]},
                     update_data={"locked": False, "lock_reason": ""})
    assert not Host.objects.filter(locked=True).exists()


def test_status_is_never_writable(rpc, lab):
    with pytest.raises(RpcFailed) as failed:
        rpc.modify_host(id="host1", status="Repair Failed")
    assert failed.value.name == "AclAccessViolation" and failed.value.message.startswith("host_status:")
    assert Host.objects.get(hostname="host1").status == "Ready"


class TestHostAcl:
    def test_a_member_may_change_a_private_host(self, rpc, private_host):
        rpc.modify_host(id="host-p", protection="Do not verify")
        assert Host.objects.get(pk=private_host.pk).get_protection_display() == "Do not verify"

    @pytest.mark.parametrize("call", [
        lambda r: r.modify_host(id="host-p", locked=True, lock_reason="mine now"),
        lambda r: r.delete_host(id="host-p"),
        lambda r: r.host_add_labels(id="host-p", labels=["pool:b"]),
        lambda r: r.set_host_attribute(attribute="a", value="b", hostname="host-p"),
        lambda r: r.modify_hosts(host_filter_data={"id__in": [r.host_id]}, update_data={"locked": True, "lock_reason": "x"}),
    ])
    def test_a_non_member_may_not(self, bob_rpc, private_host, call):
        bob_rpc.host_id = private_host.pk
        with pytest.raises(RpcFailed) as failed:
            call(bob_rpc)
        assert failed.value.name == "AclAccessViolation"
        assert failed.value.message.startswith("host_acl: bob is in no ACL group of host-p")
        host = Host.objects.get(pk=private_host.pk)
        assert not host.locked and not host.invalid and not host.hostattribute_set.exists()

    def test_hosts_only_in_everyone_are_anyones(self, bob_rpc, lab):
        bob_rpc.modify_host(id="host2", locked=True, lock_reason="bob's turn")
        assert Host.objects.get(hostname="host2").locked_by.login == "bob"

    def test_root_may_change_any_host(self, client, private_host, system_user):
        AfeRpc(client, login="autotest_system").delete_host(id="host-p")
        assert Host.objects.get(pk=private_host.pk).invalid


def test_delete_host_is_a_soft_delete_and_add_resurrects_it(rpc, lab):
    old_id = lab["host2"].pk
    rpc.delete_host(id="host2")
    assert rpc.get_hosts(hostname="host2") == []
    assert rpc.get_hosts(hostname="host2", valid_only=False)[0]["invalid"] is True
    assert rpc.add_host(hostname="host2") == old_id


def test_atest_host_list_filters(rpc, lab, private_group):
    lab["host1"].aclgroup_set.add(private_group)
    found = rpc.get_hosts(aclgroup__name="team-a", aclgroup__users__login="alice",
                          labels__name__startswith="pool", locked=False, status__in=["Ready", "Running"])
    assert [h["hostname"] for h in found] == ["host1"]
    assert [h["hostname"] for h in rpc.get_hosts(multiple_labels=["board:x", "pool:a"])] == ["host1"]
    assert [h["hostname"] for h in rpc.get_hosts(hostname__startswith="host", sort_by=["-hostname"], query_limit=2)] == [
        "host3", "host2"]
    assert rpc.get_num_hosts(labels__name="board:x") == 3


def test_host_labels_reject_a_second_platform(rpc, lab):
    Label.objects.create(name="plat-a", platform=True)
    Label.objects.create(name="plat-b", platform=True)
    rpc.host_add_labels(id="host1", labels=["plat-a"])
    with pytest.raises(RpcFailed) as failed:
        rpc.host_add_labels(id=lab["host1"].pk, labels=["plat-b"])
    assert "more than one platform" in failed.value.problem_keys["labels"]
    assert rpc.get_hosts(hostname="host1")[0]["platform"] == "plat-a"


def test_host_attributes_by_filter_and_by_value(rpc, lab):
    rpc.set_host_attribute(attribute="pool_owner", value="qa", hostname__in=["host1", "host2"])
    assert rpc.get_hosts_by_attribute(attribute="pool_owner", value="qa") == ["host1", "host2"]
    rows = rpc.get_host_attribute(attribute="pool_owner", hostname="host1")
    assert [(r["host"], r["value"]) for r in rows] == [("host1", "qa")]
    rpc.set_host_attribute(attribute="pool_owner", value=None, hostname="host1")
    assert rpc.get_hosts_by_attribute(attribute="pool_owner", value="qa") == ["host2"]
    with pytest.raises(RpcFailed):
        rpc.set_host_attribute(attribute="pool_owner", value="x")  # no filter: refused, not every host


def test_include_current_job(rpc, lab, system_user):
    from afe.models import HostQueueEntry, Job

    job = Job.create(owner=system_user, name="j", control_file="pass", hosts=["host1"])
    HostQueueEntry.objects.filter(job=job).update(status="Running", active=True)
    host = rpc.get_hosts(hostname="host1", include_current_job=True)[0]
    assert host["current_job"] == job.pk and host["current_special_task"] is None


@pytest.mark.parametrize("count", [10, 500])
def test_get_hosts_reads_a_fixed_number_of_queries(rpc, make_host, figures, count, private_group):
    for n in range(count):
        host = make_host(f"q{n:04d}", ["board:q", f"pool:{n % 3}"])
        host.set_attribute("ssh_port", "22")
    rpc.get_hosts(query_limit=1)  # the caller is created on first call
    with CaptureQueriesContext(connection) as queries:
        assert len(rpc.get_hosts(labels__name="board:q")) == count
    figures.append(f"get_hosts on {connection.vendor}: {count} hosts → {len(queries)} queries")
    assert len(queries) <= 8
