"""Shared fixtures: a tiny lab built through the public model API."""
from __future__ import annotations

import os

import pytest

FIGURES = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """Each test run has its own test database, so two runs side by side never share one."""
    from pytest_django.fixtures import _set_suffix_to_test_databases

    _set_suffix_to_test_databases(f"run{os.getpid()}")


@pytest.fixture
def figures(request) -> list:
    """Lines of measured figures, printed in a "figures" section at the end of the run."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter) -> None:
    lines = terminalreporter.config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)

from afe.models import AclGroup, Host, Label, User


@pytest.fixture
def system_user(db) -> User:
    return User.system_user()


@pytest.fixture
def alice(db) -> User:
    """An ordinary (non-root) user."""
    return User.objects.create(login="alice")


@pytest.fixture
def make_host(db):
    """``make_host("h1", labels=["board:x"])`` creates a valid host with those labels."""

    def make(hostname: str, labels: tuple[str, ...] | list[str] = (), **fields) -> Host:
        host = Host.objects.create(hostname=hostname, **fields)
        if labels:
            host.labels.set([Label.objects.get_or_create(name=name)[0] for name in labels])
        return host

    return make


@pytest.fixture
def lab(make_host):
    """Three hosts on board:x (host1 also pool:a) and one locked host on board:y."""
    return {
        "host1": make_host("host1", ["board:x", "pool:a"]),
        "host2": make_host("host2", ["board:x"]),
        "host3": make_host("host3", ["board:x"]),
        "locked": make_host("locked1", ["board:y"], locked=True, lock_reason="broken"),
    }


@pytest.fixture
def private_group(db, alice):
    """An ACL group with alice in it and no hosts yet."""
    group = AclGroup.objects.create(name="team-a")
    group.users.add(alice)
    return group


@pytest.fixture
def autoserv(tmp_path, settings, monkeypatch):
    """The stand-in autoserv and parser (tests/bin/fake_autoserv), with results under tmp_path."""
    from .scheduler_harness import FAKE_AUTOSERV, FakeAutoserv

    control = tmp_path / "autoserv"
    control.mkdir()
    monkeypatch.setenv("FAKE_AUTOSERV_DIR", str(control))
    settings.RESULTS_DIR = tmp_path / "results"
    settings.AUTOSERV_PATH = str(FAKE_AUTOSERV)
    settings.PARSER_PATH = str(FAKE_AUTOSERV)
    return FakeAutoserv(control)


@pytest.fixture
def scheduler(autoserv, settings, transactional_db):
    """A scheduler over the test database; its processes run the stand-in autoserv."""
    import dataclasses

    from scheduler.config import SchedulerConfig

    from .scheduler_harness import SchedulerHarness

    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    return SchedulerHarness(config)


@pytest.fixture
def broker() -> str:
    """The machine's Redis for Celery drone tests (skipped without it; failed when CI=true)."""
    from .celery_harness import broker_url

    return broker_url()


@pytest.fixture
def workers(broker, autoserv, transactional_db, tmp_path):
    """Start Celery drone workers with ``workers.start(name)``; all stopped at the end."""
    from .celery_harness import Workers, stop_workers

    pool = Workers(tmp_path / "workers", broker)
    try:
        yield pool
    finally:
        stop_workers(pool)
