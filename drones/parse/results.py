"""Read a job's results directory into a ``JobResults`` (no database involved).

Layout (spec scheduler-behaviour.md §5.3): ``keyval``, ``status.log`` (or
``status``), ``host_keyvals/<host>``, ``.autoserv_execute``, and per test
``<subdir>/keyval`` (test attributes) and ``<subdir>/results/keyval``
(iterations).

Per-machine status logs: a job over several machines may also leave
``<machine>/status.log`` (each ``parallel_simple`` worker's own lines, kept
so they survive autoserv being killed; ``<machine>`` is the name made safe as
a directory name, as autoserv's ``job.safe_path_part`` does). The main
``status.log`` is the record: when it exists the per-machine files are never
read (the main log holds the same groups, so reading both would count tests
twice). Only when there is neither ``status.log`` nor ``status`` are the
per-machine files of the job's machines (the keyval's ``hostname``,
``host_keyvals/``) read, each on its own (if every line is indented, the
lines are shifted left to level 0); their tests without a ``hostname=`` are
recorded on that machine, and problems name the file
(``<machine>/status.log:<line>``). Subdirs stay relative to the results
directory, as in the main log.

Identity: the tag is the last ``level`` components of the directory's path
(``-l 2`` on ``.../123-alice/host1`` gives ``123-alice/host1``, the ``-P``
execution tag autoserv ran with); the AFE job id is the leading number of
``<id>-<owner>/...``.

Machines, in order of preference: the keyval's ``hostname`` (comma-separated
for a group), else the files in ``host_keyvals/`` plus any ``hostname=``
fields of status lines, else the tag's last component when it is a host
(not ``hostless`` or ``group<N>``). Each machine's platform is
``keyvals.machine_group`` of its host keyval. A job on several machines (a
synchronous job's ``group<N>`` directory) gets a combined machine named
``a,b`` (TKO's convention) whose platform joins theirs; a test whose START,
END or status line carries ``hostname=<one of the machines>`` is recorded on
that machine, other tests on the job's machine. A hostless job has none.

Times: ``job_queued``, ``job_started`` and ``job_finished`` from the keyval;
without the last two, the first and last timestamps of the status log.

Numbers that end in integer columns are range-checked: job ids (the tag's,
``parent_job_id``, ``retry_original_job_id``) must be ``0 <= id < 2**31`` and
autoserv's wait status ``0 <= status < 2**16``. A value that is out of range
(or not a number) is a recorded problem, the id becomes None and the wait
status ABORT; the job is still written.

SERVER_JOB: its status is the worse of autoserv's exit status and the
status log's top-level job events (``ERROR ---- ----`` ...); its reason is the
abort reason (``INFO`` ``job_abort_reason``), else the reasons of the worst
top-level job events.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from afe.paths import UnsafePath, inside

from .keyvals import Iteration, machine_group, read_host_keyvals, read_iterations, read_keyval, read_lines
from .status_line import is_worse_or_equal, parse_timestamp, worse
from .status_log import UNKNOWN_KERNEL, Problem, StatusLogResult, TestResult, parse_status_log

SERVER_JOB = "SERVER_JOB"
SERVER_JOB_SUBDIR = "----"
_AFE_TAG = re.compile(r"^(\d+)-(.+?)/.+$")
_SUITE_JOB = re.compile(r"^([^/]*/[^/]*)-test_suites/control\.(.*)$")
_TEST_JOB = re.compile(r"^([^/]*/[^/]*)/([^/]+)/.*$")
_NOT_A_HOST = re.compile(r"^(hostless|group\d+)$")
_UNSAFE_PATH_CHARS = re.compile(r"[^\w.+:=@-]")
#: Ids go into signed 32-bit columns (AFE and TKO ``IntegerField``s).
ID_LIMIT = 2**31
#: A wait status is 16 bits (exit code << 8 | signal).
WAIT_STATUS_LIMIT = 2**16
PIDFILE = ".autoserv_execute"


class ResultsDirError(Exception):
    """The directory cannot be parsed into a job (missing, or nothing identifies a job)."""


@dataclass(frozen=True)
class Machine:
    hostname: str
    group: str = ""  # TKO's machine_group (the platform)
    owner: str = ""
    keyval: dict[str, str] = field(default_factory=dict)  # its host keyval


@dataclass
class ParsedTest:
    """A test to write: the status log's result plus what its files add."""

    result: TestResult
    hostname: str | None  # the machine it ran on; None for the job's machine
    attributes: dict[str, str] = field(default_factory=dict)
    iterations: list[Iteration] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str | None]:
        """What identifies the test across reparses: (test name, subdir)."""
        return self.result.testname, self.result.subdir


