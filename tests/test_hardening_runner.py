"""Hardening of the job runner (bin/autoserv) and the parser that reads what it leaves.

Scenarios, most of them a real ``bin/autoserv`` in a subprocess (the helpers
of ``tests/test_autoserv.py``):

1. A client control file is a script if its first line starts with ``#!``,
   and Python otherwise: never guessed to be shell.
2. Every results path built from data (test names, machine names, crash
   info, the parser's inputs) goes through ``afe.paths.inside``; a refusal
   fails that one test or host with the reason and writes nothing outside.
3. A TKO job tag longer than its column keeps its beginning and ends in a
   digest of the whole tag, so it stays unique.
4. autoserv's start-up database reads retry a database that is down for
   ``AUTOSERV_DB_RETRY_SECONDS``, then fail the job with a clear reason.
5. Bad settings stop ``bin/autoserv -p`` with the one ``settings: ...`` line
   and a finished pidfile, never a pid-only one.
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError, connection

from afe.models import ControlType, TkoJob
from drones.autoserv import hostinfo
from drones.autoserv.errors import HostInfoError
from drones.parse import load_results
from drones.parse.writer import fit_tag, write_job
from scheduler.commands import crashinfo_command
from settings import environment

from .sshd import free_port
from .test_autoserv import (  # noqa: F401 - fixtures are found by name
    AUTOSERV,
    BOTH,
    TASK,
    Run,
    action,
    assert_exit,
    autoserv,
    env,
    lab,
    outcome,
    parse_status_log,
    results,
    server_job,
    sshd,
    sshd_if_needed,
)

# -- 1. client control files: #! is a script, everything else is Python ---------------------------


def client_job(results: Path, text: str, hosts: list[str]) -> list[str]:
    """The scheduler's command line for a client job with control file ``text``."""
    return server_job(results, text, hosts, kind=ControlType.CLIENT)


@BOTH
def test_a_client_script_with_a_shebang_runs_by_its_interpreter(kind, autoserv, results, lab):
    host = lab(kind)
    run = autoserv(client_job(results, "#!/bin/sh\necho \"sh says $1\"\n", [host]) + ["-a", "hi"])
    assert_exit(run, 0, failed=0)
    (client,) = run.status()
    assert outcome(client)[0] == "GOOD"
    assert (results / host / "stdout").read_text() == "sh says hi\n"


def test_a_shell_script_without_a_shebang_is_a_python_syntax_error_and_no_host_is_touched(autoserv, results, lab):
    host = lab("local")
    run = autoserv(client_job(results, "echo hello; ls /\n", [host]))
    assert_exit(run, 1, failed=1)
    (error,) = run.status()
    control = results.parent / "control"
    assert error.status == "ERROR"
    assert error.reason.startswith(f"syntax error in client control file {control}: ")
    assert "(line 1); a client control file is Python unless its first line starts with #!" in error.reason
    assert not (results / host).exists()  # never run, by sh or anything else


def test_a_python_client_control_file_with_a_syntax_error_names_the_file_and_line(autoserv, results, lab):
    run = autoserv(client_job(results, "import sys\nprint('ok')\nif True print('no colon')\n", [lab("local")]))
    assert_exit(run, 1, failed=1)
    (error,) = run.status()
    assert f"client control file {results.parent / 'control'}: " in error.reason and "(line 3)" in error.reason


@BOTH
def test_a_one_word_shell_command_without_a_shebang_runs_as_python(kind, autoserv, results, lab):
    """``true`` is valid Python (a bare name): it runs under python3 and fails there, not in sh."""
    host = lab(kind)
    run = autoserv(client_job(results, "true\n", [host]))
    assert_exit(run, 1, failed=1)
    (client,) = run.status()
    end, reason = outcome(client)
    assert end == "FAIL" and reason.startswith("client control file failed with exit status 1")
    assert "NameError: name 'true' is not defined" in (results / host / "stderr").read_text()


# -- 2. paths built from data stay inside the results ------------------------------------------------


def test_a_test_name_too_long_for_a_directory_fails_that_test_only(autoserv, results):
    control = "job.run_test('x' * 300, command='echo never')\njob.run_test('short', command='true')\n"
    run = autoserv(server_job(results, control))
    assert_exit(run, 1, failed=1)
    long, short = run.status()
    end, reason = outcome(long)
    assert end == "ERROR" and reason.startswith("results path refused: ") and "longer than 255 bytes" in reason
    assert outcome(short)[0] == "GOOD"


