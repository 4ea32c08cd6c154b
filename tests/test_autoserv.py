"""autoserv (bin/autoserv, drones/autoserv): command lines, results files, hosts, actions.

Most tests run the real ``bin/autoserv`` in a subprocess, with the exact
command lines ``scheduler.commands`` builds, against ``local`` hosts and a real
OpenSSH server (``tests/sshd.py``) on 127.0.0.1. The subprocess reads hosts
from the test database (``transaction=True`` so it sees them). Every
status.log is parsed and its structure checked (``parse_status_log``).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db import connection

from afe.models import ControlType, Host, Protection, SpecialTask
from drones.autoserv import cli
from drones.autoserv.actions import fill, split_label
from drones.autoserv.config import AutoservConfig
from drones.autoserv.control import client_command
from drones.autoserv.errors import AutoservError, ControlFileError
from drones.autoserv.hostinfo import load_host_info, parse_machine
from drones.autoserv.status_log import make_line, parse_line
from scheduler.commands import JobIdentity, crashinfo_command, job_command, special_task_command

from .sshd import SshServer, free_port, sshd_available, start_sshd

ROOT = Path(__file__).resolve().parent.parent
AUTOSERV = str(ROOT / "bin" / "autoserv")
TASK = SpecialTask.Task

# -- status.log, parsed independently of drones.autoserv ----------------------------------

LINE_RE = re.compile(
    r"^(?P<tabs>\t*)"
    r"(?P<status>START|END (?:GOOD|FAIL|ERROR|ABORT|WARN|TEST_NA)|GOOD|FAIL|ERROR|ABORT|WARN|TEST_NA|INFO)"
    r"\t(?P<subdir>[^\t]+)\t(?P<operation>[^\t]+)"
    r"\ttimestamp=(?P<timestamp>\d+)\tlocaltime=(?P<localtime>[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d)"
    r"(?P<fields>(?:\t[\w.-]+=[^\t]*)*)"
    r"\t(?P<reason>[^\t]*)$"
)


@dataclass
class Entry:
    """A status line, or a START…END group (``end`` is its END code, ``children`` its lines)."""

    status: str
    subdir: str
    operation: str
    reason: str
    fields: dict[str, str]
    children: list[Entry] = field(default_factory=list)
    end: str | None = None

    def find(self, operation: str) -> Entry:
        return find(self.children, operation)


def find(entries: list[Entry], operation: str) -> Entry:
    matches = [e for e in entries if e.operation == operation]
    assert matches, f"no {operation!r} in {[e.operation for e in entries]}"
    return matches[0]


def parse_status_log(results: Path, name: str = "status.log", complete: bool = True) -> list[Entry]:
    """The top-level entries of ``<results>/<name>``; asserts nesting and field formats.

    Unless ``complete``, groups may be left open (a log cut short by SIGKILL): their ``end`` is ``None``.
    """
    top: list[Entry] = []
    stack: list[Entry] = []
    now = time.time()
    for number, line in enumerate((results / name).read_text().splitlines(), 1):
        match = LINE_RE.match(line)
        assert match, f"status.log line {number} is malformed: {line!r}"
        depth = len(match["tabs"])
        status = match["status"]
        assert abs(int(match["timestamp"]) - now) < 600, line
        fields = dict(item.split("=", 1) for item in match["fields"].split("\t") if item)
        if status.startswith("END "):
            assert stack, f"line {number}: END without START"
            group = stack.pop()
            assert depth == len(stack), f"line {number}: END at depth {depth}, expected {len(stack)}"
            assert (match["subdir"], match["operation"]) == (group.subdir, group.operation), line
            group.end = status[4:]
            continue
        assert depth == len(stack), f"line {number}: depth {depth}, expected {len(stack)}: {line!r}"
        entry = Entry(status, match["subdir"], match["operation"], match["reason"], fields)
        (stack[-1].children if stack else top).append(entry)
        if status == "START":
            stack.append(entry)
    assert not complete or not stack, f"groups left open: {[g.operation for g in stack]}"
    return top


def outcome(group: Entry) -> tuple[str | None, str]:
    """(END code, reason of the group's last status line)."""
    plain = [c for c in group.children if c.status != "START"]
    return group.end, plain[-1].reason if plain else ""


# -- running autoserv ------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    pid: int
    stdout: str
    stderr: str
    results: Path

    def pidfile(self, name: str = ".autoserv_execute") -> list[str]:
        return (self.results / name).read_text().splitlines()

    def status(self) -> list[Entry]:
        return parse_status_log(self.results)

    def debug_log(self) -> str:
        return (self.results / "debug" / "autoserv.DEBUG").read_text()


def _database_url() -> str:
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return (f"mysql://{settings['USER']}{password}@{settings['HOST'] or '127.0.0.1'}:"
            f"{settings['PORT'] or 3306}/{settings['NAME']}")


@pytest.fixture
def env(transactional_db) -> dict[str, str]:
    """The environment of an autoserv that reads the test database."""
    return {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "settings"}


@pytest.fixture
def autoserv(env, tmp_path):
    """``autoserv(command)`` runs a command line (its results dir is the ``-r`` argument)."""

    def run(command: list[str], timeout: float = 60) -> Run:
        results = Path(command[command.index("-r") + 1])
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=tmp_path)
        stdout, stderr = proc.communicate(timeout=timeout)
        assert "Traceback" not in stderr, stderr
        return Run(proc.returncode, proc.pid, stdout, stderr, results)

    return run


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> SshServer:
    if not sshd_available():
        message = "OpenSSH server (/usr/sbin/sshd, package openssh-server) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def lab(env, sshd_if_needed):
    """``lab(kind, name, labels=(), **attributes)`` adds a ``local`` or ``ssh`` host to the test database."""

    def add(kind: str, name: str | None = None, labels: tuple[str, ...] = (), **attributes: str) -> str:
        if kind == "local":
            name = name or "local1"
            attributes = {"connection": "local", **attributes}
        else:
            server = sshd_if_needed()
            name = name or "127.0.0.1"
            attributes = {"ssh_port": str(server.port), "ssh_key": str(server.key), "ssh_user": server.user,
                          "connect_timeout": "5", **attributes}
        host = Host.objects.create(hostname=name)
        if labels:
            from afe.models import Label

            host.labels.set([Label.objects.get_or_create(name=label)[0] for label in labels])
        for key, value in attributes.items():
            host.set_attribute(key, str(value))
        return name

    return add


@pytest.fixture
def sshd_if_needed(request):
    return lambda: request.getfixturevalue("sshd")


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "results"
    path.mkdir()
    return path


