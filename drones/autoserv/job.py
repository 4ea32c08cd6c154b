"""The ``job`` object a server control file drives.

``job.run_test(name, host=None, command=None, function=None, tag=None,
timeout=None, **args)`` runs one test and records it::

    START   <subdir> <name>  [hostname=<host>]
        GOOD|FAIL|ERROR|TEST_NA|ABORT <subdir> <name> ... <reason>
    END <same code> <subdir> <name>

- ``command``: a shell command run on ``host`` (a host object or a machine
  name; ``None``: the drone itself). Exit 0 is GOOD, another exit FAIL, a
  timeout or an unreachable host ERROR. Its stdout and stderr are saved as
  ``<results>/<subdir>/stdout`` and ``stderr``.
- ``function``: a Python callable, called as ``function(host, **args)`` (or
  ``function(**args)`` without a host). Returning normally is GOOD (a returned
  dict is written as the test's keyvals); raising ``TestFail`` or
  ``AssertionError`` is FAIL, ``TestNA`` TEST_NA, anything else ERROR.

A test's END code is the worst (ABORT > ERROR > FAIL > WARN > TEST_NA >
GOOD) of its own outcome and of everything recorded inside it: a test whose
function runs other tests that fail fails too.

``subdir`` is the test's name (``name.tag`` with a tag), under
``<machine>/`` inside ``parallel_simple`` over several machines. A FAIL,
ERROR or ABORT at the top level counts as a failed test (the pidfile's third
line) and makes autoserv exit 1.

Every results path built from a name (a test, a tag, a machine) goes through
``afe.paths.inside`` (``results_path``): a subdir that would leave the results
directory (too long a name, a symlink pointing elsewhere) makes that one test
ERROR with the reason (``results path refused: ...``), before its body runs;
its ``stdout``, ``stderr`` and ``keyval`` files are checked the same way, and
so is a ``parallel_simple`` worker's own ``<machine>/status.log`` (refused: the
worker keeps only its lines in the main status.log). Nothing is written
outside the results.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from afe.paths import UnsafePath, inside

from .abort import AbortController
from .errors import (
    Aborted,
    AutoservError,
    CommandTimeout,
    ResultsPathError,
    TestError,
    TestFail,
    TestNA,
)
from .hosts import Host, HostFactory
from .keyval import append_keyvals
from .result import Result
from .status_log import OK_CODES, StatusLog, worse

logger = logging.getLogger(__name__)

#: How long workers of an aborted ``parallel_simple`` get to record their ABORT.
ABORT_GRACE_SECONDS = 5.0


class ParallelError(AutoservError):
    """Some invocations of a ``parallel_simple`` function raised; ``failures`` maps machine → exception."""

    def __init__(self, function: Callable[..., Any], failures: Mapping[str, BaseException]) -> None:
        self.failures = dict(failures)
        details = "; ".join(f"{machine}: {type(exc).__name__}: {exc}" for machine, exc in failures.items())
        name = getattr(function, "__name__", repr(function))
        super().__init__(f"{len(failures)} invocation(s) of {name} failed: {details}")


def safe_path_part(name: str) -> str:
    """``name`` made safe as one directory name."""
    cleaned = re.sub(r"[^\w.+:=@-]", "_", name).lstrip(".")
    return cleaned or "_"


def results_path(results_dir: Path, *parts: str) -> Path:
    """``<results_dir>/<parts...>`` resolved; raises ``ResultsPathError`` if it would leave ``results_dir``.

    ``parts`` come from data (hostnames, test names, tags), so even after
    ``safe_path_part`` they are checked: a name may be too long, or a
    directory on the way a symlink pointing out of the results.
    """
    try:
        return inside(results_dir, *parts)
    except UnsafePath as exc:
        raise ResultsPathError(f"results path refused: {exc}") from None


class Job:
    """What a server control file calls ``job``."""

    TestFail = TestFail
    TestError = TestError
    TestNA = TestNA

    def __init__(
        self,
        *,
        results_dir: Path,
        status: StatusLog,
        hosts: HostFactory,
        abort: AbortController,
        machines: Iterable[str] = (),
        user: str | None = None,
        label: str | None = None,
    ) -> None:
        self.resultdir = results_dir
        self.status = status
        self.hosts = hosts
        self.abort = abort
        self.machines = list(machines)
        self.user = user
        self.label = label
        self._local = threading.local()  # per thread: results prefix, running test's subdir

    # -- status and keyvals ------------------------------------------------------------

    def record(self, status_code: str, subdir: str | None, operation: str | None,
               reason: str = "", **fields: object) -> None:
        """Write a status line (``START`` / ``END <code>`` open and close a group)."""
        self.status.record(status_code, subdir, operation, reason, **fields)

    def write_keyval(self, keyvals: Mapping[str, object]) -> None:
        """Append to the job's ``<results>/keyval``."""
        append_keyvals(results_path(self.resultdir, "keyval"), keyvals)

    def write_test_keyval(
        self, subdir: str | Mapping[str, object], keyvals: Mapping[str, object] | None = None
    ) -> None:
        """Append to ``<results>/<subdir>/keyval``; with only a dict, to the running test's."""
        if keyvals is None:
            if not isinstance(subdir, Mapping):
                raise TypeError("write_test_keyval(subdir, keyvals) or write_test_keyval(keyvals) inside a test")
            keyvals, current = subdir, getattr(self._local, "test_subdir", None)
            if current is None:
                raise TypeError("write_test_keyval(keyvals) needs a running test; pass the subdir")
            subdir = current
        if not isinstance(subdir, str):
            raise TypeError("write_test_keyval: subdir must be a string")
        path = results_path(self.resultdir, subdir, "keyval")
        path.parent.mkdir(parents=True, exist_ok=True)
        append_keyvals(path, keyvals)

    # -- tests -------------------------------------------------------------------------

    def run_test(
        self,
        name: str,
        host: Host | str | None = None,
        command: str | None = None,
        function: Callable[..., Any] | None = None,
        tag: str | None = None,
        timeout: float | None = None,
        **args: Any,
    ) -> bool:
        """Run and record one test; returns whether it passed (GOOD, WARN or TEST_NA)."""
        if (command is None) == (function is None):
            raise TypeError(f"run_test({name!r}) needs exactly one of command= or function=")
        test = f"{name}.{tag}" if tag else name
        subdir = self.test_subdir(test)

        def body(target: Host | None) -> tuple[str, str]:
            if command is not None:
                return self._run_command(target, command, timeout, subdir)
            assert function is not None
            value = function(target, **args) if target is not None else function(**args)
            if isinstance(value, Mapping):
                self.write_test_keyval(subdir, value)
            return "GOOD", "completed successfully"

        return self.run_recorded(test, subdir, host, body)

    def test_subdir(self, test: str) -> str:
        """Where a test's results go, relative to the results directory."""
        prefix = getattr(self._local, "prefix", None)
        part = safe_path_part(test)
        return f"{prefix}/{part}" if prefix else part

    def run_recorded(
        self,
        operation: str,
        subdir: str | None,
        host: Host | str | None,
        body: Callable[[Host | None], tuple[str, str]],
    ) -> bool:
        """Record ``body(host)`` as a group named ``operation``; ``body`` returns (code, reason).

        Exceptions become the status: ``TestNA`` → TEST_NA, ``TestFail`` and
        ``AssertionError`` → FAIL, anything else → ERROR, ``Aborted`` → ABORT
        (re-raised). A worse status recorded inside the group (a nested test
        that failed) becomes the group's. Returns whether the code is a passing one.
        """
        fields = {"hostname": str(host)} if host is not None else {}
        depth = self.status.open_groups()
        self.status.record("START", subdir, operation, **fields)
        previous = getattr(self._local, "test_subdir", None)
        self._local.test_subdir = subdir
        try:
            if subdir is not None:
                results_path(self.resultdir, subdir)  # refused before the test runs, not after
            target = self.hosts.create_host(host) if isinstance(host, str) else host
            code, reason = body(target)
        except Aborted as exc:
            self.status.close_open_groups("ABORT", str(exc) or "aborted", keep=depth)
            raise
        except TestNA as exc:
            code, reason = "TEST_NA", str(exc) or "not applicable"
        except (TestFail, AssertionError) as exc:
            code, reason = "FAIL", str(exc) or type(exc).__name__
        except AutoservError as exc:
            code, reason = "ERROR", str(exc)
        except Exception as exc:
            logger.debug("%s raised", operation, exc_info=True)
            code, reason = "ERROR", f"{type(exc).__name__}: {exc}"
        finally:
            self._local.test_subdir = previous
        if self.status.open_groups() > depth + 1:
            self.status.close_open_groups("ERROR", "group left open", keep=depth + 1)
        nested = self.status.nested_outcome()
        if nested is not None and worse(nested.code, code):
            what = f"nested {nested.name}" if nested.name else "nested status"
            code, reason = nested.code, f"{what}: {nested.reason}" if nested.reason else f"{what} {nested.code}"
        self.status.record(code, subdir, operation, reason, **fields)
        self.status.record(f"END {code}", subdir, operation, **fields)
        return code in OK_CODES

    def _run_command(self, host: Host | None, command: str, timeout: float | None, subdir: str) -> tuple[str, str]:
        target = host if host is not None else self.hosts.drone()
        try:
            result = target.run(command, timeout=timeout)
        except CommandTimeout as exc:
            self.save_output(subdir, exc.result)
            raise
        self.save_output(subdir, result)
        if result.ok:
            return "GOOD", "completed successfully"
        return "FAIL", f"command failed with {result.describe()}"

    def save_output(self, subdir: str, result: Result) -> None:
        """Save a command's output as ``<results>/<subdir>/stdout`` and ``stderr``."""
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            path = results_path(self.resultdir, subdir, name)  # a planted symlink is refused too
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    # -- parallelism -------------------------------------------------------------------

    def parallel_simple(
        self,
        function: Callable[[Any], Any],
        machines: Iterable[Any],
        log: bool = True,
        return_results: bool = False,
    ) -> list[Any]:
        """Call ``function(machine)`` for each machine, in threads; returns the results in order.

        If any call raised, raises ``ParallelError`` naming them (with
        ``return_results`` the exceptions are returned in place of results
        instead). With ``log`` and several machines each call's tests go under
        ``<results>/<machine>/``. Each thread's groups reach status.log as
        whole blocks as soon as they end, and every line at once its own
        ``<results>/<machine>/status.log`` (see ``status_log``).
        """
        machines = list(machines)
        if len(machines) <= 1:
            values: list[Any] = []
            for machine in machines:
                try:
                    values.append(function(machine))
                except Exception as exc:
                    if not return_results:
                        raise
                    values.append(exc)
            return values

        parent = self.status.current()
        parent_prefix = getattr(self._local, "prefix", None)
        outcomes: dict[int, Any] = {}

        def work(index: int, machine: Any) -> None:
            part = safe_path_part(str(machine))
            self._local.prefix = (f"{parent_prefix}/{part}" if parent_prefix else part) if log else parent_prefix
            with self.status.worker(parent, part):
                try:
                    outcomes[index] = function(machine)
                except BaseException as exc:  # collected; Aborted is re-raised below
                    logger.debug("%s(%s) raised", getattr(function, "__name__", function),
                                                      machine, exc_info=True)
                    outcomes[index] = exc

        threads = [
            threading.Thread(target=work, args=(i, m), name=f"parallel-{m}", daemon=True)
            for i, m in enumerate(machines)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.1)
                    self.abort.check()
        except Aborted as exc:
            deadline = time.monotonic() + ABORT_GRACE_SECONDS
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            # Workers still running have their groups closed now, inside the caller's.
            self.status.abort_workers(str(exc) or "aborted")
            raise
        values = [outcomes.get(i) for i in range(len(machines))]
        aborted = next((v for v in values if isinstance(v, Aborted)), None)
        if aborted is not None:
            raise aborted
        if return_results:
            return values
        failures = {str(m): v for m, v in zip(machines, values, strict=True) if isinstance(v, BaseException)}
        if failures:
            raise ParallelError(function, failures)
        return values
