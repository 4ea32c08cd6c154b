"""How quickly the pages page through a big lab: 5,000 hosts and 50,000 jobs by default.

    .venv/bin/python bench/pages.py [--hosts N] [--jobs N] [--database-url URL]

Builds the lab in a fresh database (a temporary SQLite file unless
``--database-url`` names another; it is flushed first), then loads each page
a few times as a logged-in superuser through Django's test client and prints
the median time and the queries of each. Figures, not assertions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default="")
    return parser.parse_args()


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def build_lab(hosts: int, jobs: int) -> None:
    """``hosts`` hosts on 10 boards and ``jobs`` jobs of 2 entries each by 20 owners, a tenth still queued."""
    from django.core.management import call_command
    from django.utils import timezone

    from afe.models import AclGroup, Host, HostQueueEntry, Job, Label, User

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    boards = Label.objects.bulk_create([Label(name=f"board:b{i}") for i in range(10)])
    Host.objects.bulk_create([Host(hostname=f"dut{i:05d}") for i in range(hosts)], batch_size=1000)
    host_ids = list(Host.objects.order_by("pk").values_list("pk", flat=True))
    through = Host.labels.through
    through.objects.bulk_create([through(host_id=h, label_id=boards[i % 10].pk) for i, h in enumerate(host_ids)],
                                batch_size=2000)
    AclGroup.rebalance_everyone()
    owners = [f"user{i}" for i in range(20)]
    User.objects.bulk_create([User(login=o) for o in owners])
    now = timezone.now()
    Job.objects.bulk_create(
        [Job(owner=owners[i % 20], name=f"job{i}", control_file="sleep 1", created_on=now, synch_count=1)
         for i in range(jobs)], batch_size=2000)
    job_ids = list(Job.objects.order_by("pk").values_list("pk", flat=True))
    Status = HostQueueEntry.Status
    entries = []
    for n, job_id in enumerate(job_ids):
        status = Status.QUEUED if n >= jobs - jobs // 10 else Status.COMPLETED
        for k in range(2):
            entries.append(HostQueueEntry(job_id=job_id, host_id=host_ids[(2 * n + k) % len(host_ids)],
                                          status=status, **HostQueueEntry.status_flags(status)))
    HostQueueEntry.objects.bulk_create(entries, batch_size=5000)


def measure(client, url: str, repeat: int) -> tuple[float, int, int]:
    """(median milliseconds, queries, status code) of loading ``url``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), len(queries), response.status_code


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        setup_django(args.database_url or f"sqlite:///{scratch}/bench.sqlite3")
        from django.contrib.auth.models import User as DjangoUser
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()  # the test client's response context, and ALLOWED_HOSTS for 'testserver'
        start = time.perf_counter()
        build_lab(args.hosts, args.jobs)
        print(f"lab on {connection.vendor}: {args.hosts} hosts, {args.jobs} jobs, {2 * args.jobs} entries "
              f"(built in {time.perf_counter() - start:.0f} s)")
        admin = DjangoUser.objects.create_superuser("bench", password="bench")
        client = Client()
        client.force_login(admin)
        from afe.models import Host, Job

        job = Job.objects.order_by("-pk").first()
        host = Host.objects.order_by("pk").first()
        last_jobs_page = (args.jobs + 29) // 30
        pages = {
            "jobs, everyone, first page": "/afe/jobs/?owner=",
            "jobs, everyone, last page": f"/afe/jobs/?owner=&page={last_jobs_page}",
            "jobs, one owner (the default)": "/afe/jobs/?owner=user3",
            "jobs, queued only": "/afe/jobs/?owner=&state=queued",
            "jobs, finished, 100 a page": "/afe/jobs/?owner=&state=finished&per_page=100",
            "jobs, name search": "/afe/jobs/?owner=&name=job4999",
            "job page": f"/afe/jobs/{job.pk}/",
            "hosts, first page": "/afe/hosts/",
            "hosts, last page, 100 a page": f"/afe/hosts/?per_page=100&page={(args.hosts + 99) // 100}",
            "hosts, one label": "/afe/hosts/?label=board:b3",
            "host page": f"/afe/hosts/{host.pk}/",
        }
        print(f"{'page':40} {'median ms':>10} {'queries':>8}")
        for name, url in pages.items():
            ms, queries, status = measure(client, url, args.repeat)
            flag = "" if status == 200 else f"  (HTTP {status})"
            print(f"{name:40} {ms:10.1f} {queries:8d}{flag}")


if __name__ == "__main__":
    main()
