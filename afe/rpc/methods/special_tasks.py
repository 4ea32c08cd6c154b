"""Special task methods: reverify and repair hosts, list and abort special tasks, host history."""
from __future__ import annotations

import datetime
from typing import Any

from django.db import DataError
from django.db.models import Q, QuerySet

from ...identity import Caller
from ...models import Host, HostQueueEntry, Job, SpecialTask
from ...permissions import check_hosts
from .. import arguments, query, render
from ..registry import rpc
from ..query import MAX_QUERY_LIMIT
from ..wire import DATETIME_FORMAT, InvalidArguments
from .hosts import host_queryset

_PAGING = ("query_start", "query_limit", "sort_by")
#: Most rows one host-history call reads of each side (entries, tasks), and so returns.
HISTORY_MAX_ROWS = 10_000


def _unpaged(filter_data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filter_data.items() if k not in _PAGING}


def _require_filter(filter_data: dict[str, Any], what: str) -> None:
    lookups, _ = query.split_filter(filter_data)
    if not lookups:
        raise InvalidArguments({"filter": f"Say which {what}, e.g. id__in=[...] or hostname__in=[...]."})


# --- reverify, repair, abort ---------------------------------------------------------------------


def _schedule(caller: Caller, task: str, filter_data: dict[str, Any]) -> list[str]:
    """Queue ``task`` on the hosts the filter matches (a shared ACL group needed); their sorted names."""
    _require_filter(filter_data, "hosts")
    hosts = query.rows(host_queryset(**filter_data))
    check_hosts(caller.user, hosts)
    SpecialTask.schedule_for_hosts(hosts, task, requested_by=caller.user)
    return sorted({host.hostname for host in hosts}, key=Host.sort_key)


@rpc(writes=True)
def reverify_hosts(caller: Caller, **filter_data: Any) -> list[str]:
    """Queue a Verify on every host the filter (as ``get_hosts``) matches; returns their hostnames."""
    return _schedule(caller, SpecialTask.Task.VERIFY, filter_data)


@rpc(writes=True)
def repair_hosts(caller: Caller, **filter_data: Any) -> list[str]:
    """Queue a Repair on every host the filter (as ``get_hosts``) matches; returns their hostnames."""
    return _schedule(caller, SpecialTask.Task.REPAIR, filter_data)


@rpc(writes=True)
def abort_special_tasks(caller: Caller, **filter_data: Any) -> None:
    """Ask the scheduler to abort the matching tasks that are running (queued ones are left alone)."""
    _require_filter(filter_data, "special tasks")
    lookups, paging = query.split_filter(filter_data)
    tasks = query.filtered(SpecialTask.objects.all(), lookups)
    if paging:
        tasks = SpecialTask.objects.filter(pk__in=[t.pk for t in query.rows(query.paged(tasks, **paging))])
    try:
        tasks.abort()
    except (DataError, ValueError, TypeError, OverflowError) as exc:
        raise InvalidArguments({"filter": f"The filter holds a value the database cannot compare: {exc}"}) from None


# --- listing tasks -------------------------------------------------------------------------------


def task_queryset(base: QuerySet | None = None, **filter_data: Any) -> QuerySet:
    """Tasks (of ``base``, default all) matching the filter, in id order unless ``sort_by`` says otherwise."""
    return query.apply((SpecialTask.objects.all() if base is None else base).order_by("pk"), filter_data)


