"""Running a job's control file: server-side (Python, here) or client-side (on each host).

Server control files are Python executed with these globals: ``job`` (see
``drones.autoserv.job``), ``machines`` (the ``-m`` names), ``hosts`` (the
host factory: ``hosts.create_host(name)``), ``parallel_simple(function,
machines)``, ``args`` (the ``-a`` arguments) and the exceptions
``TestFail``, ``TestError``, ``TestNA``.

Client control files are copied to every host (into a ``mktemp -d``
directory, the current directory while they run; removed afterwards — after
an abort, at the end of the run) and run there, in parallel over the hosts,
each host's run recorded as a test named ``client`` with subdir
``<hostname>`` and its output in ``<results>/<hostname>/stdout`` and
``stderr``. How a client control file runs (one rule, no guessing):

- its first line starts with ``#!``: made executable and run directly, by
  the interpreter that line names (``#!/bin/sh`` for a shell script);
- anything else is Python, run as ``python3 control``. It is compiled on the
  drone first: a syntax error fails the job before any host is touched, with
  an ERROR naming the control file and the line. A shell script without a
  ``#!`` line is therefore a syntax error, never run by ``sh``.

The ``-a`` arguments are passed on the command line.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from .errors import CommandTimeout, ControlFileError, TestError, TestFail, TestNA
from .hostinfo import parse_machine
from .hosts import Host
from .job import Job, safe_path_part

log = logging.getLogger(__name__)


def read_control_file(path: Path) -> str:
    """The control file's text; raises ``ControlFileError`` if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ControlFileError(f"cannot read control file {path}: {exc.strerror or exc}") from None


def compile_server_control(text: str, path: Path) -> Any:
    """The compiled control file; raises ``ControlFileError`` naming the line of a syntax error."""
    try:
        return compile(text, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise ControlFileError(f"syntax error in control file: {exc.msg}{where}") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise ControlFileError(f"control file cannot be compiled: {exc}") from None


def run_server_control(job: Job, text: str, path: Path, args: tuple[str, ...]) -> None:
    """Execute a server control file; its exceptions propagate to the caller."""
    code = compile_server_control(text, path)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__file__": str(path),
        "job": job,
        "machines": list(job.machines),
        "hosts": job.hosts,
        "parallel_simple": job.parallel_simple,
        "args": list(args),
        "TestFail": TestFail,
        "TestError": TestError,
        "TestNA": TestNA,
    }
    exec(code, namespace)


def client_command(text: str, path: Path | str = "control") -> str:
    """How to run a client control file called ``control`` in the current directory.

    ``#!`` on the first line: the file runs as an executable script; anything
    else is Python. Raises ``ControlFileError`` (naming ``path`` and the line)
    if such a file is not valid Python.
    """
    if text.startswith("#!"):
        return "chmod +x control && ./control"
    try:
        compile(text, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise ControlFileError(f"syntax error in client control file {path}: {exc.msg}{where}; "
                               "a client control file is Python unless its first line starts with #!") from None
    except ValueError as exc:  # NUL bytes on older Pythons
        raise ControlFileError(f"client control file {path} cannot be compiled as Python: {exc}") from None
    return "python3 control"


def run_client_control(job: Job, text: str, args: tuple[str, ...], path: Path | str = "control") -> None:
    """Run a client control file on every machine of the job, recording a ``client`` test per host.

    The file is checked first (``client_command``): a Python syntax error fails
    the job before any host is contacted.
    """
    data = text.encode("utf-8")
    command = client_command(text, path) + "".join(f" {shlex.quote(arg)}" for arg in args)

    def on_machine(machine: str) -> bool:
        subdir = _client_subdir(machine)
        return job.run_recorded("client", subdir, machine,
                                lambda host: _run_on_host(job, host, data, command, subdir))

    job.parallel_simple(on_machine, job.machines, log=False)


def _client_subdir(machine: str) -> str:
    return safe_path_part(parse_machine(machine).hostname)


def _run_on_host(job: Job, host: Host | None, data: bytes, command: str, subdir: str) -> tuple[str, str]:
    assert host is not None
    setup_timeout = host.connect_timeout + 60
    tmpdir = host.make_temp_dir(timeout=setup_timeout)
    quoted = shlex.quote(tmpdir)
    try:
        host.run(f"cat > {quoted}/control", stdin=data, timeout=setup_timeout, ignore_status=False)
        try:
            result = host.run(f"cd {quoted} && {command}")
        except CommandTimeout as exc:
            job.save_output(subdir, exc.result)
            raise
    finally:
        # After an abort the directory is removed at the end of the run, once the ABORT is recorded.
        if not host.abort.aborted:
            host.remove_temp_dir(tmpdir, timeout=setup_timeout)  # best effort; the test's outcome stands
    job.save_output(subdir, result)
    if result.ok:
        return "GOOD", f"completed successfully ({host.describe_connection()})"
    raise TestFail(f"client control file failed with {result.describe()}")
