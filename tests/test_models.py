"""The AFE data model: derived flags, soft deletion, locking, aborts, special tasks."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from afe.models import (
    EVERYONE,
    AbortedHostQueueEntry,
    AclGroup,
    Host,
    HostAttribute,
    HostQueueEntry,
    Job,
    Label,
    SpecialTask,
    User,
)

pytestmark = pytest.mark.django_db
Status = HostQueueEntry.Status


def simple_job(owner: User, hosts=("host1",), **kwargs) -> Job:
    return Job.create(owner=owner, name="job", control_file="echo hi", hosts=list(hosts), **kwargs)


@pytest.mark.parametrize("status", list(Status))
def test_entry_active_and_complete_follow_status_on_every_save(lab, system_user, status):
    entry = simple_job(system_user).hostqueueentry_set.get()
    entry.status = status
    entry.save()
    entry.refresh_from_db()
    assert entry.active == (status in HostQueueEntry.ACTIVE_STATUSES)
    assert entry.complete == (status in HostQueueEntry.COMPLETE_STATUSES)


def test_queued_and_parsing_are_neither_active_nor_complete():
    for status in (Status.QUEUED, Status.PARSING):
        assert HostQueueEntry.status_flags(status) == {"active": False, "complete": False}


def test_saving_only_the_status_field_still_updates_the_flags(lab, system_user):
    entry = simple_job(system_user).hostqueueentry_set.get()
    entry.status = Status.COMPLETED
    entry.save(update_fields=["status"])
    entry.refresh_from_db()
    assert (entry.active, entry.complete) == (False, True)


class TestSoftDeletion:
    def test_deleted_host_is_kept_but_invalid_and_loses_labels_acls_and_attributes(self, lab, private_group):
        host = lab["host1"]
        private_group.hosts.add(host)
        host.set_attribute("connection", "local")
        host.delete()
        host = Host.objects.get(pk=host.pk)
        assert host.invalid
        assert not Host.valid_objects.filter(pk=host.pk).exists()
        assert host.labels.count() == 0
        assert host.aclgroup_set.count() == 0
        assert not HostAttribute.objects.filter(host=host).exists()

    def test_deleting_a_host_aborts_and_marks_its_entries_deleted(self, lab, system_user):
        entry = simple_job(system_user).hostqueueentry_set.get()
        lab["host1"].delete()
        entry.refresh_from_db()
        assert entry.deleted and entry.aborted

    def test_recreating_a_deleted_host_resurrects_the_same_row_with_its_old_status(self, make_host):
        host = make_host("dut7")
        Host.objects.filter(pk=host.pk).update(status=Host.Status.REPAIR_FAILED)
        HostAttribute.objects.create(host=host, attribute="stale", value="1")
        host.delete()
        HostAttribute.objects.create(host=host, attribute="left-over", value="1")

        again = Host.objects.create(hostname="dut7")
        assert again.pk == host.pk
        assert not again.invalid
        assert again.status == Host.Status.REPAIR_FAILED
        assert not HostAttribute.objects.filter(host_id=host.pk).exists()
        assert Host.objects.filter(hostname="dut7").count() == 1

    def test_label_queryset_delete_is_soft_and_bulk(self, lab, system_user):
        simple_job(system_user, dependencies=["board:x"])
        Label.objects.filter(name__in=["board:x", "pool:a"]).delete()
        assert set(Label.objects.filter(invalid=True).values_list("name", flat=True)) == {"board:x", "pool:a"}
        assert not lab["host1"].labels.filter(name="board:x").exists()
        assert Label.objects.create(name="board:x").invalid is False
        assert Label.objects.filter(name="board:x").count() == 1

    def test_deleting_a_deleted_host_is_an_error(self, lab):
        lab["host2"].delete()
        with pytest.raises(ValueError):
            lab["host2"].delete()

    def test_duplicate_hostname_is_refused_by_the_model_and_by_the_database(self, lab):
        from django.db import IntegrityError, transaction

        with pytest.raises(ValidationError, match="already exists"):
            Host.objects.create(hostname="HOST1")  # without case, on every database
        with pytest.raises(IntegrityError), transaction.atomic():
            Host.objects.bulk_create([Host(hostname="host1")])  # a path around save() still meets the index

    def test_hostname_is_stripped_and_required(self, db):
        assert Host.objects.create(hostname="  spaced  ").hostname == "spaced"
        with pytest.raises(ValidationError):
            Host.objects.create(hostname="   ")


class TestLocking:
    def test_lock_records_who_when_and_why_and_marks_dirty(self, make_host, alice):
        host = make_host("h", dirty=False)
        host.lock(by=alice, reason="flaky USB")
        assert host.locked and host.locked_by == alice and host.lock_time is not None
        assert host.lock_reason == "flaky USB" and host.dirty

    def test_lock_needs_a_reason_and_an_unlocked_host(self, make_host, alice):
        host = make_host("h")
        with pytest.raises(ValidationError):
            host.lock(by=alice, reason="  ")
        host.lock(by=alice, reason="first")
        with pytest.raises(ValidationError, match="already locked"):
            host.lock(by=alice, reason="second")
        host.refresh_from_db()
        assert host.lock_reason == "first"

    def test_unlock_clears_who_and_when(self, make_host, alice):
        host = make_host("h")
        host.lock(by=alice, reason="r")
        host.unlock()
        assert not host.locked and host.locked_by is None and host.lock_time is None
        with pytest.raises(ValidationError, match="already unlocked"):
            host.unlock()

    def test_bulk_lock_touches_only_unlocked_hosts(self, lab, alice):
        assert Host.objects.all().lock(by=alice, reason="maintenance") == 3
        assert Host.objects.get(hostname="locked1").lock_reason == "broken"
        assert Host.objects.all().unlock() == 4

    def test_saving_a_locked_host_sets_lock_time(self, db):
        host = Host.objects.create(hostname="h", locked=True, lock_reason="r", dirty=False)
        assert host.lock_time is not None and host.dirty


class TestAbort:
    def test_abort_records_who_and_when_without_changing_status(self, lab, alice, system_user):
        job = simple_job(system_user, hosts=["host1", "host2"])
        aborted = job.abort(by=alice)
        entries = job.hostqueueentry_set.all()
        assert sorted(aborted) == sorted(e.pk for e in entries)
        assert all(e.aborted and e.status == Status.QUEUED for e in entries)
        records = AbortedHostQueueEntry.objects.filter(queue_entry__in=entries)
        assert records.count() == 2 and all(r.aborted_by == alice for r in records)

    def test_abort_cascades_to_child_jobs_recursively(self, lab, system_user):
        suite = Job.create(owner=system_user, name="suite", control_file="x", control_type="Server", hostless=True)
        child = simple_job(system_user, parent_job=suite)
        grandchild = simple_job(system_user, hosts=["host2"], parent_job=child)
        suite.abort(by=system_user)
        for job in (suite, child, grandchild):
            assert job.hostqueueentry_set.get().aborted

    def test_complete_entries_are_not_aborted(self, lab, system_user):
        job = simple_job(system_user, hosts=["host1", "host2"])
        done = job.hostqueueentry_set.get(host__hostname="host1")
        done.status = Status.COMPLETED
        done.save()
        assert job.abort(by=system_user) == [job.hostqueueentry_set.get(host__hostname="host2").pk]
        done.refresh_from_db()
        assert not done.aborted
        assert not AbortedHostQueueEntry.objects.filter(queue_entry=done).exists()

    def test_full_status_shows_a_pending_abort(self, lab, system_user):
        entry = simple_job(system_user).hostqueueentry_set.get()
        entry.abort(by=system_user)
        assert entry.full_status() == "Aborted (Queued)"


class TestSpecialTasks:
    def test_schedule_special_task_returns_the_already_queued_task(self, lab, system_user):
        first = SpecialTask.schedule_special_task(lab["host1"], SpecialTask.Task.VERIFY, system_user)
        again = SpecialTask.schedule_special_task(lab["host1"], SpecialTask.Task.VERIFY, system_user)
        repair = SpecialTask.schedule_special_task(lab["host1"], SpecialTask.Task.REPAIR, system_user)
        assert first.pk == again.pk != repair.pk

    def test_a_running_task_does_not_block_a_new_one(self, lab, system_user):
        first = SpecialTask.schedule_special_task(lab["host1"], SpecialTask.Task.VERIFY, system_user)
        first.activate()
        second = SpecialTask.schedule_special_task(lab["host1"], SpecialTask.Task.VERIFY, system_user)
        assert second.pk != first.pk

    def test_status_and_life_cycle(self, lab, system_user):
        task = SpecialTask.schedule_special_task(lab["host1"], SpecialTask.Task.CLEANUP, system_user)
        assert task.status == "Queued"
        task.activate()
        assert task.status == "Running" and task.time_started
        task.finish(success=False)
        assert task.status == "Failed" and task.time_finished and not task.is_active
        assert task.execution_path() == f"hosts/host1/{task.pk}-cleanup"

    def test_task_for_an_entry_is_requested_by_the_job_owner(self, lab, alice, system_user):
        entry = simple_job(alice, hosts=["host2"]).hostqueueentry_set.get()
        task = SpecialTask.objects.create(host=lab["host2"], task="Verify", requested_by=system_user, queue_entry=entry)
        assert task.requested_by == alice

    def test_abort_only_flags_active_tasks(self, lab, system_user):
        queued = SpecialTask.schedule_special_task(lab["host1"], "Verify", system_user)
        running = SpecialTask.schedule_special_task(lab["host2"], "Verify", system_user)
        running.activate()
        assert SpecialTask.objects.all().abort() == 1
        queued.refresh_from_db()
        running.refresh_from_db()
        assert running.is_aborted and not queued.is_aborted

    def test_schedule_for_hosts_skips_hosts_with_one_queued(self, lab, system_user):
        hosts = [lab["host1"], lab["host2"], lab["host3"]]
        SpecialTask.schedule_special_task(lab["host1"], "Repair", system_user)
        assert SpecialTask.schedule_for_hosts(hosts, "Repair", system_user) == 2
        assert SpecialTask.schedule_for_hosts(hosts, "Repair", system_user) == 0


class TestAclsAndUsers:
    def test_new_users_and_hosts_join_everyone(self, make_host, alice):
        everyone = AclGroup.objects.get(name=EVERYONE)
        assert alice in everyone.users.all()
        assert make_host("h") in everyone.hosts.all()

    def test_a_host_in_a_real_group_leaves_everyone_and_returns_when_removed(self, make_host, private_group):
        host = make_host("h")
        private_group.hosts.add(host)
        AclGroup.rebalance_everyone()
        assert list(host.aclgroup_set.values_list("name", flat=True)) == ["team-a"]
        private_group.hosts.remove(host)
        AclGroup.rebalance_everyone()
        assert list(host.aclgroup_set.values_list("name", flat=True)) == [EVERYONE]

    def test_everyone_cannot_be_deleted(self, db):
        with pytest.raises(ValidationError):
            AclGroup.everyone().delete()

    def test_django_users_get_an_afe_user_of_the_same_login(self, db):
        get_user_model().objects.create_user("bob", password="x")
        get_user_model().objects.create_superuser("root2", password="x")
        assert User.objects.get(login="bob").access_level == User.ACCESS_USER
        assert User.objects.get(login="root2").is_superuser()

    def test_system_user_is_root(self, db):
        assert User.system_user().is_superuser()
        assert User.system_user().login == "autotest_system"


def test_hosts_sort_like_afe():
    names = ["yolkfolk", "host10", "HOST010", "host2", "alice", "host09", "host11", "Host1", "host3"]
    assert sorted(names, key=Host.sort_key) == [
        "alice", "Host1", "host2", "host3", "host09", "HOST010", "host10", "host11", "yolkfolk",
    ]
