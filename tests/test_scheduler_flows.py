"""End-to-end paths of §3: the real scheduler, the real local drone, a stand-in autoserv."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core import mail

from afe.models import ControlType, Host, HostQueueEntry, Job, RebootAfter, RebootBefore, SpecialTask, User
from drones.models import Process

from .scheduler_harness import host_states, task_states

Status = HostQueueEntry.Status


def make_job(owner: User, **kwargs) -> Job:
    kwargs.setdefault("name", "sleeptest")
    kwargs.setdefault("control_file", "job.run_test('sleeptest')")
    return Job.create(owner=owner, **kwargs)


def statuses(job: Job) -> list[str]:
    return sorted(job.hostqueueentry_set.values_list("status", flat=True))


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def test_explicit_host_job_resets_runs_parses_and_completes(scheduler, autoserv, lab, owner):
    job = make_job(owner, hosts=["host1"], email_list="dev@lab")
    scheduler.run_until_idle()

    assert statuses(job) == [Status.COMPLETED]
    assert autoserv.kinds() == ["reset", "job", "parse"]
    entry = job.hostqueueentry_set.get()
    assert entry.execution_subdir == "host1" and entry.started_on and entry.finished_on
    run = autoserv.calls("job")[0]["argv"]
    assert run[:2] == ["-p", "-r"] and run[2].endswith(f"{job.pk}-autotest_system/host1")
    assert run[run.index("-m") + 1] == "host1" and run[run.index("-u") + 1] == "autotest_system"
    assert run[run.index("-l") + 1] == "sleeptest" and "-c" in run and run[run.index("-P") + 1] == entry.execution_path()
    assert Path(run[run.index("-n") + 1]).read_text() == job.control_file
    results = Path(run[2])
    keyval = (results / "keyval").read_text()
    assert "job_queued=" in keyval and "job_finished=" in keyval
    assert (results / "host_keyvals" / "host1").read_text().startswith("platform=")
    host = Host.objects.get(hostname="host1")
    assert host.status == Host.Status.READY and not host.leased and host.dirty
    assert [m.subject for m in mail.outbox if "Status: Completed" in m.subject]


def test_failed_job_is_failed_and_its_host_cleaned(scheduler, autoserv, lab, owner):
    autoserv.set("job", 1)
    job = make_job(owner, hosts=["host2"])
    scheduler.run_until_idle()
    assert statuses(job) == [Status.FAILED]
    # The tests failed and the job does not reset: the host is cleaned up after it.
    assert autoserv.kinds()[:2] == ["reset", "job"]
    assert sorted(autoserv.kinds()[2:]) == ["cleanup", "parse"]  # parsing and the cleanup run side by side
    assert Host.objects.get(hostname="host2").status == Host.Status.READY


def test_metahost_job_runs_on_a_host_with_the_label(scheduler, autoserv, lab, owner):
    job = make_job(owner, meta_hosts=["pool:a"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    assert job.hostqueueentry_set.get().host.hostname == "host1"
    assert autoserv.kinds() == ["job", "parse"]


def test_verify_failure_repairs_the_host_and_the_job_runs_after(scheduler, autoserv, lab, owner):
    autoserv.set("verify:host3", "hold")
    job = make_job(owner, hosts=["host3"], reboot_before=RebootBefore.NEVER, run_verify=True, run_reset=False)
    scheduler.run_until(lambda: autoserv.calls("verify"), "the verify to start")
    autoserv.release("verify:host3", 1)
    scheduler.run_until(lambda: autoserv.calls("repair"), "the repair to start")
    autoserv.set("verify:host3", 0)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    assert autoserv.kinds() == ["verify", "repair", "verify", "job", "parse"]


def test_failing_repair_leaves_the_host_repair_failed_and_fails_the_entry(scheduler, autoserv, lab, owner):
    autoserv.set("verify", 1)
    autoserv.set("repair", 1)
    job = make_job(owner, hosts=["host3"], reboot_before=RebootBefore.NEVER, run_verify=True, run_reset=False)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.FAILED]
    assert Host.objects.get(hostname="host3").status == Host.Status.REPAIR_FAILED
    assert autoserv.kinds() == ["verify", "repair", "parse"]


def test_repair_limit_fails_the_entry_without_another_repair(scheduler, autoserv, lab, owner):
    scheduler.with_config(max_repair_limit=1)
    autoserv.set("verify", 1)
    job = make_job(owner, hosts=["host3"], reboot_before=RebootBefore.NEVER, run_verify=True, run_reset=False)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.FAILED]
    assert autoserv.kinds() == ["verify", "repair", "verify", "parse"]
    assert Host.objects.get(hostname="host3").status == Host.Status.REPAIR_FAILED


def test_metahost_repair_limit_also_triggers(scheduler, autoserv, make_host, owner):
    """The original never hit the limit for metahost entries (§6.1 #4)."""
    make_host("only1", ["board:z"])
    scheduler.with_config(max_repair_limit=1)
    autoserv.set("verify", 1)
    job = make_job(owner, meta_hosts=["board:z"], reboot_before=RebootBefore.NEVER, run_verify=True, run_reset=False)
    scheduler.run_until(lambda: Host.objects.get(hostname="only1").status == Host.Status.REPAIR_FAILED,
                        "the only host to be marked Repair Failed")
    scheduler.tick(5)
    assert autoserv.kinds() == ["verify", "repair", "verify"]
    assert statuses(job) == [Status.QUEUED]  # waits for another host instead of cycling forever


def test_synchronous_job_runs_its_hosts_together(scheduler, autoserv, lab, owner):
    job = make_job(owner, hosts=["host1", "host2"], synch_count=2, control_type=ControlType.SERVER)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED, Status.COMPLETED]
    [run] = autoserv.calls("job")
    assert run["argv"][run["argv"].index("-m") + 1] == "host1,host2" and "-s" in run["argv"]
    assert set(job.hostqueueentry_set.values_list("execution_subdir", flat=True)) == {"group1"}


