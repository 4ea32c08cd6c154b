"""The drones' knobs, read once from settings (``settings.DRONES``) into one typed object.

Read by the scheduler's drone manager, the local drone, the Celery drones and
each Celery worker; every knob is a ``DRONE_*`` environment variable listed in
the README's settings table.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class DroneConfig:
    """How drones and their runners behave.

    ``lease_seconds`` must be shorter than ``lost_after_seconds``: a runner that
    cannot reach the database stops its command before the scheduler may
    declare the process lost and give its host to other work.
    """

    #: The capacity (Σ ``num_processes``) a worker reports when it registers.
    max_processes: int = 1000
    #: Seconds between a runner's (and a worker's) heartbeats.
    heartbeat_seconds: float = 5.0
    #: A running record silent this long is settled on its own machine (pidfile, adopt or lost).
    heartbeat_timeout_seconds: float = 30.0
    #: A running record on a Celery drone silent this long is declared lost by the scheduler.
    lost_after_seconds: float = 120.0
    #: A runner that could not write a heartbeat for this long stops its command (fencing).
    lease_seconds: float = 60.0
    #: A worker whose drone heartbeat is this old is dead: no new work, and its name is free.
    dead_after_seconds: float = 60.0
    #: After TERM to an aborted command's process group, KILL follows this much later.
    kill_grace_seconds: float = 30.0
    #: A queued record launched this long ago and never claimed is launched again.
    relaunch_after_seconds: float = 60.0
    #: A record never claimed this long after it was queued is lost.
    start_timeout_minutes: float = 300.0
    #: Every machine sees RESULTS_DIR at the same path (else post-job work stays on the job's drone).
    results_shared: bool = True
    #: Seconds an unacknowledged launch message stays with a worker before Redis hands it out again.
    visibility_timeout_seconds: int = 300

    def __post_init__(self) -> None:
        if self.lease_seconds >= self.lost_after_seconds:
            raise ValueError(
                f"DRONE_LEASE_SECONDS ({self.lease_seconds:g}) must be shorter than "
                f"DRONE_LOST_AFTER_SECONDS ({self.lost_after_seconds:g})"
            )

    @classmethod
    def from_settings(cls, settings: Any = None) -> DroneConfig:
        if settings is None:
            from django.conf import settings
        knobs = dict(getattr(settings, "DRONES", {}) or {})
        scheduler = getattr(settings, "SCHEDULER", {}) or {}
        knobs.setdefault("max_processes", int(scheduler.get("max_processes_per_drone", cls.max_processes)))
        knobs.setdefault("start_timeout_minutes", float(scheduler.get("pidfile_timeout_minutes", 300)))
        return cls(**knobs)

    @property
    def heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_timeout_seconds)

    @property
    def lost_after(self) -> timedelta:
        return timedelta(seconds=self.lost_after_seconds)

    @property
    def dead_after(self) -> timedelta:
        return timedelta(seconds=self.dead_after_seconds)

    @property
    def relaunch_after(self) -> timedelta:
        return timedelta(seconds=self.relaunch_after_seconds)

    @property
    def start_timeout(self) -> timedelta:
        return timedelta(minutes=self.start_timeout_minutes)
