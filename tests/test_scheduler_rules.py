"""Scheduler rules checked against the database: matching (§4.2/§4.4), cleanup (§3.17), mail, aborts."""
from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from afe.models import AclGroup, Host, HostQueueEntry, Job, Protection, RebootBefore, SpecialTask, User
from scheduler import cleanup
from scheduler.hosts import release_idle_hosts

Status = HostQueueEntry.Status


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def job(owner: User, **kwargs) -> Job:
    kwargs.setdefault("name", "test")
    kwargs.setdefault("control_file", "x")
    kwargs.setdefault("reboot_before", RebootBefore.NEVER)
    kwargs.setdefault("run_reset", False)
    return Job.create(owner=owner, **kwargs)


def entry(job: Job) -> HostQueueEntry:
    return job.hostqueueentry_set.select_related("host").get()


class TestMatchingAgainstTheDatabase:
    def test_explicit_host_is_leased_and_queued_with_its_prejob_task(self, scheduler, lab, owner):
        """H4: the entry holds its host (active, still Queued) while its Verify is queued."""
        j = job(owner, hosts=["host1"], run_verify=True)
        release_idle_hosts()
        from scheduler.assign import schedule_new_jobs

        schedule_new_jobs(scheduler.ctx)
        e = entry(j)
        assert (e.status, e.active, e.host.leased) == (Status.QUEUED, True, True)
        assert list(SpecialTask.objects.values_list("task", "queue_entry_id")) == [("Verify", e.pk)]

    def test_host_lacking_a_dependency_is_not_leased(self, scheduler, lab, owner):
        """H5: a pre-assigned host that does not match stays unleased; the entry stays inactive."""
        j = job(owner, hosts=["host2"])
        Host.labels.through.objects.filter(host__hostname="host2").delete()
        Job.dependency_labels.through.objects.create(job=j, label_id=Host.objects.get(hostname="host1").labels.first().pk)
        release_idle_hosts()
        from scheduler.assign import schedule_new_jobs

        schedule_new_jobs(scheduler.ctx)
        e = entry(j)
        assert (e.status, e.active, e.host.leased) == (Status.QUEUED, False, False)

    def test_leased_host_is_left_alone_until_released(self, scheduler, lab, owner):
        """H6: a host still leased is not taken; the release pass frees it when it is idle and Ready."""
        j = job(owner, hosts=["host1"])
        from scheduler.assign import schedule_new_jobs

        schedule_new_jobs(scheduler.ctx)
        assert not entry(j).active
        assert release_idle_hosts() == 3  # host1..host3; the locked host stays leased
        schedule_new_jobs(scheduler.ctx)
        assert entry(j).active

    def test_a_pass_that_matched_nothing_is_not_repeated_until_its_inputs_change(self, scheduler, lab, owner,
                                                                                  monkeypatch):
        from scheduler import assign
        from scheduler.unchanged import LastRun

        passes = []
        real_match = assign.match_entries
        monkeypatch.setattr(assign, "match_entries", lambda *args: passes.append(1) or real_match(*args))
        j = job(owner, hosts=["host1"])  # host1 is still leased: nothing can match
        fruitless = LastRun()
        assert assign.schedule_new_jobs(scheduler.ctx, fruitless) == 0
        assert assign.schedule_new_jobs(scheduler.ctx, fruitless) == 0
        assert len(passes) == 1  # the same inputs: the second pass was skipped
        release_idle_hosts()  # host1 free: the inputs changed
        assert assign.schedule_new_jobs(scheduler.ctx, fruitless) == 1
        assert len(passes) == 2 and entry(j).active and fruitless.digest is None

    def test_hosts_outside_the_owners_acls_are_not_used(self, scheduler, lab, make_host):
        """S5: a metahost entry needs a host sharing an ACL group with the job's owner."""
        alice = User.objects.create(login="alice2")
        private = AclGroup.objects.create(name="private")
        private.hosts.add(*Host.objects.filter(hostname__in=["host1", "host2", "host3"]))
        AclGroup.rebalance_everyone()
        j = job(alice, meta_hosts=["board:x"])
        scheduler.tick(3)
        assert entry(j).host_id is None
        private.users.add(alice)
        scheduler.tick(2)
        assert entry(j).host is not None

    def test_a_running_host_is_not_given_to_another_job(self, scheduler, autoserv, lab, owner):
        """S4: a host is released only when idle."""
        autoserv.set("job", "hold")
        first = job(owner, hosts=["host1"])
        scheduler.run_until(lambda: autoserv.calls("job"), "the first job to start")
        second = job(owner, meta_hosts=["pool:a"])
        scheduler.tick(5)
        assert entry(second).host_id is None
        autoserv.release("job", 0)
        scheduler.run_until_idle()
        assert entry(first).status == entry(second).status == Status.COMPLETED

    def test_higher_priority_entry_gets_the_host_first(self, scheduler, autoserv, lab, owner):
        """S2: priority, then age."""
        low = job(owner, hosts=["host1"], priority=10)
        high = job(owner, hosts=["host1"], priority=80)
        autoserv.set("job", "hold")
        scheduler.run_until(lambda: autoserv.calls("job"), "a job to start")
        assert entry(high).status == Status.RUNNING and entry(low).status == Status.QUEUED
        autoserv.release("job", 0)
        scheduler.run_until_idle()