@rpc
def get_special_tasks(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """Every field of each task, ``host`` as a host dict, ``queue_entry`` as an entry dict or null."""
    return render.special_task_dicts(task_queryset(**filter_data))


@rpc
def get_num_special_tasks(caller: Caller, **filter_data: Any) -> int:
    return task_queryset(**_unpaged(filter_data)).count()


def _host(value: Any, argument: str) -> Host:
    """A host by id or name, deleted (one-time) hosts included: their history stays."""
    return arguments.smart_get(Host.objects.all(), value, argument)


@rpc
def get_host_special_tasks(caller: Caller, host_id: Any, **filter_data: Any) -> list[dict[str, Any]]:
    """``get_special_tasks`` of one host (by id or hostname)."""
    host = _host(host_id, "host_id")
    return render.special_task_dicts(task_queryset(SpecialTask.objects.filter(host=host), **filter_data))


@rpc
def get_host_num_special_tasks(caller: Caller, host: Any, **filter_data: Any) -> int:
    row = _host(host, "host")
    return task_queryset(SpecialTask.objects.filter(host=row), **_unpaged(filter_data)).count()


# --- host history --------------------------------------------------------------------------------


def _time_bounds(field: str, start_time: Any, end_time: Any) -> dict[str, Any]:
    bounds = {}
    for suffix, value, argument in (("gte", start_time, "start_time"), ("lte", end_time, "end_time")):
        if value not in (None, ""):
            bounds[f"{field}__{suffix}"] = _when(value, argument)
    return bounds


def _when(value: Any, argument: str) -> datetime.datetime:
    """A time given as ``YYYY-MM-DD HH:MM[:SS]`` (AFE's rendering) or as epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str):
        for fmt in (DATETIME_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                return datetime.datetime.strptime(value.strip(), fmt)
            except ValueError:
                continue
    raise InvalidArguments({argument: f"{str(value)[:60]!r} is not a time like 'YYYY-MM-DD HH:MM:SS'."})


def _history(host: Host, start_time: Any, end_time: Any) -> tuple[QuerySet, QuerySet]:
    """(entries, tasks) of one host, newest first, within the time bounds."""
    entries = HostQueueEntry.objects.filter(host=host, **_time_bounds("started_on", start_time, end_time))
    tasks = SpecialTask.objects.filter(host=host, **_time_bounds("time_started", start_time, end_time))
    return entries.order_by("-pk"), tasks.order_by("-pk")


@rpc
def get_host_queue_entries_and_special_tasks(caller: Caller, host: Any, query_start: Any = None,
                                             query_limit: Any = None, start_time: Any = None,
                                             end_time: Any = None) -> list[dict[str, Any]]:
    """A host's jobs and special tasks interleaved, newest first (AFE's host history page).

    Each row is ``{type: 'Job'|'Verify'|..., host, job, execution_path, status,
    started_on, id: '<id><type>', oid}``. Both sides are read with the same
    bounded limit (``query_start + query_limit``, at most ``HISTORY_MAX_ROWS``)
    and merged here, so the queries are the same however long the history is;
    without a ``query_limit`` at most ``HISTORY_MAX_ROWS`` rows come back.
    """
    row = _host(host, "host")
    start = 0 if query_start is None else arguments.as_int(query_start, "query_start", 0, MAX_QUERY_LIMIT)
    limit = None if query_limit is None else arguments.as_int(query_limit, "query_limit", 0, MAX_QUERY_LIMIT)
    bound = HISTORY_MAX_ROWS if limit is None else start + limit
    if bound > HISTORY_MAX_ROWS:
        raise InvalidArguments({"query_limit": f"query_start + query_limit may be at most {HISTORY_MAX_ROWS}."})
    entries_qs, tasks_qs = _history(row, start_time, end_time)
    entries = render.entry_dicts(entries_qs[:bound])
    tasks = render.special_task_dicts(tasks_qs[:bound])
    return _interleave(entries, tasks)[start:bound]


@rpc
def get_num_host_queue_entries_and_special_tasks(caller: Caller, host: Any, start_time: Any = None,
                                                 end_time: Any = None) -> int:
    entries, tasks = _history(_host(host, "host"), start_time, end_time)
    return entries.count() + tasks.count()


def _interleave(entries: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AFE's ``interleave_entries``: each task placed before the job that ran after it (both newest first)."""
    next_job = _next_job_for_tasks(entries, tasks)
    merged: list[dict[str, Any]] = []
    index = 0
    while index < len(tasks) and next_job[index] is None:  # tasks since the last job
        merged.append(_task_row(tasks[index]))
        index += 1
    for entry in entries:
        merged.append(_entry_row(entry))
        while index < len(tasks) and next_job[index] is not None and next_job[index] >= entry["job"]["id"]:
            merged.append(_task_row(tasks[index]))
            index += 1
    merged.extend(_task_row(task) for task in tasks[index:])  # older than every entry read
    return merged


