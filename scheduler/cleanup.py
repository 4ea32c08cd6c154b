"""Periodic upkeep: timeouts, dead-host reverification, consistency checks (§3.17)."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Q

from afe.models import AclGroup, Host, HostQueueEntry, IneligibleHostQueue, Job, Label, Protection, SpecialTask, User

from .context import SchedulerContext

log = logging.getLogger(__name__)


@dataclass
class PeriodicCleanup:
    """Runs the user cleanup every ``clean_interval_minutes`` and the 24-hour upkeep once a day."""

    ctx: SchedulerContext
    last_user_cleanup: datetime | None = None
    last_daily: datetime | None = None
    last_reverify: datetime | None = None
    rng: random.Random = field(default_factory=random.Random)

    def initialize(self) -> None:
        """The 24-hour checks run at start; the user cleanup waits one interval."""
        now = self.ctx.clock()
        self.last_user_cleanup = now
        self.run_daily(now)

    def run_due(self) -> None:
        now = self.ctx.clock()
        interval = timedelta(minutes=self.ctx.config.clean_interval_minutes)
        if self.last_user_cleanup is None or now - self.last_user_cleanup >= interval:
            self.last_user_cleanup = now
            self.run_user_cleanup(now)
        if self.last_daily is None or now - self.last_daily >= timedelta(hours=24):
            self.run_daily(now)

    def run_user_cleanup(self, now: datetime) -> None:
        user = self.ctx.system_user
        aborted = abort_timed_out_jobs(now, user) + abort_entries_past_max_runtime(now, user)
        cleared = clear_inactive_blocks()
        fix_relations_of_deleted_rows()
        reverified = 0
        period = self.ctx.config.reverify_period_minutes
        if period and (self.last_reverify is None or now - self.last_reverify >= timedelta(minutes=period)):
            self.last_reverify = now
            reverified = reverify_dead_hosts(self.ctx.config.reverify_max_hosts_at_once, user, self.rng)
        log.info("cleanup: %d entries aborted on timeouts, %d blocks cleared, %d dead hosts reverified",
                 aborted, cleared, reverified)

    def run_daily(self, now: datetime) -> None:
        self.last_daily = now
        fixed = HostQueueEntry.objects.filter(active=True, complete=True, status=HostQueueEntry.Status.ABORTED).update(
            active=False)
        broken = HostQueueEntry.objects.filter(active=True, complete=True).count()
        if fixed or broken:
            log.warning("24h upkeep: %d aborted entries were active and complete (fixed); %d others cannot be "
                        "recovered", fixed, broken)
        platforms = Host.valid_objects.annotate(n=Count("labels", filter=Q(labels__platform=True)))
        many = list(platforms.filter(n__gt=1).values_list("hostname", flat=True))
        none = platforms.filter(n=0).count()
        if many:
            log.warning("hosts with more than one platform label: %s", ", ".join(many))
        if none:
            log.info("%d valid hosts have no platform label", none)


def abort_timed_out_jobs(now: datetime, user: User) -> int:
    """Abort jobs older than their timeout that still have incomplete entries; returns entries aborted."""
    rows = HostQueueEntry.objects.filter(complete=False).values_list("pk", "job__created_on", "job__timeout_mins")
    late = [pk for pk, created, limit in rows if created + timedelta(minutes=limit) < now]
    return len(HostQueueEntry.objects.filter(pk__in=late).abort(by=user)) if late else 0


def abort_entries_past_max_runtime(now: datetime, user: User) -> int:
    """Abort entries that have run longer than their job's max runtime; returns entries aborted."""
    rows = HostQueueEntry.objects.filter(complete=False, aborted=False, started_on__isnull=False).values_list(
        "pk", "started_on", "job__max_runtime_mins")
    late = [pk for pk, started, limit in rows if started + timedelta(minutes=limit) < now]
    return len(HostQueueEntry.objects.filter(pk__in=late).abort(by=user)) if late else 0


def clear_inactive_blocks() -> int:
    """Drop host blocks of jobs that have no incomplete entry left."""
    live_jobs = HostQueueEntry.objects.filter(complete=False).values("job_id")
    return IneligibleHostQueue.objects.exclude(job_id__in=live_jobs).delete()[0]


def fix_relations_of_deleted_rows() -> None:
    """Deleted hosts keep no labels or ACL groups; deleted labels keep no hosts or jobs."""
    dead_hosts = Host.objects.filter(invalid=True).values("pk")
    Host.labels.through.objects.filter(host_id__in=dead_hosts).delete()
    AclGroup.hosts.through.objects.filter(host_id__in=dead_hosts).delete()
    dead_labels = Label.objects.filter(invalid=True).values("pk")
    Host.labels.through.objects.filter(label_id__in=dead_labels).delete()
    Job.dependency_labels.through.objects.filter(label_id__in=dead_labels).delete()


def reverify_dead_hosts(max_at_once: int, user: User, rng: random.Random) -> int:
    """Queue a Verify for Repair Failed hosts (unlocked, valid, verifiable); at most ``max_at_once`` (0: all)."""
    dead = list(
        Host.valid_objects.filter(status=Host.Status.REPAIR_FAILED, locked=False)
        .exclude(protection=Protection.DO_NOT_VERIFY).only("pk")
    )
    if max_at_once and len(dead) > max_at_once:
        dead = rng.sample(dead, max_at_once)
    return SpecialTask.schedule_for_hosts(dead, SpecialTask.Task.VERIFY, user)