class TestPeriodicCleanup:
    def test_reverify_dead_hosts_skips_locked_and_do_not_verify_hosts(self, lab, owner, make_host):
        """C1: only unlocked, verifiable Repair Failed hosts get a Verify."""
        for name in ("host1", "host2", "host3"):
            Host.objects.filter(hostname=name).update(status=Host.Status.REPAIR_FAILED)
        Host.objects.filter(hostname="host2").update(locked=True, lock_reason="broken")
        Host.objects.filter(hostname="host3").update(protection=Protection.DO_NOT_VERIFY)
        assert cleanup.reverify_dead_hosts(0, owner, random.Random(1)) == 1
        assert list(SpecialTask.objects.values_list("host__hostname", "task")) == [("host1", "Verify")]

    def test_reverify_is_rate_limited(self, owner, make_host):
        """C2: at most ``reverify_max_hosts_at_once`` per round."""
        for i in range(4):
            make_host(f"dead{i}", status=Host.Status.REPAIR_FAILED)
        assert cleanup.reverify_dead_hosts(2, owner, random.Random(1)) == 2
        assert SpecialTask.objects.filter(task="Verify").count() == 2

    def test_max_runtime_aborts_long_running_entries(self, lab, owner):
        j = job(owner, hosts=["host1"], max_runtime_mins=10)
        HostQueueEntry.objects.filter(job=j).update(status=Status.RUNNING, active=True,
                                                    started_on=timezone.now() - timedelta(minutes=11))
        assert cleanup.abort_entries_past_max_runtime(timezone.now(), owner) == 1
        assert entry(j).aborted

    def test_blocks_of_finished_jobs_are_cleared(self, lab, owner):
        from afe.models import IneligibleHostQueue

        j = job(owner, hosts=["host1"])
        assert IneligibleHostQueue.objects.filter(job=j).exists()
        HostQueueEntry.objects.filter(job=j).update(status=Status.COMPLETED, complete=True)
        assert cleanup.clear_inactive_blocks() == 1

    def test_daily_upkeep_fixes_aborted_entries_left_active(self, scheduler, lab, owner):
        j = job(owner, hosts=["host1"])
        HostQueueEntry.objects.filter(job=j).update(status=Status.ABORTED, active=True, complete=True)
        scheduler.dispatcher.cleanup.run_daily(timezone.now())
        assert not entry(j).active


class TestMail:
    def test_per_status_mail_and_the_job_complete_summary(self, scheduler, autoserv, lab, owner):
        """The original never sent the job-complete mail (§6.1 #1)."""
        j = job(owner, hosts=["host1", "host2"], email_list="dev@lab, qa@lab")
        scheduler.run_until_idle()
        subjects = [m.subject for m in mail.outbox]
        assert sum("Status: Completed" in s for s in subjects) == 2
        assert [s for s in subjects if "Job complete" in s] == [f'Autotest | Job ID: {j.pk} "test" | Job complete']
        assert all(m.to == ["dev@lab", "qa@lab"] for m in mail.outbox)

    def test_operator_digest_goes_to_the_notify_addresses(self, scheduler, lab, owner):
        scheduler.with_config(notify_email=("ops@lab",))
        scheduler.notifier.operator("Something odd", "details")
        scheduler.tick()
        [digest] = [m for m in mail.outbox if m.to == ["ops@lab"]]
        assert "Something odd" in digest.body

    def test_no_mail_for_statuses_not_asked_for(self, scheduler, autoserv, lab, owner):
        scheduler.with_config(notify_email_statuses=frozenset({"failed"}))
        job(owner, hosts=["host1"], email_list="dev@lab")
        scheduler.run_until_idle()
        assert not [m for m in mail.outbox if "Status:" in m.subject]


