"""What every tick step works with, passed in rather than held in globals."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from pathlib import Path

from django.utils import timezone

from afe.models import User
from afe.paths import inside
from drones.base import DroneManager

from .config import SchedulerConfig
from .metrics import SchedulerMetrics
from .notify import Notifier


@dataclass
class SchedulerContext:
    config: SchedulerConfig
    drones: DroneManager
    notifier: Notifier
    clock: Callable[[], datetime] = timezone.now
    metrics: SchedulerMetrics = field(default_factory=SchedulerMetrics)
    _system_user: User | None = field(default=None, repr=False)

    @cached_property
    def results_dir(self) -> Path:
        """``RESULTS_DIR``, resolved once (every result path of a tick is built under it)."""
        return self.config.results_dir.resolve()

    def path(self, *parts: str) -> Path:
        """The absolute directory of an execution path (``<job>-<owner>/<subdir>`` or ``hosts/...``).

        Raises ``afe.paths.UnsafePath`` when the parts would leave ``RESULTS_DIR``.
        """
        return inside(self.results_dir, *parts, root_resolved=True)

    @property
    def system_user(self) -> User:
        if self._system_user is None:
            self._system_user = User.system_user()
        return self._system_user
