"""The whole path: scheduler → local or Celery drone → bin/autoserv on local hosts → bin/parse → results tables."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from afe.models import ControlType, Host, HostQueueEntry, Job, RebootBefore, User
from afe.models.tko import TkoJob, TkoTest
from scheduler.config import SchedulerConfig

from .scheduler_harness import SchedulerHarness

ROOT = Path(__file__).resolve().parent.parent
Status = HostQueueEntry.Status

PASSING = """\
def run(machine):
    host = hosts.create_host(machine)
    job.run_test('uptime', host=host, command='uptime')
parallel_simple(run, machines)
"""
FAILING = """\
host = hosts.create_host(machines[0])
job.run_test('false_test', host=host, command='exit 3')
"""


@pytest.fixture(params=["local drone", "celery drone"])
def real_lab(request, settings, tmp_path, transactional_db, make_host) -> SchedulerHarness:
    """Two hosts that run on this machine, and a scheduler that runs the project's own autoserv and parser,
    on the local drone or on a Celery drone (a real worker over Redis)."""
    workers = request.getfixturevalue("workers") if request.param == "celery drone" else None
    settings.RESULTS_DIR = tmp_path / "results"
    settings.AUTOSERV_PATH = str(ROOT / "bin" / "autoserv")
    settings.PARSER_PATH = str(ROOT / "bin" / "parse")
    for name in ("local1", "local2"):
        make_host(name, ["board:local"]).set_attribute("connection", "local")
    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    if workers is None:
        return SchedulerHarness(config)
    from .celery_harness import celery_drones

    workers.start(workers.name())
    return SchedulerHarness(config, make_drones=celery_drones)


def test_a_passing_server_job_completes_with_its_test_rows(real_lab):
    owner = User.system_user()
    job = Job.create(owner=owner, name="uptime", control_file=PASSING, control_type=ControlType.SERVER,
                     hosts=["local1", "local2"], synch_count=2)
    real_lab.run_until_idle(timeout=120)
    assert set(job.hostqueueentry_set.values_list("status", flat=True)) == {Status.COMPLETED}
    tko_job = TkoJob.objects.get(afe_job_id=job.pk)
    statuses = {(t.test, t.status.word) for t in TkoTest.objects.filter(job=tko_job).select_related("status")}
    assert ("uptime", "GOOD") in statuses and ("SERVER_JOB", "GOOD") in statuses
    assert all(h.status == Host.Status.READY for h in Host.objects.filter(hostname__startswith="local"))


def test_a_failing_test_fails_the_entry_and_is_recorded(real_lab):
    owner = User.system_user()
    job = Job.create(owner=owner, name="fails", control_file=FAILING, control_type=ControlType.SERVER,
                     hosts=["local1"], reboot_before=RebootBefore.NEVER, run_reset=False)
    real_lab.run_until_idle(timeout=120)
    assert list(job.hostqueueentry_set.values_list("status", flat=True)) == [Status.FAILED]
    failed = TkoTest.objects.select_related("status").get(job__afe_job_id=job.pk, test="false_test")
    assert failed.status.word == "FAIL" and failed.reason
    # The tests failed and the job does not reset: the host was cleaned up after it.
    assert Host.objects.get(hostname="local1").status == Host.Status.READY


def test_a_control_file_with_a_syntax_error_fails_with_a_clear_reason(real_lab):
    owner = User.system_user()
    job = Job.create(owner=owner, name="broken", control_file="def broken(:\n", control_type=ControlType.SERVER,
                     hosts=["local2"], reboot_before=RebootBefore.NEVER, run_reset=False)
    real_lab.run_until_idle(timeout=120)
    entry = job.hostqueueentry_set.get()
    assert entry.status == Status.FAILED
    status_log = (Path(real_lab.ctx.path(entry.execution_path())) / "status.log").read_text()
    assert "syntax error in control file" in status_log
    server_job = TkoTest.objects.get(job__afe_job_id=job.pk, test="SERVER_JOB")
    assert "syntax error in control file" in server_job.reason


MIXED = """\
host = hosts.create_host(machines[0])
job.run_test('passes', host=host, command='true')
job.run_test('fails', host=host, command='exit 1')
def not_here(host):
    raise TestNA('no such hardware')
job.run_test('not_applicable', host=host, function=not_here)
def explodes(host):
    raise RuntimeError('boom')
job.run_test('errors', host=host, function=explodes)
def measures(host):
    return {'speed': 42, 'mode': 'fast'}
job.run_test('measured', host=host, function=measures)
"""


def test_status_log_round_trips_through_the_parser(real_lab):
    """What autoserv writes, the parser reads back: one row per test with its status and reason."""
    owner = User.system_user()
    job = Job.create(owner=owner, name="mixed", control_file=MIXED, control_type=ControlType.SERVER,
                     hosts=["local1"], reboot_before=RebootBefore.NEVER, run_reset=True)
    real_lab.run_until_idle(timeout=120)
    rows = {
        t.test: (t.status.word, t.reason)
        for t in TkoTest.objects.filter(job__afe_job_id=job.pk).select_related("status")
    }
    assert rows["passes"][0] == "GOOD"
    assert rows["fails"][0] == "FAIL" and "exit" in rows["fails"][1]
    assert rows["not_applicable"] == ("TEST_NA", "no such hardware")
    assert rows["errors"][0] == "ERROR" and "boom" in rows["errors"][1]
    assert rows["measured"][0] == "GOOD"
    measured = TkoTest.objects.get(job__afe_job_id=job.pk, test="measured")
    assert dict(measured.attributes.values_list("attribute", "value")).items() >= {"speed": "42", "mode": "fast"}.items()
    assert list(job.hostqueueentry_set.values_list("status", flat=True)) == [Status.FAILED]