class TestAborts:
    def test_abort_while_pending_frees_the_host(self, scheduler, autoserv, lab, owner):
        j = job(owner, hosts=["host1", "host2"], synch_count=2)
        Host.objects.filter(hostname="host2").update(locked=True, lock_reason="later")
        scheduler.run_until(lambda: entry_status(j, "host1") == Status.PENDING, "host1 to wait for host2")
        j.abort(by=owner)
        scheduler.run_until_idle()
        assert set(j.hostqueueentry_set.values_list("status", flat=True)) == {Status.ABORTED}
        assert Host.objects.get(hostname="host1").status == Host.Status.READY

    def test_abort_of_a_running_special_task_kills_it_and_repairs(self, scheduler, autoserv, lab, owner):
        autoserv.set("verify", "hold")
        task = SpecialTask.schedule_special_task(Host.objects.get(hostname="host2"), "Verify", owner)
        scheduler.run_until(lambda: autoserv.calls("verify"), "the verify to start")
        SpecialTask.objects.filter(pk=task.pk).abort()
        autoserv.set("verify", 0)
        scheduler.run_until_idle()
        task.refresh_from_db()
        assert task.is_complete and not task.success
        assert autoserv.kinds() == ["verify", "repair", ]

    def test_aborted_task_that_never_started_is_not_run(self, scheduler, autoserv, lab, owner):
        """§6.1 #6: the original still ran it."""
        Host.objects.filter(hostname="host3").update(locked=True, lock_reason="wait")
        task = SpecialTask.schedule_special_task(Host.objects.get(hostname="host3"), "Verify", owner)
        SpecialTask.objects.filter(pk=task.pk).update(is_aborted=True)
        Host.objects.filter(hostname="host3").update(locked=False)
        scheduler.tick(5)
        task.refresh_from_db()
        assert task.is_complete and not task.success
        assert autoserv.kinds() == []


def entry_status(j: Job, hostname: str) -> str:
    return j.hostqueueentry_set.get(host__hostname=hostname).status


class TestResilience:
    def test_a_failing_step_is_logged_and_the_rest_of_the_tick_runs(self, scheduler, lab, owner, caplog):
        j = job(owner, hosts=["host1"])
        original = scheduler.dispatcher.apply_finished_processes
        scheduler.dispatcher.apply_finished_processes = lambda: 1 / 0
        report = scheduler.dispatcher.tick()
        report = scheduler.dispatcher.tick()
        assert report.errors == ["processes_finished"]
        assert "tick step processes_finished failed" in caplog.text
        assert entry(j).active  # scheduling still happened
        scheduler.dispatcher.apply_finished_processes = original

    def test_step_times_are_kept_for_metrics(self, scheduler, lab):
        scheduler.tick(2)
        registry = scheduler.ctx.metrics.registry
        for step in ("entries_scheduled", "work_started", "hosts_released"):
            assert registry.get_sample_value("scheduler_tick_step_seconds_count", {"step": step}) >= 2
            assert registry.get_sample_value("scheduler_tick_step_seconds_sum", {"step": step}) >= 0


