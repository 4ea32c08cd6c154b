"""The drones app: process records, the runner and the local drone.

These tests start real runner processes (``python -m drones.runner``) that talk
to the test database from another process, hence ``transaction=True``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from drones.base import DroneManager
from drones.local import LocalDrone, reap_runners
from drones.proctable import is_our_command, is_runner, kill_group, pid_alive
from drones.models import Process
from drones.pidfile import Pidfile, read_pidfile, wait_status

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT = 0.2
DEADLINE = 30.0

# A command that waits until a file "go" appears in its working directory.
WAIT_FOR_GO = 'while [ ! -e go ]; do sleep 0.02; done'


def wait_for(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_state(process: Process, *states: str, timeout: float = DEADLINE) -> Process:
    def reached() -> bool:
        process.refresh_from_db()
        return process.state in states

    wait_for(reached, f"process {process.pk} to reach {states}", timeout)
    return process


def wait_started(process: Process) -> Process:
    """Until the runner has claimed the record and recorded the command's pid."""
    def started() -> bool:
        process.refresh_from_db()
        return process.state == Process.State.RUNNING and process.pid is not None

    wait_for(started, f"process {process.pk} to start")
    return process


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "results" / "hosts" / "host1" / "1-verify"


@pytest.fixture
def make_process(workdir: Path) -> Callable[..., Process]:
    def make(command: list[str] | str, **fields) -> Process:
        if isinstance(command, str):
            command = ["/bin/sh", "-c", command]
        defaults = dict(
            kind=Process.Kind.VERIFY, command=command, working_dir=str(workdir),
            log_file=str(workdir / "debug" / "autoserv.DEBUG"), drone="localhost", owner="alice",
        )
        return Process.objects.create(**{**defaults, **fields})

    return make


@pytest.fixture
def drone(settings, tmp_path: Path) -> LocalDrone:
    settings.RESULTS_DIR = tmp_path / "results"
    return LocalDrone("localhost", heartbeat_seconds=HEARTBEAT, heartbeat_timeout=timedelta(seconds=5))


@pytest.fixture
def run_runner(tmp_path: Path):
    """Start ``python -m drones.runner`` directly (as the local drone would)."""
    started: list[subprocess.Popen] = []

    def run(*args: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "drones.runner", *args, "--heartbeat", str(HEARTBEAT),
             "--database-name", str(connection.settings_dict["NAME"])],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(child)
        return child

    yield run
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate()


@pytest.fixture(autouse=True)
def _no_leftover_processes(transactional_db):
    """Kill whatever a failed test left running before the database is flushed."""
    yield
    for process in Process.objects.filter(state=Process.State.RUNNING):
        if is_runner(process.runner_pid):
            os.kill(process.runner_pid, signal.SIGKILL)
        if process.pid and is_our_command(process.pid):
            kill_group(process.pid)
    wait_for(lambda: reap_runners() == 0, "runners to exit", timeout=10)


