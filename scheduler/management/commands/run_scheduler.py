"""``manage.py run_scheduler``: the scheduler's tick loop."""
from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connections

from drones.base import DroneManager
from scheduler.config import SchedulerConfig
from scheduler.context import SchedulerContext
from scheduler.dispatcher import Dispatcher
from scheduler.lock import DatabaseLock, SchedulerAlreadyRunning
from scheduler.notify import Notifier

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
        try:
            dispatcher.initialize(recover_hosts=recover_hosts)
            self.loop(dispatcher, lock, config.tick_seconds, ticks, lifetime_hours)
        finally:
            ctx.notifier.flush()
            lock.release()
        log.info("scheduler stopped")

    def _stop(self, signum: int, frame: Any) -> None:
        log.info("signal %d: finishing the current tick, then stopping", signum)
        self.stopping = True

    def loop(self, dispatcher: Dispatcher, lock: DatabaseLock, tick_seconds: float,
             ticks: int | None, lifetime_hours: float | None) -> None:
        """Tick until told to stop; a lost database connection is retried, not fatal."""
        deadline = time.monotonic() + lifetime_hours * 3600 if lifetime_hours else None
        done = 0
        while not self.stopping and (ticks is None or done < ticks):
            if deadline is not None and time.monotonic() >= deadline:
                log.info("lifetime of %s hours reached", lifetime_hours)
                break
            started = time.monotonic()
            try:
                close_old_connections()
                if not lock.refresh():
                    raise CommandError("the scheduler lock was taken over by another scheduler; stopping")
                report = dispatcher.tick()
                log.info(report.summary())
            except DatabaseError as exc:
                log.error("database error, reconnecting next tick: %s", exc)
                for connection in connections.all():
                    connection.close()
            done += 1
            if not self.stopping and (ticks is None or done < ticks):
                time.sleep(max(tick_seconds - (time.monotonic() - started), 0.0001))
