"""Running a shell command on the drone, with a timeout and cancellation.

The command runs under ``/bin/sh -c`` in autoserv's own process group, so the
scheduler's SIGKILL of that group also ends it. On a timeout or an abort the
command's whole process tree is killed (found through ``/proc``), and output
that a surviving background process keeps open is not waited for.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import CommandTimeout
from .result import Result

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
#: How long to wait for output pipes to close after the command itself has exited.
DRAIN_SECONDS = 2.0


def descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s descendants, from ``/proc`` (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants."""
    for target in [*descendants(pid), pid]:
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _reader(stream: object, chunks: list[bytes]) -> None:
    read = stream.read1  # type: ignore[attr-defined]
    try:
        while chunk := read(65536):
            chunks.append(chunk)
    except (OSError, ValueError):
        pass


def _writer(stream: object, data: bytes) -> None:
    try:
        stream.write(data)  # type: ignore[attr-defined]
    except (OSError, ValueError):
        pass
    finally:
        try:
            stream.close()  # type: ignore[attr-defined]
        except OSError:
            pass


def run_local(
    command: str,
    *,
    timeout: float | None,
    check_abort: Callable[[], None] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run ``command`` with ``/bin/sh -c``; returns its ``Result`` (any exit status).

    Raises ``CommandTimeout`` (holding the output so far) when it runs longer
    than ``timeout`` seconds, and lets ``check_abort`` raise ``Aborted``; in both
    cases the command's process tree has been killed.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    out: list[bytes] = []
    err: list[bytes] = []
    threads = [
        threading.Thread(target=_reader, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_reader, args=(proc.stderr, err), daemon=True),
    ]
    if stdin is not None:
        threads.append(threading.Thread(target=_writer, args=(proc.stdin, stdin), daemon=True))
    for thread in threads:
        thread.start()

    def result(exit_status: int) -> Result:
        return Result(
            command=command,
            exit_status=exit_status,
            stdout=b"".join(out).decode("utf-8", "replace"),
            stderr=b"".join(err).decode("utf-8", "replace"),
            duration=time.monotonic() - started,
        )

    deadline = None if timeout is None else started + timeout
    try:
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if check_abort is not None:
                check_abort()
            if deadline is not None and time.monotonic() >= deadline:
                kill_tree(proc.pid)
                proc.wait()
                _join(threads, DRAIN_SECONDS)
                raise CommandTimeout(f"command timed out after {timeout:g}s: {command}", result(proc.returncode))
    except BaseException:
        if proc.returncode is None:
            kill_tree(proc.pid)
            proc.wait()
        raise
    _join(threads, DRAIN_SECONDS)
    return result(proc.returncode)


def _join(threads: list[threading.Thread], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