def action(host: str, task: str, results: Path, labels: tuple[str, ...] = (),
           protection: int = Protection.NO_PROTECTION) -> list[str]:
    return special_task_command(AUTOSERV, str(results), host, task, None, labels, protection)


def server_job(results: Path, control: str, hosts: list[str] = (), kind: int = ControlType.SERVER) -> list[str]:
    path = results.parent / "control"
    path.write_text(control)
    tag = f"1-debbie/{hosts[0] if hosts else 'hostless'}"
    return job_command(AUTOSERV, str(results), list(hosts), JobIdentity("debbie", "a job", kind), tag,
                       str(path), 7 if hosts else None)


def assert_exit(run: Run, code: int, failed: int | None = None, name: str = ".autoserv_execute") -> None:
    """Exit status and the three pidfile lines (§5.2)."""
    assert run.returncode == code, (run.stderr, (run.results / "status.log").read_text())
    lines = run.pidfile(name)
    assert len(lines) == 3 and lines[0] == str(run.pid) and lines[1] == str(code << 8), lines
    if failed is not None:
        assert lines[2] == str(failed)


def start_autoserv(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """autoserv in the background, leading its own process group (as the drone runs it)."""
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


BOTH = pytest.mark.parametrize("kind", ["local", "ssh"])

# -- the command line --------------------------------------------------------------------------


def test_job_command_line_is_understood(tmp_path):
    command = job_command(AUTOSERV, "/r", ["h1", "h2"], JobIdentity("bob", "nightly", ControlType.CLIENT),
                          "5-bob/group0", "/r/drone_tmp/attach.3", 4)
    options = cli.parse_args(command[4:])
    assert options.results_dir == Path("/r") and options.write_pidfile
    assert options.machines == ("h1", "h2") and options.control_type == "client"
    assert (options.user, options.label, options.execution_tag) == ("bob", "nightly", "5-bob/group0")
    assert options.control_path == Path("/r/drone_tmp/attach.3") and options.action is None
    assert "--verify_job_repo_url" in options.ignored and "--parent_job_id 4" in options.ignored
    assert options.pidfile_name == ".autoserv_execute"
    # Autotest's spelling: -n as a flag, the control file as the last argument.
    legacy = cli.parse_args(["-r", "/r", "-s", "-n", "--verbose", "/tmp/ctl", "--require-ssp"])
    assert legacy.control_path == Path("/tmp/ctl") and legacy.control_type == "server"


@pytest.mark.parametrize("task, expected", [
    (TASK.VERIFY, "verify"), (TASK.CLEANUP, "cleanup"), (TASK.RESET, "reset"),
    (TASK.REPAIR, "repair"), (TASK.PROVISION, "provision"),
])
def test_special_task_command_lines_are_understood(task, expected):
    command = special_task_command(AUTOSERV, "/r", "h1", task, JobIdentity("bob", "j", ControlType.SERVER),
                                   ["cros-version:R1-2", "board:x"], Protection.REPAIR_SOFTWARE_ONLY)
    options = cli.parse_args(command[4:])
    assert options.action == expected and options.machines == ("h1",)
    assert set(options.job_labels) == {"cros-version:R1-2", "board:x"}
    if task == TASK.REPAIR:
        assert options.host_protection == "REPAIR_SOFTWARE_ONLY"


def test_crashinfo_command_line_is_understood():
    options = cli.parse_args(crashinfo_command(AUTOSERV, "/r", ["h1", "h2"])[4:])
    assert options.action == "collect_crashinfo" and options.use_existing_results
    assert options.pidfile_name == ".collect_crashinfo_execute" and options.machines == ("h1", "h2")


def test_protection_levels_match_the_afe_model():
    assert tuple(p.name for p in sorted(Protection, key=int)) == cli.PROTECTION_LEVELS


@pytest.mark.parametrize("argv, message", [
    ([], "results directory is required"),
    (["-r"], "expected one argument"),
    (["-r", "{R}", "-v", "--cleanup", "-m", "h"], "not allowed with"),
    (["-r", "{R}", "-v"], "needs the host"),
    (["-r", "{R}", "-R", "-m", "h", "--host-protection", "SOMETIMES"], "unknown host protection"),
    (["-r", "{R}", "-s"], "nothing to do"),
    (["-r", "{R}", "-c", "-n", "/tmp/control"], "needs hosts"),
    (["-r", "{R}", "-s", "-c", "-n", "/tmp/control"], "not allowed with"),
])
def test_malformed_command_line_is_a_usage_error(argv, message, results, env):
    argv = [arg.replace("{R}", str(results)) for arg in argv]
    proc = subprocess.run([AUTOSERV, "-p", *argv], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "usage: autoserv" in proc.stderr and message in proc.stderr and "Traceback" not in proc.stderr
    if str(results) in argv:
        # The pidfile still says the run is over, so the scheduler does not wait for it.
        lines = (results / ".autoserv_execute").read_text().splitlines()
        assert lines[1:] == [str(2 << 8), "0"]
        assert find(parse_status_log(results), "----").status == "ERROR"


def test_unknown_flags_are_accepted_and_logged(autoserv, results, lab):
    command = server_job(results, "job.run_test('t', command='true')", [lab("local")])
    run = autoserv(command + ["--require-ssp", "--test_source_build", "R1-2", "--brand-new-flag=3", "--lab", "True"])
    assert_exit(run, 0, failed=0)
    log = run.debug_log()
    for flag in ("--verify_job_repo_url", "--parent_job_id 7", "--require-ssp", "--test_source_build R1-2",
                 "--brand-new-flag=3 (unknown)"):
        assert f"accepted but not implemented: {flag}" in log


def test_a_value_starting_with_a_dash_is_the_options_value(autoserv, results, lab):
    """As with Autotest's optparse, the word after -l is the job name whatever it looks like."""
    options = cli.parse_args(["-r", "/r", "-u", "-bob", "-l", "-smoke", "-P", "-tag", "-a", "--fast -v",
                              "--pidfile-label", "-odd", "--parent_job_id", "-1", "-s", "-n", "-control"])
    assert (options.user, options.label, options.execution_tag) == ("-bob", "-smoke", "-tag")
    assert options.control_args == ("--fast", "-v") and options.pidfile_label == "-odd"
    assert options.control_path.name == "-control" and "--parent_job_id -1" in options.ignored
    provision = cli.parse_args(["-r", "/r", "-m", "h1", "--provision", "--job-labels", "-odd:1,b:2"])
    assert provision.job_labels == ("-odd:1", "b:2")
    assert cli.salvage_pidfile(["-p", "-r", "-results"]) == Path("-results").absolute() / ".autoserv_execute"

    control = results.parent / "control"
    control.write_text("job.run_test('t', command='true')\n")
    identity = JobIdentity("-bob", "-smoke", ControlType.SERVER)
    run = autoserv(job_command(AUTOSERV, str(results), [lab("local")], identity, "1--bob/local1", str(control), 7))
    assert_exit(run, 0, failed=0)
    keyval = (results / "keyval").read_text()
    assert "user=-bob\n" in keyval and "label=-smoke\n" in keyval


# -- status.log and keyval files -------------------------------------------------------------


def test_status_line_round_trip():
    line = make_line("END FAIL", "sub dir", None, "two\nlines\tand a tab", {"hostname": "h1"}, indent=2)
    text = line.render()
    assert text.startswith("\t\tEND FAIL\tsub dir\t----\ttimestamp=")
    assert text.endswith("\thostname=h1\ttwo lines and a tab")
    assert LINE_RE.match(text)
    parsed = parse_line(text)
    assert (parsed.indent, parsed.status, parsed.code) == (2, "END FAIL", "FAIL")
    assert (parsed.subdir, parsed.operation) == ("sub dir", None)
    assert parsed.fields["hostname"] == "h1" and parsed.reason == "two lines and a tab"
    # The scheduler's own abort line has no fields.
    assert parse_line("INFO\t----\t----\tJob aborted by bob on 2024-01-01 00:00:00").reason.startswith("Job aborted")
    with pytest.raises(ValueError):
        make_line("SUPERB", None, None)


def test_server_job_records_tests_counts_failures_and_appends_keyval(autoserv, results):
    (results / "keyval").write_text("job_queued=1700000000\n")
    control = """
job.run_test("passes", command="echo out; echo err >&2")
job.run_test("fails", command="echo oops >&2; exit 3")
def check(expected):
    assert expected == 2, "expected two"
    return {"answer": expected}
job.run_test("checks", function=check, expected=2)
job.run_test("checks", function=check, tag="bad", expected=1)
job.run_test("skipped", function=lambda: (_ for _ in ()).throw(TestNA("not here")))
job.write_keyval({"from_control": "yes"})
"""
    run = autoserv(server_job(results, control))
    assert_exit(run, 1, failed=2)
    top = run.status()
    assert [(e.status, e.operation, e.end) for e in top] == [
        ("START", "passes", "GOOD"), ("START", "fails", "FAIL"), ("START", "checks", "GOOD"),
        ("START", "checks.bad", "FAIL"), ("START", "skipped", "TEST_NA"),
    ]
    assert outcome(top[0]) == ("GOOD", "completed successfully")
    assert outcome(top[1]) == ("FAIL", "command failed with exit status 3: oops")
    assert outcome(top[3]) == ("FAIL", "expected two")
    assert outcome(top[4]) == ("TEST_NA", "not here")
    assert top[0].subdir == "passes" and top[3].subdir == "checks.bad"
    assert (results / "passes" / "stdout").read_text() == "out\n"
    assert (results / "passes" / "stderr").read_text() == "err\n"
    assert (results / "checks" / "keyval").read_text() == "answer=2\n"
    keyval = (results / "keyval").read_text()
    assert keyval.startswith("job_queued=1700000000\n")  # what the scheduler wrote stays
    assert "user=debbie\n" in keyval and "label=a job\n" in keyval and "from_control=yes\n" in keyval
    assert "job_started=" in keyval and "status_version=1\n" in keyval


def test_passing_server_job_exits_zero(autoserv, results, lab):
    host = lab("local")
    run = autoserv(server_job(results, "h = hosts.create_host(machines[0])\n"
                                       "job.run_test('uname', host=h, command='uname')\n", [host]))
    assert_exit(run, 0, failed=0)
    (test,) = run.status()
    assert test.fields["hostname"] == host and outcome(test) == ("GOOD", "completed successfully")


def test_parallel_simple_over_a_local_and_an_ssh_host(autoserv, results, lab):
    machines = [lab("local"), lab("ssh")]
    control = """
def per_machine(machine):
    job.run_test("hostname", host=machine, command="hostname")
    job.run_test("fails", host=machine, command="test %s = local1" % machine)
parallel_simple(per_machine, machines)
"""
    run = autoserv(server_job(results, control, machines))
    assert_exit(run, 1, failed=1)
    top = run.status()
    by_subdir = {e.subdir: e for e in top}
    assert set(by_subdir) == {"local1/hostname", "local1/fails", "127.0.0.1/hostname", "127.0.0.1/fails"}
    assert by_subdir["local1/fails"].end == "GOOD" and by_subdir["127.0.0.1/fails"].end == "FAIL"
    assert by_subdir["127.0.0.1/hostname"].end == "GOOD"
    # Each test is one block, written when it ends: a machine's tests are in order (maybe between the other's).
    for machine in machines:
        assert [e.subdir for e in top if e.subdir.startswith(f"{machine}/")] == [f"{machine}/hostname",
                                                                                 f"{machine}/fails"]
    assert (results / "127.0.0.1" / "hostname" / "stdout").read_text().strip()


def test_parallel_simple_collects_exceptions(autoserv, results, lab):
    machines = [lab("local", "local1"), lab("local", "local2")]
    control = """
def per_machine(machine):
    if machine == "local2":
        raise RuntimeError("no luck on " + machine)
parallel_simple(per_machine, machines)
"""
    run = autoserv(server_job(results, control, machines))
    assert_exit(run, 1, failed=1)
    (error,) = run.status()
    assert error.status == "ERROR" and error.operation == "----"
    assert "1 invocation(s) of per_machine failed: local2: RuntimeError: no luck on local2" in error.reason


def test_nested_parallel_simple_keeps_inner_groups_inside_the_outer_ones(autoserv, results, lab):
    machines = [lab("local", "local1"), lab("local", "local2")]
    control = """
def check(part):
    job.run_test("check", command="true")
def per_machine(machine):
    job.run_test("setup", host=machine, command="true")
    job.run_test("parts", function=lambda: parallel_simple(check, ["a", "b"]))
parallel_simple(per_machine, machines)
"""
    run = autoserv(server_job(results, control, machines))
    assert_exit(run, 0, failed=0)
    top = run.status()
    for machine in machines:
        setup, parts = (e for e in top if e.subdir.startswith(f"{machine}/"))
        assert (setup.subdir, setup.end, parts.subdir, parts.end) == (
            f"{machine}/setup", "GOOD", f"{machine}/parts", "GOOD")
        assert sorted((c.subdir, c.end) for c in parts.children if c.status == "START") == [
            (f"{machine}/a/check", "GOOD"), (f"{machine}/b/check", "GOOD")]
        # Each worker also keeps its own complete log, indented from its own level.
        own_setup, own_parts = parse_status_log(results / machine)
        assert own_setup.subdir == f"{machine}/setup"
        assert sorted(c.subdir for c in own_parts.children if c.status == "START") == [
            f"{machine}/a/check", f"{machine}/b/check"]
        (inner,) = parse_status_log(results / machine / "a")
        assert (inner.subdir, inner.end) == (f"{machine}/a/check", "GOOD")


def test_a_failure_inside_a_test_fails_the_test_and_the_run(autoserv, results):
    control = """
def outer():
    job.run_test("inner", command="false")
job.run_test("outer", function=outer)
"""
    run = autoserv(server_job(results, control))
    assert_exit(run, 1, failed=1)
    (outer,) = run.status()
    assert outer.find("inner").end == "FAIL"
    assert outcome(outer) == ("FAIL", "nested inner: command failed with exit status 1")


NESTED = {
    "not applicable, then failing": (["TestNA('n/a')", "TestFail('bad')"], "FAIL"),
    "failing, then not applicable": (["TestFail('bad')", "TestNA('n/a')"], "FAIL"),
    "failing, then broken": (["TestFail('bad')", "TestError('broken')"], "ERROR"),
    "only not applicable": (["TestNA('n/a')"], "TEST_NA"),
    "only passing": (["None"], "GOOD"),
}


@pytest.mark.parametrize("raised, expected", NESTED.values(), ids=NESTED)
def test_a_test_ends_with_the_worst_status_nested_in_it(raised, expected, autoserv, results):
    control = f"""
def inner(exc):
    if exc is not None:
        raise exc
def outer():
    for i, exc in enumerate([{", ".join(raised)}]):
        job.run_test("inner%d" % i, function=inner, exc=exc)
job.run_test("outer", function=outer)
"""
    run = autoserv(server_job(results, control))
    passed = expected in ("GOOD", "TEST_NA")
    assert_exit(run, 0 if passed else 1, failed=0 if passed else 1)
    assert run.status()[0].end == expected


def test_a_failure_in_a_worker_fails_the_test_that_started_the_workers(autoserv, results, lab):
    machines = [lab("local", "local1"), lab("local", "local2")]
    control = """
def per_machine(machine):
    job.run_test("check", host=machine, command="test %s = local1" % machine)
job.run_test("all", function=lambda: parallel_simple(per_machine, machines))
"""
    run = autoserv(server_job(results, control, machines))
    assert_exit(run, 1, failed=1)
    (everything,) = run.status()
    checks = {c.subdir: c.end for c in everything.children if c.status == "START"}
    assert checks == {"local1/check": "GOOD", "local2/check": "FAIL"}
    assert outcome(everything) == ("FAIL", "nested local2/check: command failed with exit status 1")


def test_a_reason_that_is_not_utf8_does_not_stop_the_control_file(autoserv, results):
    control = r'''
def bad():
    raise TestFail("bad \udcff name")
job.run_test("bad", function=bad)
job.write_keyval({"odd": "\udcff"})
job.run_test("next", command="true")
'''
    run = autoserv(server_job(results, control))
    assert_exit(run, 1, failed=1)
    bad, after = run.status()
    assert outcome(bad) == ("FAIL", "bad \\udcff name") and after.end == "GOOD"
    assert "odd=\\udcff\n" in (results / "keyval").read_text()


def test_end_info_is_never_written(autoserv, results):
    control = """
job.record("START", None, "notes")
job.record("INFO", None, "notes", "just saying")
job.record("END INFO", None, "notes")
"""
    run = autoserv(server_job(results, control))
    assert_exit(run, 0, failed=0)
    (notes,) = run.status()
    assert notes.end == "GOOD" and [c.status for c in notes.children] == ["INFO"]
    assert "END INFO" not in (results / "status.log").read_text()


def test_control_file_with_a_syntax_error(autoserv, results):
    run = autoserv(server_job(results, "job.run_test('x', command='true')\nif True print('no colon')\n"))
    assert_exit(run, 1, failed=1)
    (error,) = run.status()
    assert error.status == "ERROR" and re.fullmatch(r"syntax error in control file: .+ \(line 2\)", error.reason)


def test_control_file_that_raises(autoserv, results):
    run = autoserv(server_job(results, "x = 1\ny = x / 0\n"))
    assert_exit(run, 1, failed=1)
    (error,) = run.status()
    assert error.reason == "control file raised ZeroDivisionError: division by zero (control file line 2)"
    assert "ZeroDivisionError" in run.debug_log()


def test_missing_control_file(autoserv, results):
    command = server_job(results, "")
    command[len(command) - command[::-1].index("-n")] = str(results / "nowhere")  # not nice's -n
    run = autoserv(command)
    assert_exit(run, 1)
    assert run.status()[0].reason.startswith("cannot read control file")


EXITS = {
    "sys.exit()": ("sys.exit()", 0, None),
    "exit(0)": ("exit(0)", 0, None),
    "raise SystemExit": ("raise SystemExit", 0, None),
    "sys.exit(3)": ("sys.exit(3)", 1, "control file called sys.exit(3) (control file line 3)"),
    "sys.exit(message)": ("sys.exit('giving up')", 1,
                          "control file called sys.exit('giving up') (control file line 3)"),
    "KeyboardInterrupt": ("raise KeyboardInterrupt", 1, "control file raised KeyboardInterrupt (control file line 3)"),
}


@pytest.mark.parametrize("statement, code, error", EXITS.values(), ids=EXITS)
def test_control_file_that_exits(statement, code, error, autoserv, results):
    """sys.exit() ends the control file; the pidfile and the exit status say the same."""
    control = f"job.run_test('passes', command='true')\nimport sys\n{statement}\njob.run_test('never', command='true')"
    run = autoserv(server_job(results, control))
    assert_exit(run, code, failed=code)
    top = run.status()
    assert (top[0].operation, top[0].end) == ("passes", "GOOD")
    assert [(e.status, e.reason) for e in top[1:]] == ([("ERROR", error)] if error else [])


def test_sys_exit_0_after_a_failed_test_is_still_a_failure(autoserv, results):
    run = autoserv(server_job(results, "job.run_test('fails', command='false')\nimport sys\nsys.exit(0)\n"))
    assert_exit(run, 1, failed=1)
    assert [(e.operation, e.end) for e in run.status()] == [("fails", "FAIL")]


def test_a_file_named_debug_in_the_results_is_an_error_not_a_crash(autoserv, results):
    (results / "debug").write_text("not a directory\n")
    run = autoserv(server_job(results, "job.run_test('t', command='true')\n"))
    assert_exit(run, 1, failed=1)
    (error,) = run.status()
    assert error.status == "ERROR"
    assert error.reason.startswith(f"cannot write the debug log {results}/debug/autoserv.DEBUG: ")


# -- client control files ------------------------------------------------------------------------

CLIENTS = {
    "shell": ("#!/bin/sh\necho \"shell on $(hostname) args $*\"\n", "shell on "),
    "python": ("import sys\nprint('python', sys.version_info[0], 'args', sys.argv[1:])\n", "python 3 args"),
}


@BOTH
@pytest.mark.parametrize("flavour", ["shell", "python"])
def test_client_control_file(kind, flavour, autoserv, results, lab):
    host = lab(kind)
    text, expected = CLIENTS[flavour]
    run = autoserv(server_job(results, text, [host], kind=ControlType.CLIENT) + ["-a", "one two"])
    assert_exit(run, 0, failed=0)
    (test,) = run.status()
    assert (test.operation, test.subdir, test.end, test.fields["hostname"]) == ("client", host, "GOOD", host)
    stdout = (results / host / "stdout").read_text()
    assert expected in stdout and ("one" in stdout and "two" in stdout)


def test_client_control_file_kinds():
    assert client_command(CLIENTS["shell"][0]) == "chmod +x control && ./control"
    assert client_command(CLIENTS["python"][0]) == "python3 control"
    with pytest.raises(ControlFileError, match=r"syntax error in client control file control: .+ \(line 1\)"):
        client_command("echo plain shell; ls / > /dev/null\n")  # no #! line: Python, and not valid Python


def test_failing_client_control_file_on_two_hosts(autoserv, results, lab):
    machines = [lab("local", "local1"), lab("ssh")]
    run = autoserv(server_job(results, "#!/bin/sh\necho bad >&2; exit 4\n", machines, kind=ControlType.CLIENT))
    assert_exit(run, 1, failed=2)
    tests = run.status()
    assert sorted(t.subdir for t in tests) == ["127.0.0.1", "local1"]
    for test in tests:
        assert outcome(test) == ("FAIL", "client control file failed with exit status 4: bad")
        assert (results / test.subdir / "stderr").read_text() == "bad\n"


# -- host actions ---------------------------------------------------------------------------------


@BOTH
def test_verify(kind, autoserv, results, lab, tmp_path):
    (tmp_path / "ok").touch()
    host = lab(kind, labels=("board:x", "pool:a"), verify_command=f"test -f {tmp_path}/ok",
               **{"verify_label_board:x": "echo checking {label} {value} on {hostname}"})
    run = autoserv(action(host, TASK.VERIFY, results, labels=("pool:a",)))
    assert_exit(run, 0, failed=0)
    (verify,) = run.status()
    assert (verify.status, verify.subdir, verify.operation, verify.end) == ("START", "----", "verify", "GOOD")
    assert [(c.status, c.operation) for c in verify.children] == [
        ("GOOD", "verify.connect"), ("GOOD", "verify.command"), ("GOOD", "verify.label.board:x"),
    ]
    assert all(c.fields["hostname"] == host for c in verify.children)
    if kind == "local":
        assert verify.children[0].reason == "local: reachable"
    else:
        assert re.fullmatch(r"ssh \S+@127\.0\.0\.1:\d+: reachable", verify.children[0].reason)
    assert verify.children[2].reason == f"ran: echo checking board:x x on {host}"


@BOTH
def test_verify_fails(kind, autoserv, results, lab, tmp_path):
    host = lab(kind, verify_command=f"test -f {tmp_path}/missing")
    run = autoserv(action(host, TASK.VERIFY, results))
    assert_exit(run, 1, failed=1)
    (verify,) = run.status()
    assert verify.end == "FAIL"
    assert outcome(verify) == ("FAIL", f"'test -f {tmp_path}/missing' failed with exit status 1")


@BOTH
def test_verify_label_check_for_a_job_label_fails(kind, autoserv, results, lab):
    host = lab(kind, **{"verify_label_gpu:big": "echo no big gpu >&2; false"})
    run = autoserv(action(host, TASK.VERIFY, results, labels=("gpu:big",)))
    assert_exit(run, 1, failed=1)
    assert outcome(run.status()[0]) == ("FAIL", "'echo no big gpu >&2; false' failed with exit status 1: no big gpu")


@BOTH
@pytest.mark.parametrize("works", [True, False])
def test_cleanup(kind, works, autoserv, results, lab, tmp_path):
    marker = tmp_path / "cleaned"
    host = lab(kind, cleanup_command=f"touch {marker}" + ("" if works else "; exit 5"))
    run = autoserv(action(host, TASK.CLEANUP, results))
    assert_exit(run, 0 if works else 1)
    (cleanup,) = run.status()
    assert cleanup.operation == "cleanup" and cleanup.end == ("GOOD" if works else "FAIL")
    assert cleanup.children[0].operation == "cleanup.command" and marker.exists()


def test_cleanup_default_is_true(autoserv, results, lab):
    run = autoserv(action(lab("local"), TASK.CLEANUP, results))
    assert_exit(run, 0)
    assert run.status()[0].children[0].reason == "ran: true"


@BOTH
@pytest.mark.parametrize("works", [True, False])
def test_reset_is_cleanup_then_verify(kind, works, autoserv, results, lab, tmp_path):
    host = lab(kind, cleanup_command=f"touch {tmp_path}/cleaned",
               verify_command=f"test -f {tmp_path}/cleaned" if works else "false")
    run = autoserv(action(host, TASK.RESET, results))
    assert_exit(run, 0 if works else 1, failed=0 if works else 1)
    (reset,) = run.status()
    assert reset.operation == "reset" and reset.end == ("GOOD" if works else "FAIL")
    cleanup, verify = reset.children
    assert (cleanup.operation, cleanup.end, verify.operation) == ("cleanup", "GOOD", "verify")
    assert verify.end == ("GOOD" if works else "FAIL")


@BOTH
def test_repair_fixes_the_host(kind, autoserv, results, lab, tmp_path):
    flag = tmp_path / "fixed"
    host = lab(kind, verify_command=f"test -f {flag}", repair_command=f"touch {flag}")
    run = autoserv(action(host, TASK.REPAIR, results))
    assert_exit(run, 0, failed=0)
    (repair,) = run.status()
    assert repair.operation == "repair" and repair.end == "GOOD"
    assert [(c.operation, c.end or c.status) for c in repair.children] == [
        ("verify", "FAIL"), ("repair.command", "GOOD"), ("verify", "GOOD"),
    ]


@BOTH
def test_repair_that_does_not_help_fails(kind, autoserv, results, lab):
    host = lab(kind, verify_command="false", repair_command="true")
    run = autoserv(action(host, TASK.REPAIR, results))
    assert_exit(run, 1, failed=1)
    assert outcome(run.status()[0]) == ("FAIL", "repair did not make the host pass verify")


def test_repair_of_a_healthy_host_does_nothing(autoserv, results, lab, tmp_path):
    host = lab("local", repair_command=f"touch {tmp_path}/repaired")
    run = autoserv(action(host, TASK.REPAIR, results))
    assert_exit(run, 0)
    assert outcome(run.status()[0]) == ("GOOD", "host verified: nothing to repair")
    assert not (tmp_path / "repaired").exists()


def test_repair_without_a_method_fails(autoserv, results, lab):
    run = autoserv(action(lab("local", verify_command="false"), TASK.REPAIR, results))
    assert_exit(run, 1)
    assert "set the host attribute repair_command or power_cycle_command" in outcome(run.status()[0])[1]


@pytest.mark.parametrize("protection, repaired, power_cycled, ok", [
    (Protection.NO_PROTECTION, True, True, True),
    (Protection.REPAIR_SOFTWARE_ONLY, True, False, False),
    (Protection.REPAIR_FILESYSTEM_ONLY, True, False, False),
    (Protection.DO_NOT_REPAIR, False, False, False),
    (Protection.DO_NOT_VERIFY, False, False, True),
])
def test_repair_honours_host_protection(protection, repaired, power_cycled, ok, autoserv, results, lab, tmp_path):
    """The software repair does not fix the host; only the power cycle (run on the drone) does."""
    host = lab("local", verify_command=f"test -f {tmp_path}/power_cycled",
               repair_command=f"touch {tmp_path}/repaired",
               power_cycle_command=f"echo {{hostname}} > {tmp_path}/power_cycled")
    run = autoserv(action(host, TASK.REPAIR, results, protection=protection))
    assert_exit(run, 0 if ok else 1)
    assert (tmp_path / "repaired").exists() == repaired
    assert (tmp_path / "power_cycled").exists() == power_cycled
    (repair,) = run.status()
    assert repair.end == ("GOOD" if ok else "FAIL")
    if power_cycled:
        assert (tmp_path / "power_cycled").read_text() == "local1\n"
        assert [c.operation for c in repair.children] == [
            "verify", "repair.command", "verify", "repair.power_cycle", "repair.wait_up", "verify"]
    if protection == Protection.DO_NOT_REPAIR:
        assert "DO_NOT_REPAIR" in outcome(repair)[1]
    if protection == Protection.DO_NOT_VERIFY:
        assert [c.status for c in repair.children] == ["TEST_NA"]


def test_repair_uses_the_hosts_own_protection_without_the_flag(autoserv, results, lab, tmp_path):
    host = lab("local", verify_command="false", repair_command=f"touch {tmp_path}/repaired")
    Host.objects.filter(hostname=host).update(protection=Protection.DO_NOT_REPAIR)
    command = action(host, TASK.REPAIR, results)
    at = command.index("--host-protection")
    run = autoserv(command[:at] + command[at + 2:])
    assert_exit(run, 1)
    assert not (tmp_path / "repaired").exists()


def test_a_power_cycle_forbidden_by_protection_is_noted_not_marked_test_na(autoserv, results, lab, tmp_path):
    """TKO ranks TEST_NA worst: a TEST_NA line would show the failed repair as TEST_NA."""
    host = lab("local", verify_command="false", repair_command="true",
               power_cycle_command=f"touch {tmp_path}/cycled")
    run = autoserv(action(host, TASK.REPAIR, results, protection=Protection.REPAIR_SOFTWARE_ONLY))
    assert_exit(run, 1, failed=1)
    (repair,) = run.status()
    skipped = repair.find("repair.power_cycle")
    assert (skipped.status, skipped.reason) == ("INFO", "skipped: not allowed by host protection REPAIR_SOFTWARE_ONLY")
    assert outcome(repair) == ("FAIL", "repair did not make the host pass verify")
    assert "TEST_NA" not in (results / "status.log").read_text() and not (tmp_path / "cycled").exists()


@BOTH
def test_provision_fills_the_template(kind, autoserv, results, lab, tmp_path):
    host = lab(kind, provision_command=f"echo installing {{value}} for {{prefix}} on {{hostname}} >> {tmp_path}/log",
               **{"provision_command_fw-version": f"echo firmware {{value}} >> {tmp_path}/log"})
    run = autoserv(action(host, TASK.PROVISION, results, labels=("cros-version:R100-1234", "fw-version:9")))
    assert_exit(run, 0, failed=0)
    (provision,) = run.status()
    assert provision.operation == "provision" and provision.end == "GOOD"
    assert sorted(c.operation for c in provision.children) == [
        "provision.cros-version:R100-1234", "provision.fw-version:9"]
    lines = sorted((tmp_path / "log").read_text().splitlines())
    assert lines == ["firmware 9", f"installing R100-1234 for cros-version on {host}"]


@BOTH
def test_provision_command_failure(kind, autoserv, results, lab):
    host = lab(kind, provision_command="echo no such build {value} >&2; exit 2")
    run = autoserv(action(host, TASK.PROVISION, results, labels=("cros-version:R1-1",)))
    assert_exit(run, 1, failed=1)
    assert outcome(run.status()[0]) == (
        "FAIL", "'echo no such build R1-1 >&2; exit 2' failed with exit status 2: no such build R1-1")


def test_provision_without_a_command_fails(autoserv, results, lab):
    run = autoserv(action(lab("local"), TASK.PROVISION, results, labels=("cros-version:R1-1",)))
    assert_exit(run, 1)
    assert "no provision command for cros-version" in outcome(run.status()[0])[1]


def test_provision_template_helpers():
    assert split_label("cros-version:R100-1234") == ("cros-version", "R100-1234")
    assert fill("echo installing {value} ${HOME} {other}", value="R1") == "echo installing R1 ${HOME} {other}"


@BOTH
def test_a_label_value_cannot_inject_a_shell_command(kind, autoserv, results, lab, tmp_path):
    """The value is one word wherever the template puts it: bare, in '...' or in "..."."""
    pwned = tmp_path / "pwned"
    label = f"cros-version:R1;touch {pwned} $(touch {pwned}) `touch {pwned}` 'q' \"d\""
    host = lab(kind, provision_command=f"echo {{value}} '{{value}}' \"v={{value}}\" >> {tmp_path}/log")
    run = autoserv(action(host, TASK.PROVISION, results, labels=(label,)))
    assert_exit(run, 0, failed=0)
    assert not pwned.exists()
    value = split_label(label)[1]
    assert (tmp_path / "log").read_text() == f"{value} {value} v={value}\n"


def test_a_host_label_cannot_inject_into_its_verify_check(autoserv, results, lab):
    label = "b:$(false)x"
    host = lab("local", labels=(label,),
               **{f"verify_label_{label}": "test {value} = '$(false)x' && test {label} = {prefix}:{value}"})
    run = autoserv(action(host, TASK.VERIFY, results))
    assert_exit(run, 0, failed=0)


@pytest.mark.parametrize("template, expected", [
    ("printf %s {value}", "{v}"), ("printf %s '{value}'", "{v}"), ('printf %s "v={value}!"', "v={v}!"),
    ("printf %s {value}x", "{v}x"), ("printf %s \"\\\"{value}\"", '"{v}'),
])
def test_fill_makes_a_value_one_literal_shell_word(template, expected):
    value = "R1;echo injected $(echo sub) `echo tick` 'q' \"d\" \\ $HOME *"
    result = subprocess.run(["sh", "-c", fill(template, value=value)], capture_output=True, text=True, timeout=10)
    assert result.stdout == expected.replace("{v}", value)


# -- hosts that cannot be used ---------------------------------------------------------------------


def test_unreachable_host(autoserv, results, lab):
    host = lab("ssh", ssh_port=str(free_port()))
    started = time.monotonic()
    run = autoserv(action(host, TASK.VERIFY, results))
    assert time.monotonic() - started < 15
    assert_exit(run, 1, failed=1)
    code, reason = outcome(run.status()[0])
    assert code == "FAIL" and "cannot connect" in reason and "Connection refused" in reason


def test_host_not_in_the_database_uses_the_name(autoserv, results):
    port = free_port()
    run = autoserv(action(f"127.0.0.1:{port}", TASK.VERIFY, results))
    assert_exit(run, 1)
    assert f":{port}: cannot connect" in outcome(run.status()[0])[1]


def test_refused_authentication(autoserv, results, lab, sshd):
    host = lab("ssh", ssh_key=str(sshd.wrong_key))
    run = autoserv(action(host, TASK.VERIFY, results))
    assert_exit(run, 1)
    assert "authentication refused" in outcome(run.status()[0])[1]


def test_missing_key_file(autoserv, results, lab, tmp_path):
    run = autoserv(action(lab("ssh", ssh_key=str(tmp_path / "no_key")), TASK.VERIFY, results))
    assert_exit(run, 1)
    assert "does not exist" in outcome(run.status()[0])[1]


@BOTH
def test_command_timeout_kills_the_command(kind, autoserv, results, lab):
    host = lab(kind, command_timeout="1")
    marker = f"sleep 7.{os.getpid()}{'1' if kind == 'ssh' else '2'}"
    started = time.monotonic()
    run = autoserv(server_job(results, f"job.run_test('slow', host=machines[0], command='echo started; {marker}')",
                              [host]))
    assert time.monotonic() - started < 6
    assert_exit(run, 1, failed=1)
    code, reason = outcome(run.status()[0])
    assert code == "ERROR" and reason == f"command timed out after 1s: echo started; {marker}"
    assert (results / "slow" / "stdout").read_text() == "started\n"
    time.sleep(0.5)
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.returncode == 1, f"{marker} still running: {leftover.stdout}"


def test_host_action_command_timeout(autoserv, results, lab):
    host = lab("local", command_timeout="1", cleanup_command="sleep 5")
    run = autoserv(action(host, TASK.CLEANUP, results))
    assert_exit(run, 1)
    assert outcome(run.status()[0]) == ("FAIL", "command timed out after 1s: sleep 5")


def test_reboot(autoserv, results, lab):
    control = """
local = hosts.create_host("local1")
job.run_test("local_reboot", function=lambda: local.reboot())
remote = hosts.create_host("127.0.0.1")
assert remote.wait_up(5)
job.run_test("ssh_reboot", function=lambda: remote.reboot(timeout=1))
"""
    lab("local", "local1")
    lab("ssh", reboot_command="true")
    run = autoserv(server_job(results, control))
    local, remote = run.status()
    assert local.end == "GOOD" and "a local host is not rebooted" in run.debug_log()
    assert outcome(remote) == ("ERROR", "127.0.0.1 did not come back from a reboot within 1s")


def test_run_test_on_a_host_by_name_reuses_one_ssh_connection(autoserv, results, lab):
    control = """
for i in range(60):
    job.run_test("t%d" % i, host=machines[0], command="true")
assert hosts.create_host(machines[0]) is hosts.create_host(machines[0])
"""
    run = autoserv(server_job(results, control, [lab("ssh")]))
    assert_exit(run, 0, failed=0)
    assert len(run.status()) == 60
    assert run.debug_log().count(": connecting (key") == 1


# -- crash info ----------------------------------------------------------------------------------


def test_collect_crashinfo(autoserv, results, lab):
    local = lab("local")
    closed = lab("ssh", "127.0.0.1", ssh_port=str(free_port()))
    run = autoserv(crashinfo_command(AUTOSERV, str(results), [local, closed]))
    assert_exit(run, 0, failed=0, name=".collect_crashinfo_execute")
    assert not (results / ".autoserv_execute").exists()
    crashinfo = results / local / "crashinfo"
    assert "load average" in (crashinfo / "uptime.txt").read_text()
    assert (crashinfo / "dmesg.txt").exists()
    assert "Connection refused" in (results / "127.0.0.1" / "crashinfo" / "unreachable.txt").read_text()


# -- abort -------------------------------------------------------------------------------------------


@BOTH
def test_sigterm_records_abort(kind, env, results, lab, tmp_path):
    host = lab(kind)
    command = server_job(results, "job.run_test('quick', command='true')\n"
                                  f"job.run_test('forever', host=machines[0], command='sleep 60.{os.getpid()}')\n",
                         [host])
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status_log = results / "status.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if status_log.exists() and "START\tforever" in status_log.read_text():
            break
        time.sleep(0.05)
    time.sleep(0.3)
    # nice execs autoserv, so the pid is autoserv's.
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "Traceback" not in stderr
    lines = (results / ".autoserv_execute").read_text().splitlines()
    assert lines == [str(proc.pid), str((1 << 8) | signal.SIGTERM), "1"]
    quick, forever = parse_status_log(results)
    assert quick.end == "GOOD"
    assert outcome(forever) == ("ABORT", "autoserv received SIGTERM")
    leftover = subprocess.run(["pgrep", "-f", f"sleep 60.{os.getpid()}"], capture_output=True)
    assert leftover.returncode == 1


def test_sigterm_during_nested_workers_closes_every_group_in_place(env, results, lab, tmp_path):
    machines = [lab("local", "local1"), lab("local", "local2")]
    control = f"""
def part(name):
    marker = "{tmp_path}/%s.started" % job.test_subdir(name).replace("/", "_")
    job.run_test("forever", command="touch %s; sleep 60.{os.getpid()}7" % marker)
def per_machine(machine):
    job.run_test("quick", host=machine, command="true")
    job.run_test("parts", function=lambda: parallel_simple(part, ["a", "b"]))
parallel_simple(per_machine, machines)
"""
    proc = start_autoserv(server_job(results, control, machines), env)
    wait_for(lambda: len(list(tmp_path.glob("*.started"))) == 4)
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Traceback" not in stderr
    top = parse_status_log(results)
    for machine in machines:
        quick, parts = (e for e in top if e.subdir.startswith(f"{machine}/") and e.status == "START")
        assert (quick.end, parts.end) == ("GOOD", "ABORT")
        inner = [c for c in parts.children if c.status == "START"]
        assert sorted((c.subdir, c.end) for c in inner) == [
            (f"{machine}/a/forever", "ABORT"), (f"{machine}/b/forever", "ABORT")]
        _, own_parts = parse_status_log(results / machine)  # complete: every group closed there too
        assert own_parts.end == "ABORT"


def test_sigkill_keeps_what_parallel_workers_recorded(env, results, lab, tmp_path):
    """The scheduler aborts with SIGKILL: finished groups are in status.log, running ones in each worker's log."""
    machines = [lab("local", "local1"), lab("local", "local2")]
    control = f"""
def per_machine(machine):
    job.run_test("quick", host=machine, command="true")
    job.run_test("forever", host=machine, command="touch {tmp_path}/%s.started; sleep 60.{os.getpid()}4" % machine)
parallel_simple(per_machine, machines)
"""
    proc = start_autoserv(server_job(results, control, machines), env)
    wait_for(lambda: all((tmp_path / f"{m}.started").exists() for m in machines))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=20)
    top = parse_status_log(results)
    assert sorted((e.subdir, e.end) for e in top) == [("local1/quick", "GOOD"), ("local2/quick", "GOOD")]
    for machine in machines:
        quick, forever = parse_status_log(results / machine, complete=False)
        assert (quick.subdir, quick.end) == (f"{machine}/quick", "GOOD")
        assert (forever.subdir, forever.end, forever.fields["hostname"]) == (f"{machine}/forever", None, machine)


def test_sigkill_during_a_client_job_on_two_hosts_leaves_each_hosts_log(env, results, lab, tmp_path):
    machines = [lab("local", "local1"), lab("local", "local2")]
    control = (f"#!/bin/sh\npwd > {tmp_path}/$$.new && mv {tmp_path}/$$.new {tmp_path}/$$.started\n"
               f"exec sleep 60.{os.getpid()}5\n")
    proc = start_autoserv(server_job(results, control, machines, kind=ControlType.CLIENT), env)
    wait_for(lambda: len(list(tmp_path.glob("*.started"))) == 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=20)
    for started in tmp_path.glob("*.started"):  # nothing can clean up after SIGKILL
        subprocess.run(["rm", "-rf", started.read_text().strip()], check=True)
    assert parse_status_log(results) == []
    for machine in machines:
        (client,) = parse_status_log(results / machine, complete=False)
        assert (client.operation, client.subdir, client.end, client.fields["hostname"]) == (
            "client", machine, None, machine)


@BOTH
def test_client_temp_dir_is_removed_after_sigterm(kind, env, results, lab, tmp_path):
    where = tmp_path / "where"
    control = f"#!/bin/sh\npwd > {where}.new && mv {where}.new {where}\nexec sleep 60.{os.getpid()}6\n"
    proc = subprocess.Popen(server_job(results, control, [lab(kind)], kind=ControlType.CLIENT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(where.exists)
    tmpdir = Path(where.read_text().strip())
    assert tmpdir.name.startswith("autoserv.") and tmpdir.is_dir()
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Traceback" not in stderr
    (client,) = parse_status_log(results)
    assert outcome(client) == ("ABORT", "autoserv received SIGTERM")
    assert not tmpdir.exists()


# -- host information -----------------------------------------------------------------------------


def test_host_info_from_the_database_and_settings(db, settings, make_host):
    settings.AUTOSERV_SSH_USER = "lab"
    settings.AUTOSERV_SSH_PORT = 2222
    settings.AUTOSERV_SSH_KEY = "/keys/lab"
    config = AutoservConfig.from_settings()
    assert (config.ssh_user, config.ssh_port, config.ssh_key, config.connect_timeout) == ("lab", 2222, "/keys/lab", 10)

    unknown = load_host_info("dut9")
    assert not unknown.in_database and not unknown.is_local
    assert (unknown.ssh_user(config), unknown.ssh_port(config), unknown.ssh_key(config)) == ("lab", 2222, "/keys/lab")

    host = make_host("dut1", ["board:x"], protection=Protection.REPAIR_SOFTWARE_ONLY)
    host.set_attribute("ssh_port", "2200")
    host.set_attribute("ssh_user", "admin")
    info = load_host_info("dut1")
    assert info.in_database and info.labels == ("board:x",) and info.protection == "REPAIR_SOFTWARE_ONLY"
    assert (info.ssh_user(config), info.ssh_port(config), info.ssh_key(config)) == ("admin", 2200, "/keys/lab")

    named = load_host_info("root@dut1:23")
    assert named.in_database and named.hostname == "dut1"
    assert (named.ssh_user(config), named.ssh_port(config)) == ("root", 23)

    settings.AUTOSERV_SSH_PORT = "lots"
    with pytest.raises(AutoservError, match="AUTOSERV_SSH_PORT='lots' is not a number"):
        AutoservConfig.from_settings()


def test_parse_machine():
    machine = parse_machine("u@h1:2")
    assert (machine.user, machine.hostname, machine.port) == ("u", "h1", 2)
    assert parse_machine("h1:x").hostname == "h1:x"  # not a port: the whole name is the hostname
    assert parse_machine("[::1]:22").hostname == "::1"


def test_bin_autoserv_runs_without_the_project_on_the_path(results, tmp_path):
    """The wrapper sets PYTHONPATH itself (a usage error needs no database)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    proc = subprocess.run([AUTOSERV, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--host-protection" in proc.stdout