def _next_job_for_tasks(entries: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> list[int | None]:
    """For each task, the id of the job that ran next on the host (AFE's ``_compute_next_job_for_tasks``)."""
    result: list[int | None] = []
    next_job: int | None = None
    scan = 0
    for task in tasks:
        if task["queue_entry"]:
            next_job = task["queue_entry"]["job"]["id"]
        elif task["time_started"] is not None:
            for entry in entries[scan:]:
                if entry["started_on"] is None:
                    continue
                if entry["started_on"] < task["time_started"]:
                    break
                next_job = entry["job"]["id"]
        result.append(next_job)
        if next_job is not None:
            while scan < len(entries) and entries[scan]["job"]["id"] >= next_job:
                scan += 1
    return result


def _row(kind: str, data: dict[str, Any], job: dict[str, Any] | None, path: str, status: str,
         started_on: Any) -> dict[str, Any]:
    return {"type": kind, "host": data["host"], "job": job, "execution_path": path, "status": status,
            "started_on": started_on, "id": f"{data['id']}{kind}", "oid": data["id"]}


def _entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    job = entry["job"]
    # The model's own path rule, on an unsaved copy of the row (no query).
    path = HostQueueEntry(job=Job(id=job["id"], owner=job["owner"]),
                          execution_subdir=entry["execution_subdir"]).execution_path()
    return _row("Job", entry, job, path, entry["status"], entry["started_on"])


def _task_row(task: dict[str, Any]) -> dict[str, Any]:
    copy = SpecialTask(id=task["id"], task=_task_value(task["task"]), host=Host(hostname=task["host"]["hostname"]),
                       is_active=task["is_active"], is_complete=task["is_complete"], success=task["success"])
    job = task["queue_entry"]["job"] if task["queue_entry"] else None
    return _row(task["task"], task, job, copy.execution_path(), copy.status, task["time_started"])


def _task_value(label: str) -> str:
    return next((t.value for t in SpecialTask.Task if t.label == label), label)


# --- host status (server/lib/status_history) -----------------------------------------------------


#: A status task decides whether a host works: any successful task, or any Repair (a failed one: broken).
STATUS_TASKS = Q(task=SpecialTask.Task.REPAIR) | Q(success=True)


def _status_task(caller: Caller, host_id: Any, end_time: Any) -> dict[str, Any] | None:
    host = _host(host_id, "host_id")
    tasks = SpecialTask.objects.filter(STATUS_TASKS, host=host, is_complete=True,
                                       time_finished__lte=_when(end_time, "end_time"))
    rows = render.special_task_dicts(tasks.order_by("-time_started", "-pk")[:1])
    return rows[0] if rows else None


@rpc
def get_status_task(caller: Caller, host_id: Any, end_time: Any) -> dict[str, Any] | None:
    """The host's last status task finished by ``end_time`` (a task dict), or null."""
    return _status_task(caller, host_id, end_time)


@rpc
def get_host_status_task(caller: Caller, host_id: Any, end_time: Any) -> dict[str, Any] | None:
    """``get_status_task`` (AFE forwarded this one to the host's shard; there are no shards here)."""
    return _status_task(caller, host_id, end_time)


@rpc
def get_host_diagnosis_interval(caller: Caller, host_id: Any, end_time: Any, success: Any) -> list[str]:
    """``[start, end]`` of the host's last change of status before ``end_time``; ``[]`` when there is none.

    With ``success`` the change is from working (a successful task) to broken
    (a failed Repair), without it the other way round. The start is when the
    last task of the old status started, the end when the first task of the
    new status finished.
    """
    host = _host(host_id, "host_id")
    finished = SpecialTask.objects.filter(host=host, is_complete=True)
    working = finished.filter(success=True)
    broken = finished.filter(success=False, task=SpecialTask.Task.REPAIR)
    before, after = (working, broken) if arguments.as_bool(success, "success") else (broken, working)
    first = before.filter(time_finished__lte=_when(end_time, "end_time")).order_by("-time_started", "-pk").first()
    if first is None or first.time_finished is None:
        return []
    last = after.filter(time_finished__gt=first.time_finished).order_by("time_started", "pk").first()
    if last is None or first.time_started is None:
        return []
    return [first.time_started.strftime(DATETIME_FORMAT), last.time_finished.strftime(DATETIME_FORMAT)]
