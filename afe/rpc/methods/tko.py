"""The results methods of /new_tko/server/rpc/ (the tko_* tables).

TKO's methods read its ``tko_test_view_2`` view: one row per test joined
with its job, machine, kernel and status word. Here that view is the
``VIEW_FIELDS`` map from each view column to the lookup path on
``TkoTest``; filters, ``sort_by`` and ``group_by`` name view columns (with a
Django lookup such as ``job_tag__startswith``), and anything else is refused.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet

from ...identity import Caller
from ...models import TkoIterationAttribute, TkoIterationResult, TkoJobKeyval, TkoTest, TkoTestAttribute, TkoTestLabel
from .. import arguments, query
from ..registry import rpc
from ..wire import InvalidArguments

#: ``tko_test_view_2``'s columns and where each is on ``TkoTest``.
VIEW_FIELDS: Mapping[str, str] = {
    "test_idx": "test_idx",
    "job_idx": "job_id",
    "test_name": "test",
    "subdir": "subdir",
    "kernel_idx": "kernel_id",
    "status_idx": "status_id",
    "reason": "reason",
    "machine_idx": "machine_id",
    "invalid": "invalid",
    "invalidates_test_idx": "invalidates_test_id",
    "test_started_time": "started_time",
    "test_finished_time": "finished_time",
    "job_tag": "job__tag",
    "job_name": "job__label",
    "job_owner": "job__username",
    "job_queued_time": "job__queued_time",
    "job_started_time": "job__started_time",
    "job_finished_time": "job__finished_time",
    "afe_job_id": "job__afe_job_id",
    "afe_parent_job_id": "job__afe_parent_job_id",
    "build": "job__build",
    "build_version": "job__build_version",
    "suite": "job__suite",
    "board": "job__board",
    "hostname": "machine__hostname",
    "platform": "machine__machine_group",
    "machine_owner": "machine__owner",
    "kernel_hash": "kernel__kernel_hash",
    "kernel_base": "kernel__base",
    "kernel": "kernel__printable",
    "status": "status__word",
}
#: The lookups a filter may add to a view column (``hostname__in``, ``job_tag__startswith``).
LOOKUPS = frozenset({
    "exact", "iexact", "contains", "icontains", "in", "gt", "gte", "lt", "lte", "startswith",
    "istartswith", "endswith", "iendswith", "range", "isnull", "regex", "iregex",
})
#: The counts ``get_status_counts`` adds to each group (TKO's ``STATUS_FIELDS``).
NOT_COMPLETE = ("TEST_NA", "RUNNING", "NOSTATUS")
STATUS_COUNTS = {
    "pass_count": Q(status__word="GOOD"),
    "complete_count": ~Q(status__word__in=NOT_COMPLETE),
    "incomplete_count": Q(status__word="RUNNING"),
}
_PAGING = ("query_start", "query_limit", "sort_by")


def _column(name: Any, argument: str) -> str:
    """The ``TkoTest`` path of view column ``name``; an unknown column is the caller's error."""
    if not isinstance(name, str) or name not in VIEW_FIELDS:
        raise InvalidArguments({argument: f"Unknown test view field {str(name)[:60]!r}; "
                                          f"known fields: {', '.join(sorted(VIEW_FIELDS))}."})
    return VIEW_FIELDS[name]


def _lookup(key: str) -> str:
    """``hostname__startswith`` → ``machine__hostname__startswith``."""
    if not isinstance(key, str):
        raise InvalidArguments({"filter": "A filter key must be a string."})
    field, _, lookup = key.partition("__")
    path = _column(field, key)
    if lookup and lookup not in LOOKUPS:
        raise InvalidArguments({key: f"Unknown lookup {lookup!r}; use one of {', '.join(sorted(LOOKUPS))}."})
    return f"{path}__{lookup}" if lookup else path


