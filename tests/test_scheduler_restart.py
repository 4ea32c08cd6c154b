"""A restarted scheduler (nothing kept in memory) re-attaches to the lab's work and finishes it."""
from __future__ import annotations

import pytest

from afe.models import Host, HostQueueEntry, Job, RebootBefore, SpecialTask, User
from drones.models import Process

Status = HostQueueEntry.Status


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def job_on(owner: User, host: str, **kwargs) -> Job:
    return Job.create(owner=owner, name="restart", control_file="x", hosts=[host], **kwargs)


def statuses(job: Job) -> list[str]:
    return list(job.hostqueueentry_set.values_list("status", flat=True))


@pytest.mark.parametrize("hold", ["reset", "job", "parse"])
def test_restart_while_a_process_runs_reattaches_without_running_it_again(scheduler, autoserv, lab, owner, hold):
    autoserv.set(hold, "hold")
    job = job_on(owner, "host1")
    scheduler.run_until(lambda: autoserv.calls(hold), f"the {hold} to start")
    scheduler.restart()
    scheduler.tick(3)
    autoserv.release(hold, 0)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    assert autoserv.kinds() == ["reset", "job", "parse"]


def test_restart_after_a_process_ended_unseen_applies_its_result(scheduler, autoserv, lab, owner):
    autoserv.set("job", "hold")
    job = job_on(owner, "host2")
    scheduler.run_until(lambda: autoserv.calls("job"), "the job to start")
    autoserv.release("job", 1)
    import time

    deadline = time.monotonic() + 30
    while Process.objects.filter(kind="job", state="running").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the job ends while no scheduler is ticking
    scheduler.restart()
    scheduler.run_until_idle()
    assert statuses(job) == [Status.FAILED]
    assert len(autoserv.calls("job")) == 1


def test_a_lost_job_process_ends_in_gathering_with_a_failure_note(scheduler, autoserv, lab, owner):
    autoserv.set("job", "hold")
    job = job_on(owner, "host3", reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until(lambda: autoserv.calls("job"), "the job to start")
    process = Process.objects.get(kind="job")
    process.refresh_from_db()
    import os
    import signal

    os.kill(process.runner_pid, signal.SIGKILL)  # the runner dies...
    os.killpg(process.pid, signal.SIGKILL)  # ...and so does its job, without recording an exit
    scheduler.run_until_idle()
    assert statuses(job) == [Status.FAILED]
    process.refresh_from_db()
    assert process.state in (Process.State.LOST, Process.State.EXITED)


def test_entries_left_in_a_prejob_status_without_a_task_are_requeued(scheduler, autoserv, lab, owner):
    """Verifying/Provisioning/Cleaning entries with no task left are recovered too (§6.1 #3)."""
    job = job_on(owner, "host1", reboot_before=RebootBefore.NEVER, run_reset=False)
    entry = job.hostqueueentry_set.get()
    HostQueueEntry.objects.filter(pk=entry.pk).update(status=Status.VERIFYING, active=True)
    Host.objects.filter(hostname="host1").update(status=Host.Status.VERIFYING, leased=True)
    scheduler.restart()
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]


def test_hosts_stranded_in_a_transitional_status_get_a_reset(scheduler, autoserv, lab, owner):
    Host.objects.filter(hostname="host2").update(status=Host.Status.RESETTING)
    scheduler.restart()
    scheduler.run_until_idle()
    assert list(SpecialTask.objects.values_list("host__hostname", "task", "success")) == [("host2", "Reset", True)]
    assert Host.objects.get(hostname="host2").status == Host.Status.READY


def test_recover_hosts_resets_repair_failed_hosts(scheduler, autoserv, lab, owner):
    Host.objects.filter(hostname="host3").update(status=Host.Status.REPAIR_FAILED)
    scheduler.restart(recover_hosts=True)
    scheduler.run_until_idle()
    assert Host.objects.get(hostname="host3").status == Host.Status.READY


def test_processes_whose_work_is_over_are_killed_at_start(scheduler, autoserv, lab, owner):
    """The original left such orphans running (§6.1 #3)."""
    autoserv.set("verify", "hold")
    task = SpecialTask.schedule_special_task(Host.objects.get(hostname="host1"), "Verify", owner)
    scheduler.run_until(lambda: autoserv.calls("verify"), "the verify to start")
    SpecialTask.objects.filter(pk=task.pk).update(is_active=False, is_complete=True)  # its task is over
    scheduler.restart()
    process = Process.objects.get(special_task=task)
    scheduler.run_until(lambda: Process.objects.get(pk=process.pk).state != Process.State.RUNNING,
                        "the orphan to be killed")
    process.refresh_from_db()
    assert process.kill_requested and process.signalled
