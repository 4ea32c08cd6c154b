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
        "SCHEDULER_TICK_SECONDS": "0.1", "LOG_LEVEL": "DEBUG",  # idle ticks log at DEBUG
    }

    def start(*args: str, **more_env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_scheduler", *args], cwd=ROOT, env={**env, **more_env},
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


def test_at_info_idle_ticks_are_quiet_busy_ones_are_logged_and_a_summary_comes_periodically(start_scheduler, lab):
    from afe.models import Job, RebootBefore, User

    Job.create(owner=User.system_user(), name="t", control_file="x", hosts=["host1"],
               reboot_before=RebootBefore.NEVER, run_reset=False)
    process = start_scheduler("--ticks", "40", LOG_LEVEL="INFO", SCHEDULER_SUMMARY_MINUTES="0.02")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    tick_lines = [line for line in output.splitlines() if " tick: " in line]
    assert any("entries_scheduled=1" in line for line in tick_lines), output
    assert all("idle" not in line for line in tick_lines), tick_lines
    assert len(tick_lines) < 40
    summaries = [line for line in output.splitlines() if "ticks (" in line and "busy" in line]
    assert summaries and "step errors" in summaries[0], output


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_scheduler_serves_its_metrics_on_its_own_port(start_scheduler, lab):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from afe.models import Host

    port = free_port()
    process = start_scheduler(SCHEDULER_METRICS_PORT=str(port), SCHEDULER_METRICS_ADDRESS="127.0.0.1")
    log_has(process, "metrics served on 127.0.0.1:")
    log_has(process, "tick:")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    hosts = sum(sample.value for sample in families["afe_hosts"].samples)
    assert hosts == Host.objects.filter(invalid=False).count() == 4
    assert next(s.value for s in families["scheduler_tick_seconds"].samples if s.name.endswith("_count")) >= 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_a_metrics_port_that_is_taken_stops_the_scheduler_with_a_clear_error(start_scheduler, lab):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = start_scheduler("--ticks", "1", SCHEDULER_METRICS_PORT=str(taken.getsockname()[1]),
                                  SCHEDULER_METRICS_ADDRESS="127.0.0.1")
        output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "cannot serve metrics" in output and "SCHEDULER_METRICS_PORT" in output


def test_new_work_wakes_the_scheduler_before_its_next_tick_is_due(start_scheduler, lab, autoserv):
    from afe.models import Job, RebootBefore, User

    process = start_scheduler(SCHEDULER_TICK_SECONDS="120")  # the next tick is two minutes away
    log_has(process, "tick:")
    Job.create(owner=User.system_user(), name="t", control_file="x", hosts=["host1"],
               reboot_before=RebootBefore.NEVER, run_reset=False)
    wait_for(lambda: autoserv.calls("job"), "the job to start", timeout=60)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


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
