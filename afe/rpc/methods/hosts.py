"""Host methods: add, modify (lock/unlock), delete, list, labels and attributes of hosts."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count

from ...identity import Caller
from ...models import Host, HostAttribute, Label, Protection
from ...permissions import AccessDenied, Rule, check_hosts
from .. import arguments, query, render
from ..registry import rpc
from ..wire import InvalidArguments

#: Fields ``modify_host`` may change (``status`` belongs to the scheduler).
MODIFIABLE = {"hostname", "locked", "lock_reason", "protection", "leased", "dirty"}


def host_queryset(multiple_labels: Any = (), exclude_only_if_needed_labels: Any = False,
                  valid_only: Any = True, **filter_data: Any) -> Any:
    """Hosts matching AFE's host filter (``multiple_labels`` means every one of them)."""
    hosts = Host.valid_objects.all() if arguments.as_bool(valid_only, "valid_only") else Host.objects.all()
    lookups, paging = query.split_filter(filter_data)
    hosts = query.filtered(hosts, lookups)
    wanted = [arguments.as_text(name, "multiple_labels") for name in arguments.as_list(multiple_labels, "multiple_labels")]
    if wanted:
        hosts = hosts.filter(pk__in=Host.labels.through.objects.filter(label__name__in=wanted)
                             .values("host_id").annotate(n=Count("label_id", distinct=True))
                             .filter(n=len(set(wanted))).values("host_id"))
    if arguments.as_bool(exclude_only_if_needed_labels, "exclude_only_if_needed_labels"):
        hosts = hosts.exclude(labels__only_if_needed=True)
    return query.paged(hosts, **paging)


@rpc
def get_hosts(caller: Caller, multiple_labels: Any = (), exclude_only_if_needed_labels: Any = False,
              valid_only: Any = True, include_current_job: Any = False, **filter_data: Any) -> list[dict[str, Any]]:
    """Every field of each host plus ``labels``, ``platform``, ``acls``, ``attributes``."""
    hosts = render.host_dicts(host_queryset(multiple_labels, exclude_only_if_needed_labels, valid_only, **filter_data))
    if arguments.as_bool(include_current_job, "include_current_job"):
        _add_current_work(hosts)
    return hosts


def _add_current_work(hosts: list[dict[str, Any]]) -> None:
    from ...models import HostQueueEntry, SpecialTask

    ids = [h["id"] for h in hosts]
    jobs = dict(HostQueueEntry.objects.filter(host_id__in=ids, active=True).values_list("host_id", "job_id"))
    tasks = {host_id: f"{pk}-{task.lower()}" for host_id, pk, task in
             SpecialTask.objects.filter(host_id__in=ids, is_active=True).values_list("host_id", "pk", "task")}
    for host in hosts:
        host["current_job"] = jobs.get(host["id"])
        host["current_special_task"] = tasks.get(host["id"])


@rpc
def get_num_hosts(caller: Caller, multiple_labels: Any = (), exclude_only_if_needed_labels: Any = False,
                  valid_only: Any = True, **filter_data: Any) -> int:
    filter_data = {k: v for k, v in filter_data.items() if k not in ("query_start", "query_limit", "sort_by")}
    return host_queryset(multiple_labels, exclude_only_if_needed_labels, valid_only, **filter_data).count()


@rpc(writes=True)
def add_host(caller: Caller, hostname: Any, status: Any = None, locked: Any = None, lock_reason: Any = "",
             protection: Any = None) -> int:
    """Create (or resurrect) a host; returns its id. A locked host needs a reason."""
    host = Host(hostname=arguments.as_text(hostname, "hostname").strip())
    if status is not None:
        host.status = arguments.as_choice(Host.Status, status, "status")
    if protection is not None:
        host.protection = arguments.as_choice(Protection, protection, "protection")
    if locked is not None and arguments.as_bool(locked, "locked"):
        host.locked, host.locked_by = True, caller.user
        host.lock_reason = arguments.as_text(lock_reason or "", "lock_reason")
    host.save()
    return host.pk


@rpc(writes=True)
def modify_host(caller: Caller, id: Any, **data: Any) -> None:
    """Change one host (``force_modify_locking`` skips the already-locked/unlocked checks)."""
    host = arguments.smart_get(Host.valid_objects.all(), id)
    _modify(caller, [host], data)


@rpc(writes=True)
def modify_hosts(caller: Caller, host_filter_data: Any, update_data: Any) -> None:
    """Change every host the filter matches with the same checks as ``modify_host``."""
    if not isinstance(update_data, dict):
        raise InvalidArguments({"update_data": "update_data must be an object of field values."})
    hosts = query.rows(host_queryset(**query.split_filter(host_filter_data)[0]))
    _modify(caller, hosts, dict(update_data))


