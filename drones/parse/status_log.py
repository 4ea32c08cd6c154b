"""From status.log lines to finished tests (TKO parser version 1, spec afe-frontend.md §6.3).

The parser runs once, after the job has ended, so it never leaves a test
``RUNNING``: a test whose END never came is closed with ``END ABORT``.

- ``START <subdir> <test>`` at test level opens a test; its ``END <s>``
  finishes it. The final status is the worst of ``<s>`` and every status
  nested inside (worst first: TEST_NA ABORT ERROR FAIL WARN GOOD ALERT RUNNING
  NOSTATUS). ``started``/``finished`` are the START and END timestamps. The
  test name is the END's (else the START's) test, else its subdir; the subdir
  is the START's, else the first nested status line's, else the END's.
- The reason is the de-duplicated, sorted, ``", "``-joined reasons of the
  nested status lines whose status is the final one; else the END's reason;
  else the START's.
- ``START ---- ----`` outside a test starts a client job: ``CLIENT_JOB.<n>``
  (counted from 0), whose tests are one level deeper. It ends ``GOOD`` unless
  its own END or a test-level status line directly inside it was ABORT (or
  TEST_NA); a failing test does not fail it.
- A status line with a subdir or test name at test level, outside any test, is
  a complete test by itself (no start time). Without either name it is a job
  event: inside a client job it only counts toward that client job; outside
  any group (``ERROR ---- ----`` for a control file that does not compile, an
  internal or usage error, ``ABORT ---- ----`` when autoserv was stopped) it
  is about the whole job. The worst such top-level WARN, FAIL, ERROR or ABORT
  is ``job_status`` and the distinct reasons of the lines with that status, in
  order, ``", "``-joined, are ``job_reason`` (for SERVER_JOB); better
  statuses and TEST_NA (not applicable) say nothing went wrong.
- A test named ``reboot`` without a subdir becomes ``boot.<n>``; when it ends
  better than FAIL and its END has ``kernel=``/``patch<N>=`` fields, later
  tests run on that kernel. So do tests after an ``INFO`` line with ``kernel=``.
- ``INFO`` lines: ``job_abort_reason=`` (or a reason starting "Job aborted")
  becomes the job's abort reason.
- Indentation lower than the open levels closes them with ``END ABORT``
  (reason "no END line before line <n>"); higher indentation, lines that are
  not status lines and an END with nothing open are skipped and reported.
- At the end of the file, open levels are closed with ``END ABORT``, the
  given reason and the last timestamp seen.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .status_line import BEST, BadLine, Kind, StatusLine, is_worse_or_equal, parse_status_line, worse

UNKNOWN_KERNEL = "UNKNOWN"
#: The statuses of top-level job events that tell something went wrong with the job.
_JOB_EVENT_STATUSES = frozenset({"ABORT", "ERROR", "FAIL", "WARN"})


@dataclass(frozen=True)
class Patch:
    spec: str
    reference: str
    hash: str


@dataclass(frozen=True)
class Kernel:
    """A kernel named by ``kernel=``/``patch<N>=`` fields; ``Kernel()`` is TKO's UNKNOWN."""

    base: str = UNKNOWN_KERNEL
    patches: tuple[Patch, ...] = ()

    @property
    def kernel_hash(self) -> str:
        if self.base == UNKNOWN_KERNEL:
            return UNKNOWN_KERNEL
        key = ",".join([self.base, *(p.hash for p in self.patches)])
        return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Problem:
    """Something the parser skipped or repaired; ``str()`` is ``<source>:<line>: <message>``."""

    source: str
    lineno: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.lineno}" if self.lineno is not None else self.source
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class TestResult:
    """A finished test as the status log describes it (times are epoch seconds)."""

    testname: str
    subdir: str | None
    status: str
    reason: str
    started: int | None
    finished: int | None
    kernel: Kernel
    hostname: str | None = None


