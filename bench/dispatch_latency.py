"""Dispatch latency on an idle lab: from a job's creation to its autoserv starting, with default settings.

    .venv/bin/python bench/dispatch_latency.py [--jobs 30] [--database-url URL]

Runs the real ``manage.py run_scheduler`` (default settings: local drone,
``SCHEDULER_TICK_SECONDS`` 0.5) on a fresh database (a temporary SQLite file
unless ``--database-url`` names another; it is flushed first) with four idle
hosts, and an autoserv that is a shell script writing the time it started and
ended. Then, one job at a time on the idle lab:

1. **job**: a job without pre-job tasks; latency = autoserv's start for the
   job minus the job's creation;
2. **verify → job**: a job that verifies its host first; latency = the job's
   autoserv start minus the end of the verify's autoserv (one step to the next).

Prints p50, p90 and p99 of each (milliseconds). Figures, not assertions; the
goals are p50 ≤ 300 ms and p99 ≤ 800 ms for both.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUB = """#!/bin/sh
# A stand-in autoserv: the time it started and ended, its flags, and its results directory.
echo "start $(date +%s.%N) $*" >> "{log}"
echo "end $(date +%s.%N) $*" >> "{log}"
exit 0
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="jobs of each kind, one at a time")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for one job")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def setup(directory: Path, database_url: str) -> dict[str, str]:
    """Django on a fresh database, four idle hosts; returns the scheduler's environment."""
    stub = directory / "autoserv"
    stub.write_text(STUB.format(log=directory / "calls.log"))
    stub.chmod(0o755)
    env = {
        **os.environ,
        "DATABASE_URL": database_url or f"sqlite:///{directory / 'bench.sqlite3'}",
        "RESULTS_DIR": str(directory / "results"),
        "AUTOSERV_PATH": str(stub),
        "PARSER_PATH": "/bin/true",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "settings",
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "RESULTS_DIR", "AUTOSERV_PATH", "PARSER_PATH",
                                           "LOG_LEVEL", "DJANGO_SETTINGS_MODULE")})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from afe.models import Host

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    for i in range(4):
        Host.objects.create(hostname=f"bench{i}")
    return env


def calls(log: Path) -> list[tuple[str, float, str]]:
    """The stub's lines: (start or end, epoch seconds, its arguments)."""
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        what, moment, *args = line.split(" ")
        found.append((what, float(moment), " ".join(args)))
    return found


def wait_for(condition, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)
    return value


def run_job(log: Path, host: str, verify: bool, timeout: float) -> float:
    """Create one job and return its latency in seconds (see the module docstring)."""
    from afe.models import HostQueueEntry, Job, RebootBefore, User

    job = Job.create(owner=User.system_user(), name="latency", control_file="x", hosts=[host],
                     reboot_before=RebootBefore.NEVER, run_reset=False, run_verify=verify)
    tag = f"/{job.pk}-"
    job_start = wait_for(
        lambda: next((t for what, t, args in calls(log) if what == "start" and tag in args
                      and "-v" not in args.split()), None), f"job {job.pk} to start", timeout)
    if verify:
        verify_end = max(t for what, t, args in calls(log)
                         if what == "end" and "-v" in args.split() and host in args.split())
        latency = job_start - verify_end
    else:
        latency = job_start - job.created_on.timestamp()
    wait_for(lambda: HostQueueEntry.objects.filter(job=job, complete=True).exists(), f"job {job.pk} to end", timeout)
    return latency


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000

    return (f"p50 {statistics.median(ordered) * 1000:6.0f} ms   p90 {at(0.9):6.0f} ms   "
            f"p99 {at(0.99):6.0f} ms   (n={len(ordered)})")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        directory = Path(tmp)
        env = setup(directory, args.database_url)
        log = directory / "calls.log"
        scheduler = subprocess.Popen([sys.executable, "manage.py", "run_scheduler"], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=open(directory / "scheduler.log", "wb"),
                                     stderr=subprocess.STDOUT)
        try:
            from afe.models import Host

            wait_for(lambda: not Host.objects.filter(leased=True).exists(), "the scheduler to release the hosts", 60)
            plain = [run_job(log, f"bench{i % 4}", False, args.timeout) for i in range(args.jobs)]
            chained = [run_job(log, f"bench{i % 4}", True, args.timeout) for i in range(args.jobs)]
        finally:
            scheduler.send_signal(signal.SIGTERM)
            scheduler.wait(timeout=60)
        print(f"dispatch latency on an idle lab, default settings, {env['DATABASE_URL'].split(':')[0]}:")
        print(f"  job created -> autoserv started:       {percentiles(plain)}")
        print(f"  verify ended -> job's autoserv started: {percentiles(chained)}")


if __name__ == "__main__":
    main()