def _modify(caller: Caller, hosts: list[Host], data: dict[str, Any]) -> None:
    force = arguments.as_bool(data.pop("force_modify_locking", False), "force_modify_locking")
    if "status" in data:
        raise AccessDenied(Rule.HOST_STATUS, "a host's status is set by the scheduler only.")
    unknown = sorted(set(data) - MODIFIABLE)
    if unknown:
        raise InvalidArguments({unknown[0]: f"Unknown or read-only host field {unknown[0]!r}."})
    if "hostname" in data and len(hosts) != 1:
        raise InvalidArguments({"hostname": "Only one host at a time can be renamed."})
    check_hosts(caller.user, hosts)
    locking = arguments.as_bool(data.pop("locked"), "locked") if "locked" in data else None
    reason = data.pop("lock_reason", None)
    for host in hosts:
        if locking is True:
            host.lock(caller.user, arguments.as_text(reason or "", "lock_reason"), force=force)
        elif locking is False:
            host.unlock(force=force)
        if data:
            for field, value in data.items():
                setattr(host, field, _host_value(field, value))
            host.save()


def _host_value(field: str, value: Any) -> Any:
    if field == "protection":
        return arguments.as_choice(Protection, value, field)
    if field in ("leased", "dirty"):
        return arguments.as_bool(value, field)
    return arguments.as_text(value, field).strip()


@rpc(writes=True)
def delete_host(caller: Caller, id: Any) -> None:
    """Soft-delete a host: its entries are aborted, its labels, ACL groups and attributes dropped."""
    host = arguments.smart_get(Host.valid_objects.all(), id)
    check_hosts(caller.user, [host])
    host.delete()


@rpc(writes=True)
def host_add_labels(caller: Caller, id: Any, labels: Any) -> None:
    """Give a host labels (by id or name); missing names are created. At most one platform, one ``board:``."""
    host = arguments.smart_get(Host.valid_objects.all(), id)
    check_hosts(caller.user, [host])
    wanted = arguments.as_list(labels, "labels")
    known = {label.name: label for label in Label.valid_objects.filter(name__in=[v for v in wanted if isinstance(v, str)])}
    new = [Label(name=arguments.as_text(v, "labels").strip()) for v in wanted if isinstance(v, str) and v not in known]
    for label in new:
        label.save()
        known[label.name] = label
    rows = arguments.unique([known[v] if isinstance(v, str) else arguments.smart_get(Label.valid_objects.all(), v)
                             for v in wanted])
    _check_one_platform_and_board(host, rows)
    host.labels.add(*rows)


def _check_one_platform_and_board(host: Host, adding: list[Label]) -> None:
    current = list(host.labels.all())
    every = {label.pk: label for label in current + adding}.values()
    platforms = sorted(label.name for label in every if label.platform)
    if len(platforms) > 1:
        raise InvalidArguments({"labels": f"Host {host.hostname} would have more than one platform: {', '.join(platforms)}"})
    boards = sorted(label.name for label in every if label.name.startswith("board:"))
    if len(boards) > 1:
        raise InvalidArguments({"labels": f"Host {host.hostname} would have more than one board label: {', '.join(boards)}"})


@rpc(writes=True)
def host_remove_labels(caller: Caller, id: Any, labels: Any) -> None:
    host = arguments.smart_get(Host.valid_objects.all(), id)
    check_hosts(caller.user, [host])
    host.labels.remove(*arguments.smart_get_bulk(Label.objects.all(), arguments.as_list(labels, "labels"), "labels"))


@rpc
def get_host_attribute(caller: Caller, attribute: Any, **host_filter_data: Any) -> list[dict[str, Any]]:
    """``[{id, host: hostname, attribute, value}]`` for the hosts the filter matches."""
    hosts = host_queryset(**host_filter_data)
    rows = query.rows(HostAttribute.objects.filter(attribute=arguments.as_text(attribute, "attribute"),
                                                   host__in=hosts).select_related("host"))
    return [{"id": r.pk, "host": r.host.hostname, "attribute": r.attribute, "value": r.value} for r in rows]


@rpc(writes=True)
def set_host_attribute(caller: Caller, attribute: Any, value: Any, **host_filter_data: Any) -> None:
    """Set (``value=None``: delete) an attribute on every host the filter (required) matches."""
    if not host_filter_data:
        raise InvalidArguments({"host_filter_data": "Give a host filter, e.g. hostname=..."})
    hosts = query.rows(host_queryset(**host_filter_data))
    check_hosts(caller.user, hosts)
    for host in hosts:
        try:
            host.set_attribute(attribute, value)
        except ValidationError as exc:
            raise InvalidArguments({"attribute": "; ".join(exc.messages)}) from None


@rpc
def get_hosts_by_attribute(caller: Caller, attribute: Any, value: Any) -> list[str]:
    rows = HostAttribute.objects.filter(attribute=arguments.as_text(attribute, "attribute"),
                                        value=arguments.as_text(value, "value"), host__invalid=False)
    return sorted(query.rows(rows.values_list("host__hostname", flat=True).distinct()), key=Host.sort_key)