def age_heartbeat(process: Process) -> Process:
    Process.objects.filter(pk=process.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    process.refresh_from_db()
    return process


def kill_runner(process: Process) -> None:
    os.kill(process.runner_pid, signal.SIGKILL)
    wait_for(lambda: not is_runner(process.runner_pid), "the runner to die")


def adopt_after_runner_death(drone: LocalDrone, process: Process) -> None:
    """Launch, kill the runner, and let ``check`` start an adopting runner for the live command."""
    drone.launch(process)
    wait_started(process)
    old_runner = process.runner_pid
    kill_runner(process)
    drone.check([age_heartbeat(process)])
    wait_for(lambda: Process.objects.get(pk=process.pk).runner_pid != old_runner, "an adopting runner")
    process.refresh_from_db()


# -- records: compare-and-set transitions --------------------------------------------


def test_a_second_claim_of_the_same_record_fails(make_process):
    process = make_process("true")
    stale_copy = Process.objects.get(pk=process.pk)
    assert process.claim(runner_pid=111, runner_host="drone-a")
    assert not stale_copy.claim(runner_pid=222, runner_host="drone-b")
    process.refresh_from_db()
    assert (process.state, process.runner_pid, process.runner_host) == ("running", 111, "drone-a")
    assert process.started_at is not None and process.heartbeat_at is not None


def test_transitions_are_compare_and_set(make_process):
    process = make_process("true")
    assert not process.record_exit(0, 0), "a queued process cannot exit"
    assert not process.mark_handled(), "an unfinished process cannot be handled"
    assert not process.heartbeat()
    assert process.claim(1, "here", pid=2)
    assert process.heartbeat() and not process.kill_requested
    assert process.request_kill() and process.heartbeat() and process.kill_requested
    assert process.record_exit(271, None)
    assert not process.record_exit(0, 0), "the first exit wins"
    assert not process.mark_lost("late"), "an exited process is not lost"
    assert not process.heartbeat()
    process.refresh_from_db()
    assert (process.state, process.exit_status) == ("exited", 271)
    assert (process.exit_code, process.signalled, process.term_signal) == (1, True, 15)
    assert process.mark_handled()
    assert not Process.objects.get(pk=process.pk).mark_handled(), "handled once"
    assert Process.objects.unhandled_finished().count() == 0

    lost = make_process("true")
    assert lost.mark_lost("gone")
    lost.refresh_from_db()
    assert (lost.state, lost.exit_status, lost.lost_reason) == ("lost", None, "gone")
    assert list(Process.objects.unhandled_finished()) == [lost]


def test_killing_a_queued_process_settles_it_before_any_runner_starts(make_process, run_runner, workdir):
    process = make_process("echo ran > ran")
    assert process.request_kill()
    process.refresh_from_db()
    assert (process.state, process.exit_status, process.kill_requested) == ("exited", 9, True)
    assert run_runner(str(process.pk)).wait(timeout=DEADLINE) == 0
    assert not (workdir / "ran").exists()


def test_status_helpers_and_pidfile_parsing(tmp_path):
    assert wait_status(0) == 0 and wait_status(3) == 768 and wait_status(-9) == 9
    ok = Process(state="exited", exit_status=768)
    assert (ok.exit_code, ok.signalled, ok.term_signal, ok.succeeded) == (3, False, None, False)
    assert Process(state="exited", exit_status=0).succeeded
    assert Process(working_dir="/r/x", pidfile_name=".parser_execute").pidfile_path == "/r/x/.parser_execute"

    path = tmp_path / ".autoserv_execute"
    assert read_pidfile(path) is None
    for text, expected in [
        ("", Pidfile()),
        ("12\n", Pidfile(pid=12)),
        ("12\n256\n", Pidfile(pid=12, exit_status=256)),
        ("12\n256\n4\n", Pidfile(pid=12, exit_status=256, tests_failed=4)),
        ("12\n0\n0\n1\n", Pidfile(valid=False)),
        ("12\nabc\n", Pidfile(valid=False)),
    ]:
        path.write_text(text)
        assert read_pidfile(path) == expected, text
    assert read_pidfile(path).finished is False
    path.write_text("12\n256\n4\n")
    assert read_pidfile(path).finished


# -- the runner ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "exit_status", "tests_failed"),
    [("exit 0", 0, 0), ("exit 3", 768, None), ("kill -TERM $$", 15, None)],
    ids=["exit-0", "exit-3", "signal"],
)
def test_the_exit_status_is_recorded(drone, make_process, script, exit_status, tests_failed):
    process = make_process(script)
    drone.launch(process)
    wait_state(process, "exited")
    assert (process.exit_status, process.tests_failed) == (exit_status, tests_failed)
    assert process.signalled == (script.startswith("kill"))
    assert process.launched_at and process.started_at and process.finished_at
    assert process.pid and process.runner_pid and not process.handled