def test_queryset(filter_data: Mapping[str, Any], paged: bool = True) -> QuerySet:
    """Tests matching a filter over view columns, ordered by ``test_idx`` unless ``sort_by`` says otherwise."""
    lookups, paging = query.split_filter(filter_data)
    tests = TkoTest.objects.order_by("test_idx")
    for key, value in lookups.items():
        path = _lookup(key)
        try:
            tests = query.filtered(tests, {path: value})
        except InvalidArguments as exc:  # name the key the caller sent, not the model path
            raise InvalidArguments({key: "; ".join(exc.errors.values()).replace(f"{path}=", f"{key}=", 1)}) from None
    if not paged:
        return tests
    if "sort_by" in paging:
        paging["sort_by"] = _sort_paths(paging["sort_by"], {})
    return query.paged(tests, **paging)


def _sort_paths(sort_by: Any, extra: Mapping[str, str]) -> list[str]:
    """``sort_by`` of view columns (``-`` sorts down) as model paths; ``extra`` adds names of its own."""
    names = [sort_by] if isinstance(sort_by, str) else sort_by
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n.lstrip("-") for n in names):
        raise InvalidArguments({"sort_by": "sort_by must be a list of field names (a leading '-' sorts down)."})
    paths = []
    for name in names:
        bare = name.lstrip("-")
        path = extra.get(bare) or _column(bare, "sort_by")
        paths.append(("-" if name.startswith("-") else "") + path)
    return paths


# --- test views ----------------------------------------------------------------------------------


def _view_rows(tests: QuerySet) -> list[dict[str, Any]]:
    """The view's columns for each test, in one query."""
    values = query.rows(tests.values(*VIEW_FIELDS.values()))
    return [{name: row[path] for name, path in VIEW_FIELDS.items()} for row in values]


