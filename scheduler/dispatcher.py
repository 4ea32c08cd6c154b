"""The tick: the ordered steps of one scheduling pass, nothing else."""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.db import DatabaseError

from afe.models import DroneSet, HostQueueEntry, Job, SpecialTask
from afe.paths import UnsafePath
from drones.models import Process

from . import aborts
from .agents import Family, jobs, postjob, special_tasks
from .assign import schedule_new_jobs
from .cleanup import PeriodicCleanup
from .context import SchedulerContext
from .groups import EntryGroup, group_entries, latest_processes
from .hosts import release_idle_hosts
from .pending import explain_pending
from .postjob_rules import needs_crashinfo
from .recovery import recover
from .throttle import DroneSlot, StartRequest, admit, parse_admission
from .transitions import EntryStatus
from .unchanged import LastRun

log = logging.getLogger(__name__)
POST_JOB_KINDS = [Process.Kind.JOB, Process.Kind.GATHER, Process.Kind.PARSE]

#: Each family's start function, ``(ctx, [(item, drone), ...])``, called in this order every tick.
STARTERS: Mapping[Family, Callable[[SchedulerContext, list[Any]], None]] = MappingProxyType({
    Family.JOB: jobs.start_groups,
    Family.SPECIAL_TASK: special_tasks.start_tasks,
    Family.GATHER: postjob.start_gathering,
    Family.PARSE: postjob.start_parsing,
})


