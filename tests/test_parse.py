"""The results parser (drones.parse, bin/parse) and the TKO tables it writes.

Status logs are written readably here: ``|`` separates fields and four spaces
are one level of indentation (one tab); ``tabs()`` turns that into the real
format. A trailing ``|`` is an empty reason.
"""
from __future__ import annotations

import os
import random
import subprocess
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

from afe.models import (
    STATUS_IDS,
    Job,
    TkoIterationAttribute,
    TkoIterationResult,
    TkoJob,
    TkoJobKeyval,
    TkoKernel,
    TkoMachine,
    TkoStatus,
    TkoTaskReference,
    TkoTest,
    TkoTestAttribute,
    TkoTestLabel,
)
from drones.autoserv.status_log import make_line
from drones.parse import BadLine, ResultsDirError, StatusLine, load_results, parse_status_line, parse_status_log
from drones.parse.keyvals import host_labels, machine_group, parse_iterations
from drones.parse.results import parse_job_name
from drones.parse.status_line import Kind
from drones.parse.writer import write_job

ROOT = Path(__file__).resolve().parent.parent
PARSE = ROOT / "bin" / "parse"
T0 = 1_700_000_000  # an epoch for the timestamps below


def tabs(text: str) -> str:
    """A status log from its readable form: ``|`` between fields, four spaces per level."""
    lines = []
    for line in textwrap.dedent(text).strip("\n").splitlines():
        body = line.lstrip(" ")
        level = (len(line) - len(body)) // 4
        lines.append("\t" * level + "\t".join(part.strip() for part in body.split("|")))
    return "\n".join(lines) + "\n"


def written(status: str, subdir: str | None = None, operation: str | None = None, reason: str = "",
            indent: int = 0, timestamp: int = 1_700_000_000, **fields: object) -> str:
    """A line exactly as autoserv's writer (drones/autoserv/status_log.py) renders it."""
    return make_line(status, subdir, operation, reason, fields, indent, timestamp).render()


def log_of(text: str, **kwargs):
    return parse_status_log(tabs(text).splitlines(), **kwargs)


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch)