def test_a_run_records_tests_failed_logs_a_banner_and_marks_the_environment(drone, make_process, workdir):
    process = make_process(
        'echo "mark=$AUTOTEST_SCHEDULER_DARK_MARK cwd=$(pwd)"; echo oops >&2; '
        'printf "%s\\n0\\n2\\n" $$ > .autoserv_execute'
    )
    workdir.mkdir(parents=True)
    (workdir / ".autoserv_execute").write_text("1\n0\n0\n")  # stale, from an earlier run
    drone.launch(process)
    wait_state(process, "exited")
    assert (process.exit_status, process.tests_failed) == (0, 2)
    lines = Path(process.log_file).read_text().splitlines()
    assert lines[0].startswith("***** ") and "/bin/sh -c" in lines[0]
    assert any("removing stale pidfile" in line for line in lines)
    assert f"mark={process.runner_pid} cwd={workdir}" in lines
    assert "oops" in lines


def test_a_duplicate_launch_runs_the_command_only_once(drone, make_process, run_runner, tmp_path):
    counter = tmp_path / "count"
    process = make_process(f"echo ran >> {counter}; sleep 0.2")
    first, second = run_runner(str(process.pk)), run_runner(str(process.pk))
    assert first.wait(timeout=DEADLINE) == 0 and second.wait(timeout=DEADLINE) == 0
    wait_state(process, "exited")
    assert counter.read_text() == "ran\n"
    assert process.exit_status == 0

    drone.launch(process)  # a relaunch of a claimed record does nothing
    assert Process.objects.get(pk=process.pk).launched_at == process.launched_at
    wait_for(lambda: reap_runners() == 0, "no runner")
    assert counter.read_text() == "ran\n"


def test_a_kill_request_kills_the_whole_process_group(drone, make_process, workdir):
    process = make_process("sleep 60 & echo $! > child.pid; wait")
    drone.launch(process)
    wait_started(process)
    child_file = workdir / "child.pid"
    child_pid = int(wait_for(lambda: child_file.exists() and child_file.read_text().strip(), "the child pid"))
    assert pid_alive(process.pid) and pid_alive(child_pid)
    assert process.request_kill()
    wait_state(process, "exited", timeout=10)
    assert process.exit_status == signal.SIGTERM and process.signalled  # TERM first: autoserv records its abort
    wait_for(lambda: not pid_alive(process.pid) and not pid_alive(child_pid), "both processes to die", 5)


def test_a_command_that_ignores_term_is_killed_after_the_grace_period(settings, tmp_path, make_process, workdir):
    settings.RESULTS_DIR = tmp_path / "results"
    drone = LocalDrone("localhost", heartbeat_seconds=HEARTBEAT, kill_grace_seconds=1.0)
    process = make_process("trap '' TERM; sleep 60 & echo $! > child.pid; wait")
    drone.launch(process)
    wait_started(process)
    child_file = workdir / "child.pid"
    child_pid = int(wait_for(lambda: child_file.exists() and child_file.read_text().strip(), "the child pid"))
    asked = time.monotonic()
    drone.kill(process)
    time.sleep(0.5)
    assert pid_alive(process.pid) and pid_alive(child_pid), "TERM is ignored: both still run within the grace"
    wait_state(process, "exited", timeout=10)
    assert time.monotonic() - asked >= 1.0
    assert process.exit_status == signal.SIGKILL and process.kill_requested
    wait_for(lambda: not pid_alive(child_pid), "the child to die", 5)


def test_the_local_drone_kills_at_once(drone, make_process):
    slow = LocalDrone("localhost", heartbeat_seconds=60)  # the runner will not notice for a minute
    process = make_process("sleep 60")
    slow.launch(process)
    wait_started(process)
    drone.kill(process)
    wait_state(process, "exited", timeout=10)
    assert process.exit_status == signal.SIGTERM and process.kill_requested


