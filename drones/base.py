"""The drone interface the scheduler uses, and the manager that holds the drones.

A *drone* runs process records. The scheduler never starts a command itself:
it writes a :class:`~drones.models.Process` record (``DroneManager.queue``),
asks the record's drone to launch it (``launch_queued``), and reads results back
from the database. Each tick ``refresh`` lets every drone settle records whose
runner vanished and relaunch records that were launched but never claimed.

A backend only has to honour the record protocol (claim, heartbeat, record the
exit, obey ``kill_requested``), so a Celery drone can replace or join the local
one without scheduler changes.
"""
from __future__ import annotations

import abc
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from .models import Process

log = logging.getLogger(__name__)


class DroneBackend(abc.ABC):
    """One drone: a machine (or pool of workers) that runs process records."""

    #: The name the scheduler stores in ``Process.drone``.
    hostname: str
    #: How many processes (Σ ``num_processes``) the scheduler may put here at once.
    max_processes: int

    @abc.abstractmethod
    def launch(self, process: Process, marked: bool = False) -> None:
        """Start a runner for a queued record and mark ``launched_at``.

        ``marked`` says the caller already set ``launched_at`` (in bulk).
        Idempotent: a record that has been claimed (or otherwise left
        ``queued``) is not launched again. A duplicate launch of a still-queued
        record is harmless: only one runner wins the claim.
        """

    def kill(self, process: Process) -> None:
        """Ask for the process to be killed (``request_kill``); a backend may also act directly."""
        process.request_kill()

    @abc.abstractmethod
    def check(self, processes: Sequence[Process]) -> None:
        """Called once per tick with this drone's running records.

        Settles records whose runner is gone: records the exit status from the
        command's pidfile if it has one; has a live command watched by a new
        runner; marks the record lost when the command is gone without a status.
        """

    def relaunch_stale(self, processes: Sequence[Process], older_than: timedelta) -> None:
        """Launch again queued records that were launched over ``older_than`` ago and never claimed."""
        cutoff = timezone.now() - older_than
        for process in processes:
            if (
                process.state == Process.State.QUEUED
                and process.launched_at is not None
                and process.launched_at < cutoff
            ):
                log.warning("process %s was launched at %s and never claimed; relaunching",
                            process.pk, process.launched_at)
                self.launch(process)


class DroneManager:
    """The drones the scheduler may use, and the bulk operations of a tick.

    Every method costs a fixed number of queries, plus one compare-and-set per
    process actually launched, settled or killed.
    """

    def __init__(
        self,
        backends: Iterable[DroneBackend],
        *,
        relaunch_after: timedelta = timedelta(minutes=1),
        start_timeout: timedelta = timedelta(minutes=300),
    ) -> None:
        self._backends: dict[str, DroneBackend] = {}
        for backend in backends:
            if backend.hostname in self._backends:
                raise ValueError(f"two drones named {backend.hostname!r}")
            self._backends[backend.hostname] = backend
        self.relaunch_after = relaunch_after
        self.start_timeout = start_timeout

    @classmethod
    def from_settings(cls, settings: Any = None) -> DroneManager:
        """The local drone "localhost" when ``CELERY_BROKER_URL`` is empty."""
        if settings is None:
            from django.conf import settings
        if getattr(settings, "CELERY_BROKER_URL", ""):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                "CELERY_BROKER_URL is set but Celery drones are not implemented yet; "
                "unset it to run every process on the local drone"
            )
        from .local import LocalDrone

        knobs = getattr(settings, "SCHEDULER", {}) or {}
        drone = LocalDrone(
            "localhost",
            max_processes=int(knobs.get("max_processes_per_drone", 1000)),
            heartbeat_seconds=float(knobs.get("drone_heartbeat_seconds", 2.0)),
            heartbeat_timeout=timedelta(seconds=float(knobs.get("drone_heartbeat_timeout_seconds", 30))),
        )
        return cls(
            [drone],
            relaunch_after=timedelta(seconds=float(knobs.get("drone_relaunch_after_seconds", 60))),
            start_timeout=timedelta(minutes=float(knobs.get("pidfile_timeout_minutes", 300))),
        )

    # -- the drones -------------------------------------------------------------

    def drones(self) -> list[DroneBackend]:
        return list(self._backends.values())

    def drone(self, hostname: str) -> DroneBackend:
        return self._backends[hostname]

    # -- records ------------------------------------------------------------------

    def queue(self, **fields: Any) -> Process:
        """Write the intent: a ``queued`` process record (nothing is started yet).

        ``drone`` may be omitted when there is exactly one drone.
        """
        if "state" in fields:
            raise ValueError("a new process is always queued")
        if not fields.get("drone"):
            if len(self._backends) != 1:
                raise ValueError("drone= is required when there are several drones")
            fields["drone"] = next(iter(self._backends))
        if fields["drone"] not in self._backends:
            raise ValueError(f"unknown drone {fields['drone']!r}")
        command = fields.get("command")
        if not command or not isinstance(command, list | tuple) or not all(
            isinstance(arg, str) for arg in command
        ):
            raise ValueError("command must be a non-empty list of strings")
        fields["command"] = list(command)
        return Process.objects.create(state=Process.State.QUEUED, **fields)

    def launch_queued(self) -> list[Process]:
        """Launch every queued record not launched yet: two queries however many there are."""
        waiting = Process.objects.filter(
            state=Process.State.QUEUED, launched_at__isnull=True, drone__in=list(self._backends)
        )
        pending = list(waiting.order_by("id"))
        if not pending:
            return []
        now = timezone.now()
        Process.objects.filter(pk__in=[p.pk for p in pending], launched_at__isnull=True).update(launched_at=now)
        for process in pending:
            process.launched_at = now
            try:
                self._backends[process.drone].launch(process, marked=True)
            except OSError as exc:
                # One launch that fails (no memory for a fork, say) does not keep the others
                # waiting; the record is relaunched as stale, or marked lost, later.
                log.warning("process %s: launch on %s failed: %s", process.pk, process.drone, exc)
        return pending

    def refresh(self) -> None:
        """One query for the active records, then per drone ``check`` and ``relaunch_stale``.

        Records queued (and launched) for longer than ``start_timeout`` without
        ever being claimed are marked lost.
        """
        now = timezone.now()
        running: dict[str, list[Process]] = defaultdict(list)
        stale: dict[str, list[Process]] = defaultdict(list)
        for process in Process.objects.active().filter(drone__in=list(self._backends)):
            if process.state == Process.State.RUNNING:
                running[process.drone].append(process)
            elif process.launched_at is None:
                continue  # launch_queued's business
            elif process.created_at < now - self.start_timeout:
                process.mark_lost(f"never started within {self.start_timeout}")
            elif process.launched_at < now - self.relaunch_after:
                stale[process.drone].append(process)
        for hostname, backend in self._backends.items():
            backend.check(running.get(hostname, []))
            if stale.get(hostname):
                backend.relaunch_stale(stale[hostname], self.relaunch_after)

    def kill(self, process: Process) -> None:
        backend = self._backends.get(process.drone)
        if backend is None:
            process.request_kill()
        else:
            backend.kill(process)

    def active_processes_by_drone(self) -> dict[str, int]:
        """Σ ``num_processes`` of queued and running records per drone, in one query.

        Every known drone is present (0 when idle); records on drones this
        manager does not know are counted too.
        """
        counts = {hostname: 0 for hostname in self._backends}
        rows = Process.objects.active().order_by().values("drone").annotate(n=Sum("num_processes"))
        for row in rows:
            counts[row["drone"]] = int(row["n"] or 0)
        return counts
