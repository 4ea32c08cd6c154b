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
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from .models import Process

log = logging.getLogger(__name__)
#: Records per insert statement: one statement for thousands of records holds tens of MB while it is built.
WRITE_BATCH = 500

#: The drone backends by name: the dotted path of a callable ``(DroneConfig) → list[DroneBackend]``
#: that builds them. ``DroneManager.from_settings`` picks ``celery`` when ``CELERY_BROKER_URL``
#: is set, else ``local``; the Celery one is called again every tick (drones come and go).
BACKENDS: Mapping[str, str] = MappingProxyType({
    "local": "drones.local.from_config",
    "celery": "drones.celery_drone.discover",
})


def backend_factory(name: str) -> Callable[[Any], list[DroneBackend]]:
    """The builder registered as ``name`` in :data:`BACKENDS` (imported on demand)."""
    from django.utils.module_loading import import_string

    return import_string(BACKENDS[name])


class DroneBackend(abc.ABC):
    """One drone: a machine (or pool of workers) that runs process records."""

    #: The name the scheduler stores in ``Process.drone``.
    hostname: str
    #: How many processes (Σ ``num_processes``) the scheduler may put here at once.
    max_processes: int
    #: Whether the drone may take new work (alive and not disabled); its running work goes on.
    enabled: bool = True

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
    def check(self, processes: Sequence[Process], reachable_since: datetime | None = None) -> None:
        """Called once per tick with this drone's running records.

        ``reachable_since``: when the scheduler last (re)gained the database; a
        heartbeat missed before then may be the outage's fault, not the runner's.

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
        discover: Callable[[], Iterable[DroneBackend]] | None = None,
        outage_after: timedelta = timedelta(seconds=30),
        results_shared: bool = True,
    ) -> None:
        """``discover``, when given, is called at every ``refresh`` (once per tick) to read
        which drones exist now; it replaces ``backends``. A gap of ``outage_after``
        between two refreshes (the database was unreachable, or the scheduler was
        down) restarts the clock by which runners' silence is judged. ``results_shared``:
        every drone sees the results directory at the same path, so work paired
        with a job may move when the job's drone is gone."""
        self._backends: dict[str, DroneBackend] = {}
        self._set_backends(backends)
        self.relaunch_after = relaunch_after
        self.start_timeout = start_timeout
        self._discover = discover
        self.outage_after = outage_after
        self.results_shared = results_shared
        self._reachable_since: datetime | None = None
        self._last_refresh: datetime | None = None

    def _set_backends(self, backends: Iterable[DroneBackend]) -> None:
        found: dict[str, DroneBackend] = {}
        for backend in backends:
            if backend.hostname in found:
                raise ValueError(f"two drones named {backend.hostname!r}")
            found[backend.hostname] = backend
        self._backends = found

    def reload(self) -> bool:
        """Read which drones exist again (one query for Celery drones); returns whether there is a source."""
        if self._discover is None:
            return False
        self._set_backends(self._discover())
        return True

    @classmethod
    def from_settings(cls, settings: Any = None) -> DroneManager:
        """The local drone "localhost" when ``CELERY_BROKER_URL`` is empty; else the Celery
        drones registered in ``afe_drones``, read again at every tick."""
        from .config import DroneConfig

        if settings is None:
            from django.conf import settings
        config = DroneConfig.from_settings(settings)
        timing = {"relaunch_after": config.relaunch_after, "start_timeout": config.start_timeout,
                  "outage_after": config.heartbeat_timeout, "results_shared": config.results_shared}
        if getattr(settings, "CELERY_BROKER_URL", ""):
            build = backend_factory("celery")
            return cls(build(config), discover=lambda: build(config), **timing)
        return cls(backend_factory("local")(config), **timing)

    # -- the drones -------------------------------------------------------------

    def drones(self) -> list[DroneBackend]:
        return list(self._backends.values())

    def drone(self, hostname: str) -> DroneBackend:
        return self._backends[hostname]

    def fallback_drone(self) -> str | None:
        """Where work that no drone was chosen for goes: the only drone, or None when there
        are several (or none) and the work must wait."""
        return next(iter(self._backends)) if len(self._backends) == 1 else None

    # -- records ------------------------------------------------------------------

    def queue(self, **fields: Any) -> Process:
        """Write the intent: one ``queued`` process record (nothing is started yet); see :meth:`queue_many`."""
        if "state" in fields:
            raise ValueError("a new process is always queued")
        process = Process(**fields)
        self._check(process)
        process.save()
        return process

    def queue_many(self, processes: Sequence[Process]) -> None:
        """Write many ``queued`` records in one insert, inside the caller's transaction.

        This is how agents write their intent (the launch follows after the
        commit, in ``launch_queued``). ``drone`` may be empty when there is
        exactly one drone; a record that names no known drone, or whose
        command is not a non-empty list of strings, raises ValueError and
        nothing is written.
        """
        for process in processes:
            self._check(process)
        Process.objects.bulk_create(processes, batch_size=WRITE_BATCH)

    def _check(self, process: Process) -> None:
        if process.state != Process.State.QUEUED:
            raise ValueError("a new process is always queued")
        if not process.drone:
            if len(self._backends) != 1:
                raise ValueError("drone= is required when there are several drones")
            process.drone = next(iter(self._backends))
        if process.drone not in self._backends:
            raise ValueError(f"unknown drone {process.drone!r}")
        command = process.command
        if not command or not isinstance(command, list | tuple) or not all(isinstance(arg, str) for arg in command):
            raise ValueError("command must be a non-empty list of strings")
        process.command = list(command)

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
        """One query for the running records and the queued ones overdue, then per drone ``check``
        and ``relaunch_stale``.

        Records queued (and launched) for longer than ``start_timeout`` without
        ever being claimed are marked lost.
        """
        self.reload()
        now = timezone.now()
        if self._last_refresh is None or now - self._last_refresh > self.outage_after:
            self._reachable_since = now
        self._last_refresh = now
        running: dict[str, list[Process]] = defaultdict(list)
        stale: dict[str, list[Process]] = defaultdict(list)
        # Queued records launched lately are waiting for their runner: nothing to do, so not read.
        overdue = Q(state=Process.State.QUEUED, launched_at__isnull=False) & (
            Q(launched_at__lt=now - self.relaunch_after) | Q(created_at__lt=now - self.start_timeout))
        records = Process.objects.filter(Q(state=Process.State.RUNNING) | overdue, drone__in=list(self._backends))
        for process in records.with_silence():
            if process.state == Process.State.RUNNING:
                running[process.drone].append(process)
            elif process.created_at < now - self.start_timeout:
                process.mark_lost(f"never started within {self.start_timeout}")
            elif process.launched_at < now - self.relaunch_after:
                stale[process.drone].append(process)
        loads: dict[str, int] | None = None  # read once, only if some drone has stranded records
        for hostname, backend in self._backends.items():
            backend.check(running.get(hostname, []), self._reachable_since)
            if not stale.get(hostname):
                continue
            if not backend.enabled and loads is None:
                loads = self.active_processes_by_drone()
            left = stale[hostname] if backend.enabled else self._move_stranded(stale[hostname], loads)
            if left:
                backend.relaunch_stale(left, self.relaunch_after)

    def _move_stranded(self, processes: Sequence[Process], loads: dict[str, int]) -> list[Process]:
        """Queued records on a dead or disabled drone that never started: to the least-loaded
        drone that may take work (``launch_queued`` sends them), unless pinned to their drone
        (gathering and parsing read the job's files there, when results are not shared);
        returns the records left in place. ``loads`` (active processes per drone) is updated."""
        takers = [b for b in self._backends.values() if b.enabled]
        left: list[Process] = []
        for process in processes:
            if (process.paired_with_id and not self.results_shared) or not takers:
                left.append(process)
                continue
            target = min(takers, key=lambda b: (loads.get(b.hostname, 0) / max(b.max_processes, 1), b.hostname))
            moved = Process.objects.filter(
                pk=process.pk, state=Process.State.QUEUED, drone=process.drone, started_at__isnull=True
            ).update(drone=target.hostname, launched_at=None)
            if moved:
                log.warning("process %s never started on drone %s; moved to %s",
                            process.pk, process.drone, target.hostname)
                loads[target.hostname] = loads.get(target.hostname, 0) + process.num_processes
        return left

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
        return self._processes_by_drone(Process.objects.active())

    def unapplied_processes_by_drone(self) -> dict[str, int]:
        """Σ ``num_processes`` of records whose result is not applied yet (active ones included), per drone.

        What the scheduler admits new work against: a process that exits
        between the tick's result step and its start step keeps its slot until
        its result is applied, so nothing it would have stopped starts first.
        """
        return self._processes_by_drone(Process.objects.unapplied())

    def _processes_by_drone(self, records: QuerySet[Process]) -> dict[str, int]:
        counts = {hostname: 0 for hostname in self._backends}
        for row in records.order_by().values("drone").annotate(n=Sum("num_processes")):
            counts[row["drone"]] = int(row["n"] or 0)
        return counts