@pytest.mark.parametrize("case", ["missing", "not-executable", "bad-cwd"])
def test_a_command_that_cannot_start_is_an_ordinary_failure(drone, make_process, tmp_path, case):
    if case == "missing":
        process = make_process(["/nonexistent/autoserv", "-p"])
    elif case == "not-executable":
        script = tmp_path / "autoserv"
        script.write_text("#!/bin/sh\nexit 0\n")
        process = make_process([str(script)])
    else:
        (tmp_path / "a-file").write_text("")
        process = make_process(["true"], working_dir=str(tmp_path / "a-file" / "wd"),
                               log_file=str(tmp_path / "log" / "autoserv.DEBUG"))
    drone.launch(process)
    wait_state(process, "exited")
    assert (process.exit_status, process.exit_code, process.tests_failed) == (127 << 8, 127, None)
    assert "cannot start the command" in Path(process.log_file).read_text()


def test_the_runner_writes_the_files_the_record_carries_before_the_command(drone, make_process, workdir):
    process = make_process("cat host_keyvals/host1 > seen", files={"host_keyvals/host1": "platform=x86\nlabels=a,b\n"})
    drone.launch(process)
    wait_state(process, "exited")
    assert process.exit_status == 0
    assert (workdir / "seen").read_text() == "platform=x86\nlabels=a,b\n"


@pytest.mark.parametrize("files", [{"../../outside": "x"}, {"/etc/passwd-copy": "x"}, {"ok": 3}, ["not", "a", "map"]])
def test_files_that_would_leave_the_working_directory_keep_the_command_from_starting(
    drone, make_process, workdir, tmp_path, files
):
    process = make_process("touch ran", files=files)
    drone.launch(process)
    wait_state(process, "exited")
    assert (process.exit_status, process.exit_code) == (127 << 8, 127)
    assert "cannot start the command" in Path(process.log_file).read_text()
    assert not (workdir / "ran").exists()
    assert not (workdir.parent.parent / "outside").exists()


def test_the_runner_outlives_the_process_that_launched_it(make_process, workdir, tmp_path):
    process = make_process(f"{WAIT_FOR_GO}; exit 5")
    launcher = (
        "import sys\n"
        "from django.conf import settings\n"
        "settings.DATABASES['default']['NAME'] = sys.argv[1]\n"
        "import django; django.setup()\n"
        "from drones.local import LocalDrone\n"
        "from drones.models import Process\n"
        "drone = LocalDrone(heartbeat_seconds=0.2, runner_log=sys.argv[3])\n"
        "drone.launch(Process.objects.get(pk=int(sys.argv[2])))\n"
    )
    subprocess.run(
        [sys.executable, "-c", launcher, str(connection.settings_dict["NAME"]), str(process.pk),
         str(tmp_path / "runners.log")],
        cwd=ROOT, check=True, timeout=DEADLINE,
    )
    wait_started(process)  # the launcher has exited; its runner goes on
    (workdir / "go").touch()
    wait_state(process, "exited")
    assert process.exit_status == 5 << 8


# -- LocalDrone.check: settling records whose runner died ------------------------------


def test_check_records_the_exit_from_the_pidfile_when_the_runner_died(drone, make_process, workdir):
    process = make_process(f'{WAIT_FOR_GO}; printf "%s\\n768\\n1\\n" $$ > .autoserv_execute; exit 3')
    drone.launch(process)
    wait_started(process)
    runner_pid = process.runner_pid

    drone.check([age_heartbeat(process)])  # a late heartbeat from a live runner is left alone
    process.refresh_from_db()
    assert process.state == "running" and process.runner_pid == runner_pid

    kill_runner(process)
    (workdir / "go").touch()
    wait_for(lambda: not pid_alive(process.pid), "the command to exit")
    drone.check([age_heartbeat(process)])
    process.refresh_from_db()
    assert (process.state, process.exit_status, process.tests_failed) == ("exited", 768, 1)


def test_check_marks_the_process_lost_when_runner_and_command_are_gone(drone, make_process, workdir):
    process = make_process(WAIT_FOR_GO)
    drone.launch(process)
    wait_started(process)
    kill_runner(process)
    (workdir / "go").touch()
    wait_for(lambda: not pid_alive(process.pid), "the command to exit")

    drone.check([process])  # the heartbeat is still fresh: nothing happens yet
    process.refresh_from_db()
    assert process.state == "running"
    drone.check([age_heartbeat(process)])
    process.refresh_from_db()
    assert (process.state, process.exit_status) == ("lost", None)
    assert process.lost_reason


