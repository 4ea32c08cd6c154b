"""Hostile names and arguments at the door: Job.create and the models refuse them, and write nothing."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from afe import names
from afe.models import (
    AclGroup, DroneSet, EVERYONE, Host, HostAttribute, HostQueueEntry, Job, JobKeyval, Label, User,
)

pytestmark = pytest.mark.django_db

HOSTILE_HOSTNAMES = [
    "/etc/passwd", "../alice-job", "a/../../b", "a,b", "user@host", "host:22", "host\x00x", "h" * 201,
    "host\nname", "-oProxyCommand=x", ".hidden", "a..b", "", "   ", "host name", "hôst", "host\udcff",
]


def rows() -> tuple[int, ...]:
    """Row counts a refused request must leave as they were."""
    return (Job.objects.count(), HostQueueEntry.objects.count(), Host.objects.count(), Label.objects.count(),
            JobKeyval.objects.count())


def submit(owner: User, **kwargs) -> Job:
    kwargs.setdefault("name", "hardening")
    kwargs.setdefault("control_file", "job.run_test('sleeptest')")
    return Job.create(owner=owner, **kwargs)


def refused(owner: User, field: str, **kwargs) -> str:
    """Submit, expect a ValidationError naming ``field``, check nothing was written; returns the message."""
    before = rows()
    with pytest.raises(ValidationError) as excinfo:
        submit(owner, **kwargs)
    assert rows() == before
    assert field in excinfo.value.message_dict, excinfo.value.message_dict
    return "; ".join(excinfo.value.message_dict[field])


class TestOneTimeHostnames:
    @pytest.mark.parametrize("hostname", HOSTILE_HOSTNAMES)
    def test_a_hostile_one_time_hostname_is_refused(self, system_user, hostname):
        refused(system_user, "one_time_hosts", one_time_hosts=[hostname])

    def test_a_comma_list_cannot_smuggle_in_a_locked_host_outside_the_acl(self, lab, alice):
        other = AclGroup.objects.create(name="other-team")  # locked1 leaves Everyone: alice may not use it
        other.hosts.add(lab["locked"])
        message = refused(alice, "one_time_hosts", one_time_hosts=["locked1,host9"])
        assert "not a valid hostname" in message
        assert not lab["locked"].hostqueueentry_set.exists()

    def test_a_good_one_time_host_is_created_invalid_and_used(self, system_user):
        job = submit(system_user, one_time_hosts=["dut-17.lab.example.com"])
        host = job.hostqueueentry_set.get().host
        assert host.hostname == "dut-17.lab.example.com" and host.invalid

    def test_an_existing_host_in_another_case_is_not_a_one_time_host(self, lab, system_user):
        assert "already exists" in refused(system_user, "one_time_hosts", one_time_hosts=["HOST1"])


class TestNamesEverywhere:
    @pytest.mark.parametrize("hostname", HOSTILE_HOSTNAMES)
    def test_hosts_cannot_be_saved_with_a_hostile_name(self, db, hostname):
        with pytest.raises(ValidationError) as excinfo:
            Host.objects.create(hostname=hostname)
        assert "hostname" in excinfo.value.message_dict
        assert not Host.objects.exists()

    @pytest.mark.parametrize("name", ["a,b", "2*x", "-x", " x", "x\n", "l" * 256, "x\x00", "\udc80"])
    def test_labels_cannot_be_saved_with_a_hostile_name(self, db, name):
        with pytest.raises(ValidationError) as excinfo:
            Label.objects.create(name=name)
        assert "name" in excinfo.value.message_dict

    @pytest.mark.parametrize("login", ["a/b", "..", "a..b", "x\n", "", "l" * 151, "-x", "a b"])
    def test_users_cannot_be_saved_with_a_hostile_login(self, db, login):
        with pytest.raises(ValidationError):
            User.objects.create(login=login)

    def test_logins_follow_djangos_usernames(self, db):
        for login in ["alice", "bob.smith", "carol@lab", "d+e", "josé", "_svc-1"]:
            assert User.objects.create(login=login).login == login

    def test_host_attributes_cannot_forge_lines(self, lab):
        with pytest.raises(ValidationError):
            lab["host1"].set_attribute("ssh_user", "root\nssh_port=1")
        with pytest.raises(ValidationError):
            lab["host1"].set_attribute("bad=key", "x")
        assert not HostAttribute.objects.exists()

    def test_the_same_length_limits_hold_on_every_database(self, lab, system_user):
        refused(system_user, "name", hosts=["host1"], name="n" * 256)
        refused(system_user, "keyvals", hosts=["host1"], keyvals={"k": "v" * 301})
        refused(system_user, "keyvals", hosts=["host1"], keyvals={"k" * 91: "v"})
        refused(system_user, "email_list", hosts=["host1"], email_list=",".join(["a@example.com"] * 20))

    def test_a_locked_host_always_has_a_reason(self, lab):
        host = lab["host2"]
        host.locked = True
        host.lock_reason = "  "
        with pytest.raises(ValidationError):
            host.save()
        with pytest.raises(Exception), transaction.atomic():  # the database refuses a path around save()
            Host.objects.filter(pk=host.pk).update(locked=True, lock_reason="")
        host.refresh_from_db()
        assert not host.locked

    def test_everyone_cannot_be_renamed(self, db):
        everyone = AclGroup.everyone()
        everyone.name = "Nobody"
        with pytest.raises(ValidationError):
            everyone.save()
        assert AclGroup.objects.filter(name=EVERYONE).exists()

    def test_drone_set_names_follow_the_rules(self, db):
        with pytest.raises(ValidationError):
            DroneSet.objects.create(name="x\ny")


class TestKeyvals:
    @pytest.mark.parametrize("key", sorted(names.RESERVED_KEYVAL_KEYS))
    def test_the_schedulers_own_keys_cannot_be_submitted(self, lab, system_user, key):
        assert "written by the scheduler" in refused(system_user, "keyvals", hosts=["host1"], keyvals={key: "1"})

    @pytest.mark.parametrize("keyvals", [
        {"build": "R1\njob_queued=0"}, {"a=b": "c"}, {"k\n": "v"}, {"k": "v\r"}, {"k": None}, {"k": ["x"]},
        {"": "v"}, {3: "v"}, "k=v", ["k", "v"],
    ])
    def test_a_keyval_that_could_forge_a_line_is_refused(self, lab, system_user, keyvals):
        refused(system_user, "keyvals", hosts=["host1"], keyvals=keyvals)

    def test_numbers_are_stored_as_text(self, lab, system_user):
        job = submit(system_user, hosts=["host1"], keyvals={"retries": 2, "ratio": 0.5})
        assert job.keyval_dict() == {"retries": "2", "ratio": "0.5"}


class TestArguments:
    @pytest.mark.parametrize("kwargs,field", [
        ({"hosts": "host1"}, "hosts"),  # a string is not a list of hosts
        ({"hosts": {"host1": 1}}, "hosts"),
        ({"hosts": [None]}, "hosts"),
        ({"hosts": [1]}, "hosts"),
        ({"meta_hosts": "board:x"}, "meta_hosts"),
        ({"meta_hosts": ["100000000*board:x"]}, "meta_hosts"),
        ({"meta_hosts": ["99999999999999999999*board:x"]}, "meta_hosts"),
        ({"meta_hosts": ["0*board:x"]}, "meta_hosts"),
        ({"meta_hosts": ["-1*board:x"]}, "meta_hosts"),
        ({"meta_hosts": ["*"]}, "meta_hosts"),
        ({"meta_hosts": [b"\xff\xfe"]}, "meta_hosts"),
        ({"meta_hosts": ["board:x"], "priority": 41}, "priority"),
        ({"meta_hosts": ["board:x"], "priority": "40"}, "priority"),
        ({"meta_hosts": ["board:x"], "priority": True}, "priority"),
        ({"meta_hosts": ["board:x"], "priority": None}, "priority"),
        ({"meta_hosts": ["board:x"], "priority": 2**70}, "priority"),
        ({"meta_hosts": ["board:x"], "control_type": "Shell"}, "control_type"),
        ({"meta_hosts": ["board:x"], "synch_count": "1"}, "synch_count"),
        ({"meta_hosts": ["board:x"], "synch_count": 1.0}, "synch_count"),
        ({"meta_hosts": ["board:x"], "synch_count": 2**40}, "synch_count"),
        ({"meta_hosts": ["board:x"], "timeout_mins": "30"}, "timeout_mins"),
        ({"meta_hosts": ["board:x"], "timeout_mins": 0}, "timeout_mins"),
        ({"meta_hosts": ["board:x"], "timeout_mins": 2**31}, "timeout_mins"),
        ({"meta_hosts": ["board:x"], "max_runtime_mins": -5}, "max_runtime_mins"),
        ({"meta_hosts": ["board:x"], "run_verify": "yes"}, "run_verify"),
        ({"meta_hosts": ["board:x"], "run_reset": None}, "run_reset"),
        ({"meta_hosts": ["board:x"], "hostless": "false"}, "hostless"),
        ({"meta_hosts": ["board:x"], "parent_job": "1"}, "parent_job_id"),
        ({"meta_hosts": ["board:x"], "parent_job": 2**63}, "parent_job_id"),
        ({"meta_hosts": ["board:x"], "parent_job": 999999}, "parent_job_id"),
        ({"meta_hosts": ["board:x"], "drone_set": "nope"}, "drone_set"),
        ({"meta_hosts": ["board:x"], "drone_set": 5}, "drone_set"),
        ({"meta_hosts": ["board:x"], "dependencies": "board:x"}, "dependencies"),
        ({"meta_hosts": ["board:x"], "dependencies": ["cros-version:a,b"]}, "dependencies"),
        ({"meta_hosts": ["board:x"], "email_list": "not an address"}, "email_list"),
        ({"meta_hosts": ["board:x"], "email_list": "a@example.com\nBcc: x@evil"}, "email_list"),
        ({"meta_hosts": ["board:x"], "name": None}, "name"),
        ({"meta_hosts": ["board:x"], "name": 5}, "name"),
        ({"meta_hosts": ["board:x"], "name": "two\nlines"}, "name"),
        ({"meta_hosts": ["board:x"], "name": b"\xc3\x28"}, "name"),
        ({"meta_hosts": ["board:x"], "name": "bad \udcff text"}, "name"),
        ({"meta_hosts": ["board:x"], "control_file": None}, "control_file"),
        ({"meta_hosts": ["board:x"], "control_file": ["x"]}, "control_file"),
        ({"meta_hosts": ["board:x"], "control_file": "x\udcff"}, "control_file"),
        ({"meta_hosts": ["board:x"], "control_file": "#" * (1024 * 1024 + 1)}, "control_file"),
    ])
    def test_a_bad_argument_is_a_validation_error_naming_it(self, lab, system_user, kwargs, field):
        refused(system_user, field, **kwargs)

    def test_the_number_of_entries_is_bounded_before_anything_is_expanded(self, lab, system_user, settings):
        settings.JOB_MAX_ENTRIES = 10
        message = refused(system_user, "arguments", meta_hosts=["6*board:x", "5*board:x"])
        assert "JOB_MAX_ENTRIES" in message
        assert submit(system_user, meta_hosts=["10*board:x"]).hostqueueentry_set.count() == 10

    def test_the_owner_must_be_a_saved_user_with_a_valid_login(self, lab, system_user):
        with pytest.raises(ValidationError) as excinfo:
            submit("alice", hosts=["host1"])
        assert "owner" in excinfo.value.message_dict
        with pytest.raises(ValidationError):
            submit(User(login="ghost"), hosts=["host1"])

    def test_utf8_bytes_and_any_script_are_fine_where_text_is_free(self, lab, system_user):
        job = submit(system_user, hosts=["host1"], name="Prüfung 試験".encode(), keyvals={"note": "größe"})
        assert job.name == "Prüfung 試験" and job.keyval_dict() == {"note": "größe"}

    def test_a_provision_label_created_on_demand_follows_the_label_rules(self, lab, system_user):
        refused(system_user, "dependencies", meta_hosts=["board:x"], dependencies=["cros-version:x\ny"])
        job = submit(system_user, meta_hosts=["board:x"], dependencies=["cros-version:lumpy-release/R27-1.0"])
        assert job.dependency_labels.get().name == "cros-version:lumpy-release/R27-1.0"
