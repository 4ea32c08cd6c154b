"""What a caller may do: AFE's ACL rules (``spec/afe-frontend.md`` §7), shared by the API, the pages and the admin.

Each check takes the acting AFE user and the rows, reads what it needs in a
fixed number of queries, and raises ``AccessDenied`` naming the rule that
refused. Root users (access level 100) pass every check but the ones no one
passes (``Everyone`` is never deleted, part of a synchronous group is never
aborted).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum

from .models import EVERYONE, AclGroup, Host, HostQueueEntry, Job, User


class Rule(str, Enum):
    HOST_ACL = "host_acl"                  # change, reverify, repair or use a host: share an ACL group with it
    ABORT_OWNER_OR_ACL = "abort_owner_or_acl"  # abort: own the job, or share a real ACL group with the host
    ABORT_SYNCHRONOUS = "abort_synchronous"    # never part of a synchronous group
    ACL_GROUP_MEMBER = "acl_group_member"  # change an ACL group: be a member of it
    EVERYONE_FIXED = "everyone_fixed"      # Everyone is changed by no one but root, deleted by no one
    ROOT_ONLY = "root_only"                # drones, drone sets, other users' records
    HOST_STATUS = "host_status"            # only the scheduler sets a host's status


class AccessDenied(Exception):
    """``rule`` refused the action; ``str()`` is ``'<rule>: <why>'``."""

    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(f"{rule.value}: {message}")
        self.rule = rule


def check_hosts(user: User, hosts: Iterable[Host]) -> None:
    """``user`` may change or use every host: a shared ACL group (one query); one-time hosts are exempt."""
    if user.is_superuser():
        return
    hosts = [host for host in hosts if not host.invalid]
    if not hosts:
        return
    allowed = set(
        AclGroup.hosts.through.objects.filter(host_id__in=[h.pk for h in hosts], aclgroup__users=user)
        .values_list("host_id", flat=True)
    )
    denied = sorted({h.hostname for h in hosts if h.pk not in allowed}, key=Host.sort_key)
    if denied:
        raise AccessDenied(Rule.HOST_ACL, f"{user.login} is in no ACL group of {_listing(denied)}.")


def check_abort(user: User, entries: Sequence[HostQueueEntry]) -> None:
    """``user`` may abort every entry (entries with ``job`` loaded); a fixed number of queries."""
    _check_whole_synchronous_groups(entries)
    if user.is_superuser():
        return
    others = [e for e in entries if e.job.owner != user.login]
    if not others:
        return
    host_ids = {e.host_id for e in others if e.host_id is not None}
    mine = set(
        AclGroup.hosts.through.objects.filter(host_id__in=host_ids, aclgroup__users=user)
        .exclude(aclgroup__name=EVERYONE).values_list("host_id", flat=True)
    )
    public = set(
        AclGroup.hosts.through.objects.filter(host_id__in=host_ids, aclgroup__name=EVERYONE)
        .values_list("host_id", flat=True)
    )
    denied = sorted({e.job_id for e in others if e.host_id is None or e.host_id not in mine or e.host_id in public})
    if denied:
        raise AccessDenied(
            Rule.ABORT_OWNER_OR_ACL,
            f"{user.login} may abort only their own jobs and entries on hosts of their ACL groups; "
            f"refused for job(s) {_listing(map(str, denied))}.",
        )


def _check_whole_synchronous_groups(entries: Sequence[HostQueueEntry]) -> None:
    """Refuse aborting part of a started synchronous group (it would leave the rest waiting forever)."""
    by_group: dict[tuple[int, str], set[int]] = {}
    for entry in entries:
        if entry.job.synch_count > 1 and entry.execution_subdir:
            by_group.setdefault((entry.job_id, entry.execution_subdir), set()).add(entry.pk)
    if not by_group:
        return
    members: dict[tuple[int, str], set[int]] = {}
    rows = HostQueueEntry.objects.filter(
        job_id__in={job_id for job_id, _ in by_group},
        execution_subdir__in={subdir for _, subdir in by_group},
        complete=False,
    ).values_list("job_id", "execution_subdir", "pk")
    for job_id, subdir, pk in rows:
        members.setdefault((job_id, subdir), set()).add(pk)
    partial = sorted({job_id for (job_id, subdir), ids in by_group.items() if members.get((job_id, subdir), set()) - ids})
    if partial:
        raise AccessDenied(
            Rule.ABORT_SYNCHRONOUS,
            f"part of a synchronous group cannot be aborted; abort all of its entries (job(s) {_listing(map(str, partial))}).",
        )


def check_acl_group_change(user: User, group: AclGroup) -> None:
    """``user`` may change ``group``'s name, description, users or hosts."""
    if group.name == EVERYONE and not user.is_superuser():
        raise AccessDenied(Rule.EVERYONE_FIXED, "the Everyone ACL group cannot be changed.")
    if user.is_superuser():
        return
    if not group.users.filter(pk=user.pk).exists():
        raise AccessDenied(Rule.ACL_GROUP_MEMBER, f"{user.login} is not a member of ACL group {group.name}.")


def check_acl_group_delete(user: User, group: AclGroup) -> None:
    if group.name == EVERYONE:
        raise AccessDenied(Rule.EVERYONE_FIXED, "the Everyone ACL group cannot be deleted.")
    check_acl_group_change(user, group)


def check_root(user: User, what: str) -> None:
    if not user.is_superuser():
        raise AccessDenied(Rule.ROOT_ONLY, f"only root users may {what}; {user.login} is not one.")


def check_user_change(user: User, target: User) -> None:
    if user.pk != target.pk:
        check_root(user, "change another user's record")


def check_job_owner_or_root(user: User, job: Job) -> bool:
    return user.is_superuser() or job.owner == user.login


def _listing(items: Iterable[str], limit: int = 20) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
