"""Special tasks: host maintenance (verify, cleanup, reset, repair, provision)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from .hosts import Host
    from .users import User


class SpecialTaskQuerySet(models.QuerySet):
    def queued(self) -> SpecialTaskQuerySet:
        return self.filter(is_active=False, is_complete=False)

    def abort(self) -> int:
        """Ask the scheduler to abort the active tasks among these; returns how many."""
        return self.filter(is_active=True, is_complete=False).update(is_aborted=True)


class SpecialTask(models.Model):
    class Task(models.TextChoices):
        VERIFY = "Verify"
        CLEANUP = "Cleanup"
        REPAIR = "Repair"
        RESET = "Reset"
        PROVISION = "Provision"

    host = models.ForeignKey("afe.Host", on_delete=models.PROTECT)
    task = models.CharField(max_length=64, choices=Task.choices)
    requested_by = models.ForeignKey("afe.User", on_delete=models.PROTECT)
    time_requested = models.DateTimeField(auto_now_add=True)
    is_active = models.BooleanField(default=False)
    is_complete = models.BooleanField(default=False)
    is_aborted = models.BooleanField(default=False)
    time_started = models.DateTimeField(null=True, blank=True)
    time_finished = models.DateTimeField(null=True, blank=True)
    queue_entry = models.ForeignKey(
        "afe.HostQueueEntry", null=True, blank=True, on_delete=models.SET_NULL
    )
    success = models.BooleanField(default=False)

    objects = SpecialTaskQuerySet.as_manager()

    class Meta:
        db_table = "afe_special_tasks"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["host", "is_active", "is_complete"], name="afe_st_host_state_idx"),
            models.Index(fields=["is_active", "is_complete"], name="afe_st_state_idx"),
            models.Index(fields=["queue_entry", "task"], name="afe_st_hqe_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task} on {self.host} ({self.status})"

    @property
    def status(self) -> str:
        if self.is_complete:
            return "Completed" if self.success else "Failed"
        if self.is_active:
            return "Running"
        return "Queued"

    @property
    def started_on(self) -> Any:
        return self.time_started

    def execution_path(self) -> str:
        return f"hosts/{self.host.hostname}/{self.id}-{self.task.lower()}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.queue_entry_id is not None:
            from .users import User

            self.requested_by = User.objects.get_or_create(login=self.queue_entry.job.owner)[0]
        super().save(*args, **kwargs)

    @classmethod
    def schedule_special_task(cls, host: Host, task: str, requested_by: User) -> SpecialTask:
        """Queue ``task`` on ``host`` unless the same task is already queued; returns the queued one."""
        existing = cls.objects.queued().filter(host=host, task=task).first()
        if existing is not None:
            return existing
        return cls.objects.create(host=host, task=task, requested_by=requested_by)

    @classmethod
    def schedule_for_hosts(cls, hosts: Iterable[Host], task: str, requested_by: User) -> int:
        """Queue ``task`` on every host that has none queued yet; returns how many were created."""
        host_ids = {host.pk for host in hosts}
        with transaction.atomic():
            already = set(
                cls.objects.queued()
                .filter(host_id__in=host_ids, task=task)
                .values_list("host_id", flat=True)
            )
            created = cls.objects.bulk_create(
                [cls(host_id=h, task=task, requested_by=requested_by) for h in sorted(host_ids - already)]
            )
        return len(created)

    def activate(self) -> None:
        SpecialTask.objects.filter(pk=self.pk).update(is_active=True, time_started=timezone.now())
        self.refresh_from_db()

    def finish(self, success: bool) -> None:
        now = timezone.now()
        SpecialTask.objects.filter(pk=self.pk).update(
            is_active=False, is_complete=True, success=success,
            time_finished=now if self.time_started else None,
        )
        self.refresh_from_db()
