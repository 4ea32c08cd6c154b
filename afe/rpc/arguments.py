"""Reading RPC arguments as AFE's clients send them: ids as ints or strings, rows by id or name, choices by name.

``smart_get`` and ``smart_get_bulk`` follow AFE: an int is an id, a string is
a name (a string of digits that names nothing is tried as an id, since atest
sends ``id="12"``). Unknown rows are ``DoesNotExist`` errors whose message
has AFE's ``Name: text: a, b`` shape, so atest can retry with the rest.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models

from .. import names
from .wire import DoesNotExist, InvalidArguments

M = TypeVar("M", bound=models.Model)
MAX_ID = 2**31 - 1


def name_field(model: type[models.Model]) -> str:
    return getattr(model, "name_field", None) or {"Host": "hostname", "User": "login"}.get(model.__name__, "name")


def as_id(value: Any, argument: str = "id") -> int:
    """A row id given as an int or a string of digits."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidArguments({argument: f"{str(value)[:60]!r} is not a valid id."})
    return value


def as_ids(values: Any, argument: str) -> list[int]:
    return [as_id(v, argument) for v in as_list(values, argument)]


def as_list(value: Any, argument: str) -> list[Any]:
    """A list argument; ``None`` is empty, a single string is one item (atest sends either)."""
    if value is None:
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidArguments({argument: f"{argument} must be a list, not {type(value).__name__}."})
    return list(value)


def as_text(value: Any, argument: str, *, allow_empty: bool = True) -> str:
    try:
        text = names.text(value, argument)
    except ValidationError as exc:
        raise InvalidArguments({argument: "; ".join(exc.messages)}) from None
    if not allow_empty and not text.strip():
        raise InvalidArguments({argument: f"{argument} is required."})
    return text


def as_bool(value: Any, argument: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidArguments({argument: f"{argument} must be true or false, not {str(value)[:60]!r}."})


def as_int(value: Any, argument: str, lowest: int, highest: int) -> int:
    """A whole number (or a string of digits, as atest sends timeouts) within bounds."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise InvalidArguments({argument: f"{argument} must be a whole number from {lowest} to {highest}."})
    return value


def as_choice(enum: type[models.Choices], value: Any, argument: str) -> Any:
    """An enum value given as its display name (``"Do not verify"``) or its value."""
    for member in enum:
        if value == member.value and not isinstance(value, bool):
            return member.value
        if isinstance(value, str) and value.strip().lower() == str(member.label).lower():
            return member.value
    raise InvalidArguments({argument: f"{str(value)[:60]!r} is not one of {', '.join(map(str, enum.labels))}."})


def smart_get(queryset: models.QuerySet[M], value: Any, argument: str = "id") -> M:
    """The row named or numbered ``value``; ``DoesNotExist`` when there is none."""
    return smart_get_bulk(queryset, [value], argument)[0]


def smart_get_bulk(queryset: models.QuerySet[M], values: Iterable[Any], argument: str = "id") -> list[M]:
    """The rows for ``values`` (ids or names) in their order, in at most two queries."""
    values = list(values)
    field = name_field(queryset.model)
    wanted_names = [v for v in values if isinstance(v, str)]
    wanted_ids = [as_id(v, argument) for v in values if not isinstance(v, str)]
    for value in wanted_names:
        as_text(value, argument)  # unpaired surrogates would fail in the database driver
        if len(value) > 255 or "\x00" in value:
            raise InvalidArguments({argument: f"{value[:60]!r} is not a valid name."})
    found = list(queryset.filter(models.Q(**{f"{field}__in": wanted_names}) | models.Q(pk__in=wanted_ids)
                                 | models.Q(pk__in=[int(v) for v in wanted_names if v.isdigit() and int(v) <= MAX_ID])))
    by_name = {getattr(row, field): row for row in found}
    by_id = {row.pk: row for row in found}
    result, missing = [], []
    for value in values:
        row = by_name.get(value) if isinstance(value, str) else by_id.get(value)
        if row is None and isinstance(value, str) and value.isdigit():
            row = by_id.get(int(value))
        if row is None:
            missing.append(str(value))
        else:
            result.append(row)
    if missing:
        plural = str(queryset.model._meta.verbose_name_plural)
        raise DoesNotExist(f"The following {plural} do not exist: {', '.join(missing)}")
    return result


def unique(rows: Sequence[M]) -> list[M]:
    seen: set[Any] = set()
    return [r for r in rows if not (r.pk in seen or seen.add(r.pk))]