def test_hostless_job_runs_without_hosts_and_is_parsed(scheduler, autoserv, lab, owner):
    job = make_job(owner, hostless=True, control_type=ControlType.SERVER)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    assert autoserv.kinds() == ["job", "parse"]
    run = autoserv.calls("job")[0]["argv"]
    assert "-m" not in run and run[run.index("-P") + 1] == f"{job.pk}-autotest_system/hostless"


def test_abort_while_running_kills_the_job_and_cleans_the_host(scheduler, autoserv, lab, owner):
    autoserv.set("job", "hold")
    job = make_job(owner, hosts=["host1"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until(lambda: statuses(job) == [Status.RUNNING] and autoserv.calls("job"), "the job to run")
    job.abort(by=owner)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.ABORTED]
    assert autoserv.kinds()[:2] == ["job", "gather"]  # killed by a signal: crash info is collected
    # An abort always reboots; a job that does not reset before running resets after failing.
    assert sorted(autoserv.kinds()[2:]) == ["cleanup", "parse", "reset"]
    directory = Path(autoserv.calls("job")[0]["argv"][2])
    assert "aborted_by=autotest_system" in (directory / "keyval").read_text()
    assert "Job aborted by autotest_system" in (directory / "status.log").read_text()
    assert Host.objects.get(hostname="host1").status == Host.Status.READY


def test_abort_while_queued_aborts_without_running_anything(scheduler, autoserv, lab, owner):
    Host.objects.filter(hostname="host1").update(locked=True, lock_reason="busy")
    job = make_job(owner, hosts=["host1"])
    scheduler.tick(2)
    job.abort(by=owner)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.ABORTED]
    assert autoserv.kinds() == []


