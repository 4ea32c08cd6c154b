"""Job.create: explicit hosts, metahosts, hostless jobs, and refusing bad requests."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from afe.models import (
    ControlType,
    Host,
    HostQueueEntry,
    IneligibleHostQueue,
    Job,
    Label,
    Priority,
    RebootAfter,
    RebootBefore,
)

pytestmark = pytest.mark.django_db


def create(owner, **kwargs) -> Job:
    kwargs.setdefault("name", "test job")
    kwargs.setdefault("control_file", "job.run_test('sleeptest')")
    return Job.create(owner=owner, **kwargs)


def snapshot() -> tuple[int, ...]:
    """Row counts that a refused request must leave unchanged."""
    return (Job.objects.count(), HostQueueEntry.objects.count(), Host.objects.count(), Label.objects.count())


class TestCreatingJobs:
    def test_explicit_hosts_get_one_queued_entry_and_a_block_each(self, lab, system_user):
        job = create(system_user, hosts=["host1", "host2"], synch_count=2)
        entries = job.hostqueueentry_set.order_by("host__hostname")
        assert [(e.host.hostname, e.status, e.active, e.complete) for e in entries] == [
            ("host1", "Queued", False, False), ("host2", "Queued", False, False),
        ]
        assert IneligibleHostQueue.objects.filter(job=job).count() == 2
        assert job.synch_count == 2 and job.owner == "autotest_system"

    def test_metahost_counts_expand_into_entries(self, lab, system_user):
        job = create(system_user, meta_hosts=["2*board:x", "pool:a"])
        names = sorted(job.hostqueueentry_set.values_list("meta_host__name", flat=True))
        assert names == ["board:x", "board:x", "pool:a"]
        assert not job.hostqueueentry_set.filter(host__isnull=False).exists()

    def test_hostless_job_has_one_entry_with_neither_host_nor_metahost(self, system_user):
        job = create(system_user, hostless=True, control_type=ControlType.SERVER)
        entry = job.hostqueueentry_set.get()
        assert entry.is_hostless() and entry.status == "Queued"

    def test_dependencies_keyvals_parent_and_options_are_stored(self, lab, system_user):
        parent = create(system_user, hostless=True, control_type="Server", name="suite")
        job = create(
            system_user, hosts=["host1"], dependencies=["board:x", "pool:a"],
            keyvals={"build": "R100-1", "retries": 2}, parent_job=parent.pk,
            priority="Super", control_type="Server", reboot_before="Always",
            reboot_after=RebootAfter.ALWAYS, run_verify=True, email_list="a@x, b@y",
            timeout_mins=30, max_runtime_mins=20,
        )
        assert sorted(job.dependency_labels.values_list("name", flat=True)) == ["board:x", "pool:a"]
        assert job.keyval_dict() == {"build": "R100-1", "retries": "2"}
        assert job.parent_job == parent
        assert job.priority == Priority.SUPER and job.control_type == ControlType.SERVER
        assert job.reboot_before == RebootBefore.ALWAYS and job.reboot_after == RebootAfter.ALWAYS
        assert job.email_addresses() == ["a@x", "b@y"]
        assert (job.timeout_mins, job.max_runtime_mins) == (30, 20)
        assert job.tag() == f"{job.pk}-autotest_system"

    def test_reboot_options_default_to_the_owners_preferences(self, lab, alice):
        alice.reboot_before = RebootBefore.NEVER
        alice.reboot_after = RebootAfter.IF_ALL_TESTS_PASSED
        alice.save()
        job = create(alice, hosts=["host2"])
        assert (job.reboot_before, job.reboot_after) == (RebootBefore.NEVER, RebootAfter.IF_ALL_TESTS_PASSED)

    def test_defaults_follow_afe(self, lab, system_user):
        job = create(system_user, hosts=["host1"])
        assert job.priority == Priority.DEFAULT == 40
        assert job.control_type == ControlType.CLIENT
        assert (job.timeout_mins, job.max_runtime_mins) == (1440, 4320)
        assert job.run_reset and not job.run_verify and job.synch_count == 1

    def test_provision_dependencies_are_created_on_demand(self, lab, system_user):
        job = create(system_user, meta_hosts=["board:x"], dependencies=["board:x", "cros-version:R99-1"])
        assert Label.objects.filter(name="cros-version:R99-1").exists()
        assert job.dependency_labels.count() == 2

    def test_one_time_hosts_are_created_invalid_and_unprotected_by_repair(self, system_user):
        job = create(system_user, one_time_hosts=["adhoc1"])
        host = job.hostqueueentry_set.get().host
        assert host.hostname == "adhoc1" and host.invalid and host.protection == 3

    def test_a_dead_host_asked_for_by_name_is_made_ready(self, lab, system_user):
        Host.objects.filter(hostname="host3").update(status=Host.Status.REPAIR_FAILED)
        create(system_user, hosts=["host3"])
        assert Host.objects.get(hostname="host3").status == Host.Status.READY

    def test_template_jobs_are_not_scheduled(self, lab, system_user):
        job = create(system_user, hosts=["host1"], is_template=True)
        entry = job.hostqueueentry_set.get()
        assert entry.status == "Template" and entry.complete


class TestRefusingBadRequests:
    @pytest.mark.parametrize(
        "kwargs, field",
        [
            ({"hosts": ["host1", "nosuchhost"]}, "hosts"),
            ({"meta_hosts": ["no-such-label"]}, "meta_hosts"),
            ({"hosts": ["host1"], "dependencies": ["no-such-label"]}, "dependencies"),
            ({"hosts": ["host1"], "synch_count": 2}, "synch_count"),
            ({"meta_hosts": ["board:x"], "synch_count": 0}, "synch_count"),
            ({"hosts": ["host1"], "control_file": "   "}, "control_file"),
            ({"meta_hosts": ["0*board:x"]}, "meta_hosts"),
            ({"meta_hosts": ["-1*board:x"]}, "meta_hosts"),
            ({"hosts": ["host1", "host1"]}, "hosts"),
            ({"hosts": ["host1"], "one_time_hosts": ["host1"]}, "hosts"),
            ({}, "arguments"),
            ({"hostless": True, "hosts": ["host1"], "control_type": "Server"}, "hostless"),
            ({"hostless": True}, "control_type"),
            ({"hosts": ["host1"], "priority": "Urgent"}, "priority"),
            ({"hosts": ["host1"], "parent_job": 999999}, "parent_job_id"),
            ({"hosts": ["host1"], "name": ""}, "name"),
            ({"hosts": ["host2"], "dependencies": ["pool:a"]}, "hosts"),
            ({"meta_hosts": ["board:x"], "dependencies": ["board:y"]}, "meta_hosts"),
            ({"hosts": ["locked1", "host1"], "one_time_hosts": ["host2"]}, "one_time_hosts"),
            ({"hosts": ["host1"], "drone_set": "nope"}, "drone_set"),
        ],
    )
    def test_bad_request_is_refused_with_a_field_error_and_writes_nothing(self, lab, system_user, kwargs, field):
        before = snapshot()
        with pytest.raises(ValidationError) as excinfo:
            create(system_user, **kwargs)
        assert field in excinfo.value.message_dict
        assert snapshot() == before

    def test_refused_request_does_not_keep_one_time_hosts_or_provision_labels(self, lab, system_user):
        before = snapshot()
        with pytest.raises(ValidationError):
            create(system_user, one_time_hosts=["adhoc9"], meta_hosts=["nope"],
                   dependencies=["cros-version:R1-1"])
        assert snapshot() == before
        assert not Host.objects.filter(hostname="adhoc9").exists()

    def test_user_cannot_queue_on_hosts_outside_their_acl_groups(self, lab, private_group, alice, make_host):
        guarded = make_host("guarded")
        other = private_group.__class__.objects.create(name="team-b")
        other.hosts.add(guarded)
        other.rebalance_everyone()
        with pytest.raises(ValidationError, match="guarded"):
            create(alice, hosts=["guarded"])
        private_group.hosts.add(guarded)
        assert create(alice, hosts=["guarded"]).owner == "alice"

    def test_public_hosts_are_open_to_every_user(self, lab, alice):
        assert create(alice, hosts=["host1"]).hostqueueentry_set.count() == 1