@dataclass
class JobResults:
    """Everything the writer needs for one results directory (times are epoch seconds)."""

    path: Path
    tag: str
    keyval: dict[str, str]
    label: str | None
    username: str | None
    afe_job_id: int | None
    afe_parent_job_id: int | None
    retry_original_job_id: int | None
    queued: int | None
    started: int | None
    finished: int | None
    build: dict[str, str | None]  # build, build_version, suite, board
    machines: list[Machine]  # the individual machines
    job_machine: Machine | None  # the job's machine: the only one, the combined one, or None (hostless)
    tests: list[ParsedTest]
    has_status_log: bool
    problems: list[Problem]
    unparsed_lines: int


def job_tag(path: Path, level: int) -> str:
    """The last ``level`` components of ``path`` joined by ``/``."""
    parts = [p for p in path.parts if p not in ("", "/")]
    return "/".join(parts[-max(level, 1):])


def parse_job_name(name: str) -> dict[str, str | None]:
    """Build, build_version, suite and board from a job name, as Chrome OS names jobs.

    ``lumpy-release/R46-7272.0.0/bvt/login_LoginSuccess`` (a suite's test) and
    ``lumpy-release/R46-7272.0.0-test_suites/control.bvt`` (a suite) give
    build ``lumpy-release/R46-7272.0.0``, build_version ``R46-7272.0.0``,
    suite ``bvt``, board ``lumpy``; other names give all None.
    """
    info: dict[str, str | None] = {"build": None, "build_version": None, "suite": None, "board": None}
    match = _SUITE_JOB.match(name) or _TEST_JOB.match(name)
    if match:
        build = match.group(1)
        config = build.split("/")[0]
        info.update(build=build, build_version=build.split("/")[1], suite=match.group(2),
                    board=config.rsplit("-", 1)[0] if "-" in config else None)
    return info


def autoserv_status(path: Path, problems: list[Problem] | None = None) -> str:
    """The SERVER_JOB status from ``.autoserv_execute``: GOOD (exit 0), FAIL (exit ≠ 0) or ABORT.

    ABORT also covers a missing or unreadable pidfile, a process killed by a
    signal and a wait status out of range (``0 <= status < 2**16``), which is
    reported in ``problems``.
    """
    lines = read_lines(path / PIDFILE) or []
    try:
        status = int(lines[1].strip())
    except (IndexError, ValueError):
        return "ABORT"
    if not 0 <= status < WAIT_STATUS_LIMIT:
        if problems is not None:
            problems.append(Problem(PIDFILE, 2, f"wait status {lines[1].strip()[:40]!r} is out of range; "
                                                "taken as ABORT"))
        return "ABORT"
    if not os.WIFEXITED(status):
        return "ABORT"
    return "GOOD" if os.WEXITSTATUS(status) == 0 else "FAIL"


def job_id(value: str | None, what: str, problems: list[Problem], source: str = "keyval") -> int | None:
    """``value`` as a job id (``0 <= id < 2**31``); None, with a problem, if it is not one.

    None or an empty value is None without a problem.
    """
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        problems.append(Problem(source, None, f"{what}={value[:40]!r} is not a job id; ignored"))
        return None
    if not 0 <= number < ID_LIMIT:
        problems.append(Problem(source, None, f"{what}={value.strip()[:40]!r} is out of range; ignored"))
        return None
    return number


def _timestamp(keyval: dict[str, str], key: str, problems: list[Problem]) -> int | None:
    if key not in keyval:
        return None
    value = parse_timestamp(keyval[key])
    if value is None:
        problems.append(Problem("keyval", None, f"{key}={keyval[key][:40]!r} is not an epoch; ignored"))
    return value


def abort_reason(keyval: dict[str, str], problems: list[Problem]) -> str:
    """The reason of tests left open: "Job aborted by <user> at <time>" or "Job aborted unexpectedly"."""
    by = keyval.get("aborted_by")
    if not by:
        return "Job aborted unexpectedly"
    on = _timestamp(keyval, "aborted_on", problems)
    when = f" at {datetime.fromtimestamp(on):%Y-%m-%d %H:%M:%S}" if on is not None else ""
    return f"Job aborted by {by}{when}"


