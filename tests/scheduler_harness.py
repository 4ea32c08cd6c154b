"""Drive the real scheduler against the real local drone, with a stand-in autoserv."""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from afe.models import Host, HostQueueEntry, SpecialTask
from drones.base import DroneManager
from drones.local import LocalDrone
from scheduler.config import SchedulerConfig
from scheduler.context import SchedulerContext
from scheduler.dispatcher import Dispatcher
from scheduler.notify import Notifier

FAKE_AUTOSERV = Path(__file__).resolve().parent / "bin" / "fake_autoserv"


class FakeAutoserv:
    """The test's handle on tests/bin/fake_autoserv: its calls, its rules, its releases."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "release").mkdir(parents=True, exist_ok=True)
        self.rules: dict[str, Any] = {}

    def set(self, key: str, outcome: int | str) -> None:
        """``set("verify:host1", 1)`` fails host1's verify; ``set("job", "hold")`` holds jobs until released."""
        self.rules[key] = outcome
        (self.directory / "rules.json").write_text(json.dumps(self.rules))

    def release(self, key: str, code: int = 0) -> None:
        (self.directory / "release" / key).write_text(str(code))

    def calls(self, kind: str | None = None) -> list[dict[str, Any]]:
        log = self.directory / "calls.jsonl"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [c for c in calls if kind is None or c["kind"] == kind]

    def kinds(self) -> list[str]:
        return [c["kind"] for c in self.calls()]


class SchedulerHarness:
    """A dispatcher plus helpers to tick it until the lab reaches a state."""

    def __init__(self, config: SchedulerConfig, max_processes: int = 100,
                 make_drones: Callable[[], DroneManager] | None = None) -> None:
        """``make_drones`` builds the drone manager (default: one local drone of ``max_processes``)."""
        self.config = config
        self.max_processes = max_processes
        self.make_drones = make_drones or self._local_drone
        self.restart()

    def _local_drone(self) -> DroneManager:
        drone = LocalDrone("localhost", max_processes=self.max_processes, heartbeat_seconds=0.2,
                           heartbeat_timeout=timedelta(seconds=3), kill_grace_seconds=2)
        return DroneManager([drone], relaunch_after=timedelta(seconds=5))

    def restart(self, recover_hosts: bool = False) -> None:
        """A new scheduler over the same database, as after a crash: nothing carried over in memory."""
        self.drones = self.make_drones()
        self.notifier = Notifier(self.config)
        self.ctx = SchedulerContext(config=self.config, drones=self.drones, notifier=self.notifier)
        self.dispatcher = Dispatcher(self.ctx)
        self.dispatcher.initialize(recover_hosts=recover_hosts)

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            report = self.dispatcher.tick()
            assert not report.errors, f"tick steps failed: {report.errors}"

    def run_until(self, done: Callable[[], object], what: str = "the lab to settle", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; entries: {entry_states()}; "
                                     f"hosts: {host_states()}; tasks: {task_states()}")
            self.tick()
            time.sleep(0.05)

    def run_until_idle(self, timeout: float = 60) -> None:
        """Until every entry is complete and no special task is left to run."""
        self.run_until(
            lambda: not HostQueueEntry.objects.filter(complete=False).exists()
            and not SpecialTask.objects.filter(is_complete=False).exists(),
            "every entry and task to finish", timeout,
        )
        self.tick()  # release hosts, send mail

    def with_config(self, **changes: Any) -> None:
        self.config = dataclasses.replace(self.config, **changes)
        self.restart()


def entry_states() -> list[tuple[int, str | None, str]]:
    return list(HostQueueEntry.objects.order_by("pk").values_list("pk", "host__hostname", "status"))


def host_states() -> dict[str, str]:
    return dict(Host.objects.values_list("hostname", "status"))


def task_states() -> list[tuple[str, str, str]]:
    return [(t.host.hostname, t.task, t.status) for t in SpecialTask.objects.select_related("host").order_by("pk")]
