"""Cases a review found the scheduler getting wrong; each test is the scenario that broke."""
from __future__ import annotations

import dataclasses
import time

import pytest
from django.core import mail

from afe.models import ControlType, Host, HostQueueEntry, Job, RebootBefore, SpecialTask, User
from drones.models import Process
from scheduler.config import SchedulerConfig

from .scheduler_harness import SchedulerHarness

Status = HostQueueEntry.Status
QUICK = {"reboot_before": RebootBefore.NEVER, "run_reset": False}


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


@pytest.fixture
def small_drone(autoserv, settings, transactional_db) -> SchedulerHarness:
    """A scheduler whose drone runs two processes at once."""
    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    return SchedulerHarness(config, max_processes=2)


def wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_job_does_not_start_on_a_host_whose_reverify_is_running(scheduler, autoserv, lab, owner):
    scheduler.tick(2)  # the hosts are released
    autoserv.set("verify:host1", "hold")
    SpecialTask.schedule_special_task(Host.objects.get(hostname="host1"), SpecialTask.Task.VERIFY, owner)
    scheduler.run_until(lambda: autoserv.calls("verify"), "the reverify to start")
    job = Job.create(owner=owner, name="t", control_file="x", hosts=["host1"], **QUICK)
    scheduler.tick(6)
    assert autoserv.kinds() == ["verify"]
    autoserv.release("verify:host1", 0)
    scheduler.run_until_idle()
    assert autoserv.kinds() == ["verify", "job", "parse"]
    assert list(job.hostqueueentry_set.values_list("status", flat=True)) == [Status.COMPLETED]


def test_aborting_an_entry_whose_host_awaits_repair_still_repairs_the_host(scheduler, autoserv, lab, owner):
    autoserv.set("verify:host3", "hold")
    job = Job.create(owner=owner, name="t", control_file="x", hosts=["host3"], run_verify=True, **QUICK)
    scheduler.run_until(lambda: autoserv.calls("verify"), "the verify to start")
    autoserv.release("verify:host3", 1)
    wait_for(lambda: Process.objects.filter(kind="verify", state="exited").exists())
    job.abort(by=owner)  # before the scheduler sees the failure: a repair gets queued, then the abort
    scheduler.run_until_idle()
    assert Host.objects.get(hostname="host3").status == Host.Status.READY
    assert "repair" in autoserv.kinds()


def test_aborting_a_metahost_entry_does_not_kill_the_repair_of_its_previous_host(scheduler, autoserv, make_host,
                                                                                  owner):
    make_host("m1", ["board:z"])
    make_host("m2", ["board:z"])
    autoserv.set("verify:m1", 1)
    autoserv.set("repair:m1", "hold")
    autoserv.set("verify:m2", "hold")
    job = Job.create(owner=owner, name="t", control_file="x", meta_hosts=["board:z"], run_verify=True, **QUICK)
    scheduler.run_until(lambda: autoserv.calls("repair") and any(c["hosts"] == ["m2"] for c in autoserv.calls("verify")),
                        "a repair on m1 and a verify on m2")
    job.abort(by=owner)
    scheduler.tick(5)
    autoserv.release("repair:m1", 0)
    autoserv.release("verify:m2", 0)
    scheduler.run_until_idle()
    assert Host.objects.get(hostname="m1").status == Host.Status.READY
    assert Process.objects.get(kind="repair").exit_status == 0  # it ran to the end


def test_aborting_one_member_of_a_waiting_synchronous_group_ends_the_whole_group(small_drone, autoserv, lab, owner):
    scheduler = small_drone
    autoserv.set("job:host3", "hold")
    Job.create(owner=owner, name="blocker", control_file="x", hosts=["host3"], **QUICK)
    scheduler.run_until(lambda: autoserv.calls("job"), "the blocker to run")
    job = Job.create(owner=owner, name="sync", control_file="x", hosts=["host1", "host2"], synch_count=2,
                     control_type=ControlType.SERVER, **QUICK)
    scheduler.run_until(lambda: list(job.hostqueueentry_set.values_list("status", flat=True)) == [Status.STARTING] * 2,
                        "the group to wait in Starting")
    HostQueueEntry.objects.filter(pk=job.hostqueueentry_set.order_by("pk").first().pk).abort(by=owner)
    scheduler.tick(3)
    autoserv.release("job:host3", 0)
    scheduler.run_until_idle()
    assert [c["hosts"] for c in autoserv.calls("job")] == [["host3"]]  # never with fewer hosts than synch_count
    assert set(job.hostqueueentry_set.values_list("status", flat=True)) == {Status.ABORTED}


