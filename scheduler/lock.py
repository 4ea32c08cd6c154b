"""Only one scheduler per database: a lock row with a heartbeat."""
from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import SchedulerLock


class SchedulerAlreadyRunning(RuntimeError):
    """Another scheduler holds the database; the message says where."""


class DatabaseLock:
    """Hold the named scheduler lock; lost locks are noticed on ``refresh``.

    The lock lives in the database, so it works across machines. A holder
    that stops refreshing (killed, frozen, disconnected) loses the lock after
    ``expiry``; a clean shutdown releases it at once.
    """

    def __init__(self, name: str = "scheduler", expiry: timedelta = timedelta(seconds=60)) -> None:
        self.name = name
        self.expiry = expiry
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self) -> None:
        """Take the lock or raise SchedulerAlreadyRunning naming the live holder."""
        now = timezone.now()
        with transaction.atomic():
            SchedulerLock.objects.get_or_create(name=self.name)
            free = Q(holder="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - self.expiry)
            taken = SchedulerLock.objects.filter(free, name=self.name).update(
                holder=self.holder, hostname=socket.gethostname(), pid=os.getpid(),
                acquired_at=now, heartbeat_at=now,
            )
        if not taken and self._take_from_dead_local_holder(now):
            return
        if not taken:
            lock = SchedulerLock.objects.get(name=self.name)
            raise SchedulerAlreadyRunning(
                f"another scheduler is running against this database: pid {lock.pid} on "
                f"{lock.hostname} (last heartbeat {lock.heartbeat_at:%Y-%m-%d %H:%M:%S}); "
                f"stop it first, or wait {int(self.expiry.total_seconds())}s after it died"
            )

    def _take_from_dead_local_holder(self, now: datetime) -> bool:
        """A holder on this machine whose process is gone (killed -9) gives the lock up at once."""
        lock = SchedulerLock.objects.get(name=self.name)
        if lock.hostname != socket.gethostname() or lock.pid is None or _alive(lock.pid):
            return False
        return bool(
            SchedulerLock.objects.filter(name=self.name, holder=lock.holder).update(
                holder=self.holder, pid=os.getpid(), acquired_at=now, heartbeat_at=now
            )
        )

    def refresh(self, now: datetime | None = None) -> bool:
        """Renew the heartbeat; returns False when the lock was lost to another scheduler."""
        return bool(
            SchedulerLock.objects.filter(name=self.name, holder=self.holder).update(
                heartbeat_at=now or timezone.now()
            )
        )

    def release(self) -> None:
        SchedulerLock.objects.filter(name=self.name, holder=self.holder).update(
            holder="", heartbeat_at=None
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
