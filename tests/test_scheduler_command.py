"""``manage.py run_scheduler`` as a process: one per database, clean stops, restarts after kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from afe.models import HostQueueEntry, Job, RebootBefore, User
from drones import runner

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    """The URL of the test database, for scheduler processes started by a test."""
    return runner.database_url(connection.settings_dict)


@pytest.fixture
def start_scheduler(autoserv, settings):
    started: list[subprocess.Popen] = []
    env = {
        **os.environ, "DATABASE_URL": database_url(), "RESULTS_DIR": str(settings.RESULTS_DIR),
        "AUTOSERV_PATH": settings.AUTOSERV_PATH, "PARSER_PATH": settings.PARSER_PATH,
        "SCHEDULER_TICK_SECONDS": "0.1",
    }

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_scheduler", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def log_has(process: subprocess.Popen, text: str, timeout: float = 30) -> str:
    """Read the process's output until ``text`` shows up; returns what was read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        if text in line:
            return "".join(seen)
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{text!r} not in the scheduler's output:\n{''.join(seen)}")


def test_ticks_option_runs_that_many_ticks_and_exits(start_scheduler, lab):
    process = start_scheduler("--ticks", "3")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert output.count("tick:") == 3


def test_a_second_scheduler_refuses_to_start(start_scheduler, lab):
    first = start_scheduler()
    log_has(first, "tick:")
    second = start_scheduler("--ticks", "1")
    output, _ = second.communicate(timeout=60)
    assert second.returncode != 0
    assert "another scheduler is running" in output and str(first.pid) in output
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_tick_and_exits_cleanly(start_scheduler, lab, stop):
    process = start_scheduler()
    log_has(process, "tick:")
    process.send_signal(stop)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "scheduler stopped" in output
    # The lock is released: a new scheduler starts at once.
    again = start_scheduler("--ticks", "1")
    assert again.wait(timeout=60) == 0


def test_kill_9_at_any_point_loses_nothing_and_runs_nothing_twice(start_scheduler, autoserv, lab):
    owner = User.system_user()
    jobs = [
        Job.create(owner=owner, name=f"job{i}", control_file="x", hosts=[host], reboot_before=RebootBefore.ALWAYS)
        for i, host in enumerate(["host1", "host2", "host3"])
    ]
    delays = [0.4, 0.7, 1.1, 0.3, 0.9, 1.5, 0.5]
    for delay in delays:
        if not HostQueueEntry.objects.filter(complete=False).exists():
            break
        process = start_scheduler()
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = start_scheduler()
    wait_for(lambda: not HostQueueEntry.objects.filter(complete=False).exists(), "every job to finish", timeout=120)
    final.send_signal(signal.SIGTERM)
    final.wait(timeout=30)
    for job in jobs:
        assert list(job.hostqueueentry_set.values_list("status", flat=True)) == ["Completed"]
    runs = [call["hosts"][0] for call in autoserv.calls("job")]
    assert sorted(runs) == ["host1", "host2", "host3"]  # each job ran exactly once


def test_lifetime_hours_ends_the_scheduler(start_scheduler, lab):
    process = start_scheduler("--lifetime-hours", "0.0005")  # under two seconds
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "lifetime of 0.0005 hours reached" in output
