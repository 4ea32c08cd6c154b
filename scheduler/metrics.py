"""Prometheus metrics of the lab and of what the scheduler does.

Two kinds, each in a registry of its own (never prometheus_client's global one):

- ``LabState``: the lab as the database has it now (entries by status, the
  queue by priority, hosts by status and lock, active processes per drone),
  read at scrape time in three queries however big the lab is.
- ``SchedulerMetrics``: what the scheduler did (tick and step durations,
  step errors, queue wait, processes lost, mails sent), observed by the tick.
  The scheduler serves them with ``LabState`` on ``SCHEDULER_METRICS_PORT``
  and publishes a snapshot to the database every few seconds, which the web
  server's ``/metrics`` serves beside its own ``LabState``, so either place
  shows everything.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .dispatcher import TickReport

log = logging.getLogger(__name__)

#: The name of the scheduler's row in ``scheduler_metrics``.
SNAPSHOT_NAME = "scheduler"

STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


def priority_name(priority: int) -> str:
    """A job priority as the metrics label it: its AFE name ("Default"), or the number."""
    from afe.models import Priority

    try:
        return Priority(priority).label
    except ValueError:
        return str(priority)


class LabState(Collector):
    """Gauges read from the database at each scrape: three queries, whatever the lab's size."""

    def __init__(self, close_connection: bool = False) -> None:
        """``close_connection``: close this thread's database connection after each scrape
        (the scheduler's metrics server answers each scrape from a new thread)."""
        self.close_connection = close_connection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import DatabaseError, connection

        try:
            yield from self._read()
        except DatabaseError as exc:  # a scrape must not fail because the database is away
            log.warning("metrics: cannot read the lab's state: %s", exc)
        finally:
            if self.close_connection:
                connection.close()

    def _read(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Sum

        from afe.models import Host, HostQueueEntry
        from drones.models import Process

        entries = GaugeMetricFamily("afe_entries", "Host queue entries not yet complete, by status.",
                                    labels=["status"])
        queued = GaugeMetricFamily("afe_queue_depth", "Queued entries, by job priority.", labels=["priority"])
        by_status: dict[str, int] = {status: 0 for status in HostQueueEntry.Status
                                     if status not in HostQueueEntry.COMPLETE_STATUSES}
        depth: dict[str, int] = {}
        for status, priority, n in (HostQueueEntry.objects.filter(complete=False).order_by()
                                    .values_list("status", "job__priority").annotate(n=Count("id"))):
            by_status[status] = by_status.get(status, 0) + n
            if status == HostQueueEntry.Status.QUEUED:
                name = priority_name(priority)
                depth[name] = depth.get(name, 0) + n
        for status, n in sorted(by_status.items()):
            entries.add_metric([status], n)
        for name, n in sorted(depth.items()):
            queued.add_metric([name], n)
        yield entries
        yield queued

        hosts = GaugeMetricFamily("afe_hosts", "Hosts (not deleted), by status and whether locked.",
                                  labels=["status", "locked"])
        for status, locked, n in (Host.objects.filter(invalid=False).order_by()
                                  .values_list("status", "locked").annotate(n=Count("id"))):
            hosts.add_metric([status or "", "true" if locked else "false"], n)
        yield hosts

        active = GaugeMetricFamily("drone_processes_active", "Queued and running processes, by drone.",
                                   labels=["drone"])
        slots = GaugeMetricFamily("drone_process_slots_used", "Slots (num_processes) held by queued and "
                                  "running processes, by drone.", labels=["drone"])
        for drone, n, used in (Process.objects.active().order_by().values_list("drone")
                               .annotate(n=Count("id"), used=Sum("num_processes"))):
            active.add_metric([drone], n)
            slots.add_metric([drone], int(used or 0))
        yield active
        yield slots


class SchedulerMetrics:
    """What the scheduler did, in a registry of its own; ``observe_*`` are called by the tick."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.tick_seconds = Histogram(
            "scheduler_tick_seconds", "Duration of a whole tick.", buckets=STEP_BUCKETS, registry=self.registry)
        self.step_seconds = Histogram(
            "scheduler_tick_step_seconds", "Duration of each tick step.", ["step"], buckets=STEP_BUCKETS,
            registry=self.registry)
        self.step_errors = Counter(
            "scheduler_tick_step_errors", "Tick steps that failed (logged; the tick went on).", ["step"],
            registry=self.registry)
        self.step_items = Counter(
            "scheduler_tick_step_items", "What each tick step did (entries scheduled, processes launched, ...).",
            ["step"], registry=self.registry)
        self.queue_wait = Histogram(
            "scheduler_queue_wait_seconds", "From a job's creation to its entry starting to run, by priority.",
            ["priority"], buckets=WAIT_BUCKETS, registry=self.registry)
        self.processes_lost = Counter(
            "scheduler_processes_lost", "Processes whose runner and command vanished without an exit status.",
            ["kind"], registry=self.registry)
        self.mails_sent = Counter("scheduler_mails_sent", "Mails the scheduler sent.", registry=self.registry)
        self._published = 0.0

    def observe_tick(self, report: TickReport) -> None:
        """Record one tick's step durations, counts and errors."""
        for step, seconds in report.seconds.items():
            self.step_seconds.labels(step).observe(seconds)
            self.step_items.labels(step).inc(max(report.counts.get(step, 0), 0))
        for step in report.errors:
            self.step_errors.labels(step).inc()
        self.tick_seconds.observe(sum(report.seconds.values()))
        self.mails_sent.inc(max(report.counts.get("mails_sent", 0), 0))

    def observe_started(self, started: Iterable[tuple[int, datetime, datetime]]) -> None:
        """Entries that started running: ``(priority, job created, started)`` each."""
        for priority, created, began in started:
            self.queue_wait.labels(priority_name(priority)).observe(max((began - created).total_seconds(), 0.0))

    def observe_lost(self, kinds: Iterable[str]) -> None:
        """Processes found lost (one kind per process)."""
        for kind in kinds:
            self.processes_lost.labels(kind).inc()

    def exposition(self) -> bytes:
        """These metrics in Prometheus' text format."""
        return generate_latest(self.registry)

    def publish(self, every_seconds: float = 5.0) -> bool:
        """Store a snapshot for the web server's ``/metrics`` at most every ``every_seconds``;
        returns whether it wrote (one query)."""
        from .models import MetricsSnapshot

        now = time.monotonic()
        if now - self._published < every_seconds:
            return False
        MetricsSnapshot.objects.update_or_create(name=SNAPSHOT_NAME, defaults={"text": self.exposition().decode()})
        self._published = now
        return True

    def serve(self, port: int, address: str = "0.0.0.0") -> Any:
        """Serve these metrics and the lab's state over HTTP on ``port`` (0: any free port) from a
        daemon thread; returns the server (``server.server_port`` is the port)."""
        from prometheus_client import start_http_server

        registry = CollectorRegistry()
        registry.register(_Registered(self.registry))
        registry.register(LabState(close_connection=True))
        server, _thread = start_http_server(port, address, registry=registry)
        log.info("metrics served on %s:%s", address, server.server_port)
        return server


class _Registered(Collector):
    """Another registry's metrics, collected into a combined registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return self.registry.collect()


def web_exposition() -> bytes:
    """What the web server's ``/metrics`` serves: the lab's state now, then the scheduler's
    last published snapshot (absent until a scheduler has run)."""
    from .models import MetricsSnapshot

    registry = CollectorRegistry()
    registry.register(LabState())
    text = generate_latest(registry)
    snapshot = MetricsSnapshot.objects.filter(name=SNAPSHOT_NAME).values_list("text", flat=True).first()
    return text + (snapshot or "").encode()
