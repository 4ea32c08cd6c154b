"""A tick costs a fixed number of queries, however many hosts and entries the lab has."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from afe.models import AclGroup, Host, HostQueueEntry, Job, Label, SpecialTask, User
from drones.models import Process
from scheduler.config import SchedulerConfig

from .scheduler_harness import SchedulerHarness


def build_lab(size: int, prefix: str) -> None:
    """``size`` hosts on one board, and one job per host: half explicit, half metahost."""
    board = Label.objects.create(name=f"board:{prefix}")
    hosts = Host.objects.bulk_create([Host(hostname=f"{prefix}{i}") for i in range(size)])
    Host.labels.through.objects.bulk_create([Host.labels.through(host_id=h.pk, label_id=board.pk) for h in hosts])
    AclGroup.rebalance_everyone()
    owner = User.system_user()
    for i, host in enumerate(hosts):
        where = {"hosts": [host.hostname]} if i % 2 else {"meta_hosts": [board.name]}
        Job.create(owner=owner, name=f"{prefix}{i}", control_file="x", **where)


def measure_scheduling_tick(scheduler: SchedulerHarness, size: int, prefix: str) -> int:
    """Queries of the tick that assigns every entry of a new lab of ``size`` (and starts 4 tasks)."""
    build_lab(size, prefix)
    scheduler.tick()  # releases the new hosts
    scheduler.dispatcher.start_afresh()  # the whole tick, not one that finds the last pass still holds
    with CaptureQueriesContext(connection) as queries:
        scheduler.tick()
    assert HostQueueEntry.objects.filter(host__hostname__startswith=prefix, active=True).count() == size
    assert SpecialTask.objects.filter(host__hostname__startswith=prefix, time_started__isnull=False).count() == 4
    deadline = time.monotonic() + 60
    while Process.objects.active().exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the four started processes end before the next lab
    # Take this lab out of the picture: its work is done, its hosts are locked.
    HostQueueEntry.objects.update(status=HostQueueEntry.Status.COMPLETED, active=False, complete=True)
    SpecialTask.objects.update(is_active=False, is_complete=True)
    Host.objects.update(locked=True, lock_reason="maintenance")
    return len(queries)


def test_twenty_and_five_hundred_entries_cost_the_same(autoserv, settings, transactional_db, figures):
    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    # Four processes start in each measured tick: launching is two queries however many start,
    # and 500 real runners would only load the machine.
    scheduler = SchedulerHarness(config, max_processes=4)
    small = measure_scheduling_tick(scheduler, 20, "small")
    large = measure_scheduling_tick(scheduler, 500, "large")
    figures.append(f"scheduling tick on {connection.vendor}: 20 entries on 20 hosts → {small} queries, "
                   f"500 entries on 500 hosts → {large} queries")
    assert small == large


def finished_jobs_lab(size: int, prefix: str) -> None:
    """``size`` one-host jobs whose autoserv has just exited, not yet seen by the scheduler."""
    owner = User.system_user()
    for i in range(size):
        host = Host.objects.create(hostname=f"{prefix}{i}", status=Host.Status.RUNNING)
        job = Job.create(owner=owner, name=f"{prefix}{i}", control_file="x", hosts=[host.hostname])
        HostQueueEntry.objects.filter(job=job).update(
            status=HostQueueEntry.Status.RUNNING, active=True, execution_subdir=host.hostname)
        Process.objects.create(kind=Process.Kind.JOB, state=Process.State.EXITED, exit_status=0, tests_failed=0,
                               command=["true"], working_dir="/tmp", log_file="/tmp/log", drone="localhost",
                               job=job, execution_subdir=host.hostname, started_at=timezone.now())


def queries_of_ticks_seeing_3_and_12(settings, make_lab: Callable[[int, str], None],
                                     check: Callable[[str, int], None]) -> list[int]:
    """Queries of the tick that first sees a lab of 3, then one of 12, made by ``make_lab(size, prefix)``;
    ``check(prefix, size)`` asserts what that tick did."""
    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    scheduler = SchedulerHarness(config, max_processes=100)
    counts = []
    for size, prefix in ((3, "few"), (12, "many")):
        make_lab(size, prefix)
        scheduler.dispatcher.start_afresh()
        with CaptureQueriesContext(connection) as queries:
            scheduler.tick()
        check(prefix, size)
        counts.append(len(queries))
        scheduler.run_until_idle()
    return counts


def test_finishing_jobs_costs_the_same_for_3_or_12(autoserv, settings, transactional_db, figures):
    """Applying results is bulk too: the tick that sees N jobs end (and gathers and starts parsing them)."""
    def parsing(prefix: str, size: int) -> None:
        assert HostQueueEntry.objects.filter(job__name__startswith=prefix, status="Parsing").count() == size

    counts = queries_of_ticks_seeing_3_and_12(settings, finished_jobs_lab, parsing)
    figures.append(f"tick applying finished jobs on {connection.vendor}: 3 jobs → {counts[0]} queries, "
                   f"12 jobs → {counts[1]} queries")
    assert counts[0] == counts[1]


def finished_tasks_lab(size: int, prefix: str) -> None:
    """``size`` entries whose pre-job reset has just exited successfully, not yet seen by the scheduler."""
    owner = User.system_user()
    for i in range(size):
        host = Host.objects.create(hostname=f"{prefix}{i}", status=Host.Status.RESETTING, leased=True)
        job = Job.create(owner=owner, name=f"{prefix}{i}", control_file="x", hosts=[host.hostname])
        entry = HostQueueEntry.objects.get(job=job)
        HostQueueEntry.objects.filter(pk=entry.pk).update(status=HostQueueEntry.Status.RESETTING, active=True)
        task = SpecialTask.objects.create(host=host, task=SpecialTask.Task.RESET, queue_entry=entry,
                                          requested_by=owner, is_active=True, time_started=timezone.now())
        Process.objects.create(kind=Process.Kind.RESET, state=Process.State.EXITED, exit_status=0, tests_failed=0,
                               command=["true"], working_dir="/tmp", log_file="/tmp/log", drone="localhost",
                               special_task=task, started_at=timezone.now())


def test_finishing_special_tasks_costs_the_same_for_3_or_12(autoserv, settings, transactional_db, figures):
    """The tick that sees N resets succeed, puts their entries Pending and starts their jobs."""
    def started(prefix: str, size: int) -> None:
        assert SpecialTask.objects.filter(host__hostname__startswith=prefix, is_complete=True,
                                          success=True).count() == size
        assert HostQueueEntry.objects.filter(job__name__startswith=prefix, status="Running").count() == size

    counts = queries_of_ticks_seeing_3_and_12(settings, finished_tasks_lab, started)
    figures.append(f"tick applying finished special tasks on {connection.vendor}: 3 resets → {counts[0]} queries, "
                   f"12 resets → {counts[1]} queries")
    assert counts[0] == counts[1]