def _machines(keyval: dict[str, str], host_keyvals: dict[str, dict[str, str]],
              status_hosts: list[str], tag: str) -> list[str]:
    """The job's hostnames, without duplicates, by the preference order of the module docstring."""
    if keyval.get("hostname", "").strip():
        return list(dict.fromkeys(h.strip() for h in keyval["hostname"].split(",") if h.strip()))
    hosts = list(dict.fromkeys([*host_keyvals, *status_hosts]))
    if hosts:
        return hosts
    last = tag.rsplit("/", 1)[-1]
    if "/" in tag and _AFE_TAG.match(tag) and not _NOT_A_HOST.match(last):
        return [last]
    return []


def _inside(root: Path, *parts: str) -> Path | None:
    """``root/parts...`` if ``afe.paths.inside`` lets it (status logs and keyvals are input, not trusted paths)."""
    try:
        return inside(root, *parts)
    except UnsafePath:
        return None


def _test_files(root: Path, test: TestResult, problems: list[Problem]) -> tuple[dict[str, str], list[Iteration]]:
    if not test.subdir:
        return {}, []
    keyval = _inside(root, test.subdir, "keyval")
    iteration_keyval = _inside(root, test.subdir, "results", "keyval")
    if keyval is None or iteration_keyval is None:
        problems.append(Problem("status.log", None, f"subdir {test.subdir[:60]!r} is outside the results "
                                                    "(afe.paths.inside refused it); its keyvals are not read"))
        return {}, []
    attributes = read_keyval(keyval, f"{test.subdir}/keyval", problems) or {}
    iterations = read_iterations(iteration_keyval, f"{test.subdir}/results/keyval", problems)
    return attributes, iterations


def load_results(path: str | os.PathLike[str], level: int = 1) -> JobResults:
    """Read the results directory at ``path``; ``level`` is how many path components form the tag.

    Raises ``ResultsDirError`` when the directory is missing, or has neither a
    status log nor a keyval. Everything else that is wrong is reported in
    ``problems`` (and ``unparsed_lines``) instead.
    """
    root = Path(path)
    if not root.is_dir():
        raise ResultsDirError(f"results directory {root} does not exist")
    problems: list[Problem] = []
    keyval = read_keyval(root / "keyval", "keyval", problems)
    status_lines = read_lines(root / "status.log")
    if status_lines is None:
        status_lines = read_lines(root / "status")
    host_problems: list[Problem] = []
    host_keyvals = read_host_keyvals(root, host_problems)
    reason = abort_reason(keyval or {}, problems)
    if status_lines is not None:
        log: StatusLogResult | None = parse_status_log(status_lines, abort_reason=reason)
    else:
        log = _machine_status_logs(root, _known_machines(keyval or {}, host_keyvals), reason, problems)
    if keyval is None and log is None:
        raise ResultsDirError(f"{root} has no status.log and no keyval: nothing identifies a job to record")
    keyval = keyval or {}
    tag = job_tag(Path(os.path.abspath(root)), level)
    has_status_log = log is not None
    log = log or StatusLogResult()
    problems.extend(log.problems)
    problems.extend(host_problems)

    owner = keyval.get("owner", "")
    machines = [Machine(h, machine_group(host_keyvals.get(h, {})), owner, host_keyvals.get(h, {}))
                for h in _machines(keyval, host_keyvals, log.hostnames, tag)]
    if len(machines) > 1:
        groups = sorted({m.group for m in machines if m.group})
        job_machine: Machine | None = Machine(",".join(m.hostname for m in machines), ",".join(groups), owner)
    else:
        job_machine = machines[0] if machines else None

    started = _timestamp(keyval, "job_started", problems)
    finished = _timestamp(keyval, "job_finished", problems)
    if has_status_log:
        started = started if started is not None else log.first_timestamp
        finished = finished if finished is not None else log.last_timestamp

    tests = []
    if has_status_log:
        tests.append(_server_job(root, log, started, finished, _host_attributes(job_machine), problems))
    by_name = {m.hostname: m for m in machines}
    for result in log.tests:
        attributes, iterations = _test_files(root, result, problems)
        hostname = result.hostname if result.hostname in by_name else None
        attributes.update(_host_attributes(by_name.get(hostname or "", job_machine)))
        tests.append(ParsedTest(result, hostname, attributes, iterations))

    match = _AFE_TAG.match(tag)
    name = keyval.get("label") or None
    build = parse_job_name(name or "")
    for key in build:
        build[key] = keyval.get(key) or build[key]
    return JobResults(
        path=root, tag=tag, keyval=keyval, label=name,
        username=keyval.get("user") or (match.group(2) if match else None),
        afe_job_id=job_id(match.group(1), "job id of the tag", problems, "tag") if match else None,
        afe_parent_job_id=job_id(keyval.get("parent_job_id"), "parent_job_id", problems),
        retry_original_job_id=job_id(keyval.get("retry_original_job_id"), "retry_original_job_id", problems),
        queued=_timestamp(keyval, "job_queued", problems), started=started, finished=finished,
        build=build, machines=machines, job_machine=job_machine, tests=tests,
        has_status_log=has_status_log, problems=problems, unparsed_lines=log.unparsed_lines,
    )


