"""``manage.py run_scheduler``: the scheduler's tick loop."""
from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connections, reset_queries

from drones.base import DroneManager
from scheduler.config import SchedulerConfig
from scheduler.context import SchedulerContext
from scheduler.dispatcher import Dispatcher
from scheduler.lock import DatabaseLock, SchedulerAlreadyRunning
from scheduler.notify import Notifier
from scheduler.wakeup import WorkWatch

log = logging.getLogger("scheduler")


class Command(BaseCommand):
    help = "Run the lab scheduler until SIGTERM/SIGINT, --ticks N ticks, or --lifetime-hours."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--ticks", type=int, default=None, help="Run this many ticks, then exit.")
        parser.add_argument("--lifetime-hours", type=float, default=None, help="Exit after this many hours.")
        parser.add_argument("--recover-hosts", action="store_true", help="Reset Repair Failed hosts at start.")

    def handle(self, *args: Any, ticks: int | None = None, lifetime_hours: float | None = None,
               recover_hosts: bool = False, **options: Any) -> None:
        config = SchedulerConfig.from_settings()
        lock = DatabaseLock()
        try:
            lock.acquire()
        except SchedulerAlreadyRunning as exc:
            raise CommandError(f"refusing to start: {exc}") from exc
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        ctx = SchedulerContext(config=config, drones=DroneManager.from_settings(), notifier=Notifier(config))
        dispatcher = Dispatcher(ctx)
        server = None
        try:
            if config.metrics_port:
                try:
                    server = ctx.metrics.serve(config.metrics_port, config.metrics_address)
                except OSError as exc:
                    raise CommandError(f"cannot serve metrics on {config.metrics_address}:{config.metrics_port} "
                                       f"(SCHEDULER_METRICS_PORT): {exc}") from exc
            dispatcher.initialize(recover_hosts=recover_hosts)
            self.loop(dispatcher, lock, config, ticks, lifetime_hours)
        finally:
            ctx.notifier.flush()
            lock.release()
            if server is not None:
                server.shutdown()
        log.info("scheduler stopped")

    def _stop(self, signum: int, frame: Any) -> None:
        log.info("signal %d: finishing the current tick, then stopping", signum)
        self.stopping = True

    def loop(self, dispatcher: Dispatcher, lock: DatabaseLock, config: SchedulerConfig,
             ticks: int | None, lifetime_hours: float | None) -> None:
        """Tick until told to stop; a lost database connection is retried, not fatal.

        A tick that did something logs its line at INFO, an idle one at DEBUG;
        every ``summary_minutes`` an INFO line sums up the ticks since the last.
        Between ticks, new work (``scheduler.wakeup``) starts the next one early.
        """
        deadline = time.monotonic() + lifetime_hours * 3600 if lifetime_hours else None
        summary = TickSummary(config.summary_minutes * 60)
        tick_seconds = config.tick_seconds
        done = 0
        while not self.stopping and (ticks is None or done < ticks):
            if deadline is not None and time.monotonic() >= deadline:
                log.info("lifetime of %s hours reached", lifetime_hours)
                break
            started = time.monotonic()
            watch = None
            try:
                close_old_connections()
                reset_queries()  # with DEBUG on, Django keeps every query: a tick forgets the last one's
                if not lock.refresh():
                    raise CommandError("the scheduler lock was taken over by another scheduler; stopping")
                watch = WorkWatch.start() if config.wake_seconds else None
                report = dispatcher.tick()
                log.log(logging.DEBUG if report.idle else logging.INFO, report.summary())
                summary.add(report)
                if summary.due():
                    log.info(summary.line())
                dispatcher.ctx.metrics.publish()
            except DatabaseError as exc:
                log.error("database error, reconnecting next tick: %s", exc)
                for connection in connections.all():
                    connection.close()
            done += 1
            if not self.stopping and (ticks is None or done < ticks):
                self.pause(started + tick_seconds, watch, config.wake_seconds)

    def pause(self, until: float, watch: WorkWatch | None, poll: float) -> None:
        """Sleep until ``until`` (monotonic time), or until ``watch`` sees new work (asked every
        ``poll`` seconds); a database error while asking just waits out the pause."""
        while not self.stopping:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            if watch is None:
                time.sleep(remaining)
                return
            time.sleep(min(poll, remaining))
            try:
                if watch.arrived():
                    log.debug("new work arrived; ticking early")
                    return
            except DatabaseError as exc:
                log.debug("cannot look for new work (%s); waiting for the tick", exc)
                watch = None


class TickSummary:
    """The periodic one-line summary: ticks, busy ticks, errors and time since the last line."""

    def __init__(self, every_seconds: float) -> None:
        self.every_seconds = every_seconds
        self._reset()

    def _reset(self) -> None:
        self.since = time.monotonic()
        self.ticks = self.busy = self.errors = 0
        self.seconds = 0.0
        self.done: dict[str, int] = {}

    def add(self, report: Any) -> None:
        self.ticks += 1
        self.busy += not report.idle
        self.errors += len(report.errors)
        self.seconds += sum(report.seconds.values())
        for step, n in report.counts.items():
            if n:
                self.done[step] = self.done.get(step, 0) + n

    def due(self) -> bool:
        return time.monotonic() - self.since >= self.every_seconds

    def line(self) -> str:
        """The summary since the last line (and start counting again)."""
        minutes = (time.monotonic() - self.since) / 60
        done = ", ".join(f"{step}={n}" for step, n in self.done.items()) or "nothing"
        mean = self.seconds / self.ticks * 1000 if self.ticks else 0.0
        text = (f"last {minutes:.1f} min: {self.ticks} ticks ({self.busy} busy, mean {mean:.0f} ms), "
                f"{self.errors} step errors; done: {done}")
        self._reset()
        return text
