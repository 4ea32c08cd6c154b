"""This machine's process table: pid checks, the runners' dark marks, process-group kills.

Used by the local drone, the runner and the Celery worker's drone agent: a
command is recognised as ours by the ``AUTOTEST_SCHEDULER_DARK_MARK`` variable
its runner put in its environment (and ``AUTOTEST_PROCESS_ID``, its record), so
a recycled pid is never mistaken for one of ours.
"""
from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

DARK_MARK = "AUTOTEST_SCHEDULER_DARK_MARK"
PROCESS_ID_VAR = "AUTOTEST_PROCESS_ID"  # which record a command belongs to
RUNNER_MODULE = "drones.runner"  # how a runner is recognised in /proc/PID/cmdline
SPAWNER_MODULE = "drones.spawner"  # a runner forked by a warm spawner keeps the spawner's cmdline


def _proc(pid: int, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this machine."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else
    stat = _proc(pid, "stat")
    if stat is None:
        return True  # no /proc (or raced with its exit): trust kill(0)
    fields = stat[stat.rfind(b")") + 2:].split()
    return bool(fields) and fields[0] not in (b"Z", b"X")


def is_runner(pid: int | None) -> bool:
    """Whether ``pid`` is a live ``drones.runner`` process (started as one, or forked by a spawner)."""
    if not pid_alive(pid):
        return False
    cmdline = _proc(pid, "cmdline")
    return cmdline is None or RUNNER_MODULE.encode() in cmdline or SPAWNER_MODULE.encode() in cmdline


def is_our_command(pid: int | None, record_id: int | None = None) -> bool:
    """Whether ``pid`` is a live command started by a runner (it carries the dark mark).

    With ``record_id``, the command must also belong to that process record, so
    a recycled pid running another record's command is not mistaken for it.
    """
    if not pid_alive(pid):
        return False
    environ = _proc(pid, "environ")
    if not environ:
        return True  # unreadable: cannot tell, assume it is ours
    variables = environ.split(b"\0")
    if not any(var.startswith(DARK_MARK.encode() + b"=") for var in variables):
        return False
    if record_id is None:
        return True
    mine = f"{PROCESS_ID_VAR}={record_id}".encode()
    tagged = [var for var in variables if var.startswith(PROCESS_ID_VAR.encode() + b"=")]
    return not tagged or mine in tagged


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to the process group ``pid``; returns whether there was one."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.error("not allowed to signal process group %s", pid)
        return False