class TestDroneSets:
    def test_a_job_whose_drone_set_has_no_usable_drone_never_starts(self, scheduler, autoserv, lab, owner):
        """D1: an empty allowed set means the job cannot start."""
        from afe.models import Drone, DroneSet

        elsewhere = DroneSet.objects.create(name="elsewhere")
        elsewhere.drones.add(Drone.objects.create(hostname="far-away-drone"))
        j = job(owner, hosts=["host1"], drone_set="elsewhere")
        scheduler.tick(6)
        assert entry(j).status == Status.STARTING and autoserv.calls("job") == []

    def test_a_job_runs_on_a_drone_of_its_drone_set(self, scheduler, autoserv, lab, owner):
        from afe.models import Drone, DroneSet

        here = DroneSet.objects.create(name="here")
        here.drones.add(Drone.objects.create(hostname="localhost"))
        j = job(owner, hosts=["host1"], drone_set="here")
        scheduler.run_until_idle()
        assert entry(j).status == Status.COMPLETED

    def test_a_job_that_can_never_start_does_not_hold_up_the_others(self, scheduler, autoserv, lab, owner):
        from afe.models import DroneSet

        DroneSet.objects.create(name="empty")
        stuck = job(owner, hosts=["host1"], drone_set="empty")
        other = job(owner, hosts=["host2"])
        scheduler.run_until(lambda: entry(other).status == Status.COMPLETED, "the other job to complete")
        assert entry(stuck).status == Status.STARTING


def test_a_lost_database_connection_is_retried_not_fatal(scheduler, lab, owner, caplog):
    """The server drops the scheduler's connection in the middle of a tick; the loop reconnects and goes on."""
    from django.db import connection, connections

    from scheduler.lock import DatabaseLock
    from scheduler.management.commands.run_scheduler import Command

    if connection.vendor != "mysql":
        pytest.skip("only a database server can drop a connection")

    class ConnectionDroppedOnce(DatabaseLock):
        dropped = False

        def refresh(self, now=None) -> bool:
            if not self.dropped:
                self.dropped = True
                connection.ensure_connection()
                killer = connections.create_connection("default")
                with killer.cursor() as cursor:
                    cursor.execute(f"KILL {int(connection.connection.thread_id())}")
                killer.close()
            return super().refresh(now)

    lock = ConnectionDroppedOnce()
    lock.acquire()
    j = job(owner, hosts=["host1"])
    command = Command()
    command.stopping = False
    config = dataclasses.replace(scheduler.config, tick_seconds=0.01)
    command.loop(scheduler.dispatcher, lock, config, ticks=4, lifetime_hours=None)
    assert "database error, reconnecting" in caplog.text
    assert entry(j).active  # ticks after the reconnect scheduled the job
    lock.release()


def test_with_debug_on_the_loop_keeps_no_more_than_one_ticks_queries(scheduler, lab, owner, settings):
    """Django logs every query when DEBUG is on; a scheduler running for weeks must not keep them all."""
    from django.db import connection

    from scheduler.lock import DatabaseLock
    from scheduler.management.commands.run_scheduler import Command

    settings.DEBUG = True
    lock = DatabaseLock()
    lock.acquire()
    for n in range(3):
        job(owner, hosts=[f"host{n + 1}"])
    command = Command()
    command.stopping = False
    config = dataclasses.replace(scheduler.config, tick_seconds=0.01, wake_seconds=0)
    command.loop(scheduler.dispatcher, lock, config, ticks=1, lifetime_hours=None)
    one_tick = len(connection.queries)
    command.loop(scheduler.dispatcher, lock, config, ticks=5, lifetime_hours=None)
    lock.release()
    assert 0 < len(connection.queries) <= one_tick


class TestDroneSetResolution:
    def test_a_special_task_uses_its_requesters_drone_set(self, scheduler, autoserv, lab, owner):
        from afe.models import DroneSet

        alice = User.objects.create(login="alice3", drone_set=DroneSet.objects.create(name="alices"))
        task = SpecialTask.schedule_special_task(Host.objects.get(hostname="host1"), "Verify", alice)
        scheduler.tick(4)
        task.refresh_from_db()
        assert not task.is_active and autoserv.calls() == []  # alice's set has no drone

    def test_the_default_drone_set_applies_to_work_without_one(self, scheduler, autoserv, lab, owner):
        from afe.models import Drone, DroneSet

        DroneSet.objects.create(name="default").drones.add(Drone.objects.create(hostname="elsewhere"))
        scheduler.with_config(default_drone_set="default")
        j = job(owner, hosts=["host1"])
        scheduler.tick(5)
        assert entry(j).status == Status.STARTING and autoserv.calls() == []
        DroneSet.objects.get(name="default").drones.add(Drone.objects.create(hostname="localhost"))
        scheduler.run_until_idle()
        assert entry(j).status == Status.COMPLETED
