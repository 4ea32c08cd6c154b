"""The Celery app of the drones: ``celery -A drones worker -Q drone.NAME``.

Celery carries a doorbell, the database holds the truth: the only task,
``drones.launch(process_id)``, starts the same detached
``python -m drones.runner <id>`` the local drone starts and returns at once.
The runner's claim (a compare-and-set on the record) decides whether anything
runs, so a duplicate, late or post-abort delivery never runs a command twice
or runs an aborted one.

The drone's name is the ``NAME`` of the one ``drone.NAME`` queue the worker is
started with (``-Q``); a worker with no such queue, or several, refuses to
start. At start the worker registers the name in ``afe_drones`` with its
capacity (``DRONE_MAX_PROCESSES``) and keeps a heartbeat there (database
time) from a thread of its own, independent of the broker connection. A
second worker started with a name a live worker holds refuses to start.

Every other option (JSON only, no result backend, late acks, prefetch 1, the
visibility timeout, the thread pool) is in the app's configuration below, not
on the command line.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

from django.conf import settings  # noqa: E402 - needs DJANGO_SETTINGS_MODULE

log = logging.getLogger("drones.celery")

QUEUE_PREFIX = "drone."
LAUNCH_TASK = "drones.launch"
NOOP_TASK = "drones.noop"  # the bare-Celery baseline of bench/celery_drones.py


def queue_name(hostname: str) -> str:
    """The Celery queue of the drone ``hostname``."""
    return f"{QUEUE_PREFIX}{hostname}"


def drone_name_from_queues(queues: list[str]) -> str:
    """The drone name given by the worker's ``-Q drone.NAME``; raises ValueError unless exactly one."""
    names = [q[len(QUEUE_PREFIX):] for q in queues if q.startswith(QUEUE_PREFIX) and len(q) > len(QUEUE_PREFIX)]
    if len(names) != 1:
        raise ValueError(
            f"a drone worker consumes exactly one queue drone.NAME (-Q drone.NAME); got {sorted(queues)}"
        )
    return names[0]


def make_app(broker_url: str | None = None) -> Celery:
    """The drones' Celery app, configured from the project's settings (``broker_url`` overrides the broker)."""
    app = Celery("drones")
    app.conf.update(
        broker_url=broker_url or settings.CELERY_BROKER_URL or "redis://127.0.0.1:6379/0",
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # A launch takes milliseconds: ack after it ran, so a worker that dies first gets it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_pool="threads",
        worker_concurrency=2,
        worker_hijack_root_logger=False,  # the project's LOGGING (Django's) prints the drone's lines
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
        worker_soft_shutdown_timeout=10,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_channel_error_retry=True,
        broker_transport_options={
            "visibility_timeout": settings.DRONES["visibility_timeout_seconds"],
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 30,
        },
        # Drones never consume the default queue; the scheduler always names the queue.
        task_default_queue="drone.default",
        task_create_missing_queues=True,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                   "interval_max": 0.2},
    )
    app.steps["worker"].add(DroneAgent)
    app.task(name=LAUNCH_TASK, bind=True, acks_late=True)(launch)
    app.task(name=NOOP_TASK, bind=True, acks_late=True)(noop)
    return app


def _setup_django() -> None:
    import django

    django.setup()


