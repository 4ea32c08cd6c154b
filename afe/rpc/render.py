"""Rows as the dicts AFE's clients read (``spec/afe-rpc-wire.md`` §3).

Every field of the row by its AFE name; choices as display names
(``"No protection"``, ``"Client"``); foreign keys as names (``locked_by``
login, ``shard`` hostname, ``meta_host`` label name, ``drone_set`` name).
Each ``*_dicts`` function takes a queryset and reads it, with its related
rows, in a fixed number of queries however many rows it holds.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import models
from django.db.models import Prefetch

from ..models import AclGroup, Host, HostAttribute, HostQueueEntry, Job, JobKeyval, Label, User
from . import query

#: How a foreign key is shown: the attribute of the related row that names it.
FOREIGN_NAMES = {
    "locked_by": "login", "requested_by": "login", "shard": "hostname", "meta_host": "name",
    "drone_set": "name", "atomic_group": "name", "parent_job": "id",
}


#: Choice fields AFE stored without choices, so its clients read (and send back) the number.
NUMERIC_CHOICES = {"priority"}


def fields(row: models.Model) -> dict[str, Any]:
    """Every concrete field of ``row`` as AFE renders it (related rows must be loaded)."""
    data: dict[str, Any] = {}
    for field in row._meta.concrete_fields:
        if field.is_relation:
            related = getattr(row, field.name)
            name = FOREIGN_NAMES.get(field.name)
            data[field.name] = None if related is None else (getattr(related, name) if name else related.pk)
        elif field.choices and field.name not in NUMERIC_CHOICES:
            data[field.name] = getattr(row, f"get_{field.name}_display")()
        else:
            data[field.name] = getattr(row, field.attname)
    return data


def _named_relations(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if f.is_relation]


def host_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    """Host rows plus ``labels`` (names), ``platform``, ``acls`` (names) and ``attributes`` (dict)."""
    hosts = query.rows(queryset.select_related(*_named_relations(Host)).prefetch_related(
        Prefetch("labels", queryset=Label.objects.all()),
        Prefetch("aclgroup_set", queryset=AclGroup.objects.all()),
        Prefetch("hostattribute_set", queryset=HostAttribute.objects.all()),
    ))
    return [host_dict(host) for host in hosts]


def host_dict(host: Host) -> dict[str, Any]:
    """One host; its labels, ACL groups and attributes must be prefetched."""
    labels = sorted(host.labels.all(), key=lambda label: label.name)
    platforms = [label.name for label in labels if label.platform]
    return {
        **fields(host),
        "labels": [label.name for label in labels],
        "platform": platforms[0] if platforms else None,
        "acls": sorted(group.name for group in host.aclgroup_set.all()),
        "attributes": {a.attribute: a.value for a in host.hostattribute_set.all()},
    }


def label_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    return [fields(label) for label in query.rows(queryset.select_related("atomic_group"))]


def acl_group_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    """ACL groups with ``users`` (logins) and ``hosts`` (valid hostnames)."""
    groups = query.rows(queryset.prefetch_related(
        Prefetch("users", queryset=User.objects.order_by("login")),
        Prefetch("hosts", queryset=Host.valid_objects.order_by("hostname")),
    ))
    return [{**fields(g), "users": [u.login for u in g.users.all()],
             "hosts": [h.hostname for h in g.hosts.all()]} for g in groups]


def user_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    return [fields(user) for user in query.rows(queryset.select_related("drone_set"))]


def job_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    """Jobs plus ``dependencies`` (comma-joined label names) and ``keyvals`` (dict)."""
    jobs = query.rows(queryset.select_related(*_named_relations(Job)).prefetch_related(
        Prefetch("dependency_labels", queryset=Label.objects.order_by("name")),
        Prefetch("jobkeyval_set", queryset=JobKeyval.objects.all()),
    ))
    return [job_dict(job) for job in jobs]


def job_dict(job: Job) -> dict[str, Any]:
    return {
        **fields(job),
        "dependencies": ",".join(label.name for label in job.dependency_labels.all()),
        "keyvals": {kv.key: kv.value for kv in job.jobkeyval_set.all()},
    }


def entry_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    """Entries with ``job`` and ``host`` as nested dicts, ``meta_host`` as a name and ``full_status``."""
    entries = query.rows(queryset.select_related("job", "host", "meta_host", "atomic_group"))
    jobs = {j["id"]: j for j in job_dicts(Job.objects.filter(pk__in={e.job_id for e in entries}))}
    hosts = {h["id"]: h for h in host_dicts(Host.objects.filter(pk__in={e.host_id for e in entries if e.host_id}))}
    return [entry_dict(e, jobs, hosts) for e in entries]


def entry_dict(entry: HostQueueEntry, jobs: dict[int, dict[str, Any]], hosts: dict[int, dict[str, Any]]) -> dict[str, Any]:
    data = fields(entry)
    data["job"] = jobs.get(entry.job_id)
    data["host"] = hosts.get(entry.host_id) if entry.host_id else None
    data["full_status"] = entry.full_status
    return data


def special_task_dicts(queryset: models.QuerySet) -> list[dict[str, Any]]:
    """Special tasks with ``host`` and ``queue_entry`` as nested dicts (or null)."""
    tasks = query.rows(queryset.select_related("host", "requested_by", "queue_entry"))
    hosts = {h["id"]: h for h in host_dicts(Host.objects.filter(pk__in={t.host_id for t in tasks}))}
    entries = {e["id"]: e for e in entry_dicts(
        HostQueueEntry.objects.filter(pk__in={t.queue_entry_id for t in tasks if t.queue_entry_id}))}
    result = []
    for task in tasks:
        data = fields(task)
        data["host"] = hosts.get(task.host_id)
        data["queue_entry"] = entries.get(task.queue_entry_id) if task.queue_entry_id else None
        result.append(data)
    return result


def status_counts(job_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """``{job id: {full status: count}}`` for the jobs, in one query."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (HostQueueEntry.objects.filter(job_id__in=list(job_ids))
            .values_list("job_id", "status", "aborted", "complete").annotate(n=models.Count("id")))
    for job_id, status, aborted, complete, n in rows:
        full = HostQueueEntry.compute_full_status(status, aborted, complete)
        counts[job_id][full] = counts[job_id].get(full, 0) + n
    return dict(counts)

