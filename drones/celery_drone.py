"""The scheduler's side of a Celery drone (``celery -A drones worker -Q drone.NAME``).

``launch`` publishes ``drones.launch(process_id)`` to the queue ``drone.NAME``;
the worker starts the detached runner, whose claim decides whether anything
runs. A publish that fails changes nothing in the database: the record stays
queued with ``launched_at`` set and ``relaunch_stale`` sends it again later.
``kill`` is ``request_kill``: the runner obeys ``kill_requested``, and a record
whose message still waits in Redis goes straight to ``exited`` and never starts.

Which drones exist is read from ``afe_drones`` (:func:`discover`), once per
tick, by the drone manager.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .base import DroneBackend
from .config import DroneConfig
from .models import Process

log = logging.getLogger(__name__)

BROKER_BACKOFF_SECONDS = 5.0


class CeleryDrone(DroneBackend):
    """One registered Celery drone."""

    def __init__(
        self,
        hostname: str,
        *,
        max_processes: int,
        enabled: bool = True,
        lost_after: timedelta = timedelta(minutes=5),
        app: Any = None,
    ) -> None:
        self.hostname = hostname
        self.max_processes = max_processes
        self.enabled = enabled
        self.lost_after = lost_after
        self._app = app

    def __repr__(self) -> str:
        return f"CeleryDrone({self.hostname!r}, enabled={self.enabled})"

    @property
    def app(self) -> Any:
        if self._app is None:
            from .celery import app

            self._app = app
        return self._app

    def launch(self, process: Process, marked: bool = False) -> None:
        from .celery import LAUNCH_TASK, queue_name

        if not marked and not process.mark_launched():
            log.info("process %s is no longer waiting for a launch; not launching it", process.pk)
            return
        if time.monotonic() < getattr(self.app, "drone_broker_down_until", 0.0):
            return  # the broker just failed: the drone's own reconcile, or a later relaunch, starts it
        try:
            self.app.send_task(LAUNCH_TASK, args=[process.pk], queue=queue_name(self.hostname),
                               retry=True, ignore_result=True)
        except Exception as exc:  # noqa: BLE001 - any broker failure: relaunch_stale sends it again
            # Stop publishing for a while, so a dead Redis costs a tick one failure, not one per record.
            self.app.drone_broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
            log.warning("process %s: could not publish its launch to %s: %s", process.pk, self.hostname, exc)

    def check(self, processes: Sequence[Process], reachable_since: datetime | None = None) -> None:
        """Mark lost the running records whose runner has been silent for ``lost_after``.

        Silence is the database's measure (``Process.silence``: heartbeats are
        written with its clock). After the database (or the scheduler) was away,
        ``reachable_since``, runners get ``lost_after`` to beat again. The
        worker's own agent settles records whose runner died on its machine.
        """
        if reachable_since is not None and timezone.now() - reachable_since < self.lost_after:
            return
        for process in processes:
            silent = process.silence()
            if process.state == Process.State.RUNNING and silent is not None and silent > self.lost_after:
                reason = f"runner on {process.runner_host or self.hostname} silent for {int(silent.total_seconds())}s"
                if process.mark_lost(reason):
                    log.warning("process %s on drone %s lost: %s", process.pk, self.hostname, reason)


def discover(config: DroneConfig, app: Any = None) -> list[DroneBackend]:
    """The registered Celery drones, in one query; a dead or disabled one has ``enabled`` False.

    Dead and disabled drones are still returned, so their queued records are
    still launched and their running records still watched; they only get no
    new work. ``app``: the Celery app to publish with (default: ``drones.celery.app``).
    """
    from .registration import registered_drones

    return [
        CeleryDrone(row.hostname, max_processes=row.capacity, enabled=row.enabled and row.alive,
                    lost_after=config.lost_after, app=app)
        for row in registered_drones(config.dead_after)
    ]
