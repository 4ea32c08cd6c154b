"""Run one process record: ``python -m drones.runner <process_id>``.

1. Claim the record (``queued → running`` with this runner's pid). Losing the
   claim — someone else has it, or it is no longer queued — means exit 0 without
   running anything, which makes duplicate launches harmless.
2. Append a ``*****`` banner to the log file, write the files the record
   carries (``Process.files``, e.g. a task's host keyvals) under the working
   directory, create it, delete a stale pidfile, and start the command in its own session and process
   group with stdin from /dev/null, stdout and stderr to the log, and
   ``AUTOTEST_SCHEDULER_DARK_MARK=<runner pid>`` in its environment. A command
   that cannot be started (missing or non-executable program, bad working
   directory) is recorded as an ordinary failure: exit status ``127 << 8``.
3. While it runs, beat every ``--heartbeat`` seconds; when ``kill_requested``
   is set, SIGTERM the command's whole process group, then SIGKILL it
   ``--kill-grace`` seconds later. With ``--lease``, a runner that could not
   write a heartbeat for that long SIGKILLs the group (fencing: it stops
   before the scheduler may declare the record lost). With ``--drone``, the
   claim holds only while the record is queued for that drone.
4. Record the exit status and the failed-test count from the pidfile when it
   has them (autoserv's own account, e.g. 271 = exit 1 + SIGTERM after an
   abort), else the wait status (and 0 failed for a clean exit).

``--adopt`` takes over a *running* record whose runner died while its command
lives on (``LocalDrone.check`` starts it): it watches the pid instead of
waiting for a child, and otherwise supervises as step 3 does (heartbeats,
TERM then KILL on a kill request, the lease); it records the exit status from
the pidfile when the command goes, the signal it sent when it killed a command
that left none, or marks the record lost.

The runner needs the database only; it never talks to the scheduler, so the
scheduler may die and restart at any time. Database errors while the command
runs are logged and retried.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("drones.runner")

#: How long to keep retrying to record an exit status while the database is unreachable.
RECORD_RETRY_SECONDS = 300.0
#: How often a runner in adopt mode looks at the pid it watches.
ADOPT_POLL_SECONDS = 0.1


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def write_files(working_dir: str, files: object) -> None:
    """Write the files a record carries (``{path under its working directory: text}``) on this drone.

    Raises ``ValueError`` (or ``afe.paths.UnsafePath``) for anything but a mapping of plain
    relative paths to text, and ``OSError`` when a file cannot be written: the command
    then does not start.
    """
    from afe.paths import inside

    if not isinstance(files, dict):
        raise ValueError(f"the files to write must be a mapping of paths to text, not {type(files).__name__}")
    root = Path(working_dir).resolve()
    for relative, text in files.items():
        if not isinstance(text, str):
            raise ValueError(f"the file {relative!r} must be text, not {type(text).__name__}")
        path = inside(root, relative, root_resolved=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


class Runner:
    def __init__(self, process_id: int, heartbeat: float = 2.0, *, kill_grace: float = 30.0,
                 lease: float | None = None, drone: str | None = None) -> None:
        self.process_id = process_id
        self.heartbeat_seconds = max(0.05, heartbeat)
        self.kill_grace = max(0.0, kill_grace)
        self.lease = lease
        self.drone = drone
        self.me = os.getpid()
        self.host = socket.gethostname()
        self.process: Any = None
        #: The last signal sent to the command's group (an abort's TERM or KILL, or fencing's KILL).
        self.signal_sent: int | None = None

    # -- normal mode -----------------------------------------------------------------

    def run(self) -> int:
        from .models import Process
        from .pidfile import CANNOT_START_STATUS, read_pidfile, wait_status

        process = Process.objects.filter(pk=self.process_id).first()
        if process is None:
            log.warning("process %s: no such record; nothing to run", self.process_id)
            return 0
        if not process.claim(self.me, self.host, drone=self.drone):
            log.info("process %s: not claimed (someone else has it or it is no longer queued)",
                     self.process_id)
            return 0
        self.process = process
        log.info("process %s: claimed by runner %s on %s", process.pk, self.me, self.host)

        try:
            child = self._start(process)
        except Exception as exc:  # noqa: BLE001 - any failure to start is the command's failure
            log.warning("process %s: cannot start %r: %s", process.pk, process.command, exc)
            return self._finish(CANNOT_START_STATUS, None)
        self._db(process.record_pid, child.pid)
        outcome = self._supervise(child.pid, functools.partial(_child_ended, child))
        if outcome is not None:
            return outcome
        status = wait_status(child.returncode)
        pidfile = read_pidfile(process.pidfile_path)
        if pidfile is not None and pidfile.finished:
            tests_failed = pidfile.tests_failed
            status = pidfile.exit_status  # autoserv's own account (§5.2), e.g. 271 after a TERM: exit 1 + SIGTERM
        else:
            tests_failed = 0 if status == 0 else None
        return self._finish(status, tests_failed)

    def _start(self, process: Any) -> subprocess.Popen:
        """Start the command (see the module docstring); raises if it cannot be started."""
        from .proctable import DARK_MARK, PROCESS_ID_VAR

        command = process.command
        os.makedirs(os.path.dirname(process.log_file), exist_ok=True)
        with open(process.log_file, "ab") as logfile:
            try:
                if not isinstance(command, list) or not command or not all(
                    isinstance(arg, str) for arg in command
                ):
                    raise ValueError(f"the command must be a non-empty list of strings: {command!r}")
                logfile.write(f"***** {_timestamp()} {shlex.join(command)}\n".encode())
                logfile.flush()
                write_files(process.working_dir, process.files)
                os.makedirs(process.working_dir, exist_ok=True)
                if os.path.lexists(process.pidfile_path):
                    logfile.write(f"***** removing stale pidfile {process.pidfile_path}\n".encode())
                    logfile.flush()
                    os.unlink(process.pidfile_path)
                env = dict(os.environ)
                env[DARK_MARK] = str(self.me)
                env[PROCESS_ID_VAR] = str(process.pk)
                child = subprocess.Popen(
                    command, cwd=process.working_dir, env=env, stdin=subprocess.DEVNULL,
                    stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                )
            except Exception as exc:
                logfile.write(f"***** {_timestamp()} cannot start the command: {exc}\n".encode())
                raise
        log.info("process %s: started pid %s: %s", process.pk, child.pid, shlex.join(command))
        return child

    def _supervise(self, pgid: int, ended: Callable[[float], bool]) -> int | None:
        """Watch the command (process group ``pgid``) until ``ended(timeout)`` says it is gone,
        beating and honouring kills; an int means stop with that code, None that it ended.

        ``ended`` waits up to ``timeout`` seconds and returns whether the
        command has ended (a child's wait, or polling an adopted pid). A kill is
        TERM to the command's process group, then KILL once ``kill_grace`` has
        passed. Fencing: when no heartbeat has been written for ``lease``
        seconds (the database is unreachable), the group is KILLed, before the
        scheduler may declare the process lost.
        """
        from .proctable import kill_group

        kill_deadline: float | None = None
        last_ok = time.monotonic()
        next_beat = last_ok + self.heartbeat_seconds
        while True:
            wake = next_beat if kill_deadline is None else min(next_beat, kill_deadline)
            if ended(max(0.01, wake - time.monotonic())):
                return None
            now = time.monotonic()
            if kill_deadline is not None and now >= kill_deadline:
                log.info("process %s: still there %.0fs after TERM; SIGKILL to process group %s",
                         self.process_id, self.kill_grace, pgid)
                kill_group(pgid, signal.SIGKILL)
                self.signal_sent = signal.SIGKILL
                kill_deadline = float("inf")
            if now < next_beat:
                continue
            next_beat = now + self.heartbeat_seconds
            verdict = self._beat()
            if verdict == "error":
                if self.lease is not None and now - last_ok > self.lease:
                    log.error("process %s: no heartbeat for %.0fs (lease %.0fs); SIGKILL to process group %s",
                              self.process_id, now - last_ok, self.lease, pgid)
                    kill_group(pgid, signal.SIGKILL)
                    self.signal_sent = signal.SIGKILL
                    kill_deadline = float("inf")
                continue
            last_ok = now
            if verdict == "gone":
                log.warning("process %s: the record is gone or settled; killing process group %s",
                            self.process_id, pgid)
                kill_group(pgid)
                while not ended(1.0):
                    pass
                return 0
            if verdict == "superseded":
                log.warning("process %s: another runner has taken over; leaving", self.process_id)
                return 0
            if verdict == "kill" and kill_deadline is None:
                log.info("process %s: kill requested; SIGTERM to process group %s (SIGKILL in %.0fs)",
                         self.process_id, pgid, self.kill_grace)
                kill_group(pgid, signal.SIGTERM)
                self.signal_sent = signal.SIGTERM
                kill_deadline = now + self.kill_grace

    def _beat(self) -> str:
        """One heartbeat: "ok", "kill", "gone", "superseded" or "error"."""
        from django.db import DatabaseError

        from .models import Process

        process = self.process
        try:
            if process.heartbeat():
                return "kill" if process.kill_requested else "ok"
            row = Process.objects.filter(pk=process.pk).values_list("state", "runner_pid").first()
        except DatabaseError as exc:
            log.warning("process %s: heartbeat failed: %s", process.pk, exc)
            self._reset_connection()
            return "error"
        if row is None or row[0] != Process.State.RUNNING:
            return "gone"
        return "superseded"

    # -- adopt mode ------------------------------------------------------------------

    def adopt(self) -> int:
        """Watch a running record's command whose runner died, as ``run`` watches its child."""
        from .models import Process
        from .pidfile import read_pidfile
        from .proctable import is_runner

        process = Process.objects.filter(pk=self.process_id).first()
        if process is None or process.state != Process.State.RUNNING or not process.pid:
            log.info("process %s: nothing to adopt", self.process_id)
            return 0
        if process.runner_host == self.host and is_runner(process.runner_pid):
            log.info("process %s: its runner %s is alive; not adopting", process.pk, process.runner_pid)
            return 0
        if not process.adopt(self.me, self.host):
            log.info("process %s: adopted by someone else", process.pk)
            return 0
        self.process = process
        log.info("process %s: adopted pid %s", process.pk, process.pid)
        outcome = self._supervise(process.pid, functools.partial(_unwatched_ended, process.pid, process.pk))
        if outcome is not None:
            return outcome
        pidfile = read_pidfile(process.pidfile_path)
        if pidfile is not None and pidfile.finished:
            return self._finish(pidfile.exit_status, pidfile.tests_failed)
        if self.signal_sent is not None:
            return self._finish(int(self.signal_sent), None)  # killed on request: the signal is its status
        log.warning("process %s: pid %s is gone and its pidfile has no exit status; lost",
                    process.pk, process.pid)
        return self._retry(
            process.mark_lost, "the command exited unwatched and its pidfile has no exit status"
        )

    # -- recording -------------------------------------------------------------------

    def _finish(self, exit_status: int, tests_failed: int | None) -> int:
        log.info("process %s: exit status %s, tests failed %s", self.process_id, exit_status, tests_failed)
        return self._retry(self.process.record_exit, exit_status, tests_failed)

    def _retry(self, method: Any, *args: Any) -> int:
        """Call a recording method until the database answers; 0 on success, 1 on giving up."""
        from django.db import DatabaseError

        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                won = method(*args)
                break
            except DatabaseError as exc:
                if time.monotonic() > deadline:
                    log.error("process %s: giving up recording %s%r: %s",
                              self.process_id, method.__name__, args, exc)
                    return 1
                log.warning("process %s: %s failed (%s); retrying", self.process_id, method.__name__, exc)
                self._reset_connection()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        if not won:
            log.warning("process %s: record is no longer running; %s%r not applied",
                        self.process_id, method.__name__, args)
        return 0

    def _db(self, method: Any, *args: Any) -> Any:
        """A best-effort write while the command runs (a failure is logged, not fatal)."""
        from django.db import DatabaseError

        try:
            return method(*args)
        except DatabaseError as exc:
            log.warning("process %s: %s failed: %s", self.process_id, method.__name__, exc)
            self._reset_connection()
            return None

    @staticmethod
    def _reset_connection() -> None:
        from django.db import connection

        try:
            connection.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            pass


def _child_ended(child: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the runner's own child; whether it has exited."""
    try:
        child.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _unwatched_ended(pid: int, record_id: int, timeout: float) -> bool:
    """Poll an adopted command (not our child) for up to ``timeout`` seconds; whether it is gone."""
    from .proctable import is_our_command

    deadline = time.monotonic() + timeout
    while is_our_command(pid, record_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(ADOPT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    return True


def database_url(database: dict[str, Any]) -> str:
    """The ``DATABASE_URL`` that names a Django database settings dict (SQLite or MySQL)."""
    from urllib.parse import quote

    if "sqlite" in database["ENGINE"]:
        return f"sqlite:///{database['NAME']}"
    credentials = quote(database.get("USER") or "")
    if database.get("PASSWORD"):
        credentials += ":" + quote(database["PASSWORD"])
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 3306
    return f"mysql://{credentials}@{host}:{port}/{database['NAME']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drones.runner", description=__doc__.splitlines()[0])
    parser.add_argument("process_id", type=int)
    parser.add_argument("--heartbeat", type=float, default=2.0, help="seconds between heartbeats")
    parser.add_argument("--kill-grace", type=float, default=30.0,
                        help="seconds between TERM and KILL when the record's kill is requested")
    parser.add_argument("--lease", type=float, default=None,
                        help="KILL the command when no heartbeat could be written for this many seconds")
    parser.add_argument("--drone", default=None, help="claim the record only while it is queued for this drone")
    parser.add_argument("--adopt", action="store_true",
                        help="take over a running record whose runner died")
    parser.add_argument("--database-name", default=None,
                        help="use this database name instead of the configured one "
                             "(the launcher passes the one it is connected to)")
    args = parser.parse_args(argv)

    # Detached from any terminal: take default dispositions (a shell's background
    # job would have SIGINT/SIGQUIT ignored; a Celery worker's child may inherit more), so
    # the command does not inherit SIG_IGN.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    if args.database_name:
        from django.conf import settings

        settings.DATABASES["default"]["NAME"] = args.database_name
        # The command (autoserv, the parser) must use the same database as its runner.
        os.environ["DATABASE_URL"] = database_url(settings.DATABASES["default"])

    import django

    django.setup()
    from django.db import connections

    runner = Runner(args.process_id, heartbeat=args.heartbeat, kill_grace=args.kill_grace, lease=args.lease,
                    drone=args.drone)
    try:
        return runner.adopt() if args.adopt else runner.run()
    finally:
        connections.close_all()


if __name__ == "__main__":
    sys.exit(main())