@pytest.mark.parametrize("with_pidfile", [True, False], ids=["pidfile", "no-pidfile"])
def test_check_adopts_a_command_that_outlived_its_runner(drone, make_process, workdir, with_pidfile):
    ending = 'printf "%s\\n256\\n0\\n" $$ > .autoserv_execute; exit 1' if with_pidfile else "exit 1"
    process = make_process(f"{WAIT_FOR_GO}; {ending}")
    adopt_after_runner_death(drone, process)
    assert process.state == "running" and is_runner(process.runner_pid)
    assert process.heartbeat_at > timezone.now() - timedelta(minutes=1)

    (workdir / "go").touch()
    wait_state(process, "exited", "lost")
    if with_pidfile:
        assert (process.state, process.exit_status, process.tests_failed) == ("exited", 256, 0)
    else:
        assert (process.state, process.exit_status) == ("lost", None)


def test_an_adopting_runner_honours_kill_requests_with_term(drone, make_process):
    process = make_process("sleep 60")
    adopt_after_runner_death(drone, process)
    assert process.request_kill()
    wait_state(process, "exited", timeout=10)
    assert process.exit_status == signal.SIGTERM
    assert not pid_alive(process.pid)


def test_an_adopting_runner_kills_a_command_that_ignores_term_after_the_grace(drone, make_process):
    drone.kill_grace_seconds = 1.0
    process = make_process("trap '' TERM; while true; do sleep 0.05; done")
    adopt_after_runner_death(drone, process)
    assert process.request_kill()
    started = time.monotonic()
    wait_state(process, "exited", timeout=15)
    assert process.exit_status == signal.SIGKILL
    assert time.monotonic() - started >= 1.0  # TERM first, KILL only after the grace
    assert not pid_alive(process.pid)


# -- DroneManager -------------------------------------------------------------------------


def test_the_manager_queues_intent_then_launches_it(drone, workdir):
    manager = DroneManager([drone])
    assert [d.hostname for d in manager.drones()] == ["localhost"]
    common = dict(kind="verify", working_dir=str(workdir), log_file=str(workdir / "log"))
    with pytest.raises(ValueError):
        manager.queue(command="not a list", **common)
    first = manager.queue(command=["/bin/sh", "-c", "exit 0"], num_processes=2, **common)
    second = manager.queue(command=["/bin/sh", "-c", "exit 1"], **common)
    assert (first.state, first.drone, first.launched_at) == ("queued", "localhost", None)
    assert manager.active_processes_by_drone() == {"localhost": 3}

    with CaptureQueriesContext(connection) as queries:
        launched = manager.launch_queued()
    assert launched == [first, second]
    assert len(queries) == 2, "one read, then one update marking every launch"
    assert manager.launch_queued() == []
    wait_state(first, "exited")
    wait_state(second, "exited")
    assert (first.exit_status, second.exit_status) == (0, 256)
    assert manager.active_processes_by_drone() == {"localhost": 0}


def test_refresh_relaunches_stale_launches_and_gives_up_on_ancient_ones(drone, make_process):
    manager = DroneManager([drone], relaunch_after=timedelta(seconds=30), start_timeout=timedelta(hours=1))
    long_ago = timezone.now() - timedelta(minutes=5)
    stale = make_process("exit 0", launched_at=long_ago)  # launched, but no runner ever claimed it
    fresh = make_process("exit 0", launched_at=timezone.now())  # launched just now: left alone
    ancient = make_process("exit 0", created_at=long_ago - timedelta(hours=2), launched_at=long_ago)
    manager.refresh()
    wait_state(stale, "exited")
    assert stale.exit_status == 0
    fresh.refresh_from_db()
    assert fresh.state == "queued"
    ancient.refresh_from_db()
    assert (ancient.state, ancient.exit_status) == ("lost", None)


