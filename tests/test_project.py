"""The project as a whole: settings, schema, migrations, the demo lab."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from afe.models import Host, HostQueueEntry, Job, User
from scheduler.config import SchedulerConfig

ROOT = Path(__file__).resolve().parent.parent

AFE_TABLES = {
    "afe_hosts", "afe_labels", "afe_acl_groups", "afe_users", "afe_jobs", "afe_host_queue_entries",
    "afe_special_tasks", "afe_drones", "afe_drone_sets", "afe_job_keyvals", "afe_host_attributes",
    "afe_aborted_host_queue_entries", "afe_ineligible_host_queues", "afe_atomic_groups", "afe_shards",
}
PIVOT_COLUMNS = {
    "afe_hosts_labels": {"host_id", "label_id"},
    "afe_acl_groups_hosts": {"aclgroup_id", "host_id"},
    "afe_acl_groups_users": {"aclgroup_id", "user_id"},
    "afe_jobs_dependency_labels": {"job_id", "label_id"},
    "afe_drone_sets_drones": {"droneset_id", "drone_id"},
    "afe_shards_labels": {"shard_id", "label_id"},
}


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


@pytest.mark.django_db
def test_afe_table_and_pivot_column_names():
    tables = set(connection.introspection.table_names())
    assert AFE_TABLES <= tables
    for table, expected in PIVOT_COLUMNS.items():
        assert expected <= columns(table), table
    assert {"meta_host", "execution_subdir", "aborted", "active", "complete", "deleted"} <= columns(
        "afe_host_queue_entries"
    )
    assert {"leased", "locked", "dirty", "protection", "lock_reason", "locked_by_id"} <= columns("afe_hosts")


@pytest.mark.django_db
def test_scheduler_hot_queries_are_indexed():
    with connection.cursor() as cursor:
        def indexed(table: str) -> list[list[str]]:
            found = connection.introspection.get_constraints(cursor, table).values()
            return [c["columns"] for c in found if c["index"] or c["unique"]]

        assert ["status", "active", "complete", "aborted"] in indexed("afe_host_queue_entries")
        assert ["host_id", "is_active", "is_complete"] in indexed("afe_special_tasks")
        assert ["leased", "locked", "status"] in indexed("afe_hosts")


@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 10_000


@pytest.fixture
def empty_database_url(tmp_path):
    """A brand-new database of the kind under test; dropped afterwards."""
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    params = connection.settings_dict
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    user = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    try:
        yield f"mysql://{user}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 3306}/{name}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.django_db
def test_migrations_and_the_demo_lab_from_an_empty_database(empty_database_url):
    env = {**os.environ, "DATABASE_URL": empty_database_url, "DJANGO_SETTINGS_MODULE": "settings"}

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--no-input")
    assert "4 host(s), 4 label(s), 3 job(s) created" in manage("load_demo_lab")
    assert "0 host(s), 0 label(s), 0 job(s) created" in manage("load_demo_lab")
    assert "[X]" in manage("showmigrations", "afe")


@pytest.mark.django_db
def test_demo_lab_hosts_run_locally_and_jobs_are_queued():
    call_command("load_demo_lab", stdout=open(os.devnull, "w"))
    hosts = Host.valid_objects.all()
    assert hosts.count() == 4
    assert all(h.attributes() == {"connection": "local"} for h in hosts)
    assert Job.objects.filter(name__startswith="demo:").count() == 3
    assert set(HostQueueEntry.objects.values_list("status", flat=True)) == {"Queued"}
    assert User.objects.get(login="admin").is_superuser()


def test_scheduler_config_has_the_originals_defaults():
    config = SchedulerConfig.from_settings(settings)
    assert config.tick_seconds == 0.5
    assert config.max_processes_per_drone == 1000
    assert config.max_parse_processes == 100
    assert config.pidfile_timeout_minutes == 300
    assert config.clean_interval_minutes == 5
    assert (config.reverify_period_minutes, config.reverify_max_hosts_at_once) == (30, 30)
    assert (config.max_repair_limit, config.max_provision_retries) == (2, 0)
    assert config.notify_email == ()
    assert config.wants_email_for("Completed") and config.wants_email_for("failed")
    assert not config.wants_email_for("Running")
    assert config.results_dir == Path(settings.RESULTS_DIR)


def test_scheduler_knobs_come_from_the_environment(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='settings'; django.setup();"
        "from scheduler.config import SchedulerConfig; c = SchedulerConfig.from_settings();"
        "print(c.tick_seconds, c.max_repair_limit, c.notify_email, sorted(c.notify_email_statuses), c.results_dir)"
    )
    env = {**os.environ, "SCHEDULER_TICK_SECONDS": "2.5", "SCHEDULER_MAX_REPAIR_LIMIT": "5",
           "SCHEDULER_NOTIFY_EMAIL": "ops@lab,oncall@lab", "SCHEDULER_NOTIFY_EMAIL_STATUSES": "all",
           "RESULTS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split(" ", 4) == ["2.5", "5", "('ops@lab',", "'oncall@lab')", f"['all'] {tmp_path}\n"]


def test_a_bad_setting_is_a_clear_error():
    env = {**os.environ, "SCHEDULER_MAX_REPAIR_LIMIT": "lots"}
    out = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "lots" in out.stderr
