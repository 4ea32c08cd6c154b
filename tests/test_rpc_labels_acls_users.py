"""Label, ACL group and user methods as atest and server/frontend.py call them (spec/afe-rpc-wire.md §4)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from afe.models import EVERYONE, AclGroup, Host, Label, User
from tests.rpc_client import AfeRpc, RpcFailed

LABEL_KEYS = {"id", "name", "kernel_config", "platform", "invalid", "only_if_needed", "atomic_group"}
GROUP_KEYS = {"id", "name", "description", "users", "hosts"}
USER_KEYS = {"id", "login", "access_level", "reboot_before", "reboot_after", "drone_set", "show_experimental"}


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
def private_host(make_host, private_group):
    """host-p, in alice's group team-a (so no longer in Everyone)."""
    host = make_host("host-p", ["board:x"])
    private_group.hosts.add(host)
    AclGroup.rebalance_everyone()
    return host


def acl_names(host: Host) -> list[str]:
    return sorted(host.aclgroup_set.values_list("name", flat=True))


def refused(call, *args, **kwargs) -> RpcFailed:
    with pytest.raises(RpcFailed) as failed:
        call(*args, **kwargs)
    return failed.value


def query_count(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


# --- labels -----------------------------------------------------------------------------------------------


def test_add_label_returns_the_id_and_get_labels_renders_the_row(rpc):
    # server/frontend.AFE.create_label: add_label(name=, **kw), then get_labels(id=<new id>).
    label_id = rpc.add_label(name="plat-x", platform=True, only_if_needed=False, kernel_config="k.cfg")
    (row,) = rpc.get_labels(id=label_id)
    assert set(row) == LABEL_KEYS
    assert row == {"id": label_id, "name": "plat-x", "kernel_config": "k.cfg", "platform": True,
                   "invalid": False, "only_if_needed": False, "atomic_group": None}


def test_atest_label_create_sends_booleans(rpc):
    rpc.add_label(name="pool:a", platform=False, only_if_needed=True)
    assert Label.objects.get(name="pool:a").only_if_needed is True


def test_an_existing_label_is_an_error_unless_ignored(rpc):
    label_id = rpc.add_label(name="pool:a")
    failed = refused(rpc.add_label, name="POOL:A")
    assert failed.name == "ValidationError" and "already exists" in failed.problem_keys["name"]
    assert rpc.add_label(name="pool:a", ignore_exception_if_exists=True) == label_id
    assert Label.objects.count() == 1


def test_add_label_resurrects_a_deleted_label_of_the_same_name(rpc, make_host):
    label_id = rpc.add_label(name="pool:a")
    rpc.delete_label(id="pool:a")
    assert rpc.add_label(name="pool:a", only_if_needed=True) == label_id
    label = Label.objects.get(pk=label_id)
    assert not label.invalid and label.only_if_needed


@pytest.mark.parametrize("kwargs, key", [
    ({"name": "bad,name"}, "name"), ({"name": ""}, "name"), ({"name": 5}, "name"),
    ({"name": "ok", "platform": "maybe"}, "platform"), ({"name": "ok", "colour": "red"}, "colour"),
    ({"name": "ok", "ignore_exception_if_exists": []}, "ignore_exception_if_exists"),
])
def test_bad_add_label_arguments_are_validation_errors_and_write_nothing(rpc, kwargs, key):
    failed = refused(rpc.add_label, **kwargs)
    assert key in failed.problem_keys
    assert not Label.objects.exists()


def test_modify_label(rpc, lab):
    rpc.modify_label(id="pool:a", name="pool:b", kernel_config="x")
    label = Label.objects.get(pk=Label.objects.get(name="pool:b").pk)
    assert label.kernel_config == "x"
    rpc.modify_label(id=label.pk, only_if_needed="true")
    assert Label.objects.get(pk=label.pk).only_if_needed


@pytest.mark.parametrize("data, key", [
    ({"invalid": True}, "invalid"), ({"host_set": [3]}, "host_set"), ({"name": "a*b"}, "name"),
    ({"name": "board:x"}, "name"), ({"platform": None}, "platform"),
])
def test_bad_modify_label_arguments(rpc, lab, data, key):
    failed = refused(rpc.modify_label, id="pool:a", **data)
    assert key in failed.problem_keys
    assert Label.objects.get(name="pool:a").platform is False


def test_modify_label_to_a_second_platform_of_a_host_is_refused(rpc, lab):
    Label.objects.create(name="plat-a", platform=True)
    rpc.label_add_hosts(id="plat-a", hosts=["host1"])
    failed = refused(rpc.modify_label, id="pool:a", platform=True)
    assert failed.problem_keys == {"labels": "Host host1 already has a platform: plat-a"}
    assert not Label.objects.get(name="pool:a").platform


def test_modify_or_delete_a_missing_label_is_does_not_exist(rpc, lab):
    assert refused(rpc.modify_label, id="nope", platform=True).name == "DoesNotExist"
    failed = refused(rpc.delete_label, id="nope")
    assert (failed.name, failed.message) == ("DoesNotExist", "The following labels do not exist: nope")


def test_delete_label_is_a_soft_delete_that_clears_its_hosts(rpc, lab):
    label = Label.objects.get(name="board:x")
    rpc.delete_label(id="board:x")  # atest label delete sends the name
    label.refresh_from_db()
    assert label.invalid and not label.host_set.exists()
    assert rpc.get_labels(name="board:x") == []
    assert rpc.get_hosts(hostname="host1")[0]["labels"] == ["pool:a"]
    assert refused(rpc.delete_label, id=label.pk).name == "DoesNotExist"


def test_get_labels_filters_the_clients_send(rpc, lab):
    host1 = lab["host1"]
    assert [r["name"] for r in rpc.get_labels(name__in=["pool:a", "board:y"])] == ["board:y", "pool:a"]
    assert [r["name"] for r in rpc.get_labels(host__hostname="host1")] == ["board:x", "pool:a"]  # host stat
    assert [r["name"] for r in rpc.get_labels(host__hostname__in=["locked1"])] == ["board:y"]  # Host.get_labels
    assert [r["name"] for r in rpc.get_labels(host=host1.pk)] == ["board:x", "pool:a"]  # host mod
    assert [r["name"] for r in rpc.get_labels(host=str(host1.pk))] == ["board:x", "pool:a"]
    assert [r["name"] for r in rpc.get_labels(sort_by=["-name"], query_limit=1)] == ["pool:a"]
    assert [r["name"] for r in rpc.get_labels(exclude_filters=[{"name__startswith": "board"}])] == ["pool:a"]
    assert rpc.get_labels(platform=True) == []


@pytest.mark.parametrize("kwargs", [
    {"nosuchfield": 1}, {"host__nosuch": 1}, {"exclude_filters": [{"nosuch": 1}]}, {"exclude_filters": 5},
    {"exclude_filters": ["name"]}, {"exclude_filters": [{"query_limit": 1}]}, {"name__in": "x"},
    {"query_limit": -1},
])
def test_bad_get_labels_filters_are_validation_errors(rpc, lab, kwargs):
    assert refused(rpc.get_labels, **kwargs).name == "ValidationError"


def test_get_labels_lists_valid_labels_only(rpc, lab):
    Label.objects.get(name="pool:a").delete()
    assert [r["name"] for r in rpc.get_labels()] == ["board:x", "board:y"]


def test_get_labels_uses_a_fixed_number_of_queries(rpc, db, figures):
    Label.objects.bulk_create([Label(name=f"l{i}") for i in range(10)])
    few = query_count(lambda: rpc.get_labels(name__startswith="l"))
    Label.objects.bulk_create([Label(name=f"m{i}") for i in range(500)])
    many = query_count(lambda: rpc.get_labels(name__startswith="m"))
    assert len(rpc.get_labels(name__startswith="m")) == 500
    assert few == many
    figures.append(f"get_labels: {few} queries for 10 rows, {many} for 500")


def test_label_add_hosts_by_name_and_remove(rpc, lab):
    # atest label add <l> -m h1,h2 and server/frontend Label.add_hosts: the label by name.
    rpc.label_add_hosts(id="pool:a", hosts=["host2", "host3"])
    assert sorted(Label.objects.get(name="pool:a").host_set.values_list("hostname", flat=True)) == [
        "host1", "host2", "host3"]
    rpc.label_remove_hosts(id="pool:a", hosts=["host1", "host3"])
    assert list(Label.objects.get(name="pool:a").host_set.values_list("hostname", flat=True)) == ["host2"]


def test_label_add_hosts_creates_a_missing_label(rpc, lab):
    rpc.label_add_hosts(id="pool:new", hosts=["host1"])
    assert list(Label.objects.get(name="pool:new").host_set.all()) == [lab["host1"]]


def test_label_add_hosts_with_a_missing_label_id_is_an_error(rpc, lab):
    failed = refused(rpc.label_add_hosts, id=99999, hosts=["host1"])
    assert failed.name == "DoesNotExist"
    assert Label.objects.count() == 3


def test_unknown_hosts_are_named_for_atest_to_retry_and_nothing_is_written(rpc, lab):
    failed = refused(rpc.label_add_hosts, id="pool:new", hosts=["host1", "ghost1", "ghost2"])
    assert failed.name == "DoesNotExist"
    # atest splits "<name>: <text>: a, b" on ':' and retries without the third part's items.
    text = f"{failed.name}: {failed.message}"
    assert text.split(":")[2].strip().split(", ") == ["ghost1", "ghost2"]
    assert not Label.objects.filter(name="pool:new").exists()
    rpc.label_add_hosts(id="pool:new", hosts=["host1"])
    failed = refused(rpc.label_remove_hosts, id="pool:new", hosts=["host1", "ghost1"])
    assert failed.message == "The following hosts do not exist: ghost1"
    assert Label.objects.get(name="pool:new").host_set.count() == 1


def test_label_add_hosts_keeps_one_platform_and_one_board(rpc, lab):
    Label.objects.create(name="plat-a", platform=True)
    Label.objects.create(name="plat-b", platform=True)
    rpc.label_add_hosts(id="plat-a", hosts=["host1", "host2"])
    rpc.label_add_hosts(id="plat-a", hosts=["host1"])  # already there: no clash with itself
    failed = refused(rpc.label_add_hosts, id="plat-b", hosts=["host3", "host2", "host1"])
    assert failed.problem_keys == {"labels": "Host host1 already has a platform: plat-a; "
                                             "Host host2 already has a platform: plat-a"}
    assert not Label.objects.get(name="plat-b").host_set.exists()
    failed = refused(rpc.label_add_hosts, id="board:z", hosts=["host1"])
    assert failed.problem_keys == {"labels": "Host host1 already has a board label: board:x"}
    assert not Label.objects.filter(name="board:z").exists()


class TestLabelHostAccess:
    def test_a_member_may_label_a_private_host(self, rpc, private_host):
        rpc.label_add_hosts(id="pool:p", hosts=["host-p"])
        rpc.label_remove_hosts(id="board:x", hosts=["host-p"])
        assert list(private_host.labels.values_list("name", flat=True)) == ["pool:p"]

    @pytest.mark.parametrize("method", ["label_add_hosts", "label_remove_hosts"])
    def test_a_non_member_may_not(self, bob_rpc, private_host, method):
        failed = refused(getattr(bob_rpc, method), id="board:x", hosts=["host-p"])
        assert failed.name == "AclAccessViolation" and failed.message.startswith("host_acl:")
        assert list(private_host.labels.values_list("name", flat=True)) == ["board:x"]

    def test_root_may_label_any_host(self, root_rpc, private_host):
        root_rpc.label_add_hosts(id="pool:root", hosts=["host-p"])
        assert private_host.labels.filter(name="pool:root").exists()

    def test_hosts_only_in_everyone_are_anyones(self, bob_rpc, lab):
        bob_rpc.label_add_hosts(id="pool:bob", hosts=["host2"])
        assert lab["host2"].labels.filter(name="pool:bob").exists()


# --- ACL groups -------------------------------------------------------------------------------------------


def test_add_acl_group_makes_the_caller_a_member(rpc):
    # server/frontend.AFE.create_acl: add_acl_group(name=, description=), then get_acl_groups(id=<new id>).
    group_id = rpc.add_acl_group(name="team-b", description="the b team")
    (row,) = rpc.get_acl_groups(id=group_id)
    assert set(row) == GROUP_KEYS
    assert row == {"id": group_id, "name": "team-b", "description": "the b team", "users": ["alice"], "hosts": []}
    # atest host create -a sends no description.
    assert AclGroup.objects.get(pk=rpc.add_acl_group(name="team-c")).description == ""


@pytest.mark.parametrize("kwargs, key", [
    ({"name": "team-a"}, "name"), ({"name": "TEAM-A"}, "name"), ({"name": ""}, "name"),
    ({"name": " padded"}, "name"), ({"name": ["x"]}, "name"), ({"name": "ok", "description": "d" * 300}, "description"),
    ({"name": "ok", "description": 5}, "description"), ({"name": "ok", "members": []}, "arguments"),
])
def test_bad_add_acl_group_arguments(rpc, private_group, kwargs, key):
    failed = refused(rpc.add_acl_group, **kwargs)
    assert key in failed.problem_keys
    assert AclGroup.objects.count() == 2


def test_get_acl_groups_filters_the_clients_send(rpc, private_host, lab):
    hosts = lambda **f: [(g["name"], g["hosts"]) for g in rpc.get_acl_groups(**f)]  # noqa: E731
    assert hosts(name__in=["team-a"]) == [("team-a", ["host-p"])]
    assert hosts(hosts__hostname="host-p") == [("team-a", ["host-p"])]  # host stat, Host.get_acls
    assert hosts(hosts=private_host.pk) == [("team-a", ["host-p"])]  # host mod
    assert [g["name"] for g in rpc.get_acl_groups(users__login="alice")] == [EVERYONE, "team-a"]
    assert [g["name"] for g in rpc.get_acl_groups(hosts__hostname="host1")] == [EVERYONE]
    everyone = rpc.get_acl_groups(name=EVERYONE)[0]
    assert everyone["id"] == AclGroup.everyone().pk and "host-p" not in everyone["hosts"]
    assert refused(rpc.get_acl_groups, nosuchfield=1).name == "ValidationError"
    assert refused(rpc.get_acl_groups, users__password="x").name == "ValidationError"


def test_get_acl_groups_uses_a_fixed_number_of_queries(rpc, db, figures):
    def make(prefix: str, n: int) -> None:
        groups = AclGroup.objects.bulk_create([AclGroup(name=f"{prefix}{i}") for i in range(n)])
        users = User.objects.bulk_create([User(login=f"{prefix}u{i}") for i in range(n)])
        hosts = Host.objects.bulk_create([Host(hostname=f"{prefix}h{i}") for i in range(n)])
        AclGroup.users.through.objects.bulk_create(
            [AclGroup.users.through(aclgroup=g, user=u) for g, u in zip(groups, users)])
        AclGroup.hosts.through.objects.bulk_create(
            [AclGroup.hosts.through(aclgroup=g, host=h) for g, h in zip(groups, hosts)])

    make("a", 10)
    few = query_count(lambda: rpc.get_acl_groups(name__startswith="a"))
    make("b", 500)
    many = query_count(lambda: rpc.get_acl_groups(name__startswith="b"))
    rows = rpc.get_acl_groups(name__startswith="b")
    assert len(rows) == 500 and rows[0]["users"] == ["bu0"] and rows[0]["hosts"] == ["bh0"]
    assert few == many
    figures.append(f"get_acl_groups: {few} queries for 10 rows, {many} for 500")


def test_acl_group_users(rpc, private_group, bob_rpc):
    # atest acl add team-a -u bob (the group by name), acl remove likewise.
    rpc.acl_group_add_users(id="team-a", users=["bob"])
    assert sorted(private_group.users.values_list("login", flat=True)) == ["alice", "bob"]
    rpc.acl_group_remove_users(id="team-a", users=["bob"])
    assert list(private_group.users.values_list("login", flat=True)) == ["alice"]


def test_unknown_users_are_named_for_atest_to_retry_and_nothing_is_written(rpc, private_group, bob_rpc):
    failed = refused(rpc.acl_group_add_users, id="team-a", users=["bob", "nobody", "ghost"])
    assert (failed.name, failed.message) == ("DoesNotExist", "The following users do not exist: nobody, ghost")
    assert f"{failed.name}: {failed.message}".split(":")[2].strip().split(", ") == ["nobody", "ghost"]
    assert list(private_group.users.values_list("login", flat=True)) == ["alice"]
    assert not User.objects.filter(login__in=["nobody", "ghost"]).exists()


def test_removing_every_user_keeps_the_caller(rpc, private_group, bob_rpc):
    private_group.users.add(User.objects.get(login="bob"))
    rpc.acl_group_remove_users(id="team-a", users=["alice", "bob"])
    assert list(private_group.users.values_list("login", flat=True)) == ["alice"]


def test_no_one_leaves_everyone(root_rpc, alice):
    failed = refused(root_rpc.acl_group_remove_users, id=EVERYONE, users=["alice"])
    assert "users" in failed.problem_keys
    assert AclGroup.everyone().users.filter(login="alice").exists()


def test_acl_group_hosts_and_the_everyone_rule(rpc, private_group, lab):
    # atest host create -a team-a / Host.add_acl: by name; the host leaves Everyone.
    rpc.acl_group_add_hosts(id="team-a", hosts=["host1", "host2"])
    assert acl_names(lab["host1"]) == ["team-a"]
    # atest host mod: acl_group_remove_hosts(id=<acl id>); a host in no group is public again.
    rpc.acl_group_remove_hosts(id=private_group.pk, hosts=["host1"])
    assert acl_names(lab["host1"]) == [EVERYONE]
    assert acl_names(lab["host2"]) == ["team-a"]
    failed = refused(rpc.acl_group_add_hosts, id="team-a", hosts=["host3", "ghost"])
    assert (failed.name, failed.message) == ("DoesNotExist", "The following hosts do not exist: ghost")
    assert acl_names(lab["host3"]) == [EVERYONE]


def test_delete_acl_group_returns_its_hosts_to_everyone(rpc, private_host):
    rpc.delete_acl_group(id="team-a")  # atest acl delete sends the name
    assert not AclGroup.objects.filter(name="team-a").exists()
    assert acl_names(private_host) == [EVERYONE]
    assert refused(rpc.delete_acl_group, id="team-a").name == "DoesNotExist"


def test_modify_acl_group(rpc, private_group):
    rpc.modify_acl_group(id="team-a", name="team-z", description="renamed")
    group = AclGroup.objects.get(pk=private_group.pk)
    assert (group.name, group.description) == ("team-z", "renamed")
    AclGroup.objects.create(name="other")
    for data, key in [({"name": "Other"}, "name"), ({"users": ["bob"]}, "users"), ({"name": "x\x01"}, "name")]:
        assert key in refused(rpc.modify_acl_group, id="team-z", **data).problem_keys
    assert AclGroup.objects.get(pk=private_group.pk).name == "team-z"


def test_the_atest_host_mod_flow(rpc, private_host):
    # atest host mod host-p -b pool:b -a team-b
    host = rpc.get_hosts(hostname__in=["host-p"])[0]
    labels = rpc.get_labels(host=host["id"])
    assert [(label["name"], label["platform"]) for label in labels] == [("board:x", False)]
    rpc.host_remove_labels(id=host["id"], labels=[label["id"] for label in labels])
    rpc.label_add_hosts(id="pool:b", hosts=["host-p"])
    groups = rpc.get_acl_groups(hosts=host["id"])
    for group in groups:
        if group["id"] != 1:
            rpc.acl_group_remove_hosts(id=group["id"], hosts=["host-p"])
    assert acl_names(private_host) == [EVERYONE]
    rpc.add_acl_group(name="team-b")
    rpc.acl_group_add_hosts(id="team-b", hosts=["host-p"])
    assert acl_names(private_host) == ["team-b"]
    assert list(private_host.labels.values_list("name", flat=True)) == ["pool:b"]


def test_remove_hosts_with_only_the_group_id(rpc, private_group):
    rpc.acl_group_remove_hosts(id=private_group.pk)


CHANGES = {
    "modify_acl_group": lambda r, g: r.modify_acl_group(id=g, description="x"),
    "acl_group_add_users": lambda r, g: r.acl_group_add_users(id=g, users=["alice"]),
    "acl_group_remove_users": lambda r, g: r.acl_group_remove_users(id=g, users=["alice"]),
    "acl_group_add_hosts": lambda r, g: r.acl_group_add_hosts(id=g, hosts=["host1"]),
    "acl_group_remove_hosts": lambda r, g: r.acl_group_remove_hosts(id=g, hosts=["host-p"]),
    "delete_acl_group": lambda r, g: r.delete_acl_group(id=g),
}


class TestAclGroupAccess:
    @pytest.mark.parametrize("change", CHANGES)
    def test_a_member_may_change_the_group(self, rpc, private_host, lab, change):
        CHANGES[change](rpc, "team-a")

    @pytest.mark.parametrize("change", CHANGES)
    def test_a_non_member_may_not(self, bob_rpc, private_host, lab, change):
        failed = refused(CHANGES[change], bob_rpc, "team-a")
        assert failed.name == "AclAccessViolation" and failed.message.startswith("acl_group_member:")
        group = AclGroup.objects.get(name="team-a")
        assert (group.description, list(group.hosts.all())) == ("", [private_host])
        assert list(group.users.values_list("login", flat=True)) == ["alice"]

    @pytest.mark.parametrize("change", CHANGES)
    def test_root_may_change_any_group(self, root_rpc, private_host, lab, change):
        CHANGES[change](root_rpc, "team-a")

    @pytest.mark.parametrize("change", CHANGES)
    def test_no_one_but_root_changes_everyone(self, rpc, lab, private_host, change):
        everyone = AclGroup.everyone()
        users, hosts = set(everyone.users.all()), set(everyone.hosts.all())
        failed = refused(CHANGES[change], rpc, everyone.pk)
        assert failed.name == "AclAccessViolation" and failed.message.startswith("everyone_fixed:")
        assert AclGroup.objects.get(pk=everyone.pk).description == everyone.description
        assert (set(everyone.users.all()), set(everyone.hosts.all())) == (users, hosts)

    def test_root_changes_everyone_but_never_deletes_or_renames_it(self, root_rpc, lab):
        root_rpc.modify_acl_group(id=EVERYONE, description="all of us")
        assert AclGroup.everyone().description == "all of us"
        failed = refused(root_rpc.delete_acl_group, id=EVERYONE)
        assert failed.name == "AclAccessViolation" and failed.message.startswith("everyone_fixed:")
        assert "name" in refused(root_rpc.modify_acl_group, id=EVERYONE, name="All").problem_keys
        assert AclGroup.objects.filter(name=EVERYONE).exists()

    def test_adding_someone_elses_private_host_is_refused(self, bob_rpc, private_host):
        bob_rpc.add_acl_group(name="bobs")
        failed = refused(bob_rpc.acl_group_add_hosts, id="bobs", hosts=["host-p"])
        assert failed.name == "AclAccessViolation" and failed.message.startswith("host_acl:")
        assert acl_names(private_host) == ["team-a"]


# --- users ------------------------------------------------------------------------------------------------


def test_get_users_renders_the_row(rpc, alice):
    (row,) = rpc.get_users(login="alice")
    assert set(row) == USER_KEYS
    assert row == {"id": alice.pk, "login": "alice", "access_level": 0, "reboot_before": "If dirty",
                   "reboot_after": "Never", "drone_set": None, "show_experimental": False}


def test_atest_user_list_filters(rpc, private_group, system_user):
    User.objects.create(login="bob")
    logins = lambda **f: [u["login"] for u in rpc.get_users(**f)]  # noqa: E731
    assert logins(login__in=["alice", "bob", "nobody"]) == ["alice", "bob"]
    assert logins(aclgroup__name__in=["team-a"]) == ["alice"]
    assert logins(access_level__in=["0"]) == ["alice", "bob"]
    assert logins(access_level__in=["100"], aclgroup__name__in=[EVERYONE]) == ["autotest_system"]
    assert logins(login__startswith="a", sort_by=["-login"]) == ["autotest_system", "alice"]
    for bad in ({"access_level__in": ["zero"]}, {"nosuchfield": 1}, {"login__in": "alice"}):
        assert refused(rpc.get_users, **bad).name == "ValidationError"


def test_get_users_uses_a_fixed_number_of_queries(rpc, db, figures):
    User.objects.bulk_create([User(login=f"a{i}") for i in range(10)])
    few = query_count(lambda: rpc.get_users(login__startswith="a"))
    User.objects.bulk_create([User(login=f"b{i}") for i in range(500)])
    many = query_count(lambda: rpc.get_users(login__startswith="b"))
    assert len(rpc.get_users(login__startswith="b")) == 500
    assert few == many
    figures.append(f"get_users: {few} queries for 10 rows, {many} for 500")


# --- bad input never reaches the database ----------------------------------------------------------------

WEIRD = ["a\x00b", "x" * 300, "\ud800", "é" * 256, "  ", "\n", 1.5, True, None, {"a": 1}, [["x"]], -1, 2**40]
WRITES = [
    ("add_label", {"name": "?"}), ("add_label", {"name": "ok", "kernel_config": "?"}),
    ("add_label", {"name": "ok", "platform": "?"}),
    ("modify_label", {"id": "pool:a", "name": "?"}), ("modify_label", {"id": "?", "platform": True}),
    ("modify_label", {"id": "pool:a", "kernel_config": "?"}), ("delete_label", {"id": "?"}),
    ("label_add_hosts", {"id": "?", "hosts": ["host1"]}), ("label_add_hosts", {"id": "pool:a", "hosts": "?"}),
    ("label_add_hosts", {"id": "pool:a", "hosts": ["?"]}), ("label_remove_hosts", {"id": "?", "hosts": ["host1"]}),
    ("add_acl_group", {"name": "?"}), ("add_acl_group", {"name": "ok", "description": "?"}),
    ("modify_acl_group", {"id": "team-a", "name": "?"}), ("delete_acl_group", {"id": "?"}),
    ("acl_group_add_users", {"id": "team-a", "users": ["?"]}), ("acl_group_remove_users", {"id": "?", "users": ["alice"]}),
    ("acl_group_add_hosts", {"id": "team-a", "hosts": ["?"]}), ("acl_group_remove_hosts", {"id": "?", "hosts": []}),
]


def _snapshot() -> tuple:
    return (sorted(Label.objects.values_list("id", "name", "kernel_config", "platform", "invalid")),
            sorted(AclGroup.objects.values_list("id", "name", "description")),
            sorted(AclGroup.users.through.objects.values_list("aclgroup_id", "user_id")),
            sorted(AclGroup.hosts.through.objects.values_list("aclgroup_id", "host_id")),
            sorted(Host.labels.through.objects.values_list("host_id", "label_id")),
            User.objects.count())


@pytest.mark.parametrize("value", WEIRD, ids=lambda v: repr(v)[:12])
def test_weird_values_are_error_objects_that_write_nothing(rpc, lab, private_group, value):
    before = _snapshot()
    for method, template in WRITES:
        kwargs = {k: (value if v == "?" else [value] if v == ["?"] else v) for k, v in template.items()}
        try:
            rpc.call(method, **kwargs)
        except RpcFailed as failed:
            assert failed.name in ("ValidationError", "DoesNotExist", "AclAccessViolation"), (method, failed)
            assert _snapshot() == before, method
        else:
            before = _snapshot()  # a value that is fine here (a long description, a name of é) was written
    for method, kwargs in [("get_labels", {"name": value}), ("get_labels", {"exclude_filters": value}),
                           ("get_acl_groups", {"name": value}), ("get_users", {"login": value}),
                           ("get_users", {"access_level__in": [value]})]:
        try:
            rpc.call(method, **kwargs)
        except RpcFailed as failed:
            assert failed.name == "ValidationError", (method, failed)
