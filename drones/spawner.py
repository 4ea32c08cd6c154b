"""A warm spawner of runners: ``drones.runner`` forked from a process that already has Django loaded.

Starting ``python -m drones.runner`` costs a Python start and a Django set-up
(about half a second of CPU); forking it from a process that has done both
once costs milliseconds. A Celery drone worker starts one spawner
(``python -m drones.spawner RUNNER_LOG``) and writes one JSON line per runner
to its stdin: the runner's arguments. The spawner forks; the child starts its
own session (so the worker's and the spawner's deaths do not reach it), points
stdin at /dev/null and stdout/stderr at the runner log, takes default signal
dispositions and runs ``drones.runner.main``. The spawner never opens a
database connection, so no connection is shared across a fork; it reaps its
children, and exits when its stdin closes (the worker is gone); runners carry
on as orphans.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Spawner:
    """The worker's handle on its spawner process; ``spawn`` is thread-safe and restarts a dead spawner."""

    def __init__(self, runner_log: Path, project_dir: Path, python: str | None = None) -> None:
        self.runner_log = runner_log
        self.project_dir = project_dir
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        self.runner_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.runner_log, "ab") as out:
            return subprocess.Popen(
                [self.python, "-m", "drones.spawner", str(self.runner_log)], cwd=self.project_dir,
                env=dict(os.environ), stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )

    def spawn(self, args: list[str]) -> bool:
        """Ask for a runner with ``args``; returns whether the request reached a live spawner."""
        line = (json.dumps(args) + "\n").encode()
        with self._lock:
            for _ in range(2):
                if self._process is None or self._process.poll() is not None:
                    self._process = self._start()
                try:
                    assert self._process.stdin is not None
                    self._process.stdin.write(line)
                    self._process.stdin.flush()
                    return True
                except (BrokenPipeError, OSError) as exc:
                    log.warning("the runner spawner is gone (%s); starting another", exc)
                    self._process = None
        return False

    def stop(self) -> None:
        """Close the spawner's stdin (it exits; runners already started go on)."""
        with self._lock:
            if self._process is not None and self._process.stdin is not None:
                self._process.stdin.close()
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
            self._process = None


def _run_child(args: list[str], runner_log: str) -> None:
    """In the forked child: detach, then run the runner; never returns."""
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(runner_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        from .runner import main

        code = main(args)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return to the loop
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(runner_log: str) -> int:
    """The spawner's loop: one fork per line on stdin until stdin closes."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings

    import drones.runner  # noqa: F401 - loaded once here, not in every child
    import drones.pidfile  # noqa: F401
    import drones.proctable  # noqa: F401

    import_module(f"{settings.DATABASES['default']['ENGINE']}.base")  # the driver, not a connection

    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    pending = b""
    while True:
        ready, _, _ = select.select([stdin], [], [], 1.0)
        _reap()
        if not ready:
            continue
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            return 0
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                args = json.loads(line)
                if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                    raise ValueError(f"not a list of strings: {args!r}")
            except ValueError as exc:
                print(f"drones.spawner: ignoring a bad request: {exc}", file=sys.stderr, flush=True)
                continue
            if os.fork() == 0:
                _run_child(args, runner_log)


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
