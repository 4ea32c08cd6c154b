"""ACL group methods: add, modify, delete, list ACL groups, their users and hosts."""
from __future__ import annotations

from typing import Any

from ...identity import Caller
from ...models import EVERYONE, AclGroup, Host, User
from ...permissions import check_acl_group_change, check_acl_group_delete, check_hosts
from .. import arguments, query, render
from ..registry import rpc
from ..wire import InvalidArguments

#: Fields ``modify_acl_group`` may change (members have their own methods).
MODIFIABLE = {"name", "description"}


def _get_bulk(queryset: Any, values: Any, argument: str) -> list[Any]:
    """``arguments.smart_get_bulk`` after refusing names the database cannot take (lone surrogates)."""
    values = arguments.as_list(values, argument)
    for value in values:
        if isinstance(value, str):
            arguments.as_text(value, argument)
    return arguments.smart_get_bulk(queryset, values, argument)


def _name(value: Any) -> str:
    return arguments.as_text(value, "name", allow_empty=False)


def _description(value: Any) -> str:
    return arguments.as_text("" if value is None else value, "description")


def _check_name_free(name: str, group: AclGroup | None = None) -> None:
    """No other group has ``name`` (compared without case, as MariaDB's unique index does)."""
    taken = AclGroup.objects.filter(name__iexact=name)
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    other = taken.first()
    if other is not None:
        raise InvalidArguments({"name": f"An ACL group named {other.name} already exists."})


def _group(caller: Caller, id: Any) -> AclGroup:
    """The group ``id`` names, which the caller may change."""
    group = _get_bulk(AclGroup.objects.all(), [id], "id")[0]
    check_acl_group_change(caller.user, group)
    return group


def _keep_a_member(caller: Caller, group: AclGroup) -> None:
    """A group never becomes empty: the caller is put back (as AFE does)."""
    if not group.users.exists():
        group.users.add(caller.user)


@rpc(writes=True)
def add_acl_group(caller: Caller, name: Any, description: Any = None) -> int:
    """Create an ACL group with the caller as its first member; returns its id."""
    group = AclGroup(name=_name(name), description=_description(description))
    _check_name_free(group.name)
    group.save()
    group.users.add(caller.user)
    return group.pk


@rpc(writes=True)
def modify_acl_group(caller: Caller, id: Any, **data: Any) -> None:
    """Change a group's name or description (members of the group only; Everyone is root's)."""
    unknown = sorted(set(data) - MODIFIABLE)
    if unknown:
        raise InvalidArguments({unknown[0]: f"Unknown or read-only ACL group field {unknown[0]!r}."})
    group = _group(caller, id)
    if "name" in data:
        group.name = _name(data["name"])
        _check_name_free(group.name, group)
    if "description" in data:
        group.description = _description(data["description"])
    group.save()
    _keep_a_member(caller, group)


@rpc(writes=True)
def delete_acl_group(caller: Caller, id: Any) -> None:
    """Delete a group (never Everyone); its hosts that are left in no group return to Everyone."""
    group = _get_bulk(AclGroup.objects.all(), [id], "id")[0]
    check_acl_group_delete(caller.user, group)
    group.delete()


@rpc(writes=True)
def acl_group_add_users(caller: Caller, id: Any, users: Any) -> None:
    """Add users (logins or ids); unknown ones are named in a ``DoesNotExist`` that atest retries around."""
    group = _group(caller, id)
    group.users.add(*_get_bulk(User.objects.all(), users, "users"))


@rpc(writes=True)
def acl_group_remove_users(caller: Caller, id: Any, users: Any) -> None:
    """Remove users; a group left empty keeps the caller. Every user stays in Everyone."""
    group = _group(caller, id)
    rows = _get_bulk(User.objects.all(), users, "users")
    if group.name == EVERYONE and rows:
        raise InvalidArguments({"users": "Every user belongs to the Everyone ACL group; no one can be removed."})
    group.users.remove(*rows)
    _keep_a_member(caller, group)


@rpc(writes=True)
def acl_group_add_hosts(caller: Caller, id: Any, hosts: Any) -> None:
    """Add hosts the caller may use to the group, then restore the Everyone rule."""
    group = _group(caller, id)
    rows = _get_bulk(Host.valid_objects.all(), hosts, "hosts")
    check_hosts(caller.user, rows)
    group.hosts.add(*rows)
    AclGroup.rebalance_everyone()


@rpc(writes=True)
def acl_group_remove_hosts(caller: Caller, id: Any, hosts: Any = ()) -> None:
    """Remove hosts from the group, then restore the Everyone rule (a host in no group is public)."""
    group = _group(caller, id)
    rows = _get_bulk(Host.valid_objects.all(), hosts, "hosts")
    group.hosts.remove(*rows)
    AclGroup.rebalance_everyone()


@rpc
def get_acl_groups(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """``[{id, name, description, users: [login], hosts: [hostname]}]``."""
    return render.acl_group_dicts(query.apply(AclGroup.objects.all(), filter_data))