@dataclass
class StatusLogResult:
    """What a status log says: its tests in the order they finished, and what was wrong with it.

    ``unparsed_lines`` counts the lines that were skipped (not status lines,
    unexpected indentation, END with nothing open); ``problems`` lists those
    and every repair (bad timestamps, missing ENDs).
    """

    tests: list[TestResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unparsed_lines: int = 0
    kernel: Kernel = field(default_factory=Kernel)
    job_abort_reason: str = ""
    job_status: str | None = None  # the worst top-level job event that went wrong (WARN...ABORT), if any
    job_reason: str = ""  # the reasons of the top-level job events with job_status
    hostnames: list[str] = field(default_factory=list)
    first_timestamp: int | None = None
    last_timestamp: int | None = None


@dataclass
class _Level:
    """One open START."""

    subdir: str | None
    testname: str | None
    started: int | None
    start_reason: str
    hostname: str | None
    worst: str = BEST
    client_name: str | None = None  # set on a client job's level
    is_test: bool = False
    reasons: list[tuple[str, str]] = field(default_factory=list)  # nested (status, reason), tests only


def kernel_from_fields(fields: Mapping[str, str], source: str, lineno: int,
                       problems: list[Problem]) -> Kernel:
    """The kernel named by ``kernel=`` and ``patch0=``, ``patch1=``, ... fields (``<spec> <url> <hash>``).

    Malformed patches are skipped and reported in ``problems``; no ``kernel`` field means UNKNOWN.
    """
    base = re.sub(r"-autotest$", "", fields.get("kernel", "").strip())
    if not base:
        return Kernel()
    patches = []
    index = 0
    while f"patch{index}" in fields:
        parts = fields[f"patch{index}"].split()
        if len(parts) == 3:
            patches.append(Patch(*parts))
        else:
            problems.append(Problem(source, lineno, f"patch{index} is not '<spec> <url> <hash>'; ignored"))
        index += 1
    return Kernel(base, tuple(patches))


class _Parser:
    def __init__(self, source: str, abort_reason: str) -> None:
        self.source = source
        self.abort_reason = abort_reason
        self.result = StatusLogResult()
        self.levels: list[_Level] = []
        self.min_depth = 0  # the depth at which tests start (1 inside a client job)
        self.running: _Level | None = None
        self.client_count = 0
        self.boot_count = 0
        self.job_reasons: list[str] = []  # the distinct reasons of the top-level job events with job_status

    # -- input ---------------------------------------------------------------------

    def feed(self, line: StatusLine | BadLine) -> None:
        if isinstance(line, BadLine):
            self._skip(line.lineno, f"{line.problem}: {line.text[:60]!r}")
            return
        self.result.problems.extend(Problem(self.source, line.lineno, w) for w in line.warnings)
        self._note(line)
        if line.kind is Kind.END and not self.levels:
            self._skip(line.lineno, "END without a matching START")
            return
        expected = len(self.levels) - (1 if line.kind is Kind.END else 0)
        while line.indent < expected:
            self._abort_innermost(line.lineno, f"no END line before line {line.lineno}", line.timestamp)
            self.result.problems.append(
                Problem(self.source, line.lineno, "indentation lower than expected; open test aborted"))
            expected = len(self.levels) - (1 if line.kind is Kind.END else 0)
        if line.indent > expected:
            self._skip(line.lineno, f"unexpected indentation ({line.indent} tabs, expected {expected})")
            return
        match line.kind:
            case Kind.START:
                self._start(line)
            case Kind.END:
                self._end(line)
            case Kind.STATUS:
                self._status(line)
            case Kind.INFO:
                self._info(line)

    def finish(self) -> StatusLogResult:
        if self.levels:
            self.result.problems.append(Problem(
                self.source, None, f"{len(self.levels)} level(s) still open at the end of the log; aborted"))
        while self.levels:
            self._abort_innermost(None, self.abort_reason, self.result.last_timestamp)
        return self.result

    # -- line kinds ------------------------------------------------------------------

    def _start(self, line: StatusLine) -> None:
        level = _Level(line.subdir, line.testname, line.timestamp, line.reason, line.hostname)
        if line.subdir is None and line.testname is None and self.running is None:
            level.client_name = f"CLIENT_JOB.{self.client_count}"
            self.client_count += 1
            self.levels.append(level)
            self.min_depth = len(self.levels)
            return
        if len(self.levels) == self.min_depth and self.running is None:
            level.is_test = True
            self.running = level
        self.levels.append(level)

    def _info(self, line: StatusLine) -> None:
        if "kernel" in line.fields:
            self.result.kernel = kernel_from_fields(line.fields, self.source, line.lineno,
                                                    self.result.problems)
        if line.fields.get("job_abort_reason"):
            self.result.job_abort_reason = line.fields["job_abort_reason"].strip()
        elif line.reason.startswith("Job aborted"):
            self.result.job_abort_reason = line.reason

    def _status(self, line: StatusLine) -> None:
        assert line.status is not None
        if len(self.levels) > self.min_depth:  # inside a test
            innermost = self.levels[-1]
            if innermost.subdir is None and line.subdir is not None:
                innermost.subdir = line.subdir
            innermost.worst = worse(innermost.worst, line.status)
            if self.running is not None:
                self.running.reasons.append((line.status, line.reason))
            return
        if self.levels:  # directly inside a client job
            self.levels[-1].worst = worse(self.levels[-1].worst, line.status)
        if line.subdir is None and line.testname is None:  # a job-level event
            if not self.levels:
                self._job_event(line.status, line.reason)
            return
        self._add(TestResult(
            testname=line.testname or line.subdir or "", subdir=line.subdir, status=line.status,
            reason=line.reason, started=None, finished=line.timestamp, kernel=self.result.kernel,
            hostname=line.hostname,
        ))

    def _end(self, line: StatusLine) -> None:
        assert line.status is not None
        level = self.levels.pop()
        final = worse(level.worst, line.status)
        hostname = line.hostname or level.hostname
        if level.client_name is not None:
            self.min_depth = len(self.levels)
            status = final if is_worse_or_equal(final, "ABORT") else "GOOD"
            self._add(TestResult(
                testname=level.client_name, subdir=None, status=status, reason=line.reason,
                started=level.started, finished=line.timestamp, kernel=self.result.kernel, hostname=hostname,
            ))
            return
        if not level.is_test:  # a group nested inside a test
            self.levels[-1].worst = worse(self.levels[-1].worst, final)
            if self.running is not None:
                self.running.reasons.append((line.status, line.reason))
            return
        self.running = None
        subdir = level.subdir or line.subdir
        name = line.testname or level.testname or subdir or "----"
        if name == "reboot" and subdir is None:
            name = f"boot.{self.boot_count}"
            self.boot_count += 1
            if not is_worse_or_equal(final, "FAIL") and "kernel" in line.fields:
                self.result.kernel = kernel_from_fields(line.fields, self.source, line.lineno,
                                                        self.result.problems)
        self._add(TestResult(
            testname=name, subdir=subdir, status=final, reason=_reason(final, level, line.reason),
            started=level.started, finished=line.timestamp, kernel=self.result.kernel, hostname=hostname,
        ))

    # -- helpers ---------------------------------------------------------------------

    def _job_event(self, status: str, reason: str) -> None:
        """A top-level status line about the whole job: remember the worst, with its reasons."""
        if status not in _JOB_EVENT_STATUSES:
            return  # nothing went wrong
        result = self.result
        if result.job_status is None or (status != result.job_status and is_worse_or_equal(status, result.job_status)):
            result.job_status = status
            self.job_reasons = []
        elif status != result.job_status:
            return  # better than the worst so far
        if reason and reason not in self.job_reasons:
            self.job_reasons.append(reason)
        result.job_reason = ", ".join(self.job_reasons)

    def _abort_innermost(self, lineno: int | None, reason: str, timestamp: int | None) -> None:
        level = self.levels[-1]
        self._end(StatusLine(
            lineno=lineno or 0, indent=len(self.levels) - 1, kind=Kind.END, status="ABORT",
            subdir=level.subdir, testname=level.testname, reason=reason, timestamp=timestamp,
        ))

    def _add(self, test: TestResult) -> None:
        self.result.tests.append(test)

    def _skip(self, lineno: int, message: str) -> None:
        self.result.unparsed_lines += 1
        self.result.problems.append(Problem(self.source, lineno, f"skipped: {message}"))

    def _note(self, line: StatusLine) -> None:
        if line.timestamp is not None:
            if self.result.first_timestamp is None:
                self.result.first_timestamp = line.timestamp
            self.result.last_timestamp = line.timestamp
        if line.hostname and line.hostname not in self.result.hostnames:
            self.result.hostnames.append(line.hostname)


def _reason(final: str, level: _Level, end_reason: str) -> str:
    nested = sorted({reason for status, reason in level.reasons if status == final and reason})
    return ", ".join(nested) or end_reason or level.start_reason


def parse_status_log(lines: Iterable[str], *, abort_reason: str = "Job aborted unexpectedly",
                     source: str = "status.log") -> StatusLogResult:
    """Parse status.log lines (without newlines); never raises on bad input.

    ``abort_reason`` is the reason of the tests still open at the end.
    Returns the finished tests and the problems found.
    """
    parser = _Parser(source, abort_reason)
    for lineno, text in enumerate(lines, start=1):
        if text.strip():
            parser.feed(parse_status_line(text, lineno))
    return parser.finish()
