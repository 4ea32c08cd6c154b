"""The durable process record: one row per command the scheduler wants run.

The row is written first (intent, state ``queued``), then a drone launches a
runner for it; the runner claims it (``queued → running``), runs the command
and records the exit (``running → exited``). A process whose runner and command
vanished without an exit status becomes ``lost``. The scheduler applies a
finished process's result once and then sets ``handled``.

Every transition is a single compare-and-set ``UPDATE ... WHERE state = old``;
the methods return whether they won, so a stale or duplicate actor changes
nothing.
"""
from __future__ import annotations

import os
import signal
from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import DurationField, ExpressionWrapper
from django.db.models.functions import Coalesce, Now
from django.utils import timezone


class ProcessQuerySet(models.QuerySet):
    def active(self) -> ProcessQuerySet:
        """Queued or running: what occupies drone capacity."""
        return self.filter(state__in=Process.ACTIVE_STATES)

    def unapplied(self) -> ProcessQuerySet:
        """Active, or finished with a result the scheduler has not applied yet: what holds a slot
        when deciding what may start (a slot frees only once its process's result is applied)."""
        return self.filter(handled=False)

    def unhandled_finished(self) -> ProcessQuerySet:
        """Exited or lost processes whose result the scheduler has not applied yet."""
        return self.filter(state__in=Process.FINISHED_STATES, handled=False)

    def for_drone(self, hostname: str) -> ProcessQuerySet:
        return self.filter(drone=hostname)

    def with_silence(self) -> ProcessQuerySet:
        """Each record annotated with ``silent_for``: how long since its runner's last heartbeat
        (or its start), measured by the database's clock, which also wrote the heartbeat."""
        return self.annotate(silent_for=ExpressionWrapper(
            Now() - Coalesce("heartbeat_at", "started_at"), output_field=DurationField()))


