"""Runners' silence is measured by the database's clock, which also writes their heartbeats.

A scheduler whose own clock is skewed (another machine, NTP gone) must not
declare a beating runner lost, nor keep a silent one alive. The skew is made
by moving this process's ``django.utils.timezone.now``; the database's clock
(``Now()``) is not touched.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db.models.functions import Now

from drones.celery_drone import CeleryDrone
from drones.models import Process

pytestmark = pytest.mark.django_db

LOST_AFTER = timedelta(minutes=2)


@pytest.fixture
def running(tmp_path) -> Process:
    process = Process.objects.create(
        kind=Process.Kind.JOB, command=["true"], working_dir=str(tmp_path), log_file=str(tmp_path / "log"),
        drone="drone1",
    )
    assert process.claim(runner_pid=4242, runner_host="drone1-machine", pid=4343, drone="drone1")
    return process


@pytest.fixture
def skewed_clock(monkeypatch):
    """Move the scheduler's clock (not the database's) by the given offset."""
    from django.utils import timezone

    real_now = timezone.now

    def skew(offset: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)

    return skew


def read_running() -> list[Process]:
    return list(Process.objects.filter(state=Process.State.RUNNING).with_silence())


def test_a_heartbeat_is_written_with_the_databases_clock_and_silence_is_read_with_it(running, skewed_clock):
    skewed_clock(timedelta(hours=3))  # the scheduler's clock runs far ahead
    assert running.heartbeat()
    (process,) = read_running()
    assert process.silence() is not None and abs(process.silence()) < timedelta(seconds=5)


def test_a_beating_runner_is_not_lost_when_the_schedulers_clock_runs_ahead(running, skewed_clock):
    skewed_clock(timedelta(hours=1))
    CeleryDrone("drone1", max_processes=10, lost_after=LOST_AFTER).check(read_running())
    running.refresh_from_db()
    assert running.state == Process.State.RUNNING


def test_a_silent_runner_is_lost_even_when_the_schedulers_clock_runs_behind(running, skewed_clock):
    Process.objects.filter(pk=running.pk).update(heartbeat_at=Now() - LOST_AFTER - timedelta(minutes=1))
    skewed_clock(-timedelta(hours=1))
    CeleryDrone("drone1", max_processes=10, lost_after=LOST_AFTER).check(read_running())
    running.refresh_from_db()
    assert running.state == Process.State.LOST
    assert re.search(r"silent for 1[78]\ds", running.lost_reason), running.lost_reason


def test_after_an_outage_silent_runners_get_the_whole_timeout_again(running):
    from django.utils import timezone

    Process.objects.filter(pk=running.pk).update(heartbeat_at=Now() - LOST_AFTER - timedelta(minutes=1))
    drone = CeleryDrone("drone1", max_processes=10, lost_after=LOST_AFTER)
    drone.check(read_running(), reachable_since=timezone.now() - timedelta(seconds=10))
    running.refresh_from_db()
    assert running.state == Process.State.RUNNING
    drone.check(read_running(), reachable_since=timezone.now() - LOST_AFTER - timedelta(seconds=1))
    running.refresh_from_db()
    assert running.state == Process.State.LOST
