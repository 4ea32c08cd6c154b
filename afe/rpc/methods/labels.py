"""Label methods: add, modify, delete, list labels and their hosts."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Q

from ...identity import Caller
from ...models import AtomicGroup, Host, Label
from ...permissions import check_hosts
from .. import arguments, query, render
from ..registry import rpc
from ..wire import DoesNotExist, InvalidArguments

#: Fields ``add_label`` takes besides the name, and ``modify_label`` may change (besides the name).
OPTIONS = ("platform", "only_if_needed", "kernel_config")
MODIFIABLE = {"name", "atomic_group", *OPTIONS}
KERNEL_CONFIG_MAX = Label._meta.get_field("kernel_config").max_length


def _get(queryset: Any, value: Any, argument: str = "id") -> Any:
    return _get_bulk(queryset, [value], argument)[0]


def _get_bulk(queryset: Any, values: Any, argument: str) -> list[Any]:
    """``arguments.smart_get_bulk`` after refusing names the database cannot take (lone surrogates)."""
    values = arguments.as_list(values, argument)
    for value in values:
        if isinstance(value, str):
            arguments.as_text(value, argument)
    return arguments.smart_get_bulk(queryset, values, argument)


def _set(label: Label, field: str, value: Any) -> None:
    if field in ("platform", "only_if_needed"):
        setattr(label, field, arguments.as_bool(value, field))
    elif field == "kernel_config":
        text = arguments.as_text("" if value is None else value, field)
        if len(text) > KERNEL_CONFIG_MAX:
            raise InvalidArguments({field: f"{field} is longer than {KERNEL_CONFIG_MAX} characters."})
        label.kernel_config = text
    elif field == "name":
        label.name = arguments.as_text(value, field, allow_empty=False)
    elif field == "atomic_group":
        label.atomic_group = None if value in (None, "") else _get(
            AtomicGroup.valid_objects.all(), value, field)
    else:
        raise InvalidArguments({field: f"Unknown or read-only label field {field!r}."})


def _check_fields(data: dict[str, Any], allowed: set[str] | tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidArguments({unknown[0]: f"Unknown or read-only label field {unknown[0]!r}."})


def _check_platform_and_board(label: Label, host_ids: Any) -> None:
    """Refuse giving ``label`` (a platform or ``board:`` label) to hosts that already have another; one query."""
    is_board = label.name.startswith("board:")
    if not label.platform and not is_board:
        return
    clash = Q(label__platform=True) if label.platform else Q()
    if is_board:
        clash |= Q(label__name__startswith="board:")
    rows = Host.labels.through.objects.filter(clash, host_id__in=host_ids)
    if label.pk is not None:
        rows = rows.exclude(label_id=label.pk)
    platforms: dict[str, list[str]] = defaultdict(list)
    boards: dict[str, list[str]] = defaultdict(list)
    for hostname, name, platform in rows.values_list("host__hostname", "label__name", "label__platform"):
        if label.platform and platform:
            platforms[hostname].append(name)
        if is_board and name.startswith("board:"):
            boards[hostname].append(name)
    errors = [f"Host {h} already has a platform: {', '.join(sorted(platforms[h]))}"
              for h in sorted(platforms, key=Host.sort_key)]
    errors += [f"Host {h} already has a board label: {', '.join(sorted(boards[h]))}"
               for h in sorted(boards, key=Host.sort_key)]
    if errors:
        raise InvalidArguments({"labels": "; ".join(errors)})


def _existing(name: Any) -> Label | None:
    """The valid label named ``name`` (compared without case, as MariaDB's unique index does)."""
    if not isinstance(name, str):
        return None
    return Label.valid_objects.filter(name__iexact=name).first()


@rpc(writes=True)
def add_label(caller: Caller, name: Any, ignore_exception_if_exists: Any = False, **kwargs: Any) -> int:
    """Create (or resurrect a deleted) label; returns its id. ``kwargs``: platform, only_if_needed, kernel_config."""
    _check_fields(kwargs, OPTIONS)
    ignore = arguments.as_bool(ignore_exception_if_exists, "ignore_exception_if_exists")
    label = Label(name=arguments.as_text(name, "name", allow_empty=False))
    for field, value in kwargs.items():
        _set(label, field, value)
    existing = _existing(label.name)
    if existing is not None:
        if ignore:
            return existing.pk
        raise InvalidArguments({"name": f"A label named {existing.name} already exists."})
    label.save()
    return label.pk


@rpc(writes=True)
def modify_label(caller: Caller, id: Any, **data: Any) -> None:
    """Change a label's name, platform, only_if_needed, kernel_config or atomic_group."""
    _check_fields(data, MODIFIABLE)
    label = _get(Label.valid_objects.all(), id)
    if not data:
        return
    for field, value in data.items():
        _set(label, field, value)
    label.check_invariants()  # a bad or taken name is reported before any clash on the hosts
    _check_platform_and_board(label, Host.labels.through.objects.filter(label_id=label.pk).values("host_id"))
    label.save()


@rpc(writes=True)
def delete_label(caller: Caller, id: Any) -> None:
    """Soft-delete a label: it leaves its hosts and the jobs that depend on it."""
    _get(Label.valid_objects.all(), id).delete()


@rpc
def get_labels(caller: Caller, exclude_filters: Any = (), **filter_data: Any) -> list[dict[str, Any]]:
    """``[{id, name, kernel_config, platform, invalid, only_if_needed, atomic_group}]`` of valid labels."""
    labels = query.apply(_excluding(Label.valid_objects.all(), exclude_filters), filter_data)
    return render.label_dicts(labels)


def _excluding(labels: Any, exclude_filters: Any) -> Any:
    """``labels`` without those matching any of the filter dicts (each checked like a filter)."""
    if isinstance(exclude_filters, dict):
        exclude_filters = [exclude_filters]
    for exclude in arguments.as_list(exclude_filters, "exclude_filters"):
        if not isinstance(exclude, dict):
            raise InvalidArguments({"exclude_filters": "exclude_filters must be a list of filter objects."})
        lookups, paging = query.split_filter(exclude)
        if paging:
            raise InvalidArguments({"exclude_filters": "exclude_filters cannot page or sort."})
        if lookups:
            labels = labels.exclude(pk__in=query.filtered(Label.objects.all(), lookups).values("pk"))
    return labels


@rpc(writes=True)
def label_add_hosts(caller: Caller, id: Any, hosts: Any) -> None:
    """Put hosts under a label; a missing label name is created. A host keeps one platform and one ``board:``."""
    host_rows = _get_bulk(Host.valid_objects.all(), hosts, "hosts")
    check_hosts(caller.user, host_rows)
    try:
        label = _get(Label.valid_objects.all(), id)
    except DoesNotExist:
        if not isinstance(id, str):
            raise DoesNotExist(f"Label id {id} does not exist; give a label name to create the label.") from None
        label = Label(name=id)
        label.save()
    _check_platform_and_board(label, [h.pk for h in host_rows])
    label.host_set.add(*host_rows)


@rpc(writes=True)
def label_remove_hosts(caller: Caller, id: Any, hosts: Any) -> None:
    """Take hosts out from under a label."""
    label = _get(Label.valid_objects.all(), id)
    host_rows = _get_bulk(Host.valid_objects.all(), hosts, "hosts")
    check_hosts(caller.user, host_rows)
    label.host_set.remove(*host_rows)
