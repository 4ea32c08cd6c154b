"""Job methods: generate and create jobs, list them with their status counts, clone them."""
from __future__ import annotations

import keyword
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from ...identity import Caller
from ...models import Host, HostQueueEntry, Job
from ...models.job_arguments import control_file_max_bytes, max_entries
from ...permissions import check_hosts
from .. import arguments, query, render
from ..registry import rpc
from ..wire import DoesNotExist, InvalidArguments, NoEligibleHostException

#: Fields of a job dict (``get_info_for_clone``, ``get_jobs``) that ``create_job`` accepts and drops:
#: ids and derived values (the owner is the caller, timestamps and the shard are the server's, the
#: hours are derived from the minutes, a clone is a job of its own, not another suite's child).
IGNORED_JOB_FIELDS = frozenset({
    "id", "owner", "created_on", "parameterized_job", "parameterized_job_id", "shard", "shard_id",
    "parent_job", "max_runtime_hrs", "status_counts", "result_counts",
})
_STATUS_FLAGS = ("not_yet_run", "running", "finished")
_TYPE_FLAGS = ("suite", "sub", "standalone")
_PAGING = ("query_start", "query_limit", "sort_by")


# --- creating jobs -------------------------------------------------------------------------------


@rpc(writes=True)
def create_job(caller: Caller, name: Any, priority: Any, control_file: Any, control_type: Any,
               hosts: Any = (), meta_hosts: Any = (), one_time_hosts: Any = (), synch_count: Any = None,
               is_template: Any = False, timeout: Any = None, timeout_mins: Any = None,
               max_runtime_mins: Any = None, run_verify: Any = False, email_list: Any = "",
               dependencies: Any = (), reboot_before: Any = None, reboot_after: Any = None,
               parse_failed_repair: Any = None, hostless: Any = False, keyvals: Any = None,
               drone_set: Any = None, image: Any = None, parent_job_id: Any = None, test_retry: Any = 0,
               run_reset: Any = True, require_ssp: Any = None, test_args: Any = None, **kwargs: Any) -> int:
    """Create and queue a job owned by the caller; returns its id.

    Takes what atest and ``server/frontend.py`` send (string timeouts, display
    names, repeated metahost labels) and every field of ``get_info_for_clone``'s
    job dict; ``Job.create`` checks and writes everything, all or nothing.
    """
    unknown = sorted(set(kwargs) - IGNORED_JOB_FIELDS)
    if unknown:
        raise InvalidArguments({key: "No job field of this name." for key in unknown})
    max_runtime_hrs = kwargs.get("max_runtime_hrs")
    _loose_int(test_retry, "test_retry", 0, 1000)  # AFE's deprecated retry count: checked, not used

    dependency_names = _names(dependencies, "dependencies")
    if image not in (None, ""):
        dependency_names.append(f"cros-version:{arguments.as_text(image, 'image').strip()}")
    control = _with_test_args(control_file, test_args)
    timeout_mins = _loose_int(timeout_mins, "timeout_mins")
    if timeout_mins is None and timeout not in (None, ""):
        timeout_mins = _loose_int(timeout, "timeout") * 60
    max_runtime_mins = _loose_int(max_runtime_mins, "max_runtime_mins")
    if max_runtime_mins is None and max_runtime_hrs not in (None, ""):
        max_runtime_mins = _loose_int(max_runtime_hrs, "max_runtime_hrs") * 60

    options: dict[str, Any] = {
        "name": name,
        "control_file": control,
        "control_type": control_type,
        "priority": _digits_to_int(priority),
        "hosts": _names(hosts, "hosts"),
        "meta_hosts": _names(meta_hosts, "meta_hosts"),
        "one_time_hosts": _names(one_time_hosts, "one_time_hosts"),
        "dependencies": list(dict.fromkeys(dependency_names)),
        "keyvals": keyvals,
        "parent_job": _loose_int(parent_job_id, "parent_job_id"),
        "synch_count": _loose_int(synch_count, "synch_count"),
        "timeout_mins": timeout_mins,
        "max_runtime_mins": max_runtime_mins,
        "email_list": "" if email_list is None else email_list,
        "reboot_before": reboot_before,
        "reboot_after": reboot_after,
        "drone_set": drone_set or None,
        "require_ssp": _loose_bool(require_ssp),
    }
    for flag, value in (("is_template", is_template), ("run_verify", run_verify), ("hostless", hostless),
                        ("run_reset", run_reset), ("parse_failed_repair", parse_failed_repair)):
        if value is not None:  # None: Job.create's default
            options[flag] = _loose_bool(value)

    named = [h for h in options["hosts"] if isinstance(h, str)]
    if len(named) <= 2 * max_entries():  # a longer list is Job.create's to refuse
        check_hosts(caller.user, list(Host.valid_objects.filter(hostname__in=named)))  # names the refused rule
    try:
        job = Job.create(owner=caller.user, **options)
    except ValidationError as exc:
        problem = getattr(exc, "error_dict", {}).get("meta_hosts")
        text = "; ".join(ValidationError(problem).messages) if problem else ""
        if text.startswith("No eligible hosts"):  # AFE's check_job_metahost_dependencies
            raise NoEligibleHostException(text) from None
        raise
    return job.pk


