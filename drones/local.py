"""The local drone: every process runs on this machine under its own runner.

``launch`` starts ``python -m drones.runner <id>`` in a new session (so the
scheduler's terminal, signals and death do not reach it) with the project root
as working directory and the scheduler's environment (so ``DATABASE_URL`` and
friends carry over); the runner is also told the exact database name the
scheduler is connected to. The scheduler never waits for a runner.

Why a direct child rather than a double fork: a double-forked runner is
re-parented to PID 1, and where PID 1 does not reap orphans (many containers
run a plain program as PID 1 — this one does) every finished runner would stay
a zombie forever and slowly exhaust the pid space. So the runner stays a child
of the scheduler, is never waited for, and is reaped without blocking
(``Popen.poll``) on every later launch or check — from a module-level list, so
it does not matter if the ``LocalDrone`` object that launched it is gone. If the
scheduler dies, its runners carry on (new session, stdin/stdout/stderr not tied
to it) and are re-parented like any orphan.

``check`` inspects this machine's process table: ``os.kill(pid, 0)`` plus
``/proc`` to ignore zombies, to recognise a runner by its command line and a
command by the ``AUTOTEST_SCHEDULER_DARK_MARK`` variable its runner put in its
environment (a recycled pid is not mistaken for ours).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .base import DroneBackend
from .config import DroneConfig
from .models import Process
from .pidfile import read_pidfile
from .proctable import is_our_command, is_runner, kill_group
from .spawner import Spawner

log = logging.getLogger(__name__)

RUNNER_MODULE = "drones.runner"


# -- runner children ------------------------------------------------------------------

_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()


def reap_runners() -> int:
    """Reap runners this process launched that have exited; returns how many still run."""
    with _children_lock:
        _children[:] = [child for child in _children if child.poll() is None]
        return len(_children)


# -- the drone ----------------------------------------------------------------------


class LocalDrone(DroneBackend):
    def __init__(
        self,
        hostname: str = "localhost",
        *,
        max_processes: int = 1000,
        heartbeat_seconds: float = 2.0,
        heartbeat_timeout: timedelta = timedelta(seconds=30),
        kill_grace_seconds: float = 30.0,
        lease_seconds: float | None = None,
        runner_log: str | os.PathLike[str] | None = None,
        project_dir: str | os.PathLike[str] | None = None,
        python: str | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        """``spawner``: fork runners from a warm spawner (a Celery drone's) instead of starting each afresh."""
        self.hostname = hostname
        self.max_processes = max_processes
        self.heartbeat_seconds = heartbeat_seconds
        self.heartbeat_timeout = heartbeat_timeout
        self.kill_grace_seconds = kill_grace_seconds
        self.lease_seconds = lease_seconds
        self._runner_log = Path(runner_log) if runner_log else None
        self.project_dir = Path(project_dir or settings.BASE_DIR)
        self.python = python or sys.executable
        self.machine = socket.gethostname()
        self.spawner = spawner
        # record id → when an adopting runner was started (only to avoid starting
        # one per tick while the first is coming up; the adopt itself is a CAS).
        self._adopting: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"LocalDrone({self.hostname!r})"

    @property
    def runner_log(self) -> Path:
        """Where runners' own output goes (the commands write to their ``log_file``)."""
        return self._runner_log or Path(settings.RESULTS_DIR) / "drone_tmp" / "runners.log"

    # -- DroneBackend ---------------------------------------------------------------

    def launch(self, process: Process, marked: bool = False) -> None:
        if not marked and not process.mark_launched():
            log.info("process %s is no longer waiting for a launch; not launching it", process.pk)
            return
        self._spawn([str(process.pk)])

    def spawn_runner(self, process_id: int) -> None:
        """Start a runner for a record without reading it (its claim decides whether it runs)."""
        self._spawn([str(process_id)])

    def kill(self, process: Process) -> None:
        process.request_kill()
        # Act at once when the command is visibly ours; the runner would otherwise
        # notice the request at its next heartbeat.
        if (
            process.state == Process.State.RUNNING
            and process.pid
            and process.runner_host == self.machine
            and is_our_command(process.pid, process.pk)
        ):
            kill_group(process.pid, signal.SIGTERM)  # its runner sends KILL after the grace period

    def check(self, processes: Sequence[Process], reachable_since: datetime | None = None) -> None:
        reap_runners()
        now = time.monotonic()
        for process in processes:
            if process.state != Process.State.RUNNING:
                continue
            silent = process.silence()
            if silent is not None and silent <= self.heartbeat_timeout:
                continue
            if process.runner_host and process.runner_host != self.machine:
                self._settle_foreign(process)
                continue
            if is_runner(process.runner_pid):
                log.warning("process %s: runner %s is alive but late with its heartbeat",
                            process.pk, process.runner_pid)
                continue
            started = self._adopting.get(process.pk)
            if started is not None and now - started < self.heartbeat_timeout.total_seconds():
                continue
            self._settle_orphan(process)
        live = {p.pk for p in processes}
        self._adopting = {pk: t for pk, t in self._adopting.items() if pk in live}

    # -- helpers ------------------------------------------------------------------------

    def _settle_foreign(self, process: Process) -> None:
        """A record run from another machine name (the scheduler moved, or its container was
        recreated): once it has been silent for ten heartbeat timeouts, its runner is
        taken for dead; the pidfile's exit status is used if the results are shared."""
        silent = process.silence()
        if silent is not None and silent < 10 * self.heartbeat_timeout:
            log.warning("process %s: runner on %s has not beaten for %ds; waiting",
                        process.pk, process.runner_host, silent.total_seconds())
            return
        pidfile = read_pidfile(process.pidfile_path)
        if pidfile is not None and pidfile.finished:
            process.record_exit(pidfile.exit_status, pidfile.tests_failed)
        else:
            since = f"for {int(silent.total_seconds())}s" if silent is not None else "since it was claimed"
            process.mark_lost(f"runner on {process.runner_host} silent {since}")

    def _settle_orphan(self, process: Process) -> None:
        """The runner of a running record is gone: record, adopt or mark lost."""
        pidfile = read_pidfile(process.pidfile_path)
        if pidfile is not None and process.pid is None and not self._fresh(process):
            pidfile = None  # left over from an earlier run: the runner died before starting
        if pidfile is not None and pidfile.finished:
            log.warning("process %s: runner %s died; exit status %s taken from the pidfile",
                        process.pk, process.runner_pid, pidfile.exit_status)
            process.record_exit(pidfile.exit_status, pidfile.tests_failed)
            return
        pid = process.pid or (pidfile.pid if pidfile is not None and pidfile.valid else None)
        if is_our_command(pid, process.pk):
            if process.pid is None:
                process.record_pid(pid)
            log.warning("process %s: runner %s died, command %s still runs; adopting it",
                        process.pk, process.runner_pid, pid)
            self._adopting[process.pk] = time.monotonic()
            self._spawn([str(process.pk), "--adopt"])
            return
        pidfile = read_pidfile(process.pidfile_path)  # it may have just exited
        if pidfile is not None and pidfile.finished and (process.pid or self._fresh(process)):
            process.record_exit(pidfile.exit_status, pidfile.tests_failed)
            return
        reason = (
            "runner died before starting the command" if pid is None
            else "runner and command are gone and the pidfile has no exit status"
        )
        log.warning("process %s lost: %s", process.pk, reason)
        process.mark_lost(reason)

    @staticmethod
    def _fresh(process: Process) -> bool:
        """Whether the pidfile was written after the record was claimed."""
        try:
            mtime = os.stat(process.pidfile_path).st_mtime
        except OSError:
            return False
        if process.started_at is None:
            return False
        started = process.started_at
        started_ts = (timezone.make_aware(started) if timezone.is_naive(started) else started).timestamp()
        return mtime >= started_ts - 1

    def _spawn(self, args: list[str]) -> None:
        reap_runners()
        runner_args = [
            *args,
            "--heartbeat", str(self.heartbeat_seconds),
            "--kill-grace", str(self.kill_grace_seconds),
            *(["--lease", str(self.lease_seconds)] if self.lease_seconds else []),
            "--drone", self.hostname,
            "--database-name", str(connection.settings_dict["NAME"]),
        ]
        if self.spawner is not None:
            if not self.spawner.spawn(runner_args):
                log.error("could not reach the runner spawner for %s", args)  # relaunched as stale later
            return
        argv = [self.python, "-m", RUNNER_MODULE, *runner_args]
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", os.environ.get("DJANGO_SETTINGS_MODULE", "settings"))
        try:
            self.runner_log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.runner_log, "ab") as out:
                child = subprocess.Popen(
                    argv, cwd=self.project_dir, env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                )
        except OSError:
            # launched_at is set: relaunch_stale retries later.
            log.exception("could not start a runner: %s", argv)
            return
        with _children_lock:
            _children.append(child)


def from_config(config: DroneConfig) -> list[DroneBackend]:
    """The one local drone, "localhost" (registered in ``drones.base.BACKENDS``).

    Its runners are forked by a warm spawner (as a Celery drone's are): a
    runner starts in milliseconds instead of starting Python and Django
    afresh, which is most of the time from a job's start to its autoserv.
    """
    from .spawner import Spawner

    drone = LocalDrone(
        "localhost",
        max_processes=config.max_processes,
        heartbeat_seconds=config.heartbeat_seconds,
        heartbeat_timeout=config.heartbeat_timeout,
        kill_grace_seconds=config.kill_grace_seconds,
        lease_seconds=config.lease_seconds,
    )
    drone.spawner = Spawner(drone.runner_log, drone.project_dir)
    return [drone]