def _known_machines(keyval: dict[str, str], host_keyvals: dict[str, dict[str, str]]) -> list[str]:
    """The machines the keyval's ``hostname`` and ``host_keyvals/`` name (not the status log's)."""
    named = [h.strip() for h in keyval.get("hostname", "").split(",") if h.strip()]
    return list(dict.fromkeys([*named, *host_keyvals]))


def _machine_dir(hostname: str) -> str:
    """The directory autoserv gives a machine's own files (``drones.autoserv.job.safe_path_part``)."""
    return _UNSAFE_PATH_CHARS.sub("_", hostname).lstrip(".") or "_"


def _dedent(lines: list[str]) -> list[str]:
    """The lines shifted left so that the least indented status line is at level 0."""
    depths = [len(line) - len(line.lstrip("\t")) for line in lines if line.strip()]
    cut = min(depths, default=0)
    return [line[cut:] if line.strip() else line for line in lines]


def _machine_status_logs(root: Path, hostnames: list[str], abort: str,
                         problems: list[Problem]) -> StatusLogResult | None:
    """The per-machine ``<machine>/status.log`` files, read when the main status log is missing.

    Each file is parsed on its own and the results are put together in the
    order of ``hostnames``; a test without a ``hostname=`` gets the file's
    machine. None if there is no such file. A file whose path ``afe.paths.inside``
    refuses (a symlink out of the results, a name too long) is not read: a problem says so.
    """
    merged: StatusLogResult | None = None
    for host in hostnames:
        directory = _machine_dir(host)
        path = _inside(root, directory, "status.log")
        if path is None:
            problems.append(Problem(f"{directory[:60]}/status.log", None,
                                    "outside the results (afe.paths.inside refused it); not read"))
            continue
        lines = read_lines(path)
        if lines is None:
            continue
        log = parse_status_log(_dedent(lines), abort_reason=abort, source=f"{directory}/status.log")
        if merged is None:
            merged = StatusLogResult()
        merged.tests += [test if test.hostname else replace(test, hostname=host) for test in log.tests]
        merged.problems += log.problems
        merged.unparsed_lines += log.unparsed_lines
        if merged.kernel.base == UNKNOWN_KERNEL:
            merged.kernel = log.kernel
        merged.job_abort_reason = merged.job_abort_reason or log.job_abort_reason
        if log.job_status is not None:
            if merged.job_status is None or (log.job_status != merged.job_status
                                             and is_worse_or_equal(log.job_status, merged.job_status)):
                merged.job_status, merged.job_reason = log.job_status, log.job_reason
            elif log.job_status == merged.job_status:
                merged.job_reason = ", ".join(dict.fromkeys(r for r in (merged.job_reason, log.job_reason) if r))
        merged.hostnames = list(dict.fromkeys([*merged.hostnames, host, *log.hostnames]))
        stamps = [t for t in (merged.first_timestamp, log.first_timestamp) if t is not None]
        merged.first_timestamp = min(stamps, default=None)
        stamps = [t for t in (merged.last_timestamp, log.last_timestamp) if t is not None]
        merged.last_timestamp = max(stamps, default=None)
    return merged


def _host_attributes(machine: Machine | None) -> dict[str, str]:
    """A test's ``host-<key>`` attributes from its machine's host keyval."""
    return {f"host-{k}": v for k, v in (machine.keyval if machine else {}).items()}


def _server_job(root: Path, log: StatusLogResult, started: int | None, finished: int | None,
                attributes: dict[str, str], problems: list[Problem]) -> ParsedTest:
    """The SERVER_JOB test: the whole job.

    Its status is the worse of autoserv's exit status and the log's top-level
    job events; its reason the abort reason, else the job events' reasons.
    """
    status = autoserv_status(root, problems)
    if log.job_status is not None:
        status = worse(status, log.job_status)
    result = TestResult(
        testname=SERVER_JOB, subdir=SERVER_JOB_SUBDIR, status=status,
        reason=log.job_abort_reason or log.job_reason, started=started, finished=finished, kernel=log.kernel,
    )
    return ParsedTest(result, None, attributes)
