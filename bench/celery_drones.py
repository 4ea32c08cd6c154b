"""How fast processes start through Celery drones, next to a bare Celery no-op task, in one run.

    .venv/bin/python bench/celery_drones.py [--processes N] [--drones D] [--broker URL] [--database-url URL]

Starts D drone workers (``celery -A drones worker -Q drone.NAME``) on a fresh
database (a temporary SQLite file unless ``--database-url`` names another; it
is flushed first), then:

1. sends N ``drones.noop`` tasks (each only increments a Redis counter) to the
   drones' queues and times until all N ran: the bare Celery rate;
2. queues N ``/bin/true`` process records spread over the drones through the
   drone manager, launches them (one ``drones.launch`` message each) and times
   until every record was claimed by its runner: processes started per second;
3. prints the queries of the drone manager's part of a tick (``refresh``,
   ``launch_queued``, the capacity count) with D and with D + 50 registered drones.

Figures, not assertions. The goal: the drone rate at least half the bare rate.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--drones", type=int, default=2)
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="")
    return parser.parse_args()


def setup_django(database_url: str, broker: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def start_workers(names: list[str], directory: Path) -> list[subprocess.Popen]:
    from afe.models import Drone
    from drones.celery import queue_name

    env = dict(os.environ, DRONE_HEARTBEAT_SECONDS="1", DRONE_MAX_PROCESSES="100000")
    workers = []
    for name in names:
        log = open(directory / f"{name}.log", "wb")
        workers.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("celery")), "-A", "drones", "worker", "-Q", queue_name(name), "-l",
             "warning"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))
    deadline = time.monotonic() + 60
    while Drone.objects.filter(hostname__in=names, heartbeat_at__isnull=False).count() < len(names):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            sys.exit(f"the drone workers did not start; see {directory}")
        time.sleep(0.2)
    time.sleep(2)  # until they consume
    return workers


def bare_rate(names: list[str], n: int, broker: str) -> float:
    import redis

    from drones.celery import NOOP_TASK, app, queue_name

    counter = f"bench:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(broker)
    started = time.monotonic()
    for i in range(n):
        app.send_task(NOOP_TASK, args=[counter], queue=queue_name(names[i % len(names)]))
    while int(client.get(counter) or 0) < n:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    client.delete(counter)
    return n / elapsed


def drone_rate(names: list[str], n: int, directory: Path) -> float:
    from drones.base import DroneManager
    from drones.celery_drone import discover
    from drones.config import DroneConfig
    from drones.models import Process

    config = DroneConfig.from_settings()
    manager = DroneManager(discover(config), discover=lambda: discover(config))
    work = directory / "work"
    for i in range(n):
        manager.queue(kind="verify", drone=names[i % len(names)], command=["/bin/true"], working_dir=str(work),
                      log_file=str(work / f"{i}.log"))
    started = time.monotonic()
    manager.launch_queued()
    while Process.objects.filter(started_at__isnull=True).exists():
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    while Process.objects.active().exists():
        time.sleep(0.1)
    return n / elapsed


def tick_queries() -> list[tuple[int, int]]:
    """Queries of the drone manager's part of a tick with the drones registered now, then with 50 more."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from afe.models import Drone
    from drones.base import DroneManager
    from drones.celery_drone import discover
    from drones.config import DroneConfig

    config = DroneConfig.from_settings()
    figures = []
    for extra in (0, 50):
        Drone.objects.bulk_create([Drone(hostname=f"idle-{uuid.uuid4().hex[:8]}", max_processes=10,
                                         heartbeat_at=timezone.now()) for _ in range(extra)])
        manager = DroneManager(discover(config), discover=lambda: discover(config))
        with CaptureQueriesContext(connection) as queries:
            manager.refresh()
            manager.launch_queued()
            manager.unapplied_processes_by_drone()
        figures.append((Drone.objects.count(), len(queries)))
    return figures


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        directory = Path(tmp)
        setup_django(args.database_url or f"sqlite:///{directory / 'bench.sqlite3'}", args.broker)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("flush", interactive=False, verbosity=0)
        names = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(args.drones)]
        workers = start_workers(names, directory)
        try:
            bare = bare_rate(names, args.processes, args.broker)
            drone = drone_rate(names, args.processes, directory)
            queries = tick_queries()
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
        print(f"{args.processes} through {args.drones} drone(s), database {args.database_url or 'SQLite (temporary)'}")
        print(f"bare Celery no-op tasks:      {bare:8.1f} per second")
        print(f"processes started on drones:  {drone:8.1f} per second ({drone / bare:.0%} of the bare rate)")
        for drones, count in queries:
            print(f"drone manager refresh + launch + capacity: {count} queries with {drones} registered drone(s)")


if __name__ == "__main__":
    main()