class ResultsDir:
    """A job's results directory under construction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def status(self, text: str) -> ResultsDir:
        (self.path / "status.log").write_text(tabs(text))
        return self

    def status_bytes(self, data: bytes) -> ResultsDir:
        (self.path / "status.log").write_bytes(data)
        return self

    def keyval(self, **values: object) -> ResultsDir:
        with (self.path / "keyval").open("a") as keyval:
            keyval.writelines(f"{k}={v}\n" for k, v in values.items())
        return self

    def host(self, hostname: str, text: str) -> ResultsDir:
        self.file(f"host_keyvals/{hostname}", text)
        return self

    def file(self, relative: str, text: str) -> ResultsDir:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))
        return self

    def status_lines(self, *lines: str) -> ResultsDir:
        """A status.log of these lines (as autoserv's writer renders them: see ``written``)."""
        (self.path / "status.log").write_text("".join(f"{line}\n" for line in lines))
        return self

    def machine_status(self, machine: str, text: str, indent: int = 0) -> ResultsDir:
        """``<machine>/status.log`` from its readable form, every line ``indent`` levels deeper."""
        (self.path / machine).mkdir(parents=True, exist_ok=True)
        lines = tabs(text).splitlines()
        (self.path / machine / "status.log").write_text("".join(f"{chr(9) * indent}{line}\n" for line in lines))
        return self

    def autoserv_exit(self, wait_status: int) -> ResultsDir:
        (self.path / ".autoserv_execute").write_text(f"4242\n{wait_status}\n0\n")
        return self


@pytest.fixture
def results_dir(tmp_path):
    """``results_dir("123-alice/host1")`` makes an empty results directory with that tag."""
    return lambda tag="123-alice/host1": ResultsDir(tmp_path / "results" / tag)


def parse(results: ResultsDir, reparse: bool = True) -> TkoJob:
    write_job(load_results(results.path, level=2), reparse=reparse)
    return TkoJob.objects.get(tag="/".join(results.path.parts[-2:]))


def rows_of(job: TkoJob) -> dict[str, TkoTest]:
    return {t.test: t for t in job.tests.select_related("status", "machine", "kernel")}


def statuses_of(job: TkoJob) -> dict[str, str]:
    return {name: t.status.word for name, t in rows_of(job).items()}


SLEEPTEST = textwrap.dedent("""
    START | ---- | sleeptest | timestamp=1700000000 | localtime=Nov 14 22:13:20 |
        GOOD | sleeptest | sleeptest | timestamp=1700000010 | completed successfully
    END GOOD | ---- | sleeptest | timestamp=1700000020 |
""")  # the test "sleeptest" from T0 to T0 + 20; append top-level lines without indentation


# -- one line ----------------------------------------------------------------------------


def test_a_status_line_has_status_subdir_test_fields_and_a_reason():
    line = parse_status_line("\tFAIL\tsub\tmytest\ttimestamp=5\tlocaltime=Nov 14 22:13:20\tit broke", 7)
    assert line == StatusLine(
        lineno=7, indent=1, kind=Kind.STATUS, status="FAIL", subdir="sub", testname="mytest",
        fields={"timestamp": "5", "localtime": "Nov 14 22:13:20"}, reason="it broke", timestamp=5,
    )


def test_dashes_mean_no_subdir_or_test_and_end_carries_its_status():
    line = parse_status_line("END ABORT\t----\t----\t", 1)
    assert (line.kind, line.status, line.subdir, line.testname, line.reason) == (Kind.END, "ABORT", None, None, "")


def test_the_last_field_is_the_reason_even_with_an_equals_sign_unless_it_is_a_timestamp():
    assert parse_status_line("FAIL\t----\tt\ttimestamp=5\trc=1", 1).reason == "rc=1"
    written_without_reason = parse_status_line("START\t----\t----\ttimestamp=5", 1)
    assert (written_without_reason.reason, written_without_reason.timestamp) == ("", 5)


def test_a_reason_may_contain_tabs():
    line = parse_status_line("FAIL\t----\tt\ttimestamp=5\tfirst part\tsecond part", 1)
    assert line.reason == "first part\tsecond part"


@pytest.mark.parametrize("text, problem", [
    ("GOOD\t----", "expected at least 3 tab-separated fields, found 2"),
    ("garbage", "expected at least 3 tab-separated fields, found 1"),
    ("PASS\t----\tt\t", "unknown status 'PASS'"),
    ("END\t----\tt\t", "unknown status 'END'"),
    ("END MAYBE\t----\tt\t", "unknown status 'END MAYBE'"),
    ("\ufffd\ufffd\t\x01\t\x02\t", "unknown status"),
])
def test_lines_with_too_few_fields_or_an_unknown_status_are_bad(text, problem):
    line = parse_status_line(text, 3)
    assert isinstance(line, BadLine) and line.problem.startswith(problem)


@pytest.mark.parametrize("timestamp", ["soon", "-5", "1e300", "nan", ""])
def test_a_bad_timestamp_is_dropped_with_a_warning(timestamp):
    line = parse_status_line(f"GOOD\t----\tt\ttimestamp={timestamp}\tfine", 1)
    assert (line.status, line.timestamp, line.reason) == ("GOOD", None, "fine")
    assert line.warnings == (f"bad timestamp {timestamp!r} ignored",)


@pytest.mark.parametrize("reason", [
    "hostname=lh2 did not answer", "timestamp=1 is in the past", "kernel=5.10 did not boot",
    "localtime=now", "patch0=fix.patch did not apply", "job_abort_reason=none given", "rc=1",
])
def test_in_autoservs_format_the_last_field_is_the_reason_even_when_it_looks_like_a_field(reason):
    line = parse_status_line(written("FAIL", "sub", "t", reason, indent=1, hostname="dut1"), 4)
    assert (line.kind, line.status, line.reason, line.timestamp, line.hostname) == (
        Kind.STATUS, "FAIL", reason, 1_700_000_000, "dut1")
    assert set(line.fields) == {"timestamp", "localtime", "hostname"}


def test_in_autoservs_format_an_empty_last_field_is_an_empty_reason():
    line = parse_status_line(written("END GOOD", None, "t", hostname="dut1"), 1)
    assert (line.kind, line.reason, line.hostname) == (Kind.END, "", "dut1")


def test_lines_of_other_writers_may_still_end_in_a_field():
    line = parse_status_line("GOOD\t----\tt\ttimestamp=5\thostname=h1", 1)
    assert (line.reason, line.hostname, line.timestamp) == ("", "h1", 5)
    assert parse_status_line("GOOD\t----\tt\thostname=h1\tkernel=5.10", 1).fields == {
        "hostname": "h1", "kernel": "5.10"}


def test_end_info_ends_a_group_like_end_good():
    line = parse_status_line("END INFO\t----\tt\t", 1)
    assert (line.kind, line.status) == (Kind.END, "GOOD")


# -- the whole log -----------------------------------------------------------------------


def test_a_started_and_ended_test_has_its_times_and_the_worst_nested_status():
    result = log_of("""
        START | sub | outer | timestamp=100 |
            GOOD | sub | step1 | timestamp=110 | ok
            START | sub/inner | inner | timestamp=120 |
                WARN | sub/inner | deep | timestamp=130 | a bit slow
            END GOOD | sub/inner | inner | timestamp=140 |
        END GOOD | sub | outer | timestamp=150 | all done
    """)
    [test] = result.tests
    assert (test.testname, test.subdir, test.status, test.started, test.finished) == ("outer", "sub", "WARN", 100, 150)
    assert test.reason == "a bit slow"
    assert result.problems == [] and result.unparsed_lines == 0


def test_reasons_of_the_final_status_are_deduplicated_sorted_and_joined():
    result = log_of("""
        START | ---- | t | timestamp=1 |
            GOOD | ---- | a | | fine
            FAIL | ---- | b | | zebra crashed
            FAIL | ---- | c | | apple missing
            FAIL | ---- | d | | zebra crashed
        END FAIL | ---- | t | timestamp=2 | summary
    """)
    assert [(t.status, t.reason) for t in result.tests] == [("FAIL", "apple missing, zebra crashed")]


def test_without_nested_reasons_the_end_reason_is_used():
    [test] = log_of("""
        START | ---- | t | timestamp=1 |
        END ERROR | ---- | t | timestamp=2 | setup exploded
    """).tests
    assert (test.status, test.reason) == ("ERROR", "setup exploded")


@pytest.mark.parametrize("status", ["GOOD", "FAIL", "ERROR", "ABORT", "WARN", "TEST_NA", "ALERT"])
def test_a_lone_status_line_is_a_complete_test(status):
    [test] = log_of(f"{status} | ---- | verify | timestamp=7 | why").tests
    assert (test.testname, test.subdir, test.status, test.reason, test.started, test.finished) == (
        "verify", None, status, "why", None, 7)


def test_test_na_is_worse_than_abort_as_in_tko():
    [test] = log_of("""
        START | ---- | t |
            ABORT | ---- | a | | stopped
            TEST_NA | ---- | b | | not applicable
        END GOOD | ---- | t |
    """).tests
    assert (test.status, test.reason) == ("TEST_NA", "not applicable")


def test_a_client_job_is_good_although_its_test_failed():
    result = log_of("""
        START | ---- | ---- | timestamp=10 |
            START | dbench | dbench | timestamp=11 |
                FAIL | dbench | dbench | timestamp=12 | too slow
            END FAIL | dbench | dbench | timestamp=13 |
            GOOD | ---- | fake | timestamp=14 |
        END GOOD | ---- | ---- | timestamp=15 |
    """)
    assert [(t.testname, t.status, t.started, t.finished) for t in result.tests] == [
        ("dbench", "FAIL", 11, 13), ("fake", "GOOD", None, 14), ("CLIENT_JOB.0", "GOOD", 10, 15)]


def test_a_client_job_that_ends_aborted_is_aborted():
    result = log_of("""
        START | ---- | ---- |
        END ABORT | ---- | ---- | | autotest client died
    """)
    assert [(t.testname, t.status, t.reason) for t in result.tests] == [
        ("CLIENT_JOB.0", "ABORT", "autotest client died")]


def test_a_top_level_reboot_becomes_boot_n_and_a_good_one_sets_the_kernel():
    result = log_of("""
        START | ---- | reboot | timestamp=1 |
            GOOD | ---- | reboot.verify | timestamp=2 |
        END GOOD | ---- | reboot | timestamp=3 | kernel=5.10.0-autotest | patch0=p1 http://x/p1.patch abc |
        GOOD | sub | after | timestamp=4 |
        START | ---- | reboot |
        END FAIL | ---- | reboot | | kernel=6.0 |
    """)
    assert [(t.testname, t.status) for t in result.tests] == [("boot.0", "GOOD"), ("after", "GOOD"),
                                                              ("boot.1", "FAIL")]
    assert result.tests[1].kernel.base == "5.10.0" and result.tests[1].kernel.patches[0].hash == "abc"
    assert result.kernel.base == "5.10.0"  # the failed reboot did not change it


def test_a_log_cut_off_before_its_end_aborts_the_open_tests():
    result = log_of("""
        START | ---- | ---- | timestamp=10 |
            START | sub | cut | timestamp=11 |
                GOOD | sub | step | timestamp=12 |
    """, abort_reason="Job aborted by alice at 2023-11-14 22:13:20")
    assert [(t.testname, t.status, t.reason, t.finished) for t in result.tests] == [
        ("cut", "ABORT", "Job aborted by alice at 2023-11-14 22:13:20", 12),
        ("CLIENT_JOB.0", "ABORT", "Job aborted by alice at 2023-11-14 22:13:20", 12),
    ]
    assert [str(p) for p in result.problems] == [
        "status.log: 2 level(s) still open at the end of the log; aborted"]
    assert result.unparsed_lines == 0


def test_lower_indentation_aborts_the_open_test_and_goes_on():
    result = log_of("""
        START | ---- | first | timestamp=1 |
            GOOD | ---- | step | timestamp=2 |
        GOOD | ---- | second | timestamp=3 |
    """)
    assert [(t.testname, t.status, t.reason) for t in result.tests] == [
        ("first", "ABORT", "no END line before line 3"), ("second", "GOOD", "")]
    assert result.unparsed_lines == 0 and len(result.problems) == 1


def test_higher_indentation_garbage_and_stray_ends_are_skipped_and_counted():
    result = log_of("""
        GOOD | ---- | one | timestamp=1 |
                GOOD | ---- | too_deep |
        this is not a status line
        END GOOD | ---- | nothing_open |
        FAIL | ---- | two | timestamp=oops | broken
    """)
    assert [(t.testname, t.status, t.finished) for t in result.tests] == [("one", "GOOD", 1), ("two", "FAIL", None)]
    assert result.unparsed_lines == 3
    assert [str(p) for p in result.problems] == [
        "status.log:2: skipped: unexpected indentation (2 tabs, expected 0)",
        "status.log:3: skipped: expected at least 3 tab-separated fields, found 1: 'this is not a status line'",
        "status.log:4: skipped: END without a matching START",
        "status.log:5: bad timestamp 'oops' ignored",
    ]


def test_end_info_closes_the_group_without_changing_its_status():
    result = log_of("""
        START | ---- | quiet | timestamp=1 |
        END INFO | ---- | quiet | timestamp=2 |
        START | ---- | warned | timestamp=3 |
            WARN | ---- | step | timestamp=4 | slow
            START | ---- | inner | timestamp=5 |
            END INFO | ---- | inner | timestamp=6 |
        END INFO | ---- | warned | timestamp=7 |
    """)
    assert [(t.testname, t.status, t.reason, t.started, t.finished) for t in result.tests] == [
        ("quiet", "GOOD", "", 1, 2), ("warned", "WARN", "slow", 3, 7)]
    assert result.unparsed_lines == 0 and result.problems == []


def test_top_level_job_events_give_the_job_status_and_reason():
    result = parse_status_log([
        written("WARN", None, None, "disk almost full"),
        written("START", None, None),
        written("ABORT", None, None, "inside a client job: not the job's", indent=1),
        written("END GOOD", None, None),
        written("ERROR", None, None, "control file: SyntaxError: invalid syntax (line 3)"),
        written("GOOD", None, None, "fine"),
        written("FAIL", None, "a_test", "a test, not a job event"),
        written("ERROR", None, None, "autoserv internal error: boom"),
        written("ERROR", None, None, "control file: SyntaxError: invalid syntax (line 3)"),
        written("ERROR", None, None, ""),
    ])
    assert (result.job_status, result.job_reason) == (
        "ERROR", "control file: SyntaxError: invalid syntax (line 3), autoserv internal error: boom")
    assert [(t.testname, t.status) for t in result.tests] == [("CLIENT_JOB.0", "ABORT"), ("a_test", "FAIL")]
    nothing_wrong = parse_status_log([written(s, None, None, "fine") for s in ("GOOD", "TEST_NA", "NOSTATUS")])
    assert (nothing_wrong.job_status, nothing_wrong.job_reason, log_of(SLEEPTEST).job_status) == (None, "", None)


def test_random_bytes_never_crash_the_parser():
    rng = random.Random(1234)
    alphabet = b"\t\n\r\x00\xff\xfeSTARTEND GOODFAIL----=timestamp1 "
    for _ in range(200):
        junk = bytes(rng.choice(alphabet) for _ in range(rng.randrange(400)))
        text = junk.decode("utf-8", errors="replace")
        result = parse_status_log(text.split("\n"))
        assert all(t.status for t in result.tests)


# -- keyvals -------------------------------------------------------------------------------


def test_iterations_are_separated_by_blank_lines_and_typed_by_suffix():
    problems = []
    iterations = parse_iterations([
        "throughput{perf}=10.5", "kernel{attr}=5.10", "latency=2+-0.5", "",
        "throughput{perf}=nan", "bogus{perf}=fast", "weird{xyz}=1", "no equals sign", "",
    ], "sub/results/keyval", problems)
    assert [(i.index, i.attributes, i.results) for i in iterations] == [
        (1, {"kernel": "5.10"}, {"throughput": 10.5, "latency": 2.0, "latency_dev": 0.5}),
        (2, {}, {"throughput": None}),
    ]
    assert [str(p) for p in problems] == [
        "sub/results/keyval:6: skipped: perf value of 'bogus' is not a number",
        "sub/results/keyval:7: skipped: unknown keyval type {xyz} of 'weird'",
        "sub/results/keyval:8: skipped: not key=value: 'no equals sign'",
    ]


def test_host_labels_are_url_quoted_and_the_platform_prefers_model_then_board():
    keyval = {"platform": "x86", "labels": "board%3Alumpy,pool%3Abvt,model%3Alumpy%2C2"}
    assert host_labels(keyval) == ["board:lumpy", "pool:bvt", "model:lumpy,2"]
    assert machine_group(keyval) == "lumpy,2"
    assert machine_group({"platform": "x86", "labels": "board%3Alink"}) == "link"
    assert machine_group({"platform": "x86"}) == "x86"


def test_build_suite_and_board_come_from_chrome_os_job_names():
    assert parse_job_name("lumpy-release/R46-7272.0.0/bvt/login_LoginSuccess") == {
        "build": "lumpy-release/R46-7272.0.0", "build_version": "R46-7272.0.0", "suite": "bvt", "board": "lumpy"}
    assert parse_job_name("x86-alex-release/R46-1.0.0-test_suites/control.bvt")["board"] == "x86-alex"
    assert set(parse_job_name("my job").values()) == {None}


# -- the database -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_migration_seeds_tkos_status_ids():
    assert dict(TkoStatus.objects.values_list("word", "status_idx")) == dict(STATUS_IDS)
    assert STATUS_IDS["GOOD"] == 6 and STATUS_IDS["NOSTATUS"] == 1 and STATUS_IDS["RUNNING"] == 9


@pytest.mark.django_db
def test_a_job_is_written_with_its_machine_tests_attributes_and_iterations(results_dir):
    results = (results_dir("123-alice/host1")
               .keyval(user="alice", label="lumpy-release/R46-7272.0.0/bvt/sleeptest", job_queued=T0 - 20,
                       job_started=T0 - 10, job_finished=T0 + 100, owner="lab-team", parent_job_id=120)
               .host("host1", "platform=lumpy\nlabels=board%3Alumpy,pool%3Abvt\n")
               .status(SLEEPTEST + "FAIL | ---- | verify | timestamp=1700000030 | broken thing\n")
               .file("sleeptest/keyval", "version=2\nowner=bob\n")
               .file("sleeptest/results/keyval", "ms{perf}=1.5+-0.1\nbrowser{attr}=chrome\n\nms=2\n")
               .autoserv_exit(0))

    job = parse(results)

    machine = TkoMachine.objects.get()
    assert (machine.hostname, machine.machine_group, machine.owner) == ("host1", "lumpy", "lab-team")
    assert (job.tag, job.label, job.username, job.machine, job.afe_job_id, job.afe_parent_job_id) == (
        "123-alice/host1", "lumpy-release/R46-7272.0.0/bvt/sleeptest", "alice", machine, 123, 120)
    assert (job.queued_time, job.started_time, job.finished_time) == (at(T0 - 20), at(T0 - 10), at(T0 + 100))
    assert (job.build, job.build_version, job.suite, job.board) == (
        "lumpy-release/R46-7272.0.0", "R46-7272.0.0", "bvt", "lumpy")

    tests = rows_of(job)
    assert statuses_of(job) == {"SERVER_JOB": "GOOD", "sleeptest": "GOOD", "verify": "FAIL"}
    server, sleeptest, verify = tests["SERVER_JOB"], tests["sleeptest"], tests["verify"]
    assert (server.subdir, server.started_time, server.finished_time) == ("----", at(T0 - 10), at(T0 + 100))
    assert (sleeptest.subdir, sleeptest.reason, sleeptest.started_time, sleeptest.finished_time) == (
        "sleeptest", "completed successfully", at(T0), at(T0 + 20))
    assert (verify.subdir, verify.reason, verify.started_time, verify.finished_time) == (
        None, "broken thing", None, at(T0 + 30))
    assert sleeptest.status_id == STATUS_IDS["GOOD"] and verify.status_id == STATUS_IDS["FAIL"]
    assert {t.machine for t in tests.values()} == {machine}
    assert {t.kernel.printable for t in tests.values()} == {"UNKNOWN"}

    assert dict(sleeptest.attributes.values_list("attribute", "value")) == {
        "version": "2", "owner": "bob", "host-platform": "lumpy", "host-labels": "board%3Alumpy,pool%3Abvt"}
    assert not sleeptest.attributes.filter(user_created=True).exists()
    assert sorted(sleeptest.iteration_results.values_list("iteration", "attribute", "value")) == [
        (1, "ms", 1.5), (1, "ms_dev", 0.1), (2, "ms", 2.0)]
    assert list(sleeptest.iteration_attributes.values_list("iteration", "attribute", "value")) == [
        (1, "browser", "chrome")]

    assert dict(job.keyvals.values_list("key", "value")) == {
        "user": "alice", "label": "lumpy-release/R46-7272.0.0/bvt/sleeptest", "job_queued": str(T0 - 20),
        "job_started": str(T0 - 10), "job_finished": str(T0 + 100), "owner": "lab-team", "parent_job_id": "120"}
    reference = TkoTaskReference.objects.get()
    assert (reference.tko_job, reference.reference_type, reference.task_id, reference.parent_task_id) == (
        job, "afe", "123", "120")


@pytest.mark.parametrize("wait_status, status", [(0, "GOOD"), (256, "FAIL"), (9, "ABORT"), (None, "ABORT")])
@pytest.mark.django_db
def test_server_job_status_follows_autoservs_exit(results_dir, wait_status, status):
    results = results_dir().keyval(user="alice").status(SLEEPTEST)
    if wait_status is not None:
        results.autoserv_exit(wait_status)
    assert statuses_of(parse(results))["SERVER_JOB"] == status


@pytest.mark.parametrize("info", [
    "INFO | ---- | ---- | | Job aborted by alice on 2023-11-14 22:15:00",  # what the scheduler appends
    "INFO | ---- | ---- | job_abort_reason=Job aborted by alice on 2023-11-14 22:15:00 |",
])
@pytest.mark.django_db
def test_an_abort_reason_from_info_goes_to_the_server_job(results_dir, info):
    results = results_dir().keyval(user="alice").autoserv_exit(9).status(SLEEPTEST + info + "\n")
    server = rows_of(parse(results))["SERVER_JOB"]
    assert (server.status.word, server.reason) == ("ABORT", "Job aborted by alice on 2023-11-14 22:15:00")


@pytest.mark.django_db
def test_reparsing_replaces_the_rows_instead_of_adding_to_them(results_dir):
    results = (results_dir().keyval(user="alice", label="first")
               .host("host1", "platform=lumpy\n")
               .status(SLEEPTEST + "FAIL | ---- | verify | timestamp=1700000030 | broken\n"
                       + "GOOD | ---- | dropped_later | timestamp=1700000040 |\n")
               .file("sleeptest/results/keyval", "ms=1\n").autoserv_exit(256))
    job = parse(results)
    sleeptest = rows_of(job)["sleeptest"]
    label = TkoTestLabel.objects.create(name="flaky")
    label.tests.add(sleeptest)
    TkoTestAttribute.objects.create(test=sleeptest, attribute="triage", value="bug 1", user_created=True)

    (results.path / "keyval").write_text("user=alice\nlabel=second\n")
    results.status(SLEEPTEST + "GOOD | ---- | verify | timestamp=1700000031 | fixed\n")
    results.file("sleeptest/results/keyval", "ms=2\n").autoserv_exit(0)
    again = parse(results)

    assert again.pk == job.pk and again.label == "second"
    assert TkoJob.objects.count() == 1 and TkoMachine.objects.count() == 1
    assert statuses_of(again) == {"SERVER_JOB": "GOOD", "sleeptest": "GOOD", "verify": "GOOD"}
    assert rows_of(again)["sleeptest"].pk == sleeptest.pk
    assert rows_of(again)["verify"].reason == "fixed"
    assert list(TkoIterationResult.objects.values_list("attribute", "value")) == [("ms", 2.0)]
    assert dict(job.keyvals.values_list("key", "value")) == {"user": "alice", "label": "second"}
    # what users added to a test that is still there survives; the parser's own rows do not pile up
    assert list(label.tests.all()) == [sleeptest]
    assert sleeptest.attributes.filter(user_created=True).count() == 1
    assert sleeptest.attributes.filter(user_created=False).count() == 1  # host-platform, once

    def counts() -> list[int]:
        return [model.objects.count() for model in (TkoJob, TkoTest, TkoTestAttribute, TkoIterationResult,
                                                    TkoIterationAttribute, TkoJobKeyval, TkoKernel, TkoMachine)]

    before = counts()
    parse(results)
    assert counts() == before


@pytest.mark.django_db
def test_without_reparse_a_parsed_job_is_left_alone(results_dir):
    results = results_dir().keyval(user="alice", label="first").status(SLEEPTEST)
    parse(results)
    (results.path / "keyval").write_text("user=alice\nlabel=second\n")
    assert parse(results, reparse=False).label == "first"


@pytest.mark.django_db
def test_a_truncated_log_is_recorded_with_its_open_tests_aborted(results_dir):
    results = results_dir().keyval(user="alice", aborted_by="bob", aborted_on=T0 + 60).autoserv_exit(9).status("""
        START | ---- | ---- | timestamp=1700000000 |
            START | dbench | dbench | timestamp=1700000001 |
                GOOD | dbench | warmup | timestamp=1700000002 |
    """)
    job = parse(results)
    tests = rows_of(job)
    assert statuses_of(job) == {"SERVER_JOB": "ABORT", "dbench": "ABORT", "CLIENT_JOB.0": "ABORT"}
    assert tests["dbench"].reason == f"Job aborted by bob at {at(T0 + 60):%Y-%m-%d %H:%M:%S}"
    assert tests["dbench"].finished_time == at(T0 + 2)
    assert "still open at the end of the log" in job.keyvals.get(key="parse_problems").value


@pytest.mark.django_db
def test_garbled_lines_are_skipped_and_recorded_in_the_job_keyvals(results_dir):
    results = results_dir().keyval(user="alice").status_bytes(
        b"GOOD\t----\tfirst\ttimestamp=1700000000\t\n"
        b"\xff\xfe\x00\x01binary junk\n"
        b"FAIL\t----\n"
        b"GOOD\t----\tsecond\ttimestamp=whenever\tstill counted\n"
        b"\t\tGOOD\t----\ttoo_deep\t\n"
        b"FAIL\t----\tthird\ttimestamp=1700000009\tcaf\xc3\xa9 \xe2\x9c\x97 and \xff junk\n"
    )
    job = parse(results)
    tests = rows_of(job)
    assert statuses_of(job) == {"SERVER_JOB": "ABORT", "first": "GOOD", "second": "GOOD", "third": "FAIL"}
    assert tests["second"].finished_time is None
    assert tests["third"].reason == "café ✗ and \ufffd junk"
    keyvals = dict(job.keyvals.values_list("key", "value"))
    assert keyvals["parse_unparsed_lines"] == "3"
    assert keyvals["parse_problems"].startswith("status.log:2: skipped: expected at least 3 tab-separated fields")
    assert "status.log:4: bad timestamp 'whenever' ignored" in keyvals["parse_problems"]


@pytest.mark.django_db
def test_a_directory_with_a_keyval_but_no_status_log_is_a_job_without_tests(results_dir):
    job = parse(results_dir().keyval(user="alice", label="never ran", job_queued=T0))
    assert (job.label, job.username, job.queued_time, job.tests.count()) == ("never ran", "alice", at(T0), 0)
    assert job.machine.hostname == "host1"  # the tag names the host


@pytest.mark.django_db
def test_an_empty_or_missing_directory_cannot_be_parsed(results_dir, tmp_path):
    empty = results_dir()
    with pytest.raises(ResultsDirError, match=r"no status\.log and no keyval"):
        load_results(empty.path, level=2)
    with pytest.raises(ResultsDirError, match="does not exist"):
        load_results(tmp_path / "nowhere", level=2)
    assert not TkoJob.objects.exists()


@pytest.mark.django_db
def test_an_empty_status_log_still_records_the_server_job(results_dir):
    job = parse(results_dir().status("").autoserv_exit(0))
    assert statuses_of(job) == {"SERVER_JOB": "GOOD"}
    assert job.username == "alice"  # from the tag, as the keyval is missing


@pytest.mark.django_db
def test_a_group_directory_records_each_machine_and_the_tests_on_theirs(results_dir):
    results = (results_dir("200-alice/group1").keyval(user="alice", label="sync")
               .host("host-a", "platform=link\n").host("host-b", "platform=lumpy\n")
               .status("""
                    START | ---- | ---- | timestamp=1700000000 |
                        GOOD | ---- | on_a | timestamp=1700000001 | hostname=host-a |
                        FAIL | ---- | on_b | timestamp=1700000002 | hostname=host-b | oops
                        GOOD | ---- | on_both | timestamp=1700000003 |
                    END GOOD | ---- | ---- | timestamp=1700000004 |
               """))
    job = parse(results)
    assert dict(TkoMachine.objects.values_list("hostname", "machine_group")) == {
        "host-a": "link", "host-b": "lumpy", "host-a,host-b": "link,lumpy"}
    assert job.machine.hostname == "host-a,host-b"
    assert {name: t.machine.hostname for name, t in rows_of(job).items()} == {
        "SERVER_JOB": "host-a,host-b", "on_a": "host-a", "on_b": "host-b", "on_both": "host-a,host-b",
        "CLIENT_JOB.0": "host-a,host-b"}
    assert dict(rows_of(job)["on_b"].attributes.values_list("attribute", "value")) == {"host-platform": "lumpy"}


@pytest.mark.django_db
def test_machines_can_come_from_status_lines_alone(results_dir):
    results = results_dir("201-alice/group0").status("GOOD | ---- | t | hostname=dut7 |\n")
    job = parse(results)
    assert job.machine.hostname == "dut7" and rows_of(job)["t"].machine == job.machine


@pytest.mark.django_db
def test_a_hostless_job_has_no_machine(results_dir):
    job = parse(results_dir("300-alice/hostless").keyval(user="alice").status("GOOD | ---- | suite_step |\n"))
    assert job.machine is None and TkoMachine.objects.count() == 0


@pytest.mark.django_db
def test_label_owner_and_parent_come_from_the_afe_job_when_the_keyval_lacks_them(results_dir):
    parent = Job.objects.create(owner="carol", name="suite")
    child = Job.objects.create(owner="carol", name="dummy_Pass", parent_job=parent)
    job = parse(results_dir(f"{child.pk}-carol/host1").status(SLEEPTEST))
    assert (job.afe_job_id, job.afe_parent_job_id, job.label, job.username) == (
        child.pk, parent.pk, "dummy_Pass", "carol")


@pytest.mark.django_db
def test_a_retry_invalidates_the_original_jobs_tests(results_dir):
    original = parse(results_dir("400-alice/host1").keyval(user="alice").status(SLEEPTEST))
    retry = parse(results_dir("401-alice/host1").keyval(user="alice", retry_original_job_id=400).status(SLEEPTEST))
    old, new = rows_of(original)["sleeptest"], rows_of(retry)["sleeptest"]
    old.refresh_from_db()
    assert old.invalid and new.invalidates_test_id == old.pk and not new.invalid


@pytest.mark.django_db
def test_values_longer_than_their_columns_are_cut(results_dir):
    job = parse(results_dir().keyval(user="alice", label="L" * 500).status(f"FAIL | ---- | t | | {'r' * 5000}\n"))
    assert len(job.label) == 300 and job.label.endswith("…")
    assert len(rows_of(job)["t"].reason) == 4096


@pytest.mark.django_db
def test_subdirs_outside_the_results_are_not_read(results_dir, tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "keyval").write_text("password=hunter2\n")
    job = parse(results_dir().status("GOOD | ../../../secret | t |\n"))
    assert not TkoTestAttribute.objects.filter(attribute="password").exists()
    assert "outside the results" in job.keyvals.get(key="parse_problems").value


@pytest.mark.django_db
def test_a_reason_that_looks_like_a_field_reaches_tko_and_names_no_machine(results_dir):
    results = (results_dir("123-alice/host1").keyval(user="alice").autoserv_exit(256)
               .status_lines(written("START", "verify", "verify", hostname="host1"),
                             written("FAIL", "verify", "verify", "hostname=lh2 did not answer", indent=1,
                                     hostname="host1"),
                             written("END FAIL", "verify", "verify", hostname="host1")))
    job = parse(results)
    verify = rows_of(job)["verify"]
    assert (verify.status.word, verify.reason, verify.machine.hostname) == (
        "FAIL", "hostname=lh2 did not answer", "host1")
    assert list(TkoMachine.objects.values_list("hostname", flat=True)) == ["host1"]
    assert job.machine.hostname == "host1"


@pytest.mark.parametrize("wait_status, status", [(256, "ERROR"), (0, "ERROR"), (9, "ABORT")])
@pytest.mark.django_db
def test_a_top_level_error_is_the_server_jobs_reason_and_counts_toward_its_status(results_dir, wait_status, status):
    reason = "control file: SyntaxError: invalid syntax (control, line 3)"
    results = results_dir().keyval(user="alice").autoserv_exit(wait_status).status_lines(
        written("ERROR", None, None, reason))
    server = rows_of(parse(results))["SERVER_JOB"]
    assert (server.status.word, server.reason) == (status, reason)


@pytest.mark.django_db
def test_an_abort_reason_wins_over_a_top_level_error(results_dir):
    results = results_dir().keyval(user="alice").autoserv_exit(9).status_lines(
        written("ERROR", None, None, "autoserv internal error: RuntimeError: boom"),
        written("ABORT", None, None, "aborted by SIGTERM"),
        "INFO\t----\t----\tJob aborted by alice on 2023-11-14 22:15:00")
    server = rows_of(parse(results))["SERVER_JOB"]
    assert (server.status.word, server.reason) == ("ABORT", "Job aborted by alice on 2023-11-14 22:15:00")


HUGE = "99999999999999999999"


@pytest.mark.parametrize("key", ["parent_job_id", "retry_original_job_id"])
@pytest.mark.parametrize("value, problem", [
    (HUGE, "is out of range"), ("2147483648", "is out of range"), ("-1", "is out of range"),
    ("twelve", "is not a job id"),
])
@pytest.mark.django_db
def test_a_bad_job_id_in_the_keyval_is_ignored_and_the_job_still_written(results_dir, key, value, problem):
    results = results_dir().keyval(user="alice", **{key: value}).status(SLEEPTEST).autoserv_exit(0)
    loaded = load_results(results.path, level=2)
    assert (loaded.afe_parent_job_id, loaded.retry_original_job_id) == (None, None)
    job = parse(results)
    assert job.afe_parent_job_id is None
    assert statuses_of(job) == {"SERVER_JOB": "GOOD", "sleeptest": "GOOD"}
    assert f"keyval: {key}={value!r} {problem}; ignored" in job.keyvals.get(key="parse_problems").value
    assert job.keyvals.get(key=key).value == value


@pytest.mark.django_db
def test_ids_just_in_range_are_kept(results_dir):
    results = results_dir(f"{2**31 - 1}-alice/host1").keyval(user="alice", parent_job_id=2**31 - 1).status(SLEEPTEST)
    job = parse(results)
    assert (job.afe_job_id, job.afe_parent_job_id) == (2**31 - 1, 2**31 - 1)
    assert not job.keyvals.filter(key="parse_problems").exists()


@pytest.mark.django_db
def test_an_out_of_range_job_id_in_the_tag_is_ignored_and_the_job_still_written(results_dir):
    job = parse(results_dir(f"{HUGE}-alice/host1").status(SLEEPTEST).autoserv_exit(0))
    assert (job.tag, job.afe_job_id, job.username, job.machine.hostname) == (
        f"{HUGE}-alice/host1", None, "alice", "host1")
    assert statuses_of(job) == {"SERVER_JOB": "GOOD", "sleeptest": "GOOD"}
    assert not TkoTaskReference.objects.exists()
    assert f"tag: job id of the tag='{HUGE}' is out of range; ignored" in job.keyvals.get(key="parse_problems").value


@pytest.mark.parametrize("wait_status", [99999999999, -1, 65536])
@pytest.mark.django_db
def test_an_out_of_range_wait_status_is_an_abort_and_the_job_still_written(results_dir, wait_status):
    job = parse(results_dir().keyval(user="alice").status(SLEEPTEST).autoserv_exit(wait_status))
    assert statuses_of(job) == {"SERVER_JOB": "ABORT", "sleeptest": "GOOD"}
    assert (f".autoserv_execute:2: wait status '{wait_status}' is out of range; taken as ABORT"
            in job.keyvals.get(key="parse_problems").value)


@pytest.fixture
def far_east(monkeypatch):
    """The process in a time zone east of UTC (where 9999-12-31 23:59:59 UTC is year 10000)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.django_db
def test_the_latest_epochs_do_not_overflow_a_datetime_east_of_utc(results_dir, far_east):
    results = results_dir().keyval(user="alice", job_finished=253402300799).status(
        SLEEPTEST + "GOOD | ---- | late | timestamp=253402300799 |\n")
    job = parse(results)
    assert rows_of(job)["late"].finished_time is None
    assert job.finished_time == at(T0 + 20)  # the last usable timestamp of the log
    assert "job_finished='253402300799' is not an epoch; ignored" in job.keyvals.get(key="parse_problems").value


def machine_logs(results: ResultsDir) -> ResultsDir:
    """Per-machine logs of a synchronous job on host-a and host-b; host-b's was cut off (autoserv killed)."""
    return (results.keyval(user="alice", label="sync")
            .host("host-a", "platform=link\n").host("host-b", "platform=lumpy\n")
            .machine_status("host-a", """
                START | host-a/on_a | on_a | timestamp=1700000001 | localtime=Nov 14 22:13:21 | hostname=host-a |
                    GOOD | host-a/on_a | on_a | timestamp=1700000002 | localtime=Nov 14 22:13:22 | hostname=host-a | ok
                END GOOD | host-a/on_a | on_a | timestamp=1700000003 | localtime=Nov 14 22:13:23 | hostname=host-a |
            """)
            .machine_status("host-b", """
                START | host-b/on_b | on_b | timestamp=1700000004 | localtime=Nov 14 22:13:24 |
                    GOOD | host-b/on_b | on_b | timestamp=1700000005 | localtime=Nov 14 22:13:25 | half way
            """, indent=1)  # written by a worker inside a group: one level deeper
            .file("host-b/on_b/results/keyval", "ms=3\n"))


@pytest.mark.django_db
def test_without_a_main_status_log_the_per_machine_logs_are_read(results_dir):
    job = parse(machine_logs(results_dir("210-alice/group0")))
    tests = rows_of(job)
    assert statuses_of(job) == {"SERVER_JOB": "ABORT", "on_a": "GOOD", "on_b": "ABORT"}
    assert {name: t.machine.hostname for name, t in tests.items()} == {
        "SERVER_JOB": "host-a,host-b", "on_a": "host-a", "on_b": "host-b"}
    assert (tests["on_b"].subdir, tests["on_b"].reason) == ("host-b/on_b", "Job aborted unexpectedly")
    assert list(tests["on_b"].iteration_results.values_list("attribute", "value")) == [("ms", 3.0)]
    assert (job.started_time, job.finished_time) == (at(T0 + 1), at(T0 + 5))
    problems = job.keyvals.get(key="parse_problems").value
    assert problems == "host-b/status.log: 1 level(s) still open at the end of the log; aborted"


@pytest.mark.django_db
def test_with_a_main_status_log_the_per_machine_logs_are_not_read(results_dir):
    results = machine_logs(results_dir("211-alice/group0")).status("""
        START | ---- | on_a | timestamp=1700000001 | hostname=host-a |
        END GOOD | ---- | on_a | timestamp=1700000003 | hostname=host-a |
    """).autoserv_exit(0)
    job = parse(results)
    assert statuses_of(job) == {"SERVER_JOB": "GOOD", "on_a": "GOOD"}
    assert not job.keyvals.filter(key="parse_problems").exists()


@pytest.mark.parametrize("hostname", ["host1", "dut-7.lab.example.com", "a b/c", "..hidden", "[::1]:22", "é"])
def test_per_machine_directories_are_named_as_autoserv_names_them(hostname):
    from drones.autoserv.job import safe_path_part
    from drones.parse.results import _machine_dir

    assert _machine_dir(hostname) == safe_path_part(hostname)


# -- bin/parse ----------------------------------------------------------------------------


def database_url() -> str:
    """The test database's URL, for the parser processes a test starts."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    return f"mysql://{user}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 3306}/{params['NAME']}"


def run_parse(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url()}
    return subprocess.run([str(PARSE), *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


def scheduler_args(path: Path) -> list[str | Path]:
    """The parse command line the scheduler uses (spec §5.1)."""
    return ["--detach", "--write-pidfile", "--record-duration", "--suite-report", "-l", "2", "-r", "-o", path]


def pidfile_lines(path: Path) -> list[str]:
    return (path / ".parser_execute").read_text().splitlines()


@pytest.mark.django_db(transaction=True)
def test_bin_parse_as_the_scheduler_runs_it(results_dir):
    results = results_dir("500-alice/host1").keyval(user="alice").status(SLEEPTEST).autoserv_exit(0)

    done = run_parse(*scheduler_args(results.path))

    assert done.returncode == 0, done.stderr
    pid, wait_status, failed = pidfile_lines(results.path)
    assert int(pid) > 0 and (wait_status, failed) == ("0", "0")
    assert "--detach ignored" in done.stderr and "parsed in" in done.stderr
    job = TkoJob.objects.get(tag="500-alice/host1")  # written before bin/parse returned: it did not detach
    assert statuses_of(job) == {"SERVER_JOB": "GOOD", "sleeptest": "GOOD"}

    again = run_parse(*scheduler_args(results.path))
    assert again.returncode == 0, again.stderr
    assert TkoJob.objects.count() == 1 and TkoTest.objects.count() == 2
    assert len(pidfile_lines(results.path)) == 3


@pytest.mark.django_db(transaction=True)
def test_bin_parse_exits_0_on_a_garbled_log(results_dir):
    results = results_dir("501-alice/host1").status_bytes(b"START\t----\tcut\ttimestamp=1\t\n\xff\xff\n")
    done = run_parse(*scheduler_args(results.path))
    assert done.returncode == 0, done.stderr
    assert "status.log:2: skipped" in done.stderr
    assert statuses_of(TkoJob.objects.get()) == {"SERVER_JOB": "ABORT", "cut": "ABORT"}


@pytest.mark.django_db(transaction=True)
def test_bin_parse_fails_with_exit_1_on_an_empty_directory(results_dir):
    results = results_dir("502-alice/host1")
    done = run_parse(*scheduler_args(results.path))
    assert done.returncode == 1
    assert "no status.log and no keyval" in done.stderr
    assert pidfile_lines(results.path)[1:] == ["256", "0"]
    assert not TkoJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_bin_parse_fails_with_exit_1_on_a_missing_directory(tmp_path):
    done = run_parse(*scheduler_args(tmp_path / "503-alice" / "host1"))
    assert done.returncode == 1 and "does not exist" in done.stderr
    assert not (tmp_path / "503-alice").exists()


@pytest.mark.parametrize("args", [["--frobnicate", "-o", "x"], ["-o"], ["-l", "0", "-o", "x"], ["--det", "-o", "x"]])
def test_bin_parse_rejects_bad_usage_with_exit_2(args):
    done = run_parse(*args)
    assert done.returncode == 2 and "usage: parse" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_bin_parse_without_o_parses_each_job_directory(results_dir, tmp_path):
    results_dir("600-alice/host1").keyval(user="alice").status(SLEEPTEST)
    results_dir("600-alice/host2").keyval(user="alice").status(SLEEPTEST)
    done = run_parse("-l", "2", tmp_path / "results" / "600-alice")
    assert done.returncode == 0, done.stderr
    assert sorted(TkoJob.objects.values_list("tag", flat=True)) == ["600-alice/host1", "600-alice/host2"]
