"""Celery drones: real Redis, real ``celery -A drones worker -Q drone.NAME`` subprocesses, the fake autoserv.

Each test names its drones uniquely, so their queues never meet another
run's on the shared Redis. The scheduler is the real dispatcher over the
registered drones (``drones.celery_drone.discover``), ticked from the test.
Needs Redis at ``CELERY_TEST_BROKER_URL`` (default redis://127.0.0.1:6379/0):
skipped without it, failed without it when CI=true.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from afe.models import Drone, Host, HostQueueEntry, Job, RebootBefore, User
from drones.base import DroneManager
from drones.celery import LAUNCH_TASK, app as celery_app, queue_name
from drones.celery_drone import discover
from drones.models import Process
from drones.runner import database_url
from scheduler.config import SchedulerConfig

from .celery_harness import CONFIG, Workers, celery_drones, wait_for
from .scheduler_harness import SchedulerHarness, entry_states

QUICK = {"reboot_before": RebootBefore.NEVER, "run_reset": False}
Status = HostQueueEntry.Status

@pytest.fixture
def scheduler(workers, settings) -> SchedulerHarness:
    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    return SchedulerHarness(config, make_drones=celery_drones)


@pytest.fixture
def owner(transactional_db) -> User:
    return User.system_user()


def run_until(scheduler: SchedulerHarness, done: Callable[[], object], what: str, timeout: float = 60) -> None:
    scheduler.run_until(lambda: done(), what, timeout=timeout)


def held_job(scheduler: SchedulerHarness, autoserv: Any, make_host: Callable, owner: User, name: str) -> Job:
    """A one-host job (on host1) whose autoserv runs and holds until the test releases it."""
    autoserv.set("job", "hold")
    make_host("host1", ["board:x"])
    job = Job.create(owner=owner, name=name, control_file="x", hosts=["host1"], **QUICK)
    run_until(scheduler, lambda: autoserv.calls("job"), "the job to run")
    return job


def processes_by_drone() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for drone, kind in Process.objects.values_list("drone", "kind"):
        found.setdefault(drone, set()).add(kind)
    return found


# -- registration --------------------------------------------------------------------------


def test_a_drone_registers_with_its_capacity_and_beats_and_a_second_worker_with_its_name_refuses(workers):
    name = workers.name()
    first = workers.start(name, max_processes=7)
    row = Drone.objects.get(hostname=name)
    assert (row.max_processes, row.worker_pid, row.enabled) == (7, first.pid, True)
    assert row.worker_instance and row.heartbeat_at is not None
    wait_for(lambda: Drone.objects.get(hostname=name).heartbeat_at > row.heartbeat_at, "a later heartbeat", 10)

    second = workers.start(name, wait=False)
    assert second.wait(timeout=60) != 0
    assert f"drone name {name!r} is held by another live worker" in workers.log(second)
    assert Drone.objects.get(hostname=name).worker_pid == first.pid  # the live worker keeps its name
    assert first.poll() is None


def test_a_dead_workers_name_can_be_taken_again(workers):
    name = workers.name()
    first = workers.start(name)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = workers.start(name)  # its pid is gone on this machine: no need to wait DRONE_DEAD_AFTER_SECONDS
    assert Drone.objects.get(hostname=name).worker_pid == second.pid


# -- work on drones ------------------------------------------------------------------------------


def test_a_job_lives_its_whole_life_on_a_celery_drone(scheduler, workers, autoserv, make_host, owner):
    name = workers.name()
    workers.start(name)
    make_host("host1", ["board:x"])
    autoserv.set("job", 1)  # a failed job: its host is then reset or cleaned up there too
    job = Job.create(owner=owner, name="on-celery", control_file="x", hosts=["host1"], run_verify=True, **QUICK)
    scheduler.run_until_idle()
    assert entry_states() == [(job.hostqueueentry_set.get().pk, "host1", Status.FAILED)]
    assert set(autoserv.kinds()) >= {"verify", "job", "parse"}
    assert list(processes_by_drone()) == [name]  # every process ran on the drone
    assert set(Process.objects.values_list("state", flat=True)) == {"exited"}
    assert all(p.runner_host for p in Process.objects.all())


def test_two_drones_share_the_load_within_their_capacity(scheduler, workers, autoserv, make_host, owner):
    small, big = workers.name(), workers.name()
    workers.start(small, max_processes=1)
    workers.start(big, max_processes=2)
    autoserv.set("job", "hold")
    for i in range(4):
        make_host(f"host{i}", ["board:x"])
        Job.create(owner=owner, name=f"j{i}", control_file="x", hosts=[f"host{i}"], **QUICK)
    run_until(scheduler, lambda: len(autoserv.calls("job")) == 3, "three jobs to run")
    scheduler.tick(5)
    running = Process.objects.filter(kind="job", state="running")
    assert sorted(running.values_list("drone", flat=True)) == sorted([small, big, big])
    assert Process.objects.filter(kind="job").count() == 3  # capacity 3 in all: the fourth waits
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert set(HostQueueEntry.objects.values_list("status", flat=True)) == {Status.COMPLETED}
    assert len(autoserv.calls("job")) == 4


def test_a_disabled_drone_gets_no_new_work_and_its_running_work_goes_on(scheduler, workers, autoserv, make_host,
                                                                       owner):
    off, on = workers.name(), workers.name()
    workers.start(off)
    autoserv.set("job", "hold")
    make_host("host1", ["board:x"])
    make_host("host2", ["board:x"])
    Job.create(owner=owner, name="first", control_file="x", hosts=["host1"], **QUICK)
    run_until(scheduler, lambda: autoserv.calls("job"), "the first job to run on the only drone")
    Drone.objects.filter(hostname=off).update(enabled=False)
    workers.start(on)
    Job.create(owner=owner, name="second", control_file="x", hosts=["host2"], **QUICK)
    run_until(scheduler, lambda: len(autoserv.calls("job")) == 2, "the second job to run")
    assert dict(Process.objects.filter(kind="job").values_list("job__name", "drone")) == {"first": off, "second": on}
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert set(HostQueueEntry.objects.values_list("status", flat=True)) == {Status.COMPLETED}


def test_an_abort_reaches_a_running_job_and_a_queued_one_never_starts(scheduler, workers, autoserv, make_host,
                                                                     owner):
    name = workers.name()
    worker = workers.start(name)
    autoserv.set("job", "hold")
    make_host("host1", ["board:x"])
    make_host("host2", ["board:x"])
    running = Job.create(owner=owner, name="running", control_file="x", hosts=["host1"], **QUICK)
    run_until(scheduler, lambda: autoserv.calls("job"), "the job to run")
    running.abort(by=owner)
    run_until(scheduler, lambda: running.hostqueueentry_set.get().status == Status.ABORTED, "the abort")
    killed = Process.objects.get(kind="job", job=running)
    assert killed.kill_requested and killed.signalled  # TERM reached the command: its pidfile says 271

    os.killpg(worker.pid, signal.SIGSTOP)  # the launch message waits in Redis
    try:
        waiting = Job.create(owner=owner, name="waiting", control_file="x", hosts=["host2"], **QUICK)
        run_until(scheduler, lambda: Process.objects.filter(kind="job", job=waiting).exists(), "its launch")
        waiting.abort(by=owner)
        run_until(scheduler, lambda: Process.objects.get(kind="job", job=waiting).state == "exited",
                  "the queued record to be settled as killed")
    finally:
        os.killpg(worker.pid, signal.SIGCONT)  # the worker takes the stale message now: it must not run it
    scheduler.run_until_idle()
    assert waiting.hostqueueentry_set.get().status == Status.ABORTED
    assert [c["hosts"] for c in autoserv.calls("job")] == [["host1"]]
    assert Process.objects.get(kind="job", job=waiting).runner_pid is None


def test_a_duplicate_delivery_runs_the_command_once(workers, tmp_path):
    name = workers.name()
    workers.start(name)
    counter = tmp_path / "count"
    manager = celery_drones()
    process = manager.queue(kind="verify", drone=name, command=["/bin/sh", "-c", f"echo ran >> {counter}"],
                            working_dir=str(tmp_path / "w"), log_file=str(tmp_path / "w" / "log"))
    for _ in range(3):
        celery_app.send_task(LAUNCH_TASK, args=[process.pk], queue=queue_name(name))
    wait_for(lambda: Process.objects.get(pk=process.pk).state == "exited", "the record to finish")
    time.sleep(1)
    assert counter.read_text() == "ran\n"
    assert Process.objects.get(pk=process.pk).runner_host


# -- faults ------------------------------------------------------------------------------------


def test_a_worker_killed_mid_job_leaves_the_job_running_and_a_restarted_worker_picks_up(scheduler, workers, autoserv,
                                                                                      make_host, owner):
    name = workers.name()
    worker = workers.start(name)
    job = held_job(scheduler, autoserv, make_host, owner, "survivor")
    os.kill(worker.pid, signal.SIGKILL)  # the worker only: its runners live in their own sessions
    worker.wait()
    scheduler.tick(10)
    assert job.hostqueueentry_set.get().status == Status.RUNNING
    autoserv.release("job", 0)
    run_until(scheduler, lambda: job.hostqueueentry_set.get().status == Status.PARSING, "the job to end")
    workers.start(name)  # the parse step waits for its drone, then runs there
    scheduler.run_until_idle()
    assert job.hostqueueentry_set.get().status == Status.COMPLETED
    assert len(autoserv.calls("job")) == 1


def test_a_runner_that_dies_on_a_celery_drone_is_replaced_by_one_that_adopts_its_command(
        scheduler, workers, autoserv, make_host, owner):
    name = workers.name()
    workers.start(name)
    job = held_job(scheduler, autoserv, make_host, owner, "orphan")
    process = Process.objects.get(kind="job")
    os.kill(process.runner_pid, signal.SIGKILL)  # the runner only: the command lives on
    wait_for(lambda: Process.objects.get(pk=process.pk).runner_pid != process.runner_pid,
             "the drone to adopt the command", CONFIG.heartbeat_timeout_seconds + 20)
    adopted = Process.objects.get(pk=process.pk)
    assert (adopted.state, adopted.pid) == ("running", process.pid)
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert job.hostqueueentry_set.get().status == Status.COMPLETED
    assert len(autoserv.calls("job")) == 1
    assert Process.objects.get(pk=process.pk).exit_status == 0


def test_a_scheduler_restarted_mid_job_reattaches_to_it(scheduler, workers, autoserv, make_host, owner):
    name = workers.name()
    workers.start(name)
    job = held_job(scheduler, autoserv, make_host, owner, "t")
    scheduler.restart()
    scheduler.tick(5)
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert job.hostqueueentry_set.get().status == Status.COMPLETED
    assert len(autoserv.calls("job")) == 1


def test_a_drone_machine_gone_loses_its_work_and_work_that_never_started_moves(scheduler, workers, autoserv,
                                                                              make_host, owner):
    gone, spare = workers.name(), workers.name()
    worker = workers.start(gone)
    autoserv.set("job", "hold")
    make_host("host1", ["board:x"])
    job = Job.create(owner=owner, name="lost", control_file="x", hosts=["host1"], **QUICK)
    run_until(scheduler, lambda: Process.objects.filter(kind="job", state="running").exists(), "the job to run")
    process = Process.objects.get(kind="job")
    # The machine goes: worker, runner and command all die at once.
    for pid in (worker.pid, process.runner_pid, process.pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stranded = celery_drones().queue(kind="verify", drone=gone, command=["/bin/true"],
                                     working_dir="/tmp", log_file=str(django_settings.RESULTS_DIR / "stranded.log"))
    Process.objects.filter(pk=stranded.pk).update(launched_at=process.started_at)  # its message went nowhere
    workers.start(spare)
    run_until(scheduler, lambda: Process.objects.get(pk=process.pk).state == "lost", "the job to be lost",
              timeout=CONFIG.lost_after_seconds + 30)
    run_until(scheduler, lambda: job.hostqueueentry_set.get().complete, "the entry to move on")
    run_until(scheduler, lambda: Process.objects.get(pk=stranded.pk).state == "exited", "the stranded record to run")
    assert Process.objects.get(pk=stranded.pk).drone == spare
    assert Host.objects.get(hostname="host1").status != Host.Status.RUNNING


@pytest.fixture
def private_redis(tmp_path) -> Iterator[Callable[[str], None]]:
    """A Redis of the test's own on a free port (never the machine's): ``control("start"|"stop")``."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state: dict[str, subprocess.Popen | None] = {"server": None}

    def control(action: str) -> None:
        if action == "start":
            state["server"] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                 "--dir", str(tmp_path), "--maxmemory-policy", "noeviction"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            import redis

            wait_for(lambda: _pings(redis.Redis(port=port)), "the private Redis to answer", 10)
        else:
            server = state["server"]
            server.terminate()
            server.wait(timeout=10)

    control.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    control("start")
    try:
        yield control
    finally:
        if state["server"] is not None and state["server"].poll() is None:
            state["server"].kill()


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_redis_restarted_mid_run_leaves_running_work_alone_and_queued_work_starts(
        private_redis, autoserv, transactional_db, tmp_path, settings, make_host, owner):
    from drones.celery import make_app

    if not Path("/usr/bin/redis-server").exists() and os.environ.get("CI") != "true":
        pytest.skip("redis-server is not installed")
    pool = Workers(tmp_path / "workers", private_redis.url)
    app = make_app(private_redis.url)
    config = dataclasses.replace(SchedulerConfig.from_settings(settings), tick_seconds=0.05)
    scheduler = SchedulerHarness(config, make_drones=lambda: DroneManager(
        discover(CONFIG, app), discover=lambda: discover(CONFIG, app), relaunch_after=CONFIG.relaunch_after,
        outage_after=CONFIG.heartbeat_timeout))
    try:
        name = pool.name()
        pool.start(name)
        autoserv.set("job:host1", "hold")
        make_host("host1", ["board:x"])
        make_host("host2", ["board:x"])
        first = Job.create(owner=owner, name="running", control_file="x", hosts=["host1"], **QUICK)
        run_until(scheduler, lambda: autoserv.calls("job"), "the first job to run")
        private_redis("stop")
        second = Job.create(owner=owner, name="queued", control_file="x", hosts=["host2"], **QUICK)
        started = time.monotonic()
        run_until(scheduler, lambda: second.hostqueueentry_set.get().status == Status.COMPLETED,
                  "the second job to run through the database while Redis is down")
        assert time.monotonic() - started < 60
        private_redis("start")
        autoserv.release("job:host1", 0)
        scheduler.run_until_idle()
        assert first.hostqueueentry_set.get().status == Status.COMPLETED
        assert sorted(c["hosts"][0] for c in autoserv.calls("job")) == ["host1", "host2"]  # each ran once
    finally:
        pool.stop_all()