def test_a_stopped_entry_stays_stopped_when_its_queued_task_could_start(small_drone, autoserv, lab, owner):
    scheduler = small_drone
    autoserv.set("job:host3", "hold")
    Job.create(owner=owner, name="blocker", control_file="x", hosts=["host3"], **QUICK)
    scheduler.run_until(lambda: autoserv.calls("job"), "the blocker to run")
    autoserv.set("provision:host1", 1)
    autoserv.set("provision:host2", "hold")
    autoserv.set("repair:host1", "hold")
    job = Job.create(owner=owner, name="sync", control_file="x", hosts=["host1", "host2"], synch_count=2,
                     dependencies=["cros-version:R9-9"], control_type=ControlType.SERVER)
    second = job.hostqueueentry_set.get(host__hostname="host2")
    scheduler.run_until(lambda: HostQueueEntry.objects.get(pk=second.pk).status == Status.STOPPED, "host2's entry to stop")
    autoserv.release("job:host3", 0)
    autoserv.release("repair:host1", 0)
    for _ in range(30):
        scheduler.tick()
        time.sleep(0.05)
        assert HostQueueEntry.objects.get(pk=second.pk).status == Status.STOPPED
    autoserv.release("provision:host2", 0)


def test_a_process_that_exits_mid_tick_keeps_its_slot_until_its_result_is_applied(small_drone, autoserv, lab, owner,
                                                                                   tmp_path):
    scheduler = small_drone
    autoserv.set("job:host3", "hold")
    Job.create(owner=owner, name="blocker", control_file="x", hosts=["host3"], **QUICK)
    scheduler.run_until(lambda: autoserv.calls("job"), "the blocker to run")
    # The drone's second slot: a process whose runner recorded its exit after this tick applied results.
    Process.objects.create(kind="verify", command=["true"], working_dir=str(tmp_path), log_file=str(tmp_path / "log"),
                           drone="localhost", state=Process.State.EXITED, exit_status=0)
    task = SpecialTask.schedule_special_task(Host.objects.get(hostname="host2"), SpecialTask.Task.VERIFY, owner)
    assert scheduler.dispatcher.start_work() == 0
    assert SpecialTask.objects.get(pk=task.pk).status == "Queued"
    scheduler.tick()  # the result is applied first, then the freed slot takes the verify
    assert SpecialTask.objects.get(pk=task.pk).status != "Queued"
    autoserv.release("job:host3", 0)


def test_an_aborted_entry_mails_its_status_and_completes_its_job(scheduler, autoserv, lab, owner):
    Host.objects.filter(hostname="host1").update(locked=True, lock_reason="busy")
    job = Job.create(owner=owner, name="t", control_file="x", hosts=["host1"], email_list="dev@lab")
    scheduler.tick(2)
    job.abort(by=owner)
    scheduler.run_until_idle()
    subjects = [m.subject for m in mail.outbox]
    assert any("Status: Aborted" in s for s in subjects) and any("Job complete" in s for s in subjects)


def test_a_job_killed_before_it_started_collects_no_crash_info(scheduler, autoserv, lab, owner):
    """A job process killed while still queued has a signal status but never ran: nothing to gather."""
    job = Job.create(owner=owner, name="t", control_file="x", hosts=["host2"], **QUICK)
    entry = job.hostqueueentry_set.get()
    HostQueueEntry.objects.filter(pk=entry.pk).update(status=Status.GATHERING, active=True, execution_subdir="host2",
                                                      aborted=True)
    Host.objects.filter(hostname="host2").update(status=Host.Status.RUNNING)
    process = scheduler.drones.queue(kind=Process.Kind.JOB, command=["true"], working_dir="/tmp", log_file="/tmp/x",
                                     job=job, execution_subdir="host2")
    assert process.request_kill() and process.signalled and process.started_at is None
    process.mark_handled()
    scheduler.run_until_idle()
    assert "gather" not in autoserv.kinds()
    assert list(job.hostqueueentry_set.values_list("status", flat=True)) == [Status.ABORTED]
