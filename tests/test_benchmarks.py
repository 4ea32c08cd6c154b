"""The benchmarks at a small scale, as a smoke test: they run, check their own results, and print
their figures (collected in the run's "figures" section). Times are printed, never asserted."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from drones.runner import database_url

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str, timeout: float = 600) -> str:
    result = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "LOG_LEVEL": "WARNING"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def on_this_database() -> list[str]:
    """The benchmark's database arguments: MariaDB when the tests run there (a database of its own)."""
    if connection.vendor != "mysql":
        return []
    url = database_url(connection.settings_dict)
    return ["--database-url", url.rsplit("/", 1)[0] + "/", "--database-name", f"bench_tick_{os.getpid()}"]


@pytest.mark.django_db
def test_the_tick_benchmark_runs_at_a_small_scale_and_its_assignments_are_correct(figures):
    output = run_bench("scheduler_tick.py", "--hosts", "60", "--entries", "240", "--runs", "1",
                       *on_this_database())
    assert "assignments checked: all correct" in output, output
    lines = output.splitlines()
    assigned = next(line for line in lines if line.startswith("assigned: project"))
    project, floor = (int(n) for n in re.match(r"assigned: project (\d+), floor \(greedy\) (\d+)", assigned).groups())
    assert project > 0 and floor > 0
    for prefix in ("assigning tick", "steady tick"):
        line = next(line for line in lines if line.startswith(prefix))
        assert "floor" in line and "ratio" in line
        figures.append(f"tick benchmark ({connection.vendor}, 60 hosts/240 entries): {line}")
    figures.append(f"tick benchmark ({connection.vendor}): {assigned}")


def test_the_dispatch_latency_benchmark_runs_the_real_scheduler_on_an_idle_lab(figures):
    output = run_bench("dispatch_latency.py", "--jobs", "3", timeout=300)
    lines = [line.strip() for line in output.splitlines()]
    for prefix in ("job created -> autoserv started:", "verify ended -> job's autoserv started:"):
        line = next(line for line in lines if line.startswith(prefix))
        assert re.search(r"p50 +\d+ ms .*p99 +\d+ ms +\(n=3\)", line), line
        figures.append(f"dispatch latency (SQLite, 3 jobs): {line}")