def _make_records(n: int) -> None:
    states = ["queued", "running", "exited", "lost"]
    Process.objects.bulk_create(
        Process(
            kind="job", command=["true"], working_dir="/r", log_file="/r/log",
            drone="localhost" if i % 2 else "drone2", state=states[i % 4], num_processes=i % 3 + 1,
            heartbeat_at=timezone.now(), runner_host="elsewhere",
        )
        for i in range(n)
    )


def _expected_counts() -> dict[str, int]:
    counts = {"localhost": 0, "drone2": 0}
    for process in Process.objects.all():
        if process.is_active:
            counts[process.drone] += process.num_processes
    return counts


def test_active_processes_by_drone_is_one_query_whatever_the_number_of_records(drone):
    manager = DroneManager([drone, LocalDrone("drone2")])
    query_counts = []
    for n in (2, 20):
        Process.objects.all().delete()
        _make_records(n)
        with CaptureQueriesContext(connection) as queries:
            counts = manager.active_processes_by_drone()
        query_counts.append(len(queries))
        assert counts == _expected_counts()
    assert query_counts == [1, 1]


def test_refresh_costs_the_same_for_2_or_20_healthy_records(drone):
    manager = DroneManager([drone, LocalDrone("drone2")])
    query_counts = []
    for n in (2, 20):
        Process.objects.all().delete()
        _make_records(n)
        Process.objects.filter(state="queued").update(launched_at=timezone.now())
        with CaptureQueriesContext(connection) as queries:
            manager.refresh()
            manager.launch_queued()
        query_counts.append(len(queries))
    assert query_counts[0] == query_counts[1] == 2


def test_manager_from_settings_uses_the_local_drone(settings):
    settings.CELERY_BROKER_URL = ""
    manager = DroneManager.from_settings()
    assert [(type(d).__name__, d.hostname) for d in manager.drones()] == [("LocalDrone", "localhost")]
    assert manager.drone("localhost").max_processes == django_settings.SCHEDULER["max_processes_per_drone"]


def test_with_a_broker_the_manager_reads_the_registered_celery_drones_every_tick(settings, db):
    from drones.registration import register

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    register("d1", "w1", max_processes=3, machine="m", pid=1, dead_after=timedelta(minutes=1))
    manager = DroneManager.from_settings()
    assert [(type(d).__name__, d.hostname, d.max_processes) for d in manager.drones()] == [("CeleryDrone", "d1", 3)]
    register("d2", "w2", max_processes=5, machine="m", pid=2, dead_after=timedelta(minutes=1))
    manager.refresh()
    assert sorted(d.hostname for d in manager.drones()) == ["d1", "d2"]
    assert manager.fallback_drone() is None  # several drones: no default, work waits for a choice


