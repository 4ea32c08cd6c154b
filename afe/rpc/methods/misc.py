"""Everything else AFE offers: static data, echo, server time, tests and profilers."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from ...identity import Caller
from ...models import PROVISION_PREFIXES, DroneSet, Host, HostQueueEntry, Label, Priority, RebootAfter, RebootBefore, User
from .. import arguments, query, render
from ..registry import rpc
from ..wire import InvalidArguments

#: Labels ``get_static_data`` leaves out: the ones provisioning adds and removes (AFE's exclude filters).
HIDDEN_LABEL_PREFIXES = ("cros-version", "fw-version", "fwrw-version", "fwro-version", "ab-version",
                         "testbed-version", *PROVISION_PREFIXES)

#: What the web UI shows for an entry's status (AFE's ``status_dictionary``).
STATUS_DICTIONARY = {
    "Aborted": "Aborted",
    "Verifying": "Verifying Host",
    "Provisioning": "Provisioning Host",
    "Pending": "Waiting on other hosts",
    "Running": "Running autoserv",
    "Completed": "Autoserv completed",
    "Failed": "Failed to complete",
    "Queued": "Queued",
    "Starting": "Next in host's queue",
    "Stopped": "Other host(s) failed verify",
    "Parsing": "Awaiting parse of final results",
    "Gathering": "Gathering log files",
    "Waiting": "Waiting for scheduler action",
    "Archiving": "Archiving results",
    "Resetting": "Resetting hosts",
}


@rpc
def get_static_data(caller: Caller) -> dict[str, Any]:
    """What the web UI loads once: choices, defaults, users, labels and the caller's own record."""
    labels = Label.valid_objects.all()
    for prefix in HIDDEN_LABEL_PREFIXES:
        labels = labels.exclude(name__startswith=prefix)
    return {
        "priorities": [[p.value, p.label] for p in Priority],
        "default_priority": Priority.DEFAULT.label,
        "max_schedulable_priority": int(Priority.DEFAULT),
        "users": render.user_dicts(User.objects.order_by("login")),
        "labels": render.label_dicts(labels.order_by("-platform", "name")),
        "tests": [],
        "profilers": [],
        "current_user": render.user_dicts(User.objects.filter(pk=caller.user.pk))[0],
        "host_statuses": sorted(str(label) for label in Host.Status.labels),
        "job_statuses": sorted(str(label) for label in HostQueueEntry.Status.labels),
        "job_timeout_mins_default": settings.JOB_TIMEOUT_MINS_DEFAULT,
        "job_max_runtime_mins_default": settings.JOB_MAX_RUNTIME_MINS_DEFAULT,
        "parse_failed_repair_default": False,
        "reboot_before_options": [str(label) for label in RebootBefore.labels],
        "reboot_after_options": [str(label) for label in RebootAfter.labels],
        "motd": _motd(),
        **_drone_sets(),
        "status_dictionary": dict(STATUS_DICTIONARY),
        "wmatrix_url": "",
        "stainless_url": "",
        "is_moblab": False,
    }


def _drone_sets() -> dict[str, Any]:
    """``drone_sets``: the scheduler's default set first, then the others by name."""
    default = settings.SCHEDULER.get("default_drone_set", "") if isinstance(settings.SCHEDULER, dict) else ""
    names = list(DroneSet.objects.order_by("name").values_list("name", flat=True))
    ordered = ([default] if default in names else []) + [name for name in names if name != default]
    return {"drone_sets_enabled": bool(ordered), "drone_sets": ordered}


def _motd() -> str:
    """The message of the day: this project has no motd file or setting, so it is empty."""
    return ""


@rpc
def get_motd(caller: Caller) -> str:
    return _motd()


@rpc
def echo(caller: Caller, data: Any = "") -> Any:
    """``data``, unchanged."""
    return data


@rpc
def get_server_time(caller: Caller) -> str:
    """The server's local time as ``YYYY-MM-DD HH:MM``."""
    return timezone.localtime(timezone.now()).strftime("%Y-%m-%d %H:%M") if settings.USE_TZ \
        else timezone.now().strftime("%Y-%m-%d %H:%M")


@rpc
def ping_db(caller: Caller) -> list[bool]:
    """``[True]`` when the database answers, ``[False]`` when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        return [False]
    return [True]


#: The fields of AFE's ``afe_autotests`` and ``afe_profilers`` tables, which filters may name.
TEST_FIELDS = frozenset({
    "id", "name", "author", "test_class", "test_category", "test_type", "sync_count", "path", "dependencies",
    "description", "experimental", "run_verify", "test_time", "test_retry",
})
PROFILER_FIELDS = frozenset({"id", "name", "description"})


def _empty_listing(filter_data: dict[str, Any], known: frozenset[str], what: str) -> list[Any]:
    """``[]`` for a filter over a table this project does not keep; a field AFE's table lacks is refused."""
    lookups, paging = query.split_filter(filter_data)
    sort_by = paging.get("sort_by")
    names = list(lookups) + [n.lstrip("-") for n in arguments.as_list(sort_by, "sort_by") if isinstance(n, str)]
    for key in names:
        if key.split("__")[0] not in known:
            raise InvalidArguments({key: f"Unknown field {key.split('__')[0]!r} of {what}."})
    for name in ("query_start", "query_limit"):
        if paging.get(name) is not None:
            arguments.as_int(paging[name], name, 0, query.MAX_QUERY_LIMIT)
    return []


@rpc
def get_tests(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """No tests: this project keeps no test table (control files are given to ``create_job``)."""
    return _empty_listing(filter_data, TEST_FIELDS, "test")


@rpc
def get_profilers(caller: Caller, **filter_data: Any) -> list[dict[str, Any]]:
    """No profilers: this project keeps no profiler table."""
    return _empty_listing(filter_data, PROFILER_FIELDS, "profiler")


@rpc
def get_stable_version(caller: Caller, board: Any = "DEFAULT") -> str:
    """Stable versions are not kept here (no stable-version table): always ``""``."""
    arguments.as_text(board, "board")
    return ""


@rpc
def get_all_stable_versions(caller: Caller) -> dict[str, str]:
    """Stable versions are not kept here (no stable-version table): always ``{}``."""
    return {}