def _digits_to_int(value: Any) -> Any:
    """``"40"`` → 40 (atest sends numbers typed on the command line as strings); anything else as is."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _loose_int(value: Any, argument: str, lowest: int = 0, highest: int = 2**31 - 1) -> int | None:
    if value is None or value == "":
        return None
    return arguments.as_int(value, argument, lowest, highest)


def _loose_bool(value: Any) -> Any:
    """``"true"``/``"false"``/``"1"``/``"0"`` as booleans; anything else is left to Job.create to refuse."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return value


def _names(value: Any, argument: str) -> list[Any]:
    """A list of names; a comma-joined string (``get_jobs``' ``dependencies``) is split."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise InvalidArguments({argument: f"{argument} must be a list, not {type(value).__name__}."})
    return list(value)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


def _with_test_args(control_file: Any, test_args: Any) -> Any:
    """The control file with ``test_args`` injected in front (``key=<repr>`` lines and ``args_dict``)."""
    if not test_args:
        return control_file
    if not isinstance(test_args, Mapping):
        raise InvalidArguments({"test_args": f"test_args must be an object of name: value, not {type(test_args).__name__}."})
    if not isinstance(control_file, str):
        return control_file  # Job.create says what is wrong with it
    for key, value in test_args.items():
        if not _IDENTIFIER.fullmatch(key) or keyword.iskeyword(key):
            raise InvalidArguments({"test_args": f"{key[:60]!r} is not a Python variable name."})
        if not _is_literal(value):
            raise InvalidArguments({"test_args": f"The value of {key} must be text, a number, a boolean, null or a list of them."})
    lines = "".join(f"{key}={value!r}\n" for key, value in test_args.items())
    return f"{lines}args_dict={dict(test_args)!r}\n{control_file}"


def _is_literal(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list) and depth < 3:
        return all(_is_literal(v, depth + 1) for v in value)
    return False


# --- control files ---------------------------------------------------------------------------------

EMPTY_TEMPLATE = "def step_init():\n"
_NESTED_STEPS = re.compile(r"^\s*def\s+step_init\s*\(\s*\)\s*:", re.MULTILINE)
_TRIPLE_QUOTE = re.compile(r"(\\*)(\"\"\"|''')")


@rpc
def generate_control_file(caller: Caller, tests: Any = (), profilers: Any = (), client_control_file: Any = "",
                          use_container: Any = False, profile_only: Any = None, db_tests: Any = True,
                          test_source_build: Any = None) -> dict[str, Any]:
    """``{control_file, is_server, synch_count, dependencies}`` for a client control file.

    This server keeps no test or profiler catalogue (AFE's ``afe_autotests``),
    so tests and profilers by name are refused; the given client control file
    is wrapped into steps as AFE's ``control_file.generate_control`` does.
    """
    arguments.as_bool(use_container, "use_container")
    arguments.as_bool(db_tests, "db_tests")
    for argument, value in (("tests", tests), ("profilers", profilers)):
        given = [str(v)[:100] for v in arguments.as_list(value, argument)]
        if given:
            raise InvalidArguments({argument: (
                f"Unknown {argument}: {', '.join(given)} (this server has no {argument[:-1]} catalogue; "
                "send the control file itself as client_control_file or to create_job)"
            )})
    if test_source_build not in (None, ""):
        arguments.as_text(test_source_build, "test_source_build")
    text = arguments.as_text("" if client_control_file is None else client_control_file, "client_control_file")
    if len(text.encode("utf-8")) > control_file_max_bytes():
        raise InvalidArguments({"client_control_file": f"The control file is larger than {control_file_max_bytes()} bytes."})
    only = None if profile_only is None else arguments.as_bool(profile_only, "profile_only")
    if not text.strip():
        return {"control_file": "", "is_server": False, "synch_count": 1, "dependencies": []}
    return {"control_file": client_control(text, only), "is_server": False, "synch_count": 1, "dependencies": []}


def client_control(client_control_file: str, profile_only: bool | None = None) -> str:
    """A client control file as steps: ``step_init`` queues ``stepN`` for each, in order."""
    steps = []
    if profile_only is not None:
        steps.append(f"job.default_profile_only = {profile_only!r}")
    steps.append(_nested(client_control_file + "\nreturn locals()"))
    header = "".join(f"    job.next_step('step{n}')\n" for n in range(len(steps)))
    bodies = [f"def step{n}():\n{_indent(step, '    ')}" for n, step in enumerate(steps)]
    return EMPTY_TEMPLATE + header + "\n" + "\n\n".join(bodies)


def _nested(step: str) -> str:
    """A step that defines its own ``step_init`` returns its locals so the step engine can nest it."""
    if _NESTED_STEPS.search(step):
        step += "\nreturn locals() # Boilerplate magic for nested sets of steps"
    return step


def _indent(text: str, indent: str) -> str:
    """Indent Python lines, leaving the inside of triple-quoted strings as they are."""
    lines, in_quote = [], None
    for line in text.splitlines():
        lines.append(line if in_quote else indent + line)
        rest = line
        while rest:
            match = _TRIPLE_QUOTE.search(rest)
            if not match:
                break
            if len(match.group(1)) % 2 == 0:
                quote = match.group(2)[0]
                if in_quote is None:
                    in_quote = quote
                elif in_quote == quote:
                    in_quote = None
            rest = rest[match.end():]
    return "\n".join(lines)


# --- listing jobs ----------------------------------------------------------------------------------


def job_queryset(not_yet_run: Any = False, running: Any = False, finished: Any = False, suite: Any = False,
                 sub: Any = False, standalone: Any = False, **filter_data: Any) -> QuerySet:
    """Jobs matching the filter and AFE's status and type flags (``None`` is the same as false)."""
    flags = {name: _flag(value, name) for name, value in (
        ("not_yet_run", not_yet_run), ("running", running), ("finished", finished),
        ("suite", suite), ("sub", sub), ("standalone", standalone))}
    for group in (_STATUS_FLAGS, _TYPE_FLAGS):
        chosen = [name for name in group if flags[name]]
        if len(chosen) > 1:
            raise InvalidArguments({chosen[1]: f"At most one of {', '.join(group)} may be set."})
    lookups, paging = query.split_filter(filter_data)
    jobs = query.filtered(Job.objects.all(), lookups)
    started = HostQueueEntry.objects.exclude(status=HostQueueEntry.Status.QUEUED).values("job_id")
    unfinished = HostQueueEntry.objects.filter(complete=False).values("job_id")
    parents = Job.objects.filter(parent_job__isnull=False).values("parent_job_id")
    if flags["not_yet_run"]:
        jobs = jobs.exclude(pk__in=started)
    elif flags["running"]:
        jobs = jobs.filter(pk__in=started).filter(pk__in=unfinished)
    elif flags["finished"]:
        jobs = jobs.exclude(pk__in=unfinished)
    if flags["suite"]:
        jobs = jobs.filter(pk__in=parents)
    elif flags["sub"]:
        jobs = jobs.filter(parent_job__isnull=False)
    elif flags["standalone"]:
        jobs = jobs.filter(parent_job__isnull=True).exclude(pk__in=parents)
    return query.paged(jobs, **paging)


def _flag(value: Any, argument: str) -> bool:
    return False if value is None else arguments.as_bool(value, argument)


@rpc
def get_jobs(caller: Caller, not_yet_run: Any = False, running: Any = False, finished: Any = False,
             suite: Any = False, sub: Any = False, standalone: Any = False, **filter_data: Any) -> list[dict[str, Any]]:
    """Every field of each job plus ``dependencies`` (comma-joined) and ``keyvals``."""
    return render.job_dicts(job_queryset(not_yet_run, running, finished, suite, sub, standalone, **filter_data))


@rpc
def get_num_jobs(caller: Caller, not_yet_run: Any = False, running: Any = False, finished: Any = False,
                 suite: Any = False, sub: Any = False, standalone: Any = False, **filter_data: Any) -> int:
    filter_data = {k: v for k, v in filter_data.items() if k not in _PAGING}
    return job_queryset(not_yet_run, running, finished, suite, sub, standalone, **filter_data).count()


@rpc
def get_jobs_summary(caller: Caller, not_yet_run: Any = False, running: Any = False, finished: Any = False,
                     suite: Any = False, sub: Any = False, standalone: Any = False,
                     **filter_data: Any) -> list[dict[str, Any]]:
    """``get_jobs`` plus ``status_counts``: ``{full status: number of entries}`` per job."""
    jobs = render.job_dicts(job_queryset(not_yet_run, running, finished, suite, sub, standalone, **filter_data))
    counts = render.status_counts(job["id"] for job in jobs)
    for job in jobs:
        job["status_counts"] = counts.get(job["id"], {})
    return jobs


@rpc
def get_info_for_clone(caller: Caller, id: Any, preserve_metahosts: Any = False,
                       queue_entry_filter_data: Any = None) -> dict[str, Any]:
    """What ``job clone`` and the Clone button need: the job dict, its hosts and metahost counts.

    With ``preserve_metahosts`` an entry that a metahost got a host for brings
    that host back; otherwise it brings the metahost back.
    """
    job_id = arguments.as_id(id)
    jobs = render.job_dicts(Job.objects.filter(pk=job_id))
    if not jobs:
        raise DoesNotExist(f"Job {job_id} does not exist.")
    job = jobs[0]
    preserve = _flag(preserve_metahosts, "preserve_metahosts")
    entries = HostQueueEntry.objects.filter(job_id=job_id).select_related("host", "meta_host").order_by("pk")
    if queue_entry_filter_data is not None:
        entries = query.apply(entries, queue_entry_filter_data)
    hosts: list[Host] = []
    one_time: list[Host] = []
    metahosts: Counter[str] = Counter()
    hostless = False
    for entry in query.rows(entries):
        if entry.host_id is not None and (preserve or entry.meta_host_id is None):
            if entry.deleted:
                continue
            (one_time if entry.host.invalid else hosts).append(entry.host)
        elif entry.meta_host_id is not None:
            metahosts[entry.meta_host.name] += 1
        else:
            hostless = True

    by_id = {h["id"]: h for h in render.host_dicts(Host.objects.filter(pk__in=[h.pk for h in hosts]))}
    host_dicts = []
    for host in arguments.unique(hosts):
        data = by_id[host.pk]
        data["other_labels"] = ", ".join(name for name in data["labels"] if name != data["platform"])
        host_dicts.append(data)
    host_dicts += [{"hostname": h.hostname, "id": h.pk, "platform": "(one-time host)", "locked_text": ""}
                   for h in arguments.unique(one_time)]
    job["dependencies"] = [name for name in job["dependencies"].split(",") if name]
    return {
        "job": job,
        "meta_host_counts": dict(metahosts),
        "hosts": host_dicts,
        "hostless": hostless,
        "drone_set": job["drone_set"],
    }
