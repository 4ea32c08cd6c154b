"""Celery drone workers for tests: ``celery -A drones worker -Q drone.NAME`` subprocesses over real Redis.

The ``broker`` and ``workers`` fixtures (tests/conftest.py) use these; each
test names its drones uniquely, so their queues never meet another run's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from afe.models import Drone
from drones.base import DroneManager
from drones.celery import queue_name
from drones.celery_drone import discover
from drones.config import DroneConfig
from drones.models import Process
from drones.runner import database_url

BROKER = os.environ.get("CELERY_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY = Path(sys.executable).with_name("celery")

# The worker side and the scheduler side agree on these short timings.
DRONE_ENV = {
    "DRONE_HEARTBEAT_SECONDS": "0.2",
    "DRONE_HEARTBEAT_TIMEOUT_SECONDS": "3",
    "DRONE_DEAD_AFTER_SECONDS": "3",
    "DRONE_LOST_AFTER_SECONDS": "8",
    "DRONE_LEASE_SECONDS": "5",
    "DRONE_KILL_GRACE_SECONDS": "2",
    "DRONE_RELAUNCH_AFTER_SECONDS": "2",
}
CONFIG = DroneConfig(heartbeat_seconds=0.2, heartbeat_timeout_seconds=3, dead_after_seconds=3, lost_after_seconds=8,
                     lease_seconds=5, kill_grace_seconds=2, relaunch_after_seconds=2)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 45) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def broker_url() -> str:
    """The Redis the tests use; fails (CI=true) or skips the test when it does not answer."""
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and Redis is not reachable at {BROKER}: {exc}")
        pytest.skip(f"Redis is not reachable at {BROKER}: {exc}")
    return BROKER


class Workers:
    """Drone workers started exactly as the README says: ``celery -A drones worker -Q drone.NAME``."""

    def __init__(self, directory: Path, broker: str) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.started: list[subprocess.Popen] = []

    @staticmethod
    def name() -> str:
        return f"drone-{uuid.uuid4().hex[:8]}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)  # FAKE_AUTOSERV_DIR and friends carry over
        env.update(DRONE_ENV)
        env.update(
            DATABASE_URL=database_url(connection.settings_dict),
            CELERY_BROKER_URL=self.broker,
            RESULTS_DIR=str(django_settings.RESULTS_DIR),
            DJANGO_SETTINGS_MODULE="settings",
        )
        env.update(extra)
        return env

    def start(self, name: str, *, max_processes: int = 10, wait: bool = True) -> subprocess.Popen:
        log = open(self.directory / f"{name}-{len(self.started)}.log", "wb")
        worker = subprocess.Popen(
            [str(CELERY), "-A", "drones", "worker", "-Q", queue_name(name), "-l", "info"],
            cwd=django_settings.BASE_DIR, env=self.env(DRONE_MAX_PROCESSES=str(max_processes)),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        worker.log_path = Path(log.name)  # type: ignore[attr-defined]
        log.close()
        self.started.append(worker)
        if wait:
            wait_for(lambda: Drone.objects.filter(hostname=name, worker_pid=worker.pid).exists()
                     or worker.poll() is not None, f"drone {name} to register")
            assert worker.poll() is None, self.log(worker)
            wait_for(lambda: "ready." in self.log(worker), f"drone {name} to consume")
        return worker

    @staticmethod
    def log(worker: subprocess.Popen) -> str:
        return worker.log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGCONT)
                worker.terminate()
        for worker in self.started:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def stop_workers(pool: Workers) -> None:
    """Stop the workers, and kill the commands they left running."""
    pool.stop_all()
    for pid in Process.objects.filter(state="running").values_list("pid", flat=True):
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def celery_drones() -> DroneManager:
    """The scheduler's drone manager over the registered Celery drones, read every tick."""
    return DroneManager(discover(CONFIG), discover=lambda: discover(CONFIG), relaunch_after=CONFIG.relaunch_after,
                        outage_after=CONFIG.heartbeat_timeout)
