"""Host queue entries: one job's claim on one host (or metahost, or none)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from .users import User


class HostQueueEntryQuerySet(models.QuerySet):
    def abort(self, by: User) -> list[int]:
        """Request an abort of these entries and, recursively, of their child jobs' entries.

        Only entries that are neither complete nor already aborted are touched;
        the status is left for the scheduler to change. Returns the ids of the
        entries whose abort was recorded now. Queries grow with the depth of
        the parent/child tree, not with the number of entries.
        """
        from .jobs import Job

        with transaction.atomic():
            pending = self.filter(complete=False, aborted=False)
            ids = set(pending.values_list("pk", flat=True))
            jobs = set(pending.values_list("job_id", flat=True))
            frontier = set(jobs)
            while frontier:
                children = set(
                    Job.objects.filter(parent_job_id__in=frontier).values_list("pk", flat=True)
                ) - jobs
                jobs |= children
                frontier = children
                if children:
                    ids |= set(
                        HostQueueEntry.objects.filter(
                            job_id__in=children, complete=False, aborted=False
                        ).values_list("pk", flat=True)
                    )
            if not ids:
                return []
            now = timezone.now()
            AbortedHostQueueEntry.objects.bulk_create(
                [AbortedHostQueueEntry(queue_entry_id=i, aborted_by=by, aborted_on=now) for i in ids],
                ignore_conflicts=True,
            )
            HostQueueEntry.objects.filter(pk__in=ids).update(aborted=True)
        return sorted(ids)


class HostQueueEntry(models.Model):
    class Status(models.TextChoices):
        QUEUED = "Queued"
        STARTING = "Starting"
        RESETTING = "Resetting"
        VERIFYING = "Verifying"
        PROVISIONING = "Provisioning"
        PENDING = "Pending"
        RUNNING = "Running"
        GATHERING = "Gathering"
        PARSING = "Parsing"
        ABORTED = "Aborted"
        COMPLETED = "Completed"
        FAILED = "Failed"
        STOPPED = "Stopped"
        CLEANING = "Cleaning"
        TEMPLATE = "Template"

    ACTIVE_STATUSES = frozenset({
        Status.STARTING, Status.RESETTING, Status.VERIFYING, Status.PROVISIONING,
        Status.PENDING, Status.RUNNING, Status.GATHERING, Status.CLEANING,
    })
    COMPLETE_STATUSES = frozenset({
        Status.ABORTED, Status.COMPLETED, Status.FAILED, Status.STOPPED, Status.TEMPLATE,
    })
    PRE_JOB_STATUSES = frozenset({
        Status.RESETTING, Status.PROVISIONING, Status.VERIFYING, Status.PENDING, Status.QUEUED,
    })
    IDLE_PRE_JOB_STATUSES = frozenset({Status.PENDING, Status.QUEUED})
    #: Waiting on a pre-job special task (verify, reset, provision, cleanup) running on its host.
    PRE_JOB_TASK_STATUSES = frozenset({Status.VERIFYING, Status.RESETTING, Status.PROVISIONING, Status.CLEANING})
    #: Where a pre-job task's outcome may move an entry from: queued for the task, or waiting on it.
    AWAITING_PRE_JOB_STATUSES = PRE_JOB_TASK_STATUSES | {Status.QUEUED}
    #: Its job's autoserv process is being started, or runs.
    JOB_STATUSES = frozenset({Status.STARTING, Status.RUNNING})
    #: After the job: crash-info gathering, then parsing.
    POST_JOB_STATUSES = frozenset({Status.GATHERING, Status.PARSING})
    #: The scheduler starts the group's next process in these: its job, crash-info gathering, parsing.
    PROCESS_STEP_STATUSES = frozenset({Status.STARTING}) | POST_JOB_STATUSES

    job = models.ForeignKey("afe.Job", on_delete=models.CASCADE)
    host = models.ForeignKey("afe.Host", null=True, blank=True, on_delete=models.PROTECT)
    status = models.CharField(max_length=255, choices=Status.choices, default=Status.QUEUED)
    meta_host = models.ForeignKey(
        "afe.Label", null=True, blank=True, db_column="meta_host", on_delete=models.PROTECT
    )
    active = models.BooleanField(default=False)
    complete = models.BooleanField(default=False)
    deleted = models.BooleanField(default=False)
    execution_subdir = models.CharField(max_length=255, blank=True, default="")
    atomic_group = models.ForeignKey(
        "afe.AtomicGroup", null=True, blank=True, on_delete=models.SET_NULL
    )
    aborted = models.BooleanField(default=False)
    started_on = models.DateTimeField(null=True, blank=True)
    finished_on = models.DateTimeField(null=True, blank=True)

    objects = HostQueueEntryQuerySet.as_manager()

    class Meta:
        db_table = "afe_host_queue_entries"
        verbose_name = "host queue entry"
        verbose_name_plural = "host queue entries"
        constraints = [
            models.UniqueConstraint(fields=["job", "host"], name="afe_hqe_job_host_uniq"),
        ]
        indexes = [
            models.Index(fields=["status", "active", "complete", "aborted"], name="afe_hqe_status_idx"),
            models.Index(fields=["host", "active"], name="afe_hqe_host_active_idx"),
            models.Index(fields=["aborted", "complete"], name="afe_hqe_aborted_idx"),
            models.Index(fields=["started_on"], name="afe_hqe_started_idx"),
            models.Index(fields=["finished_on"], name="afe_hqe_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.host_or_metahost_name()} ({self.status})"

    @classmethod
    def status_flags(cls, status: str) -> dict[str, bool]:
        """The ``active`` and ``complete`` columns that go with ``status``."""
        return {"active": status in cls.ACTIVE_STATUSES, "complete": status in cls.COMPLETE_STATUSES}

    def save(self, *args: Any, **kwargs: Any) -> None:
        for field, value in self.status_flags(self.status).items():
            setattr(self, field, value)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "status" in update_fields:
            kwargs["update_fields"] = {*update_fields, "active", "complete"}
        super().save(*args, **kwargs)

    def is_hostless(self) -> bool:
        return self.host_id is None and self.meta_host_id is None

    def is_meta_host_entry(self) -> bool:
        return self.meta_host_id is not None

    def host_or_metahost_name(self) -> str:
        if self.host_id is not None:
            return self.host.hostname
        if self.meta_host_id is not None:
            return self.meta_host.name
        return "(hostless)"

    def execution_path(self) -> str:
        return f"{self.job.tag()}/{self.execution_subdir}"

    @staticmethod
    def compute_full_status(status: str, aborted: bool, complete: bool) -> str:
        if aborted and not complete:
            return f"Aborted ({status})"
        return status

    def full_status(self) -> str:
        return self.compute_full_status(self.status, self.aborted, self.complete)

    def abort(self, by: User) -> None:
        HostQueueEntry.objects.filter(pk=self.pk).abort(by)
        self.refresh_from_db(fields=["aborted"])


class AbortedHostQueueEntry(models.Model):
    """Who asked for an entry's abort, and when."""

    queue_entry = models.OneToOneField(HostQueueEntry, primary_key=True, on_delete=models.CASCADE)
    aborted_by = models.ForeignKey("afe.User", on_delete=models.PROTECT)
    aborted_on = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "afe_aborted_host_queue_entries"


class IneligibleHostQueue(models.Model):
    """A host already used or tried for a job (AFE's "block" row)."""

    job = models.ForeignKey("afe.Job", on_delete=models.CASCADE)
    host = models.ForeignKey("afe.Host", on_delete=models.CASCADE)

    class Meta:
        db_table = "afe_ineligible_host_queues"
        constraints = [
            models.UniqueConstraint(fields=["host", "job"], name="afe_ihq_host_job_uniq"),
        ]