@dataclass
class TickReport:
    """What one tick did: a count per step, and the seconds each step took."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    #: Steps whose count is bookkeeping, not something that happened (entries explained again).
    BOOKKEEPING = frozenset({"pending_explained"})

    @property
    def idle(self) -> bool:
        """Whether the tick changed nothing in the lab and nothing failed."""
        return not self.errors and not any(n for step, n in self.counts.items() if step not in self.BOOKKEEPING)

    def summary(self) -> str:
        done = ", ".join(f"{name}={n}" for name, n in self.counts.items() if n)
        took = sum(self.seconds.values())
        return f"tick: {done or 'idle'} ({took * 1000:.0f} ms{', errors in ' + ', '.join(self.errors) if self.errors else ''})"


class Dispatcher:
    """Runs scheduling passes over the database; holds no state that a restart would need."""

    def __init__(self, ctx: SchedulerContext) -> None:
        self.ctx = ctx
        self.cleanup = PeriodicCleanup(ctx)
        # What the last fruitless matching and the stored explanations were computed from:
        # an idle tick neither matches nor explains again.
        self.start_afresh()
        # The last error of each item that keeps failing: logged in full once, not every tick.
        self.failing: dict[object, str] = {}

    def start_afresh(self) -> None:
        """Forget what the last ticks found unchanged: the next tick matches and explains in full."""
        self.fruitless = LastRun()
        self.explained = LastRun()

    def initialize(self, recover_hosts: bool = False) -> None:
        """Repair what a crash may have left behind, then run the start-up upkeep."""
        recover(self.ctx, recover_hosts=recover_hosts)
        self.cleanup.initialize()

    def tick(self) -> TickReport:
        """One pass; a failing step is logged and the remaining steps still run."""
        report = TickReport()
        steps: list[tuple[str, Callable[[], object]]] = [
            ("drones_refreshed", self.ctx.drones.refresh),
            ("processes_finished", self.apply_finished_processes),
            ("entries_aborted", lambda: aborts.handle_aborted_entries(self.ctx)),
            ("tasks_aborted", lambda: aborts.handle_aborted_special_tasks(self.ctx)),
            ("tasks_cancelled", special_tasks.cancel_unwanted_queued_tasks),
            ("entries_scheduled", lambda: schedule_new_jobs(self.ctx, self.fruitless)),
            ("work_started", self.start_work),
            ("processes_launched", self.ctx.drones.launch_queued),
            ("hosts_released", release_idle_hosts),
            ("pending_explained", lambda: explain_pending(self._drone_slots(), self.ctx.clock(), self.explained)),
            ("cleanup", self.cleanup.run_due),
            ("mails_sent", self.ctx.notifier.flush),
        ]
        for name, step in steps:
            started = time.monotonic()
            try:
                result = step()
            except DatabaseError:
                raise  # the command reconnects and retries the tick
            except Exception:
                log.exception("tick step %s failed; continuing with the next step", name)
                report.errors.append(name)
                result = None
            elapsed = time.monotonic() - started
            report.seconds[name] = elapsed
            report.counts[name] = result if isinstance(result, int) else len(result) if isinstance(result, list) else 0
        self.ctx.metrics.observe_tick(report)
        return report

    # -- finished processes ---------------------------------------------------------

    def apply_finished_processes(self) -> int:
        """Run the epilog of every process that ended since the last tick; returns how many.

        Special tasks, jobs, gathering and parsing are applied in bulk, one
        batch per kind. A failing epilog is logged and retried next tick; a
        failing batch is retried item by item, so one bad record never blocks
        the others.
        """
        finished = list(Process.objects.unhandled_finished().select_related("job", "paired_with"))
        if not finished:
            return 0
        self.ctx.metrics.observe_lost(p.kind for p in finished if p.state == Process.State.LOST)
        groups = self._groups_by_key({p.job_id for p in finished if p.job_id and not p.special_task_id})
        task_runs: list[Process] = []
        job_runs: list[tuple[Process, list]] = []
        gatherings: list[postjob.Ending] = []
        parsings: list[postjob.Ending] = []
        applied = 0
        for process in finished:
            key = (process.job_id, process.execution_subdir)
            if process.special_task_id:
                task_runs.append(process)
            elif process.kind == Process.Kind.JOB:
                entries = [e for s in HostQueueEntry.JOB_STATUSES
                           for e in getattr(groups.get((*key, s)), "entries", [])]
                job_runs.append((process, entries))
            elif process.kind == Process.Kind.GATHER and (group := groups.get((*key, EntryStatus.GATHERING))):
                gatherings.append(postjob.Ending(group, process.paired_with, process))
            elif process.kind == Process.Kind.PARSE and (group := groups.get((*key, EntryStatus.PARSING))):
                parsings.append(postjob.Ending(group, process.paired_with, process))
            else:
                log.warning("process %s (%s) has nothing left to update", process.pk, process.kind)
                process.mark_handled()
        applied += self._batch(special_tasks.finish_tasks, task_runs)
        applied += self._batch(jobs.finish_jobs, job_runs)
        applied += self._batch(postjob.finish_gathering, gatherings)
        applied += self._batch(postjob.finish_parsing, parsings)
        return applied

    def _report_failure(self, key: object, exc: Exception, message: str) -> None:
        """Log an item's failure with its traceback the first time, then quietly while it stays the same."""
        error = f"{type(exc).__name__}: {exc}"
        if self.failing.get(key) == error:
            log.debug("%s (still: %s)", message, error)
        else:
            log.exception(message)
        self.failing[key] = error

    def _batch(self, apply: Callable[[SchedulerContext, list], int], items: list) -> int:
        """Apply a batch at once; if that fails, item by item, so a bad one only delays itself."""
        if not items:
            return 0
        try:
            return apply(self.ctx, items)
        except Exception:
            log.exception("applying %d results at once failed; retrying them one by one", len(items))
        applied = 0
        for item in items:
            key = _item_key(item)
            try:
                applied += apply(self.ctx, [item])
            except Exception as exc:
                self._report_failure(key, exc, f"could not apply {key}; will retry next tick")
            else:
                self.failing.pop(key, None)
        return applied

    @staticmethod
    def _groups_by_key(job_ids: set[int]) -> dict[tuple[int, str, str], EntryGroup]:
        entries = HostQueueEntry.objects.filter(job_id__in=job_ids, complete=False).select_related("job", "host")
        return {(g.job.pk, g.execution_subdir, g.status): g for g in group_entries(entries)}

    # -- starting work ----------------------------------------------------------------

    def start_work(self) -> int:
        """Start what may start this tick, within the drones' capacity; returns how many things started.

        Order (§3.14): entries' jobs and crash-info collection, then special
        tasks, then hostless jobs; parse steps are limited separately.
        """
        entries = HostQueueEntry.objects.filter(
            status__in=HostQueueEntry.PROCESS_STEP_STATUSES
        ).select_related("job", "host")
        groups = group_entries(entries)
        processes = latest_processes({g.job.pk for g in groups}, POST_JOB_KINDS)

        def latest(group: EntryGroup, kind: str) -> Process | None:
            return processes.get((group.job.pk, group.execution_subdir, kind))

        def busy(group: EntryGroup, kind: str) -> bool:
            process = latest(group, kind)
            return process is not None and (process.is_active or not process.handled)

        slots = self._drone_slots()
        taking = {slot.hostname for slot in slots if slot.enabled}

        def pinned(job_process: Process | None) -> bool:
            """Post-job work stays on the job's drone, unless results are shared and that drone takes no work."""
            return not (self.ctx.drones.results_shared and job_process is not None
                        and job_process.drone not in taking)

        tasks = special_tasks.runnable_tasks()
        drone_sets = DroneSets.load(self.ctx.config.default_drone_set, [g.job for g in groups], tasks)
        wanted: dict[object, object] = {}  # a request's key → the item its family starts
        host_work: list[StartRequest] = []
        hostless_work: list[StartRequest] = []
        parse_work: list[StartRequest] = []
        nothing_to_gather: list[postjob.Ending] = []
        nothing_to_parse: list[postjob.Ending] = []
        for group in groups:
            if group.status == EntryStatus.STARTING and not group.aborted and not busy(group, Process.Kind.JOB):
                request = jobs.start_request(group, drone_sets.for_job(group.job))
                (hostless_work if group.is_hostless else host_work).append(request)
                wanted[request.key] = group
            elif group.status == EntryStatus.GATHERING and not busy(group, Process.Kind.GATHER):
                job_process = latest(group, Process.Kind.JOB)
                ran = job_process is not None and job_process.started_at is not None
                if ran and needs_crashinfo(job_process.exit_status) and not latest(group, Process.Kind.GATHER):
                    request = postjob.gather_request(group, job_process, pinned(job_process))
                    host_work.append(request)
                    wanted[request.key] = postjob.Ending(group, job_process)
                else:
                    nothing_to_gather.append(postjob.Ending(group, job_process))
            elif group.status == EntryStatus.PARSING and not busy(group, Process.Kind.PARSE):
                job_process = latest(group, Process.Kind.JOB)
                if latest(group, Process.Kind.PARSE) or not self._has_results(group):
                    nothing_to_parse.append(postjob.Ending(group, job_process))
                else:
                    request = postjob.parse_request(group, job_process, pinned(job_process))
                    parse_work.append(request)
                    wanted[request.key] = postjob.Ending(group, job_process)
        started = self._batch(postjob.finish_gathering, nothing_to_gather)
        started += self._batch(postjob.finish_parsing, nothing_to_parse)
        task_work = [special_tasks.start_request(t, drone_sets.for_task(t)) for t in tasks]
        wanted.update({request.key: task for request, task in zip(task_work, tasks)})

        running_parsers = Process.objects.active().filter(kind=Process.Kind.PARSE).count()
        parse_work = parse_work[: parse_admission(running_parsers, self.ctx.config.max_parse_processes, len(parse_work))]
        admitted = admit(host_work + task_work + hostless_work + parse_work, slots)

        chosen: dict[Family, list[tuple[object, str]]] = defaultdict(list)
        fallback = self.ctx.drones.fallback_drone()
        for (family, item_id), drone in admitted:
            if (drone := drone or fallback) is None:
                continue  # several drones and none chosen: it waits for a later tick
            chosen[family].append((wanted[family, item_id], drone))
        for family, start in STARTERS.items():
            start(self.ctx, chosen[family])
        return started + sum(len(items) for items in chosen.values())

    def _has_results(self, group: EntryGroup) -> bool:
        """Whether the group's results directory exists (a name that would leave RESULTS_DIR has none)."""
        try:
            return self.ctx.path(group.execution_path).is_dir()
        except UnsafePath:
            return False

    def _drone_slots(self) -> list[DroneSlot]:
        """Each drone's capacity and what holds it: a process keeps its slot until its result is applied."""
        active = self.ctx.drones.unapplied_processes_by_drone()
        return [
            DroneSlot(hostname=d.hostname, max_processes=d.max_processes, active_processes=active.get(d.hostname, 0),
                      enabled=d.enabled)
            for d in self.ctx.drones.drones()
        ]


