"""One poisoned job among good ones: it fails (or waits) alone, with its reason, and every good one completes.

The poison is data that the names' rules now refuse at the door but that an
older database, another AFE tool or a hand-edited row may still hold.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from afe.models import AclGroup, EntryReason, Host, HostQueueEntry, Job, RebootBefore, SpecialTaskReason, User

Status = HostQueueEntry.Status


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def job_on(owner: User, hostname: str, **kwargs) -> Job:
    kwargs.setdefault("run_reset", False)
    kwargs.setdefault("reboot_before", RebootBefore.NEVER)
    return Job.create(owner=owner, name=f"job on {hostname}", control_file="pass", hosts=[hostname], **kwargs)


def poison(host: Host, hostname: str) -> None:
    """Rename a host behind the model's back, as a legacy row or another tool could."""
    Host.objects.filter(pk=host.pk).update(hostname=hostname)


def status(job: Job) -> str:
    return job.hostqueueentry_set.get().status


def reason(job: Job) -> str:
    return EntryReason.objects.get(queue_entry__job=job).reason


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


POISONS = {
    "dotdot": "../../escaped",
    "absolute": "/tmp/escaped-by-hostname",
    "nul": "evil\x00host",
    "long": "h" * 250,
    "newline": "evil\nhost",
}


def test_poisoned_jobs_fail_alone_and_the_good_ones_complete(scheduler, autoserv, make_host, owner, tmp_path):
    good = [job_on(owner, make_host(f"good{i}").hostname) for i in range(3)]
    poisoned = {}
    for name, bad_hostname in POISONS.items():
        host = make_host(f"bad-{name}")
        poisoned[name] = job_on(owner, host.hostname)
        poison(host, bad_hostname)
    before = files_under(tmp_path.parent) - files_under(tmp_path)

    scheduler.run_until_idle()

    assert [status(j) for j in good] == [Status.COMPLETED] * 3
    for name, job in poisoned.items():
        assert status(job) == Status.FAILED, name
        assert reason(job).startswith("The job could not start:"), reason(job)
    assert "outside RESULTS_DIR" in reason(poisoned["dotdot"])
    assert len(autoserv.calls("job")) == 3  # autoserv never ran with a poisoned hostname
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped-by-hostname").exists()
    assert files_under(tmp_path.parent) - files_under(tmp_path) == before  # nothing written beside the results
    for name in POISONS:
        host = Host.objects.get(hostname=POISONS[name])
        assert host.status == Host.Status.READY  # the host is given back, not stranded


def test_a_poisoned_owner_login_fails_its_job_alone(scheduler, autoserv, make_host, owner, tmp_path):
    good = job_on(owner, make_host("good1").hostname)
    bad = job_on(owner, make_host("host-b").hostname)
    login = "x/../../../escaped-owner"
    User.objects.bulk_create([User(login=login)])  # a row older than the login rule
    AclGroup.everyone().users.add(User.objects.get(login=login))
    Job.objects.filter(pk=bad.pk).update(owner=login)

    scheduler.run_until_idle()

    assert status(good) == Status.COMPLETED and status(bad) == Status.FAILED
    assert not any("escaped-owner" in str(p) for p in tmp_path.parent.rglob("*"))


def test_a_poisoned_special_task_fails_alone_and_its_entry_with_it(scheduler, autoserv, make_host, owner):
    good = job_on(owner, make_host("good1").hostname, run_reset=True)
    host = make_host("bad-task")
    bad = job_on(owner, host.hostname, run_reset=True)
    poison(host, "../../escaped-task")

    scheduler.run_until_idle()

    assert status(good) == Status.COMPLETED
    assert status(bad) == Status.FAILED
    assert SpecialTaskReason.objects.get(special_task__host=host).reason.startswith("The task could not start:")
    assert "The task could not start" in reason(bad)


def test_a_job_whose_directory_cannot_be_written_waits_alone_and_says_why_once(
    scheduler, autoserv, make_host, owner, caplog
):
    good = job_on(owner, make_host("good1").hostname)
    blocked = job_on(owner, make_host("blocked1").hostname)
    results = Path(scheduler.config.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    blocker = results / blocked.tag()
    blocker.write_text("a file where the job's directory belongs")

    with caplog.at_level(logging.WARNING, logger="scheduler"):
        scheduler.run_until(lambda: status(good) == Status.COMPLETED, "the good job to complete")
        scheduler.tick(5)

    assert status(blocked) == Status.STARTING
    assert reason(blocked).startswith("Waiting to start: cannot write its results")
    warnings = [r for r in caplog.records if f"job {blocked.pk} " in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]

    blocker.unlink()  # the operator frees the way
    scheduler.run_until_idle()
    assert status(blocked) == Status.COMPLETED
    assert not EntryReason.objects.filter(queue_entry__job=blocked).exists()