def test_the_admin_lists_processes_and_can_kill_them(admin_client, make_process):
    running = make_process("true")
    running.claim(runner_pid=1, runner_host="elsewhere", pid=2)
    url = reverse("admin:drones_process_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200 and b"verify" in response.content
    response = admin_client.post(
        url, {"action": "kill_processes", "_selected_action": [running.pk]}
    )
    assert response.status_code == 302
    running.refresh_from_db()
    assert running.kill_requested


def test_a_record_run_from_another_machine_name_is_settled_once_long_silent(drone, make_process):
    """The scheduler moved (a recreated container): the old runner cannot be inspected, only outwaited."""
    from django.utils import timezone

    process = make_process("true")
    assert process.claim(runner_pid=1234, runner_host="old-container", pid=4321)
    Process.objects.filter(pk=process.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=30))
    process.refresh_from_db()
    drone.check([process])  # silent, but not for ten heartbeat timeouts yet
    process.refresh_from_db()
    assert process.state == "running"
    Process.objects.filter(pk=process.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    process.refresh_from_db()
    drone.check([process])
    process.refresh_from_db()
    assert process.state == "lost" and "old-container" in process.lost_reason


def test_a_recycled_pid_running_another_records_command_is_not_ours(drone, make_process, workdir):
    process = make_process(WAIT_FOR_GO)
    drone.launch(process)
    wait_started(process)
    assert is_our_command(process.pid, process.pk)
    assert not is_our_command(process.pid, process.pk + 1000)
    (workdir / "go").touch()
    wait_state(process, "exited")


# -- Celery drone registration (the database side; the workers are in test_celery_drones.py) ----------


def test_a_drone_name_is_held_by_one_live_worker_at_a_time(db):
    from afe.models import Drone
    from drones.celery_drone import discover
    from drones.config import DroneConfig
    from drones.registration import heartbeat, register, release

    alive = timedelta(minutes=1)
    common = dict(max_processes=4, machine="m1", dead_after=alive)
    assert register("d1", "first", pid=100, **common)
    assert not register("d1", "second", pid=200, **common)  # alive: refused
    assert register("d1", "second", pid=200, is_gone=lambda pid: pid == 100, **common)  # same machine, pid gone
    assert not heartbeat("d1", "first") and heartbeat("d1", "second")
    Drone.objects.filter(hostname="d1").update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert register("d1", "third", pid=300, **{**common, "machine": "m2"})  # silent for longer than dead_after
    assert release("d1", "third") and not release("d1", "third")

    Drone.objects.filter(hostname="d1").update(max_processes_limit=2)
    register("d2", "other", pid=400, **common)
    Drone.objects.filter(hostname="d2").update(enabled=False)
    drones = {d.hostname: d for d in discover(DroneConfig(dead_after_seconds=60))}
    assert (drones["d1"].max_processes, drones["d1"].enabled) == (2, False)  # released: not alive
    assert (drones["d2"].max_processes, drones["d2"].enabled) == (4, False)  # alive but disabled


def test_a_warm_spawner_forks_runners_that_outlive_it(settings, tmp_path, make_process, transactional_db):
    from drones.spawner import Spawner

    settings.RESULTS_DIR = tmp_path / "results"
    spawner = Spawner(tmp_path / "runners.log", Path(django_settings.BASE_DIR))
    drone = LocalDrone("localhost", heartbeat_seconds=HEARTBEAT, spawner=spawner)
    quick = make_process("exit 3")
    slow = make_process("sleep 2; exit 0")
    assert spawner.spawn(["not-a-number"])  # a runner that fails its argument parsing: logged, nothing else
    drone.launch(quick)
    drone.launch(slow)
    wait_state(quick, "exited")
    assert quick.exit_status == 3 << 8 and quick.runner_host
    wait_started(slow)
    assert is_runner(slow.runner_pid)  # a spawner's fork is known as a runner (never adopted while alive)
    spawner.stop()  # the worker went away: the spawner exits, the runner goes on
    wait_state(slow, "exited", timeout=15)
    assert slow.exit_status == 0
    assert os.getpid() not in {quick.runner_pid, slow.runner_pid}


def test_after_an_outage_runners_get_the_whole_lost_timeout_to_beat_again(make_process, db):
    from drones.celery_drone import CeleryDrone

    drone = CeleryDrone("d1", max_processes=5, lost_after=timedelta(seconds=1))
    manager = DroneManager([drone], outage_after=timedelta(seconds=0.5))
    silent = make_process("true", drone="d1")
    silent.claim(runner_pid=1, runner_host="elsewhere", pid=2)
    Process.objects.filter(pk=silent.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    manager.refresh()  # the first refresh (a restarted scheduler): old heartbeats are not the runners' fault
    assert Process.objects.get(pk=silent.pk).state == "running"
    time.sleep(0.7)  # longer than outage_after without a refresh: the database was away
    manager.refresh()
    assert Process.objects.get(pk=silent.pk).state == "running"
    time.sleep(0.4)
    manager.refresh()
    assert Process.objects.get(pk=silent.pk).state == "running"  # 0.4 s since the outage < lost_after
    for _ in range(4):
        time.sleep(0.3)
        manager.refresh()
    assert Process.objects.get(pk=silent.pk).state == "lost"