class DatabaseProxy:
    """A TCP proxy between the drones and the database server; ``cut()`` drops every connection and
    refuses new ones until ``restore()``."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.lock = threading.Lock()
        self.pairs: list[tuple[Any, Any]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.close()
            except OSError:
                pass

    def cut(self) -> None:
        import socket

        self.open = False
        with self.lock:
            for pair in self.pairs:
                for sock in pair:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    except OSError:
                        pass
            self.pairs.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def cut_workers(workers) -> Iterator[tuple[Workers, DatabaseProxy]]:
    """Workers (and so their runners) that reach the database through a proxy the test can cut."""
    if connection.vendor != "mysql":
        pytest.skip("only a database server can be cut off")
    database = connection.settings_dict
    proxy = DatabaseProxy(database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 3306))
    original = workers.env

    def env(**extra: str) -> dict[str, str]:
        values = original(**extra)
        values["DATABASE_URL"] = database_url({**database, "HOST": "127.0.0.1", "PORT": proxy.port})
        return values

    workers.env = env  # type: ignore[method-assign]
    try:
        yield workers, proxy
    finally:
        proxy.close()


def test_the_database_cut_off_from_the_drones_for_longer_than_a_heartbeat_loses_nothing(
        scheduler, cut_workers, autoserv, make_host, owner):
    workers, proxy = cut_workers
    name = workers.name()
    workers.start(name)
    job = held_job(scheduler, autoserv, make_host, owner, "t")
    process = Process.objects.get(kind="job")
    proxy.cut()
    time.sleep(CONFIG.heartbeat_timeout_seconds + 1)  # several heartbeats missed, less than the lease
    scheduler.tick(5)
    proxy.restore()
    wait_for(lambda: Process.objects.get(pk=process.pk).heartbeat_at > process.heartbeat_at, "a heartbeat again")
    assert Process.objects.get(pk=process.pk).state == "running"
    autoserv.release("job", 0)
    scheduler.run_until_idle()
    assert job.hostqueueentry_set.get().status == Status.COMPLETED
    assert len(autoserv.calls("job")) == 1


def test_a_runner_cut_off_from_the_database_stops_its_command_before_it_is_declared_lost(
        scheduler, cut_workers, autoserv, make_host, owner):
    from drones.proctable import pid_alive

    workers, proxy = cut_workers
    name = workers.name()
    workers.start(name)
    job = held_job(scheduler, autoserv, make_host, owner, "t")
    command = Process.objects.get(kind="job").pid
    proxy.cut()
    cut_at = time.monotonic()
    wait_for(lambda: not pid_alive(command), "the runner to fence its command", CONFIG.lost_after_seconds + 10)
    fenced_after = time.monotonic() - cut_at
    assert Process.objects.get(kind="job").state == "running"  # not yet declared lost
    run_until(scheduler, lambda: Process.objects.get(kind="job").state == "lost", "the scheduler to declare it lost",
              timeout=CONFIG.lost_after_seconds + 30)
    assert fenced_after < CONFIG.lost_after_seconds
    proxy.restore()
    scheduler.run_until(lambda: job.hostqueueentry_set.get().complete, "the entry to move on")