def test_a_planted_symlink_for_a_tests_output_is_refused_and_its_target_untouched(autoserv, results, tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (results / "t").mkdir()
    (results / "t" / "stdout").symlink_to(target)
    run = autoserv(server_job(results, "job.run_test('t', command='echo overwritten')\n"))
    assert_exit(run, 1, failed=1)
    (test,) = run.status()
    end, reason = outcome(test)
    assert end == "ERROR" and reason.startswith("results path refused: ") and "outside" in reason
    assert target.read_text() == "keep me\n"


def test_a_host_directory_that_is_a_symlink_out_fails_that_hosts_client_test(autoserv, results, lab, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bad, good = lab("local", "local1"), lab("local", "local2")
    (results / bad).symlink_to(elsewhere)
    run = autoserv(client_job(results, "#!/bin/sh\necho ran\n", [bad, good]))
    assert_exit(run, 1, failed=1)
    by_host = {t.subdir: outcome(t) for t in run.status()}
    assert by_host[good] == ("GOOD", by_host[good][1])
    assert by_host[bad][0] == "ERROR" and by_host[bad][1].startswith(f"results path refused: '{bad}' resolves to")
    assert list(elsewhere.iterdir()) == []  # no stdout, no per-host status.log
    assert (results / good / "status.log").exists()


def test_a_machine_name_too_long_for_a_directory_fails_only_its_worker(autoserv, results):
    control = """
def per_machine(machine):
    job.run_test('t', function=lambda: None)

parallel_simple(per_machine, ['m' * 300, 'fine'])
"""
    run = autoserv(server_job(results, control))
    assert_exit(run, 1, failed=1)
    by_subdir = {t.subdir: outcome(t) for t in run.status()}
    assert by_subdir["fine/t"][0] == "GOOD"
    end, reason = by_subdir["m" * 300 + "/t"]
    assert end == "ERROR" and "longer than 255 bytes" in reason
    assert [p.name for p in results.iterdir() if p.name.startswith("m")] == []


def test_crash_info_is_not_written_through_a_symlinked_host_directory(autoserv, results, lab, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bad, good = lab("local", "local1"), lab("local", "local2")
    (results / bad).symlink_to(elsewhere)
    run = autoserv(crashinfo_command(AUTOSERV, str(results), [bad, good]))
    assert_exit(run, 1, failed=0, name=".collect_crashinfo_execute")
    assert list(elsewhere.iterdir()) == []
    assert "load average" in (results / good / "crashinfo" / "uptime.txt").read_text()
    assert f"crashinfo of {bad} not collected: results path refused" in run.debug_log()


def test_the_parser_does_not_read_host_keyvals_or_machine_logs_that_lead_out(tmp_path):
    outside = tmp_path / "outside"
    (outside / "local1").mkdir(parents=True)
    (outside / "platform").write_text("platform=stolen\n")
    (outside / "local1" / "status.log").write_text("GOOD\t----\tsecret\ttimestamp=1700000000\t\n")
    job = tmp_path / "results" / "5-alice" / "group0"
    (job / "host_keyvals").mkdir(parents=True)
    (job / "host_keyvals" / "local1").symlink_to(outside / "platform")
    (job / "host_keyvals" / "local2").write_text("platform=board-2\n")
    (job / "keyval").write_text("hostname=local1,local2\n")
    (job / "local1").symlink_to(outside / "local1")  # no main status.log: the per-machine logs are read

    parsed = load_results(job, level=2)

    assert {m.hostname: m.group for m in parsed.machines} == {"local1": "", "local2": "board-2"}
    assert not any(t.result.testname == "secret" for t in parsed.tests)
    problems = [str(p) for p in parsed.problems]
    assert "host_keyvals/local1: outside the results (afe.paths.inside refused it); not read" in problems
    assert "local1/status.log: outside the results (afe.paths.inside refused it); not read" in problems


# -- 3. TKO job tags that are too long stay unique ------------------------------------------------------


def results_dir_for(root: Path, tag: str) -> Path:
    """A minimal finished job's results directory named ``tag`` (``<id>-<owner>/<subdir>``)."""
    path = root / tag
    path.mkdir(parents=True)
    (path / "keyval").write_text("user=alice\nlabel=long\n")
    (path / "status.log").write_text("GOOD\t----\tt\ttimestamp=1700000000\t\n")
    (path / ".autoserv_execute").write_text("42\n0\n0\n")
    return path


@pytest.mark.django_db
def test_tags_longer_than_the_column_keep_their_start_and_end_in_a_digest(tmp_path):
    limit = TkoJob._meta.get_field("tag").max_length
    stem = "123-alice/" + "h" * (limit + 20)
    first, second = results_dir_for(tmp_path, stem + "1"), results_dir_for(tmp_path, stem + "2")

    written = [write_job(load_results(path, level=2)) for path in (first, second)]
    again = write_job(load_results(first, level=2))  # a reparse finds its row again

    tags = {f"{stem}{n}": TkoJob.objects.get(pk=w.job_idx).tag for n, w in zip("12", written, strict=True)}
    for full, tag in tags.items():
        assert len(tag) == limit
        assert tag == f"{full[:limit - 13]}~{hashlib.sha1(full.encode()).hexdigest()[:12]}"
    assert len(set(tags.values())) == 2 and TkoJob.objects.count() == 2
    assert again.replaced and again.job_idx == written[0].job_idx
    assert TkoJob.objects.filter(tag__startswith="123-").count() == 2  # job_tag__startswith still works


def test_a_tag_that_fits_is_kept_as_it_is():
    limit = TkoJob._meta.get_field("tag").max_length
    exact = "9-bob/" + "x" * (limit - 6)
    assert fit_tag(exact) == exact and fit_tag("9-bob/host1") == "9-bob/host1"
    assert fit_tag(exact + "y") != fit_tag(exact + "z")


# -- 4. start-up database reads retry a database that is down ---------------------------------------


class TcpForwarder:
    """Listens on ``port`` (once started) and forwards every connection to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None

    def start(self) -> None:
        """Start accepting (until ``stop``)."""
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class Outage:
    """The test database behind an address that is down until ``restore()``.

    SQLite: the URL names a symlink to a directory (cannot be opened), later
    swapped atomically for a symlink to the database file. MySQL: the URL
    names a port nothing listens on, until a forwarder to the server starts.
    """

    url: str
    restore_steps: list[Callable[[], None]] = field(default_factory=list)

    def restore(self) -> None:
        for step in self.restore_steps:
            step()


@pytest.fixture
def outage(env, tmp_path) -> Iterator[Outage]:
    real = env["DATABASE_URL"]
    if real.startswith("sqlite:"):
        database = Path(connection.settings_dict["NAME"])
        (tmp_path / "down").mkdir()
        (tmp_path / "not-a-database").mkdir()
        link = tmp_path / "down" / database.name
        link.symlink_to(tmp_path / "not-a-database")

        def swap() -> None:
            staged = link.with_name("staged")
            staged.symlink_to(database)
            os.replace(staged, link)

        yield Outage(f"sqlite:///{link}", [swap])
        return
    parts = urlsplit(real)
    forwarder = TcpForwarder((parts.hostname or "127.0.0.1", parts.port or 3306))
    netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    yield Outage(parts._replace(netloc=f"{netloc}127.0.0.1:{forwarder.port}").geturl(), [forwarder.start])
    forwarder.stop()


def run_with(command: list[str], env: dict[str, str], results: Path, timeout: float = 60) -> Run:
    """Run autoserv to the end with ``env``."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=timeout)
    assert "Traceback" not in stderr, stderr
    return Run(proc.returncode, proc.pid, stdout, stderr, results)


def test_a_database_that_stays_down_fails_the_job_after_the_retry_window(env, lab, outage, results):
    host = lab("local")
    env = {**env, "DATABASE_URL": outage.url, "AUTOSERV_DB_RETRY_SECONDS": "2"}
    began = time.monotonic()
    run = run_with(server_job(results, f"job.run_test('t', host={host!r}, command='true')\n", [host]), env, results)
    assert time.monotonic() - began >= 2
    assert_exit(run, 1, failed=1)
    (test,) = run.status()
    end, reason = outcome(test)
    assert end == "ERROR"
    assert reason.startswith(f"cannot read host {host} from the AFE database: gave up after ")
    assert "tries in 2s (AUTOSERV_DB_RETRY_SECONDS): OperationalError: " in reason
    tries = int(reason.split("gave up after ", 1)[1].split(" ", 1)[0])
    assert 3 <= tries <= 8  # about 0.5 s apart
    assert run.debug_log().count("trying again") == tries - 1


def test_a_verify_against_a_database_that_stays_down_fails_with_the_reason(env, lab, outage, results):
    host = lab("local")
    env = {**env, "DATABASE_URL": outage.url, "AUTOSERV_DB_RETRY_SECONDS": "0.6"}
    run = run_with(action(host, TASK.VERIFY, results), env, results)
    assert_exit(run, 1, failed=1)
    (verify,) = run.status()
    assert outcome(verify)[0] == "FAIL" and "gave up after" in outcome(verify)[1]


def test_a_database_that_comes_back_within_the_window_lets_the_job_run(env, lab, outage, results):
    host = lab("local")
    env = {**env, "DATABASE_URL": outage.url, "AUTOSERV_DB_RETRY_SECONDS": "30"}
    command = server_job(results, f"job.run_test('t', host={host!r}, command='true')\n", [host])
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    debug = results / "debug" / "autoserv.DEBUG"
    deadline = time.monotonic() + 20
    while not (debug.exists() and debug.read_text().count("trying again") >= 2):
        assert time.monotonic() < deadline and proc.poll() is None, "autoserv never retried"
        time.sleep(0.05)
    outage.restore()
    stdout, stderr = proc.communicate(timeout=60)
    run = Run(proc.returncode, proc.pid, stdout, stderr, results)
    assert_exit(run, 0, failed=0)
    (test,) = run.status()
    assert outcome(test)[0] == "GOOD" and test.fields["hostname"] == host


@pytest.mark.django_db(transaction=True)
def test_each_retry_closes_the_connection_and_pauses(monkeypatch):
    events: list[str] = []
    failures = [OperationalError("server has gone away"), InterfaceError("connection already closed")]

    def read() -> str:
        events.append("read")
        if failures:
            raise failures.pop(0)
        return "host info"

    monkeypatch.setattr(connection, "close", lambda: events.append("close"))
    monkeypatch.setattr(hostinfo.time, "sleep", lambda seconds: events.append(f"sleep {seconds}"))
    assert hostinfo.read_with_retry(read, "host h1", retry_seconds=30) == "host info"
    assert events == ["read", "close", "sleep 0.5", "read", "close", "sleep 0.5", "read"]


@pytest.mark.django_db(transaction=True)
def test_only_unreachable_database_errors_are_retried(monkeypatch):
    monkeypatch.setattr(hostinfo.time, "sleep", lambda seconds: pytest.fail("slept"))

    def broken_query() -> None:
        raise ProgrammingError("no such column")

    with pytest.raises(ProgrammingError):
        hostinfo.read_with_retry(broken_query, "host h1", retry_seconds=30)

    def unreachable() -> None:
        raise OperationalError("can't connect")

    with pytest.raises(HostInfoError, match=r"^cannot read host h1 from the AFE database: gave up after 1 tries in 0s"):
        hostinfo.read_with_retry(unreachable, "host h1", retry_seconds=0)


# -- 5. bad settings: the one settings line and a finished pidfile --------------------------------


BAD_SETTING = "settings: SCHEDULER_TICK_SECONDS must be a number between 0.01 and 3600, not '0'"


@pytest.mark.parametrize("what", ["job", "verify", "crashinfo"])
def test_bad_settings_finish_the_pidfile_with_exit_status_1(what, results, tmp_path):
    database = tmp_path / "never" / "db.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in environment.NAMES}
    env.update(DJANGO_SETTINGS_MODULE="settings", ENV_FILE="", SCHEDULER_TICK_SECONDS="0",
               DATABASE_URL=f"sqlite:///{database}")
    command, pidfile = {
        "job": (server_job(results, "job.run_test('t', command='true')\n", ["local1"]), ".autoserv_execute"),
        "verify": (action("local1", TASK.VERIFY, results), ".autoserv_execute"),
        "crashinfo": (crashinfo_command(AUTOSERV, str(results), ["local1"]), ".collect_crashinfo_execute"),
    }[what]
    run = run_with(command, env, results)
    assert (run.returncode, run.stdout, run.stderr) == (1, "", BAD_SETTING + "\n")
    assert run.pidfile(pidfile) == [str(run.pid), str(1 << 8), "1"]  # finished: the scheduler sees exit 1
    (error,) = parse_status_log(results)
    assert (error.status, error.reason) == ("ERROR", BAD_SETTING)
    assert not database.exists()
