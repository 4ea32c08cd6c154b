"""The scheduler's tick next to a plain-SQL floor, on a lab shaped like a real one, in one run.

    .venv/bin/python bench/scheduler_tick.py [--hosts 500] [--entries 2000] [--runs 3]
                                             [--database-url URL] [--seed N]

Builds the lab on a fresh database (a temporary SQLite file unless
``--database-url`` names a MariaDB/MySQL server, where the database
``bench_tick`` is dropped and created): 200 labels with a skewed (Zipf) spread
(40 ``board:`` labels, one per host, and 160 others, 2-4 per host), 20 ACL
groups (1-2 per host), 50 users (each in 3-6 groups), 20 % of the hosts busy
with a running entry, and ``--entries`` queued single-entry jobs of six
priorities: half on a named host, half on a ``board:`` metahost, each with
1-3 dependency labels (for a named host mostly its own labels).

Then, ``--runs`` times each, median printed:

1. **assigning tick**: the project's whole tick (``Dispatcher.tick``) on the
   fresh lab, with a drone that records launches without running anything;
   rolled back after each run, so every run sees the same lab;
2. **floor**: a plain-SQL pass doing the same reads (free hosts, their labels
   and ACLs, the queued entries, their jobs' dependencies and owners' ACLs),
   greedy matching in priority order, and set-based writes (hosts leased,
   entries bound through a temporary table, ineligible-host rows and pre-job
   reset tasks inserted in multi-row statements); rolled back too;
3. **steady tick**: after one assigning tick is committed, a tick in which
   nothing more can match, and its floor (the same reads, matching nothing);
   printed twice: as a lab where nothing moves runs it (matching and the
   waiting entries' explanations are skipped when their inputs did not
   change) and in full (as after any change).

It prints both times with their ratio and the tick's per-step breakdown, the
peak memory of a fresh process running the assigning tick on this lab, and
checks the project's assignments (each host free, carrying the metahost and
dependency labels, sharing an ACL group with the owner, used once), with its
count beside the floor's greedy count. Figures, not assertions: the goal is a
ratio of at most 2 at 5,000 hosts and 20,000 entries.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

BOARDS = 40
OTHER_LABELS = 160
GROUPS = 20
USERS = 50
BUSY_SHARE = 0.2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement; the median is printed")
    parser.add_argument("--database-url", default="", help="mysql://user@host:port/ (default: temporary SQLite)")
    parser.add_argument("--database-name", default="bench_tick",
                        help="the database made (and dropped) on that server")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)  # see scheduler_rss
    parser.add_argument("--profile", action="store_true",
                        help="also print where the assigning and the steady tick spend their time (cProfile)")
    args = parser.parse_args(argv)
    if args.hosts < 10 or args.entries < 1 or args.runs < 1:
        parser.error("--hosts must be at least 10, --entries and --runs at least 1")
    if not args.database_name.replace("_", "").isalnum():
        parser.error("--database-name: letters, digits and _ only")
    return args


def server_query(database_url: str, sql: str) -> None:
    """Run one statement on the MariaDB/MySQL server of ``database_url`` (outside any database)."""
    import MySQLdb
    import environ

    config = environ.Env.db_url_config(database_url)
    server = MySQLdb.connect(host=config["HOST"] or "127.0.0.1", port=int(config["PORT"] or 3306),
                             user=config["USER"], passwd=config["PASSWORD"] or "")
    try:
        server.cursor().execute(sql)
    finally:
        server.close()


def setup_django(database_url: str, name: str, directory: Path) -> str:
    """Point Django at a fresh database; returns a description of it."""
    if database_url:
        import environ

        config = environ.Env.db_url_config(database_url)
        server_query(database_url, f"DROP DATABASE IF EXISTS {name}")
        server_query(database_url, f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        credentials = config["USER"] + (f":{config['PASSWORD']}" if config["PASSWORD"] else "")
        url = f"mysql://{credentials}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 3306}/{name}"
        described = f"MariaDB/MySQL ({name} at {config['HOST'] or '127.0.0.1'})"
    else:
        url = f"sqlite:///{directory / 'bench.sqlite3'}"
        described = "SQLite (temporary file)"
    os.environ["DATABASE_URL"] = url
    os.environ["RESULTS_DIR"] = str(directory / "results")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return described


# -- the lab -----------------------------------------------------------------------------------


def zipf_choice(rng: random.Random, items: Sequence[Any], k: int = 1) -> list[Any]:
    """``k`` distinct items, the first ones of ``items`` far more likely (weight 1/rank)."""
    weights = [1 / (rank + 1) for rank in range(len(items))]
    chosen: list[Any] = []
    while len(chosen) < k:
        item = rng.choices(items, weights)[0]
        if item not in chosen:
            chosen.append(item)
    return chosen


def build_lab(hosts: int, entries: int, seed: int) -> dict[str, int]:
    """Bulk-create the lab (see the module docstring); returns what was made."""
    from django.db import transaction
    from django.utils import timezone

    from afe.models import AclGroup, Host, HostQueueEntry, Job, Label, Priority, User

    rng = random.Random(seed)
    now = timezone.now()
    with transaction.atomic():
        boards = Label.objects.bulk_create([Label(name=f"board:b{i}") for i in range(BOARDS)])
        others = Label.objects.bulk_create([Label(name=f"feature:f{i}") for i in range(OTHER_LABELS)])
        groups = AclGroup.objects.bulk_create([AclGroup(name=f"team{i}") for i in range(GROUPS)])
        users = User.objects.bulk_create([User(login=f"user{i}") for i in range(USERS)])
        AclGroup.users.through.objects.bulk_create([
            AclGroup.users.through(aclgroup_id=g.pk, user_id=u.pk)
            for u in users for g in rng.sample(groups, rng.randint(3, 6))
        ])
        busy_count = int(hosts * BUSY_SHARE)
        made = Host.objects.bulk_create([
            Host(hostname=f"host{i}", leased=i < busy_count, dirty=False, locked=False,
                 status=Host.Status.RUNNING if i < busy_count else Host.Status.READY)
            for i in range(hosts)
        ])
        host_labels: dict[int, list[int]] = {}
        for host in made:
            host_labels[host.pk] = [zipf_choice(rng, boards)[0].pk] + [
                label.pk for label in zipf_choice(rng, others, rng.randint(2, 4))]
        Host.labels.through.objects.bulk_create([
            Host.labels.through(host_id=h, label_id=l) for h, ids in host_labels.items() for l in ids])
        AclGroup.hosts.through.objects.bulk_create([
            AclGroup.hosts.through(aclgroup_id=g.pk, host_id=h.pk)
            for h in made for g in rng.sample(groups, rng.randint(1, 2))
        ])
        # The busy hosts run one job each.
        running = Job.objects.bulk_create([
            Job(owner=rng.choice(users).login, name=f"running{i}", control_file="x", created_on=now)
            for i in range(busy_count)
        ])
        HostQueueEntry.objects.bulk_create([
            HostQueueEntry(job_id=job.pk, host_id=made[i].pk, status=HostQueueEntry.Status.RUNNING,
                           active=True, execution_subdir=made[i].hostname, started_on=now)
            for i, job in enumerate(running)
        ])
        # The queue: half named hosts, half board: metahosts, 1-3 dependencies each.
        priorities = [Priority.WEEKLY, Priority.DAILY, Priority.DEFAULT, Priority.DEFAULT, Priority.BUILD,
                      Priority.CQ]
        jobs = Job.objects.bulk_create([
            Job(owner=rng.choice(users).login, name=f"queued{i}", control_file="x",
                priority=rng.choice(priorities), created_on=now)
            for i in range(entries)
        ])
        rows, deps = [], []
        for i, job in enumerate(jobs):
            if i % 2 == 0:
                host = rng.choice(made)
                own = [l for l in host_labels[host.pk][1:]]
                wanted = rng.sample(own, min(len(own), rng.randint(1, 3))) if rng.random() < 0.8 else [
                    l.pk for l in zipf_choice(rng, others, rng.randint(1, 3))]
                rows.append(HostQueueEntry(job_id=job.pk, host_id=host.pk))
            else:
                board = zipf_choice(rng, boards)[0]
                wanted = [l.pk for l in zipf_choice(rng, others, rng.randint(1, 3))]
                rows.append(HostQueueEntry(job_id=job.pk, meta_host_id=board.pk))
            deps += [Job.dependency_labels.through(job_id=job.pk, label_id=l) for l in wanted]
        HostQueueEntry.objects.bulk_create(rows)
        Job.dependency_labels.through.objects.bulk_create(deps)
    return {"hosts": hosts, "busy": busy_count, "entries": entries, "dependencies": len(deps)}


# -- the project's tick ------------------------------------------------------------------------


def make_dispatcher() -> Any:
    """The real dispatcher over a drone that records launches and runs nothing."""
    import dataclasses

    from drones.base import DroneBackend, DroneManager
    from scheduler.config import SchedulerConfig
    from scheduler.context import SchedulerContext
    from scheduler.dispatcher import Dispatcher
    from scheduler.notify import Notifier

    class RecordingDrone(DroneBackend):
        hostname = "bench"
        max_processes = 10_000_000

        def __init__(self) -> None:
            self.launched = 0

        def launch(self, process: Any, marked: bool = False) -> None:
            self.launched += 1

        def check(self, processes: Any, reachable_since: Any = None) -> None:
            pass

    config = dataclasses.replace(SchedulerConfig.from_settings(), max_processes_per_drone=10_000_000)
    ctx = SchedulerContext(config=config, drones=DroneManager([RecordingDrone()]), notifier=Notifier(config))
    return Dispatcher(ctx)


def afresh(dispatcher: Any) -> Any:
    """The dispatcher, made to match and explain in full on its next tick (as after any change)."""
    dispatcher.start_afresh()
    return dispatcher


def timed_tick(dispatcher: Any, rollback: bool) -> tuple[float, dict[str, float], dict[str, int]]:
    """One tick: (seconds, seconds per step, counts per step); undone afterwards when ``rollback``."""
    from django.db import transaction

    with transaction.atomic():
        started = time.perf_counter()
        report = dispatcher.tick()
        elapsed = time.perf_counter() - started
        if report.errors:
            raise SystemExit(f"the tick's steps failed: {report.errors}")
        if rollback:
            transaction.set_rollback(True)
    return elapsed, dict(report.seconds), dict(report.counts)


# -- the floor ---------------------------------------------------------------------------------


def floor_pass(write: bool) -> tuple[float, int]:
    """The plain-SQL pass (reads, greedy matching, set-based writes), rolled back; (seconds, assigned)."""
    from django.db import connection, transaction

    with transaction.atomic():
        started = time.perf_counter()
        with connection.cursor() as cursor:
            assigned = _floor(cursor, connection.vendor, write)
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed, assigned


def _floor(cursor: Any, vendor: str, write: bool) -> int:
    from scheduler.assign import grouped

    cursor.execute(
        "SELECT id FROM afe_hosts WHERE leased = %s AND locked = %s AND invalid = %s"
        " AND id NOT IN (SELECT host_id FROM afe_special_tasks WHERE is_active = %s AND is_complete = %s)",
        [False, False, False, True, False])
    free = {row[0] for row in cursor.fetchall()}
    cursor.execute("SELECT hl.host_id, hl.label_id FROM afe_hosts_labels hl JOIN afe_hosts h ON h.id = hl.host_id"
                   " WHERE h.leased = %s AND h.locked = %s", [False, False])
    host_labels = grouped(cursor.fetchall())
    cursor.execute("SELECT ah.host_id, ah.aclgroup_id FROM afe_acl_groups_hosts ah JOIN afe_hosts h"
                   " ON h.id = ah.host_id WHERE h.leased = %s AND h.locked = %s", [False, False])
    host_acls = grouped(cursor.fetchall())
    cursor.execute(
        "SELECT e.id, e.job_id, e.host_id, e.meta_host, j.priority, j.owner FROM afe_host_queue_entries e"
        " JOIN afe_jobs j ON j.id = e.job_id WHERE e.status = %s AND e.active = %s AND e.complete = %s"
        " AND e.aborted = %s ORDER BY j.priority DESC, e.job_id, e.id", ["Queued", False, False, False])
    entries = cursor.fetchall()
    cursor.execute("SELECT d.job_id, d.label_id FROM afe_jobs_dependency_labels d JOIN afe_host_queue_entries e"
                   " ON e.job_id = d.job_id WHERE e.status = %s AND e.active = %s", ["Queued", False])
    job_deps = grouped(cursor.fetchall())
    cursor.execute("SELECT u.login, au.aclgroup_id FROM afe_acl_groups_users au JOIN afe_users u"
                   " ON u.id = au.user_id")
    owner_acls = grouped(cursor.fetchall())
    cursor.execute("SELECT login, id FROM afe_users")
    user_ids = dict(cursor.fetchall())

    hosts_by_label: dict[int, list[int]] = defaultdict(list)
    for host in sorted(free):
        for label in host_labels[host]:
            hosts_by_label[label].append(host)
    taken: set[int] = set()
    pairs: list[tuple[int, int, int, int]] = []

    def fits(host: int, job: int, owner: str) -> bool:
        return (host in free and host not in taken and job_deps[job] <= host_labels[host]
                and bool(host_acls[host] & owner_acls[owner]))

    for entry, job, host, meta, _priority, owner in entries:
        if host is not None:
            chosen = host if fits(host, job, owner) else None
        else:
            chosen = next((h for h in hosts_by_label.get(meta, ()) if fits(h, job, owner)), None)
        if chosen is not None:
            taken.add(chosen)
            pairs.append((entry, chosen, job, user_ids[owner]))
    if write and pairs:
        _floor_writes(cursor, vendor, pairs)
    return len(pairs)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _floor_writes(cursor: Any, vendor: str, pairs: list[tuple[int, int, int, int]]) -> None:
    """Hosts leased, entries bound, ineligible rows and reset tasks: set-based statements."""
    from django.utils import timezone

    now = timezone.now()
    for chunk in _chunks([h for _, h, _, _ in pairs], 5000):
        cursor.execute(f"UPDATE afe_hosts SET leased = %s WHERE id IN ({', '.join(['%s'] * len(chunk))})",
                       [True, *chunk])
    cursor.execute("CREATE TEMPORARY TABLE bench_bind (entry_id INTEGER PRIMARY KEY, host_id INTEGER)")
    for chunk in _chunks(pairs, 5000):
        cursor.execute("INSERT INTO bench_bind (entry_id, host_id) VALUES " + ", ".join(["(%s, %s)"] * len(chunk)),
                       [v for e, h, _, _ in chunk for v in (e, h)])
    if vendor == "mysql":
        cursor.execute("UPDATE afe_host_queue_entries e JOIN bench_bind b ON b.entry_id = e.id"
                       " SET e.host_id = b.host_id, e.active = %s", [True])
    else:
        cursor.execute("UPDATE afe_host_queue_entries SET active = %s, host_id = (SELECT b.host_id FROM bench_bind b"
                       " WHERE b.entry_id = afe_host_queue_entries.id)"
                       " WHERE id IN (SELECT entry_id FROM bench_bind)", [True])
    cursor.execute("DROP TABLE bench_bind" if vendor != "mysql" else "DROP TEMPORARY TABLE bench_bind")
    for chunk in _chunks(pairs, 5000):
        cursor.execute("INSERT INTO afe_ineligible_host_queues (job_id, host_id) VALUES "
                       + ", ".join(["(%s, %s)"] * len(chunk)), [v for _, h, j, _ in chunk for v in (j, h)])
        cursor.execute(
            "INSERT INTO afe_special_tasks (host_id, task, queue_entry_id, requested_by_id, time_requested,"
            " is_active, is_complete, is_aborted, success) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk)),
            [v for e, h, _, u in chunk for v in (h, "Reset", e, u, now, False, False, False, False)])


# -- checking the project's assignments -----------------------------------------------------------


def check_assignments(free_before: set[int]) -> tuple[int, list[str]]:
    """The entries the assigning tick bound to hosts, checked; (how many, problems)."""
    from afe.models import AclGroup, Host, HostQueueEntry, Job
    from scheduler.assign import grouped

    bound = list(HostQueueEntry.objects.filter(job__name__startswith="queued", host__isnull=False, active=True)
                 .values_list("id", "job_id", "host_id", "meta_host_id", "job__owner"))
    host_labels = grouped(Host.labels.through.objects.values_list("host_id", "label_id"))
    host_acls = grouped(AclGroup.hosts.through.objects.values_list("host_id", "aclgroup_id"))
    owner_acls = grouped(AclGroup.users.through.objects.values_list("user__login", "aclgroup_id"))
    deps = grouped(Job.dependency_labels.through.objects.values_list("job_id", "label_id"))
    problems: list[str] = []
    seen: set[int] = set()
    for entry, job, host, meta, owner in bound:
        if host in seen:
            problems.append(f"host {host} given twice")
        seen.add(host)
        if host not in free_before:
            problems.append(f"entry {entry}: host {host} was not free")
        if meta is not None and meta not in host_labels[host]:
            problems.append(f"entry {entry}: host {host} lacks the metahost label")
        if not deps[job] <= host_labels[host]:
            problems.append(f"entry {entry}: host {host} lacks a dependency label")
        if not host_acls[host] & owner_acls[owner]:
            problems.append(f"entry {entry}: owner {owner} may not use host {host}")
    return len(bound), problems


# -- the run -----------------------------------------------------------------------------------


def profile(what: str, run: Callable[[], object]) -> None:
    """Run once under cProfile and print the 25 functions with the most cumulative time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(run)
    print(f"profile of the {what}:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)


def median_of(runs: int, measure: Callable[[], tuple]) -> tuple[float, list[tuple]]:
    results = [measure() for _ in range(runs)]
    return statistics.median(r[0] for r in results), results


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def scheduler_rss() -> float:
    """Peak RSS (MB) of a fresh process that loads Django and the scheduler and runs two assigning
    ticks on the lab built here (rolled back): what a scheduler holds with this queue."""
    import subprocess

    result = subprocess.run([sys.executable, __file__, "--rss-child"], cwd=ROOT, env=dict(os.environ),
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"measuring the scheduler's memory failed:\n{result.stdout}{result.stderr}")
    return float(result.stdout.split()[-1])


def rss_child() -> None:
    """The child of ``scheduler_rss`` (DATABASE_URL and RESULTS_DIR come from the parent)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    dispatcher = make_dispatcher()
    for _ in range(2):
        timed_tick(dispatcher, rollback=True)
    print(peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's own peak RSS: Linux's VmHWM (``ru_maxrss`` would also count the parent's
    peak, which Linux carries across the exec of a child started with vfork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rss_child:
        rss_child()
        return
    with tempfile.TemporaryDirectory(prefix="bench-tick-") as tmp:
        described = setup_django(args.database_url, args.database_name, Path(tmp))
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from afe.models import Host

        made = build_lab(args.hosts, args.entries, args.seed)
        free_before = set(Host.objects.filter(leased=False, locked=False).values_list("id", flat=True))
        print(f"{described}: {made['hosts']} hosts ({made['busy']} busy), {made['entries']} queued entries, "
              f"{made['dependencies']} dependencies; median of {args.runs} run(s)")

        dispatcher = make_dispatcher()
        assign, assign_runs = median_of(args.runs, lambda: timed_tick(dispatcher, rollback=True))
        floor, floor_runs = median_of(args.runs, lambda: floor_pass(write=True))
        floor_assigned = floor_runs[0][1]
        rss = scheduler_rss()
        assigning_profile = io.StringIO()
        if args.profile:
            with contextlib.redirect_stdout(assigning_profile):
                profile("assigning tick", lambda: timed_tick(dispatcher, rollback=True))

        with CaptureQueriesContext(connection) as queries:
            _, steps, counts = timed_tick(dispatcher, rollback=False)  # committed: the lab is now busy
        assigned, problems = check_assignments(free_before)
        steady, steady_runs = median_of(args.runs, lambda: timed_tick(dispatcher, rollback=True))
        in_full, _ = median_of(args.runs, lambda: timed_tick(afresh(dispatcher), rollback=True))
        steady_floor, _ = median_of(args.runs, lambda: floor_pass(write=True))

        print(f"assigning tick  {ms(assign)}   floor {ms(floor)}   ratio {assign / floor:5.1f}x")
        print(f"steady tick     {ms(steady)}   floor {ms(steady_floor)}   ratio {steady / steady_floor:5.1f}x")
        print(f"  in full       {ms(in_full)}   floor {ms(steady_floor)}   ratio {in_full / steady_floor:5.1f}x"
              "   (the same tick in full: matching and explaining again)")
        print(f"assigned: project {assigned}, floor (greedy) {floor_assigned}; "
              f"assignments checked: {'all correct' if not problems else f'{len(problems)} PROBLEMS'}")
        for problem in problems[:10]:
            print(f"  {problem}")
        print(f"queries in the assigning tick: {len(queries)}")
        print(f"scheduler peak RSS over two assigning ticks: {rss:.0f} MB")
        print("assigning tick by step (one run):")
        for step, seconds in sorted(steps.items(), key=lambda item: -item[1]):
            print(f"  {step:20s} {ms(seconds)}  ({counts.get(step, 0)} items)")
        steady_steps = steady_runs[0][1]
        print("steady tick by step (one run):")
        for step, seconds in sorted(steady_steps.items(), key=lambda item: -item[1]):
            print(f"  {step:20s} {ms(seconds)}")
        if args.profile:
            print(assigning_profile.getvalue())
            profile("steady tick", lambda: timed_tick(dispatcher, rollback=True))
        if problems:
            sys.exit(1)
        if args.database_url:
            connection.close()
            server_query(args.database_url, f"DROP DATABASE IF EXISTS {args.database_name}")


if __name__ == "__main__":
    main()