@pytest.mark.parametrize("task", ["verify", "reset", "cleanup", "provision"])
def test_abort_during_a_pre_job_task_frees_the_host(scheduler, autoserv, lab, owner, task):
    """An abort in Verifying/Resetting/Cleaning/Provisioning never leaves the host stuck (§6.1 #2)."""
    autoserv.set(task, "hold")
    options = {
        "verify": dict(reboot_before=RebootBefore.NEVER, run_verify=True, run_reset=False),
        "reset": dict(reboot_before=RebootBefore.ALWAYS),
        "cleanup": dict(reboot_before=RebootBefore.ALWAYS, run_reset=False),
        "provision": dict(dependencies=["cros-version:R1-1"]),
    }[task]
    job = make_job(owner, hosts=["host2"], **options)
    scheduler.run_until(lambda: autoserv.calls(task), f"the {task} to start")
    job.abort(by=owner)
    autoserv.set(task, 0)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.ABORTED]
    assert Host.objects.get(hostname="host2").status == Host.Status.READY
    follow_up = "repair" if task == "provision" else "cleanup"
    assert autoserv.kinds()[-1] == follow_up


def test_reverify_request_waits_for_the_running_job(scheduler, autoserv, lab, owner):
    autoserv.set("job", "hold")
    job = make_job(owner, hosts=["host1"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until(lambda: autoserv.calls("job"), "the job to start")
    SpecialTask.schedule_special_task(Host.objects.get(hostname="host1"), SpecialTask.Task.VERIFY, owner)
    scheduler.tick(5)
    assert autoserv.kinds() == ["job"]
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    assert autoserv.kinds()[0] == "job" and sorted(autoserv.kinds()[1:]) == ["parse", "verify"]


def test_post_job_cleanup_failure_repairs_the_host(scheduler, autoserv, lab, owner):
    autoserv.set("cleanup", 1)
    job = make_job(owner, hosts=["host1"], reboot_before=RebootBefore.NEVER, run_reset=False,
                   reboot_after=RebootAfter.ALWAYS)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    kinds = autoserv.kinds()
    assert sorted(kinds) == ["cleanup", "job", "parse", "repair"]
    assert kinds[0] == "job" and kinds.index("cleanup") < kinds.index("repair")
    assert Host.objects.get(hostname="host1").status == Host.Status.READY


def test_provision_failure_fails_the_entry_after_the_retries(scheduler, autoserv, lab, owner):
    autoserv.set("provision", 1)
    job = make_job(owner, hosts=["host1"], dependencies=["cros-version:R2-2"])
    scheduler.run_until_idle()
    assert statuses(job) == [Status.FAILED]
    assert autoserv.kinds()[0] == "provision" and "job" not in autoserv.kinds()


def test_provision_success_relabels_the_host(scheduler, autoserv, lab, owner):
    host = Host.objects.get(hostname="host1")
    host.labels.add(*__import__("afe.models", fromlist=["Label"]).Label.objects.bulk_create(
        [__import__("afe.models", fromlist=["Label"]).Label(name="cros-version:R1-1")]))
    job = make_job(owner, hosts=["host1"], dependencies=["cros-version:R2-2"])
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    call = autoserv.calls("provision")[0]["argv"]
    assert call[call.index("--job-labels") + 1] == "cros-version:R2-2"
    names = set(host.labels.values_list("name", flat=True))
    assert "cros-version:R2-2" in names and "cros-version:R1-1" not in names


def test_throttling_keeps_to_the_drone_capacity(autoserv, lab, owner, settings, transactional_db):
    import dataclasses

    from scheduler.config import SchedulerConfig

    from .scheduler_harness import SchedulerHarness

    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    scheduler = SchedulerHarness(config, max_processes=1)
    autoserv.set("job", "hold")
    jobs = [make_job(owner, hosts=[h], reboot_before=RebootBefore.NEVER, run_reset=False) for h in ("host1", "host2")]
    scheduler.run_until(lambda: autoserv.calls("job"), "a job to start")
    scheduler.tick(5)
    assert len(autoserv.calls("job")) == 1
    assert sorted(s for j in jobs for s in statuses(j)) == [Status.RUNNING, Status.STARTING]
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert [statuses(j) for j in jobs] == [[Status.COMPLETED], [Status.COMPLETED]]


def test_job_timeout_aborts_the_job(scheduler, autoserv, lab, owner):
    from datetime import timedelta

    from django.utils import timezone

    autoserv.set("job", "hold")
    job = make_job(owner, hosts=["host1"], reboot_before=RebootBefore.NEVER, run_reset=False, timeout_mins=5)
    scheduler.run_until(lambda: autoserv.calls("job"), "the job to start")
    Job.objects.filter(pk=job.pk).update(created_on=timezone.now() - timedelta(minutes=10))
    scheduler.dispatcher.cleanup.last_user_cleanup = None  # the next tick runs the periodic cleanup
    scheduler.run_until_idle()
    assert statuses(job) == [Status.ABORTED]


def test_results_of_tasks_and_jobs_follow_the_layout(scheduler, autoserv, lab, owner):
    job = make_job(owner, hosts=["host1"])
    scheduler.run_until_idle()
    reset = SpecialTask.objects.get(task="Reset")
    task_dir = scheduler.ctx.path(reset.execution_path())
    assert task_dir.is_dir() and (task_dir / ".autoserv_execute").exists()
    assert autoserv.calls("reset")[0]["argv"][2] == str(task_dir)
    assert Process.objects.filter(job=job, kind="parse").get().state == Process.State.EXITED
    assert host_states()["host1"] == "Ready" and task_states()[0] == ("host1", "Reset", "Completed")


def test_abort_while_starting_ends_the_entry_and_cleans_the_host(scheduler, autoserv, lab, owner):
    from afe.models import DroneSet

    DroneSet.objects.create(name="nowhere")  # no drone may run it: the job waits in Starting
    job = make_job(owner, hosts=["host3"], reboot_before=RebootBefore.NEVER, run_reset=False, drone_set="nowhere")
    scheduler.run_until(lambda: statuses(job) == [Status.STARTING], "the job to wait in Starting")
    job.abort(by=owner)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.ABORTED]
    assert "job" not in autoserv.kinds() and "cleanup" in autoserv.kinds()
    assert Host.objects.get(hostname="host3").status == Host.Status.READY


def test_abort_while_parsing_lets_the_parser_finish_and_ends_aborted(scheduler, autoserv, lab, owner):
    autoserv.set("parse", "hold")
    job = make_job(owner, hosts=["host1"], reboot_before=RebootBefore.NEVER, run_reset=False)
    scheduler.run_until(lambda: autoserv.calls("parse"), "the parser to start")
    job.abort(by=owner)
    scheduler.tick(3)
    assert statuses(job) == [Status.PARSING]
    autoserv.release("parse", 0)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.ABORTED]