def _item_key(item: object) -> object:
    """What names a batch item across ticks: its process, or its group and status."""
    if isinstance(item, tuple):
        item = item[0]
    if isinstance(item, postjob.Ending):
        return ("group", item.group.key, item.group.status)
    return ("process", getattr(item, "pk", None))


@dataclass
class DroneSets:
    """Which drones each job and special task may use (§3.16); None means any drone.

    A job uses its drone set (set from its owner's when it was created), else
    the default set; a special task uses its entry's job's set, else its
    requester's, else the default. A set with no drones means the work can
    never start.
    """

    drones_of: dict[int, frozenset[str]]
    default_id: int | None

    @classmethod
    def load(cls, default_name: str, job_list: list[Job], tasks: list[SpecialTask]) -> DroneSets:
        """Two queries at most, however many jobs and tasks."""
        default_id = DroneSet.objects.filter(name=default_name).values_list("pk", flat=True).first() \
            if default_name else None
        ids = {j.drone_set_id for j in job_list} | {t.requested_by.drone_set_id for t in tasks}
        ids |= {t.queue_entry.job.drone_set_id for t in tasks if t.queue_entry_id}
        ids = {pk for pk in ids | {default_id} if pk is not None}
        found: dict[int, set[str]] = {pk: set() for pk in ids}
        for set_id, hostname in DroneSet.drones.through.objects.filter(droneset_id__in=ids).values_list(
            "droneset_id", "drone__hostname"
        ):
            found[set_id].add(hostname)
        return cls({pk: frozenset(names) for pk, names in found.items()}, default_id)

    def _resolve(self, *candidates: int | None) -> frozenset[str] | None:
        chosen = next((pk for pk in candidates if pk is not None), self.default_id)
        return self.drones_of.get(chosen) if chosen is not None else None

    def for_job(self, job: Job) -> frozenset[str] | None:
        return self._resolve(job.drone_set_id)

    def for_task(self, task: SpecialTask) -> frozenset[str] | None:
        job_set = task.queue_entry.job.drone_set_id if task.queue_entry_id else None
        return self._resolve(job_set, task.requested_by.drone_set_id)
