"""Prometheus metrics: scraped over HTTP while a small lab runs, parsed with prometheus_client's
parser, and checked against the database."""
from __future__ import annotations

import urllib.request

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from afe.models import Host, HostQueueEntry, Job, Priority, RebootBefore, User
from drones.models import Process
from scheduler.metrics import LabState, SchedulerMetrics
from prometheus_client import CollectorRegistry, generate_latest

Status = HostQueueEntry.Status
QUICK = {"reboot_before": RebootBefore.NEVER, "run_reset": False, "control_file": "x"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return samples(response.read().decode())


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def test_the_scheduler_serves_what_it_did_and_the_labs_state_over_http(scheduler, autoserv, lab, owner):
    autoserv.set("job", "hold")
    held = Job.create(owner=owner, name="held", hosts=["host1"], priority=Priority.CQ, **QUICK)
    Job.create(owner=owner, name="waits", hosts=["host1"], **QUICK)  # behind the held one
    Job.create(owner=owner, name="never", hosts=["locked1"], priority=Priority.WEEKLY, **QUICK)
    scheduler.run_until(lambda: autoserv.calls("job"), "the first job to run")
    server = scheduler.ctx.metrics.serve(0, "127.0.0.1")
    try:
        found = scrape(server.server_port)
    finally:
        server.shutdown()

    queued = HostQueueEntry.objects.filter(status=Status.QUEUED)
    assert found[("afe_entries", (("status", "Queued"),))] == queued.count() == 2
    assert found[("afe_entries", (("status", "Running"),))] == 1
    assert found[("afe_queue_depth", (("priority", "Default"),))] == 1
    assert found[("afe_queue_depth", (("priority", "Weekly"),))] == 1
    for status, locked in {(h.status, h.locked) for h in Host.objects.all()}:
        key = ("afe_hosts", (("locked", "true" if locked else "false"), ("status", status)))
        assert found[key] == Host.objects.filter(status=status, locked=locked).count()
    assert found[("drone_processes_active", (("drone", "localhost"),))] == Process.objects.active().count() == 1

    ticks = found[("scheduler_tick_seconds_count", ())]
    assert ticks >= 1
    assert found[("scheduler_tick_step_seconds_count", (("step", "entries_scheduled"),))] == ticks
    assert found[("scheduler_queue_wait_seconds_count", (("priority", "CQ"),))] == 1
    assert ("scheduler_queue_wait_seconds_count", (("priority", "Default"),)) not in found
    assert found[("scheduler_tick_step_items_total", (("step", "processes_launched"),))] == 1
    assert held.hostqueueentry_set.get().status == Status.RUNNING
    autoserv.release("job", 0)


def test_lost_processes_step_errors_and_mails_are_counted(scheduler, autoserv, lab, owner, monkeypatch):
    metrics = scheduler.ctx.metrics
    autoserv.set("job", "hold")
    Job.create(owner=owner, name="t", hosts=["host2"], email_list="dev@lab", **QUICK)
    scheduler.run_until(lambda: autoserv.calls("job"), "the job to run")
    process = Process.objects.get(kind="job")
    Process.objects.filter(pk=process.pk).update(runner_pid=None)  # its runner forgets it
    assert process.mark_lost("test: the drone machine is gone")
    scheduler.run_until(lambda: HostQueueEntry.objects.filter(complete=True).exists(), "the entry to end")

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(scheduler.dispatcher.cleanup, "run_due", broken)
    report = scheduler.dispatcher.tick()
    assert report.errors == ["cleanup"]
    found = samples(metrics.exposition().decode())
    assert found[("scheduler_processes_lost_total", (("kind", "job"),))] == 1
    assert found[("scheduler_tick_step_errors_total", (("step", "cleanup"),))] == 1
    from django.core import mail

    assert found[("scheduler_mails_sent_total", ())] == len(mail.outbox) >= 1
    autoserv.release("job", 0)


def test_the_web_servers_metrics_show_the_lab_and_the_schedulers_last_snapshot(client, lab, owner):
    Job.create(owner=owner, name="t", hosts=["host1"], **QUICK)
    before = samples(client.get("/metrics").content.decode())
    assert before[("afe_entries", (("status", "Queued"),))] == 1
    assert not any(name.startswith("scheduler_") for name, _ in before)

    metrics = SchedulerMetrics()
    metrics.mails_sent.inc(3)
    assert metrics.publish(every_seconds=0)
    assert not metrics.publish(every_seconds=60)  # at most every so often
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    after = samples(response.content.decode())
    assert after[("scheduler_mails_sent_total", ())] == 3
    assert after[("afe_entries", (("status", "Queued"),))] == 1
    assert client.post("/metrics").status_code == 405


def test_reading_the_labs_state_costs_the_same_queries_for_a_small_and_a_bigger_lab(make_host, owner):
    registry = CollectorRegistry()
    registry.register(LabState())

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            generate_latest(registry)
        return len(captured)

    make_host("small1", ["board:x"])
    Job.create(owner=owner, name="t", hosts=["small1"], **QUICK)
    small = queries()
    for i in range(30):
        make_host(f"big{i}", ["board:x"], locked=i % 3 == 0, lock_reason="x" if i % 3 == 0 else "")
    Job.create(owner=owner, name="u", hosts=[f"big{i}" for i in range(1, 30, 3)], priority=Priority.CQ, **QUICK)
    assert queries() == small == 3