class Process(models.Model):
    class Kind(models.TextChoices):
        JOB = "job"
        VERIFY = "verify"
        CLEANUP = "cleanup"
        RESET = "reset"
        REPAIR = "repair"
        PROVISION = "provision"
        GATHER = "gather"
        PARSE = "parse"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        EXITED = "exited"
        LOST = "lost"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)
    FINISHED_STATES = (State.EXITED, State.LOST)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)

    # What to run, where.
    command = models.JSONField(default=list, help_text="argv, a list of strings")
    working_dir = models.CharField(max_length=1024, help_text="absolute path on the drone")
    log_file = models.CharField(max_length=1024, help_text="absolute path on the drone")
    pidfile_name = models.CharField(max_length=64, default=".autoserv_execute")
    num_processes = models.IntegerField(default=1)
    owner = models.CharField(max_length=255, blank=True)
    files = models.JSONField(
        default=dict, blank=True,
        help_text="files the runner writes before the command: {path under working_dir: text}",
    )
    drone = models.CharField(max_length=255, help_text="hostname of the drone chosen to run it")

    # For whom.
    job = models.ForeignKey(
        "afe.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="processes"
    )
    execution_subdir = models.CharField(max_length=255, blank=True)
    special_task = models.ForeignKey(
        "afe.SpecialTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="processes"
    )
    paired_with = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="paired_processes"
    )

    # Who runs it.
    pid = models.IntegerField(null=True, blank=True, help_text="the command's pid and process group")
    runner_pid = models.IntegerField(null=True, blank=True)
    runner_host = models.CharField(max_length=255, blank=True)

    # How it ended.
    exit_status = models.IntegerField(
        null=True, blank=True, help_text="a wait() status: (code << 8) | signal"
    )
    tests_failed = models.IntegerField(null=True, blank=True)
    lost_reason = models.CharField(max_length=255, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    launched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    kill_requested = models.BooleanField(default=False)
    handled = models.BooleanField(default=False, help_text="the scheduler has applied the result")

    objects = ProcessQuerySet.as_manager()

    class Meta:
        db_table = "drone_processes"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["state", "handled"], name="drone_proc_state_handled_idx"),
            models.Index(fields=["drone", "state"], name="drone_proc_drone_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} process {self.pk} on {self.drone} ({self.state})"

    # -- properties -----------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES

    @property
    def pidfile_path(self) -> str:
        return os.path.join(self.working_dir, self.pidfile_name)

    @property
    def exit_code(self) -> int | None:
        """The exit code part of ``exit_status`` (``None`` if there is no status)."""
        return None if self.exit_status is None else (self.exit_status >> 8) & 0xFF

    @property
    def term_signal(self) -> int | None:
        """The signal part of ``exit_status``; ``None`` if not signalled or no status."""
        if self.exit_status is None:
            return None
        return (self.exit_status & 0x7F) or None

    @property
    def signalled(self) -> bool:
        """Whether the status carries a signal (as ``os.WIFSIGNALED``; 271 = exit 1 + SIGTERM)."""
        return self.term_signal is not None

    @property
    def succeeded(self) -> bool:
        return self.state == self.State.EXITED and self.exit_status == 0

    def silence(self) -> timedelta | None:
        """How long the runner has been silent (None: never started).

        The database's measure when the record was read ``with_silence()``
        (heartbeats are written with the database's clock, so machines with
        skewed clocks agree); otherwise this machine's clock against the row.
        """
        measured = getattr(self, "silent_for", None)
        if measured is not None:
            return measured
        since = self.heartbeat_at or self.started_at
        return None if since is None else timezone.now() - since

    # -- compare-and-set transitions ----------------------------------------

    def _cas(self, where: dict[str, Any], **values: Any) -> bool:
        won = type(self).objects.filter(pk=self.pk, **where).update(**values) == 1
        if won:
            for name, value in values.items():
                if not hasattr(value, "resolve_expression"):  # a database-side value (Now()) is not known here
                    setattr(self, name, value)
        return won

    def mark_launched(self) -> bool:
        """Note a launch: wins while still queued and not relaunched since this object was read."""
        return self._cas(
            {"state": self.State.QUEUED, "launched_at": self.launched_at}, launched_at=timezone.now()
        )

    def claim(self, runner_pid: int, runner_host: str, pid: int | None = None, drone: str | None = None) -> bool:
        """``queued → running`` for the runner ``runner_pid`` on ``runner_host``.

        With ``drone``, only while the record is still queued for that drone (a
        record moved to another drone cannot be claimed by the old one).
        """
        now = timezone.now()
        return self._cas(
            {"state": self.State.QUEUED, **({"drone": drone} if drone else {})},
            state=self.State.RUNNING, runner_pid=runner_pid, runner_host=runner_host,
            pid=pid, started_at=now, heartbeat_at=Now(),
        )

    def record_pid(self, pid: int) -> bool:
        """Note the command's pid while running (and refresh the heartbeat)."""
        return self._cas({"state": self.State.RUNNING}, pid=pid, heartbeat_at=Now())

    def heartbeat(self) -> bool:
        """Refresh ``heartbeat_at`` (the database's time); returns whether the record is still
        running under this object's runner (``runner_pid``).

        Also refreshes ``self.kill_requested``. One query in the usual case; two
        or three when a kill has been requested or the record changed hands.
        """
        mine = {"state": self.State.RUNNING, "runner_pid": self.runner_pid}
        if self._cas({**mine, "kill_requested": False}, heartbeat_at=Now()):
            self.kill_requested = False
            return True
        row = type(self).objects.filter(pk=self.pk).values("state", "runner_pid", "kill_requested")
        row = row.first()
        if row is None:
            return False
        self.state, self.kill_requested = row["state"], row["kill_requested"]
        if row["state"] != self.State.RUNNING or row["runner_pid"] != self.runner_pid:
            return False
        return self._cas(mine, heartbeat_at=Now())

    def adopt(self, runner_pid: int, runner_host: str) -> bool:
        """Take over a running record whose runner died (compare-and-set on the old runner)."""
        return self._cas(
            {"state": self.State.RUNNING, "runner_pid": self.runner_pid,
             "runner_host": self.runner_host},
            runner_pid=runner_pid, runner_host=runner_host, heartbeat_at=Now(),
        )

    def record_exit(self, exit_status: int, tests_failed: int | None) -> bool:
        """``running → exited`` with a wait() status."""
        return self._cas(
            {"state": self.State.RUNNING},
            state=self.State.EXITED, exit_status=exit_status, tests_failed=tests_failed,
            finished_at=timezone.now(),
        )

    def mark_lost(self, reason: str) -> bool:
        """``queued``/``running`` → ``lost``; ``exit_status`` stays NULL."""
        return self._cas(
            {"state__in": self.ACTIVE_STATES},
            state=self.State.LOST, lost_reason=reason[:255], finished_at=timezone.now(),
        )

    def request_kill(self) -> bool:
        """Ask for this process to be killed; returns whether anything changed.

        A running process gets ``kill_requested`` (its runner SIGKILLs the
        command's process group). A queued one never starts: it goes straight to
        ``exited`` with a SIGKILL status, so a runner that arrives later loses the
        claim.
        """
        if self._cas(
            {"state": self.State.QUEUED},
            state=self.State.EXITED, kill_requested=True, exit_status=int(signal.SIGKILL),
            finished_at=timezone.now(),
        ):
            return True
        return self._cas({"state": self.State.RUNNING, "kill_requested": False}, kill_requested=True)

    def mark_handled(self) -> bool:
        """The scheduler applied this finished process's result (once)."""
        return self._cas({"state__in": self.FINISHED_STATES, "handled": False}, handled=True)