class DroneAgent(bootsteps.StartStopStep):
    """Registers the drone, then looks after it from its own daemon thread until the worker stops.

    Runs before the consumer starts, so a worker that may not have the name
    never takes a message. Every ``DRONE_HEARTBEAT_SECONDS``, independent of the
    broker: beat the drone's row, reap finished runners, and reconcile this
    drone's records from the database (:meth:`reconcile`).
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        _setup_django()
        from .config import DroneConfig

        self.config = DroneConfig.from_settings()
        self.hostname = ""
        self.instance = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.runners: Any = None
        self.spawner: Any = None

    def start(self, worker: Any) -> None:
        """Register the name; raises (the worker exits with an error) when it cannot."""
        from django.db import connection

        from .local import LocalDrone
        from .proctable import pid_alive
        from .registration import NameTaken, register
        from .spawner import Spawner

        queues = list(worker.app.amqp.queues.consume_from or {})
        self.hostname = drone_name_from_queues(queues)
        won = register(
            self.hostname, self.instance, max_processes=self.config.max_processes,
            machine=socket.gethostname(), pid=os.getpid(), dead_after=self.config.dead_after,
            is_gone=lambda pid: not pid_alive(pid),
        )
        connection.close()
        if not won:
            message = (f"drone name {self.hostname!r} is held by another live worker "
                       f"(see afe_drones); refusing to start a second one")
            log.critical(message)
            raise NameTaken(message)
        runner_log = Path(settings.RESULTS_DIR) / "drone_tmp" / f"runners-{self.hostname}.log"
        self.spawner = Spawner(runner_log, Path(settings.BASE_DIR))
        self.runners = LocalDrone(
            self.hostname, max_processes=self.config.max_processes, runner_log=runner_log, spawner=self.spawner,
            heartbeat_seconds=self.config.heartbeat_seconds,
            heartbeat_timeout=self.config.heartbeat_timeout,
            kill_grace_seconds=self.config.kill_grace_seconds,
            lease_seconds=self.config.lease_seconds,
        )
        worker.app.drone_hostname = self.hostname
        worker.app.drone_runners = self.runners
        log.info("drone %s registered (capacity %s, instance %s)",
                 self.hostname, self.config.max_processes, self.instance)
        self.thread = threading.Thread(target=self._beat, name=f"drone-{self.hostname}", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        from django.db import DatabaseError, connection

        from .local import reap_runners
        from .registration import heartbeat

        while not self.stopping.wait(self.config.heartbeat_seconds):
            reap_runners()
            try:
                if not heartbeat(self.hostname, self.instance):
                    log.error("drone %s: another worker has taken the name", self.hostname)
                self.reconcile()
            except DatabaseError as exc:
                log.warning("drone %s: database unreachable (%s); retrying", self.hostname, exc)
            finally:
                connection.close()

    def reconcile(self) -> None:
        """Settle this drone's records from the database, whatever Redis delivered.

        Queued records launched ``relaunch_after`` ago and never claimed get a
        runner (a lost message never strands work); running records of this
        machine whose runner died are settled as the local drone does (exit
        status from the pidfile, a new runner adopting a live command, or lost).
        """
        from django.utils import timezone

        from .models import Process

        mine = Process.objects.active().filter(drone=self.hostname)
        cutoff = timezone.now() - self.config.relaunch_after
        for process in mine.filter(state=Process.State.QUEUED, launched_at__lt=cutoff):
            log.info("process %s: launched at %s and never claimed; starting its runner here",
                     process.pk, process.launched_at)
            self.runners.launch(process, marked=True)
        self.runners.check(list(
            mine.filter(state=Process.State.RUNNING, runner_host=self.runners.machine).with_silence()))

    def stop(self, worker: Any) -> None:
        from django.db import DatabaseError, connection

        from .registration import release

        self.stopping.set()
        if self.spawner is not None:
            self.spawner.stop()
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None
            try:
                release(self.hostname, self.instance)
            except DatabaseError as exc:
                log.warning("drone %s: could not release the name: %s", self.hostname, exc)
            finally:
                connection.close()


def launch(task: Any, process_id: int) -> str:
    """Start a runner for the record ``process_id``; returns what was done.

    ``"started"``: a runner was forked; its claim (queued, and for this drone)
    decides whether anything runs, so a stale or repeated message costs one
    fork and one failed compare-and-set, never a second run. ``"refused"``: the
    message did not carry a record id.
    """
    if isinstance(process_id, bool) or not isinstance(process_id, int) or process_id <= 0:
        log.warning("drones.launch: not a process id: %r", process_id)
        return "refused"
    task.app.drone_runners.spawn_runner(process_id)
    return "started"


def noop(task: Any, counter: str) -> None:
    """Count one delivery in Redis (``INCR counter``) and do nothing else: Celery's own cost."""
    import redis

    redis.Redis.from_url(task.app.conf.broker_url).incr(counter)


app = make_app()