def test_failures_on_a_do_not_verify_host_are_ignored(scheduler, autoserv, lab, owner):
    from afe.models import Protection

    Host.objects.filter(hostname="host2").update(protection=Protection.DO_NOT_VERIFY)
    autoserv.set("cleanup", 1)
    job = make_job(owner, hosts=["host2"], reboot_before=RebootBefore.ALWAYS, run_verify=True)
    scheduler.run_until_idle()
    assert statuses(job) == [Status.COMPLETED]
    assert autoserv.kinds() == ["cleanup", "job", "parse"]  # no verify, and no repair after the failed cleanup


def test_parse_steps_keep_to_max_parse_processes(scheduler, autoserv, lab, owner):
    scheduler.with_config(max_parse_processes=1)
    autoserv.set("parse", "hold")
    jobs = [make_job(owner, hosts=[h], reboot_before=RebootBefore.NEVER, run_reset=False) for h in ("host1", "host2")]
    scheduler.run_until(lambda: autoserv.calls("parse"), "a parser to start")
    scheduler.run_until(lambda: sorted(s for j in jobs for s in statuses(j)) == [Status.PARSING] * 2,
                        "both jobs to wait for parsing")
    scheduler.tick(3)
    assert len(autoserv.calls("parse")) == 1
    autoserv.release("parse", 0)
    scheduler.run_until_idle()
    assert [statuses(j) for j in jobs] == [[Status.COMPLETED], [Status.COMPLETED]]
    assert len(autoserv.calls("parse")) == 2
