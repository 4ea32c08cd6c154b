"""A Celery drone's row in ``afe_drones``: registration, heartbeat, release.

Every time is the database's (``Now()``), never the drone's, so machines with
skewed clocks agree on who is alive. Each write is a compare-and-set that
returns whether it won.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from afe.models import Drone
from afe.models.drones import effective_capacity

log = logging.getLogger(__name__)


class NameTaken(RuntimeError):
    """Another live worker holds the drone name this worker was started with."""


@dataclass(frozen=True)
class DroneState:
    """A drone row as the scheduler sees it at the start of a tick.

    ``alive`` compares ``heartbeat_at`` with the database's clock in the same query.
    """

    hostname: str
    enabled: bool
    alive: bool
    max_processes: int | None
    max_processes_limit: int | None
    heartbeat_at: datetime | None

    @property
    def capacity(self) -> int:
        """The reported capacity, lowered by the admin's limit."""
        return effective_capacity(self.max_processes, self.max_processes_limit)


def _dead_before(dead_after: timedelta) -> ExpressionWrapper:
    return ExpressionWrapper(Now() - dead_after, output_field=DateTimeField())


def register(
    hostname: str, instance: str, *, max_processes: int, machine: str, pid: int, dead_after: timedelta,
    is_gone: Callable[[int], bool] = lambda pid: False,
) -> bool:
    """Take the name ``hostname`` for the worker ``instance``; returns whether it won.

    Creates the row if there is none. Wins when no worker holds the name, or
    its holder's heartbeat is older than ``dead_after`` (it is dead), or the
    holder ran on this ``machine`` and ``is_gone(its pid)`` (a worker restarted
    after a crash need not wait), or the holder is ``instance`` itself. Losing
    means a live worker has the name.
    """
    try:
        row, _ = Drone.objects.get_or_create(hostname=hostname)
    except IntegrityError:
        row = Drone.objects.get(hostname=hostname)  # created at the same moment elsewhere: the CAS decides
    free = (
        Q(worker_instance="") | Q(worker_instance=instance)
        | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_dead_before(dead_after))
    )
    if row.worker_instance and row.worker_machine == machine[:255] and row.worker_pid and is_gone(row.worker_pid):
        free |= Q(worker_instance=row.worker_instance, worker_pid=row.worker_pid)
    won = Drone.objects.filter(free, hostname=hostname).update(
        worker_instance=instance, heartbeat_at=Now(), max_processes=max_processes,
        worker_machine=machine[:255], worker_pid=pid,
    )
    return won == 1


def heartbeat(hostname: str, instance: str) -> bool:
    """Refresh the heartbeat; returns False when ``instance`` no longer holds the name."""
    return Drone.objects.filter(hostname=hostname, worker_instance=instance).update(heartbeat_at=Now()) == 1


def release(hostname: str, instance: str) -> bool:
    """Give the name up on a clean stop; returns whether ``instance`` still held it."""
    return Drone.objects.filter(hostname=hostname, worker_instance=instance).update(
        worker_instance="", heartbeat_at=None, worker_pid=None
    ) == 1


def registered_drones(dead_after: timedelta) -> list[DroneState]:
    """Every drone row that a worker has ever registered, in one query, with its liveness."""
    rows = (
        Drone.objects.exclude(max_processes__isnull=True)
        .annotate(dead_before=_dead_before(dead_after))
        .order_by("hostname")
        .values_list("hostname", "enabled", "max_processes", "max_processes_limit", "heartbeat_at", "dead_before")
    )
    return [
        DroneState(hostname, enabled, heartbeat_at is not None and heartbeat_at >= dead_before,
                   max_processes, limit, heartbeat_at)
        for hostname, enabled, max_processes, limit, heartbeat_at, dead_before in rows
    ]