@rpc
def get_test_views(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """Rows of TKO's test view: ``test_idx, test_name, status, reason, hostname, job_tag, afe_job_id, ...``."""
    return _view_rows(test_queryset(filter_data))


@rpc
def get_num_test_views(caller: Caller, **filter_data: Any) -> int:
    return test_queryset({k: v for k, v in filter_data.items() if k not in _PAGING}, paged=False).count()


@rpc
def get_detailed_test_views(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """``get_test_views`` plus ``attributes`` (dict), ``labels`` (names), ``iterations`` and ``job_keyvals``.

    ``iterations[n]`` is ``{attr_keyval: {...}, perf_keyval: {...}}`` of iteration ``n + 1``.
    """
    tests = query.rows(test_queryset(filter_data).select_related("job", "machine", "kernel", "status").prefetch_related(
        Prefetch("attributes", queryset=TkoTestAttribute.objects.order_by("id")),
        Prefetch("labels", queryset=TkoTestLabel.objects.order_by("name")),
        Prefetch("iteration_attributes", queryset=TkoIterationAttribute.objects.order_by("iteration", "id")),
        Prefetch("iteration_results", queryset=TkoIterationResult.objects.order_by("iteration", "id")),
        Prefetch("job__keyvals", queryset=TkoJobKeyval.objects.order_by("id")),
    ))
    return [_detailed(test) for test in tests]


def _detailed(test: TkoTest) -> dict[str, Any]:
    row = {name: _value(test, path) for name, path in VIEW_FIELDS.items()}
    iterations: dict[int, dict[str, dict[str, Any]]] = {}
    for kind, rows in (("attr_keyval", test.iteration_attributes.all()), ("perf_keyval", test.iteration_results.all())):
        for item in rows:
            iterations.setdefault(item.iteration, {"attr_keyval": {}, "perf_keyval": {}})[kind][item.attribute] = item.value
    row["attributes"] = {a.attribute: a.value for a in test.attributes.all()}
    row["labels"] = [label.name for label in test.labels.all()]
    row["iterations"] = [iterations[n] for n in sorted(iterations)]
    row["job_keyvals"] = {kv.key: kv.value for kv in test.job.keyvals.all()}
    return row


def _value(row: Any, path: str) -> Any:
    """The value at a lookup path of a loaded row (``machine__hostname``; null through a missing machine)."""
    for part in path.split("__"):
        if row is None:
            return None
        row = getattr(row, part)
    return row


# --- group counts --------------------------------------------------------------------------------


def _group_fields(value: Any, argument: str) -> list[str]:
    names = arguments.as_list(value, argument)
    for name in names:
        _column(name, argument)
    if len(set(names)) != len(names):
        names = list(dict.fromkeys(names))
    return names


@rpc
def get_group_counts(caller: Caller, group_by: Any, header_groups: Any = (), fixed_headers: Any = None,
                     **filter_data: Any) -> dict[str, Any]:
    """Tests grouped by view columns: ``{groups: [{<group fields>, group_count}], header_values}``."""
    return _group_counts(group_by, header_groups, fixed_headers, filter_data, {})


@rpc
def get_status_counts(caller: Caller, group_by: Any, header_groups: Any = (), fixed_headers: Any = None,
                      **filter_data: Any) -> dict[str, Any]:
    """``get_group_counts`` plus ``pass_count`` (GOOD), ``complete_count`` (not TEST_NA, RUNNING or
    NOSTATUS) and ``incomplete_count`` (RUNNING) in each group.

    ``server/frontend.TKO`` calls it with ``group_by=['hostname', 'test_name',
    'reason'], job_tag__startswith='<job id>-'``.
    """
    return _group_counts(group_by, header_groups, fixed_headers, filter_data, STATUS_COUNTS)


def _group_counts(group_by: Any, header_groups: Any, fixed_headers: Any, filter_data: Mapping[str, Any],
                  counts: Mapping[str, Q]) -> dict[str, Any]:
    fields = _group_fields(group_by, "group_by")
    headers = _header_groups(header_groups, fields)
    fixed = _fixed_headers(fixed_headers, fields)
    lookups, paging = query.split_filter(filter_data)
    tests = test_queryset(lookups, paged=False)
    for name, values in fixed.items():
        tests = tests.filter(**{f"{VIEW_FIELDS[name]}__in": values})
    aggregates = {"group_count": Count("pk"), **{name: Count("pk", filter=q) for name, q in counts.items()}}
    paths = [VIEW_FIELDS[name] for name in fields]
    sort = paging.pop("sort_by", None)
    if fields:
        grouped = tests.values(*paths).annotate(**aggregates)
        extra = {name: name for name in aggregates}
        order = _sort_paths(sort, extra) if sort is not None else paths
        if any(p.lstrip("-") not in set(paths) | set(aggregates) for p in order):
            raise InvalidArguments({"sort_by": "A grouped query sorts only by its group_by fields and counts."})
        rows = query.rows(query.paged(grouped.order_by(*order), **paging))
    else:
        totals = tests.aggregate(**aggregates)
        rows = [totals] if totals["group_count"] else []
    groups = [{**{name: row[path] for name, path in zip(fields, paths)},
               **{name: row[name] for name in aggregates}} for row in rows]
    return {"groups": groups, "header_values": _header_values(headers, fixed, groups)}


def _header_groups(value: Any, fields: list[str]) -> list[list[str]]:
    groups = []
    for group in arguments.as_list(value, "header_groups"):
        names = [group] if isinstance(group, str) else group
        if not isinstance(names, (list, tuple)) or not all(name in fields for name in names):
            raise InvalidArguments({"header_groups": "Each header group must be a list of group_by fields."})
        groups.append(list(names))
    return groups


def _fixed_headers(value: Any, fields: list[str]) -> dict[str, list[Any]]:
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise InvalidArguments({"fixed_headers": "fixed_headers must map group_by fields to lists of values."})
    fixed = {}
    for name, values in value.items():
        if name not in fields:
            raise InvalidArguments({"fixed_headers": f"{str(name)[:60]!r} is not one of the group_by fields."})
        values = arguments.as_list(values, "fixed_headers")
        if any(isinstance(v, (dict, list, tuple)) for v in values):
            raise InvalidArguments({"fixed_headers": "fixed_headers values must be plain values."})
        fixed[name] = values
    return fixed


def _header_values(headers: list[list[str]], fixed: Mapping[str, list[Any]],
                   groups: Iterable[dict[str, Any]]) -> list[list[list[Any]]]:
    """For each header group, its distinct value combinations (a fixed header: exactly the values given)."""
    groups = list(groups)
    result = []
    for header in headers:
        if len(header) == 1 and header[0] in fixed:
            result.append([[v] for v in fixed[header[0]]])
            continue
        seen = dict.fromkeys(tuple(group[name] for name in header) for group in groups)
        result.append([list(combo) for combo in sorted(seen, key=lambda c: tuple((v is None, str(v)) for v in c))])
    return result
