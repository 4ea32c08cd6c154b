"""User methods: list users (users are created on first request and edited in the admin)."""
from __future__ import annotations

from typing import Any

from ...identity import Caller
from ...models import User
from .. import query, render
from ..registry import rpc


@rpc
def get_users(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """``[{id, login, access_level, reboot_before, reboot_after, drone_set, show_experimental}]``.

    Filters are lookups such as ``login__in``, ``aclgroup__name__in`` and
    ``access_level__in=["0"]`` (atest sends the level as a string).
    """
    return render.user_dicts(query.apply(User.objects.all(), filter_data))
