"""AFE's ``**filter_data``: Django lookups plus ``query_start``, ``query_limit`` and ``sort_by``.

A lookup may follow relations between AFE's own tables (``labels__name``,
``aclgroup__users__login``, ``job__id__in``); a key that names no field, a
relation out of AFE's tables (API tokens, Django's auth), a value of the
wrong type or a paging argument out of range is an ``InvalidArguments``
error naming the key, never a server error.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldDoesNotExist, FieldError, ValidationError
from django.db import DataError, models

from .wire import InvalidArguments

#: The most rows one call may ask for.
MAX_QUERY_LIMIT = 100_000
_PAGING = ("query_start", "query_limit", "sort_by")
_UNSUPPORTED = ("extra_where", "extra_args")
#: Fields a filter may never look at, on any model.
_PRIVATE_MODELS = {"apitoken"}


def split_filter(filter_data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(lookups, paging)`` of a filter dict."""
    if not isinstance(filter_data, Mapping):
        raise InvalidArguments({"filter_data": f"A filter must be an object of lookups, not {type(filter_data).__name__}."})
    lookups = {k: v for k, v in filter_data.items() if k not in _PAGING and k != "no_distinct"}
    paging = {k: filter_data[k] for k in _PAGING if k in filter_data}
    return lookups, paging


def apply(queryset: models.QuerySet, filter_data: Mapping[str, Any]) -> models.QuerySet:
    """``queryset`` filtered, ordered and sliced by ``filter_data`` (not yet evaluated)."""
    lookups, paging = split_filter(filter_data)
    queryset = filtered(queryset, lookups)
    return paged(queryset, **paging)


def filtered(queryset: models.QuerySet, lookups: Mapping[str, Any]) -> models.QuerySet:
    for key in _UNSUPPORTED:
        if key in lookups:
            raise InvalidArguments({key: f"{key} is not supported: use Django lookups."})
    for key, value in lookups.items():
        check_lookup(queryset.model, key)
        if key.endswith("__in") and not isinstance(value, (list, tuple)):
            raise InvalidArguments({key: f"{key} needs a list, not {type(value).__name__}."})
        if isinstance(value, (dict, list, tuple)) and not key.endswith("__in") and not key.endswith("__range"):
            raise InvalidArguments({key: f"{key} needs a single value, not {type(value).__name__}."})
        try:
            queryset = queryset.filter(**{key: value})
        except (FieldError, ValueError, TypeError, ValidationError, OverflowError) as exc:
            raise InvalidArguments({key: f"Bad filter {key}={str(value)[:60]!r}: {_short(exc)}"}) from None
    if any("__" in key.removesuffix("__in") for key in lookups):
        queryset = queryset.distinct()  # a lookup across a many-to-many relation repeats rows
    return queryset


def check_lookup(model: type[models.Model], key: str) -> None:
    """Refuse a lookup key that is not a path of fields of AFE's tables (then lookups/transforms)."""
    if not isinstance(key, str) or not key:
        raise InvalidArguments({"filter": "A filter key must be a non-empty string."})
    parts = key.split("__")
    current = model
    for index, part in enumerate(parts):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist:
            if index == 0 and part != "pk":
                raise InvalidArguments({key: f"Unknown field {part!r} of {model._meta.verbose_name}."}) from None
            return  # a lookup (``in``, ``startswith``) or transform; Django checks it when filtering
        related = getattr(field, "related_model", None)
        if related is None:
            continue
        if related._meta.app_label != "afe" or related._meta.model_name in _PRIVATE_MODELS:
            raise InvalidArguments({key: f"Filtering on {part!r} is not allowed."})
        current = related


def paged(queryset: models.QuerySet, query_start: Any = None, query_limit: Any = None,
          sort_by: Any = None) -> models.QuerySet:
    if sort_by is not None:
        if isinstance(sort_by, str):
            sort_by = [sort_by]
        if not isinstance(sort_by, (list, tuple)) or not all(isinstance(s, str) and s for s in sort_by):
            raise InvalidArguments({"sort_by": "sort_by must be a list of field names (a leading '-' sorts down)."})
        for name in sort_by:
            check_lookup(queryset.model, name.lstrip("-"))
        try:
            queryset = queryset.order_by(*sort_by)
            str(queryset.query)  # an unknown field is found here, not when the rows are read
        except (FieldError, ValueError) as exc:
            raise InvalidArguments({"sort_by": f"Cannot sort by {sort_by!r}: {_short(exc)}"}) from None
    start = _whole("query_start", query_start, 0)
    limit = _whole("query_limit", query_limit, None)
    if start or limit is not None:
        queryset = queryset[start: None if limit is None else start + limit]
    return queryset


def _whole(name: str, value: Any, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUERY_LIMIT:
        raise InvalidArguments({name: f"{name} must be a whole number from 0 to {MAX_QUERY_LIMIT}."})
    return value


def rows(queryset: models.QuerySet) -> list[models.Model]:
    """Evaluate ``queryset``; a value the database refuses (a huge number) is the caller's error."""
    try:
        return list(queryset)
    except (DataError, OverflowError, ValueError, ValidationError, TypeError) as exc:
        raise InvalidArguments({"filter": f"The filter holds a value the database cannot compare: {_short(exc)}"}) from None


def _short(exc: BaseException) -> str:
    text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
