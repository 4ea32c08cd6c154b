"""The arguments of ``Job.create``, checked before anything touches the database.

Everything here is pure: types, ranges, the names' rules and the size of the
request. ``JobArguments.parse`` returns the cleaned values or raises one
``ValidationError`` naming every bad argument, so a hostile request (a
string where a list belongs, ``100000000*label``, a hostname with a comma)
is refused before a single row is read or written.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .. import names

#: A job's timeouts may not exceed a year (and stay far inside a 32-bit column).
MAX_TIMEOUT_MINS = 525_600
#: The largest row id a client may name (a signed 32-bit column).
MAX_ID = 2**31 - 1
#: The most keyvals one job may carry.
MAX_KEYVALS = 1000
_METAHOST = re.compile(r"\s*(?:(\d{1,9})\s*\*\s*)?(\S.*?)\s*", re.DOTALL)


def max_entries() -> int:
    """The most host queue entries one job may have (``JOB_MAX_ENTRIES``)."""
    return int(getattr(settings, "JOB_MAX_ENTRIES", 1000))


def control_file_max_bytes() -> int:
    """The largest control file accepted, in bytes of UTF-8 (``CONTROL_FILE_MAX_BYTES``)."""
    return int(getattr(settings, "CONTROL_FILE_MAX_BYTES", 1_048_576))


@dataclass
class JobArguments:
    """``Job.create``'s arguments after checking: plain, typed values (hosts still by name)."""

    name: str
    control_file: str
    control_type: int
    priority: int
    hostnames: list[str] = field(default_factory=list)
    metahosts: list[tuple[str, int]] = field(default_factory=list)  # (label name, count)
    one_time_hosts: list[str] = field(default_factory=list)
    hostless: bool = False
    dependencies: list[str] = field(default_factory=list)
    keyvals: dict[str, str] = field(default_factory=dict)
    parent_job_id: int | None = None
    synch_count: int | None = None
    timeout_mins: int | None = None
    max_runtime_mins: int | None = None
    run_verify: bool = False
    run_reset: bool = True
    email_list: str = ""
    reboot_before: int | None = None
    reboot_after: int | None = None
    parse_failed_repair: bool = False
    drone_set: str | None = None
    require_ssp: bool | None = None
    is_template: bool = False

    @property
    def metahost_labels(self) -> list[str]:
        """One label name per metahost entry, in order (the counts expanded)."""
        return [label for label, count in self.metahosts for _ in range(count)]

    @property
    def entry_count(self) -> int:
        return len(self.hostnames) + len(self.one_time_hosts) + sum(c for _, c in self.metahosts)

    @classmethod
    def parse(cls, enums: Mapping[str, type[models.IntegerChoices]], **raw: Any) -> JobArguments:
        """Check every argument; raises ``ValidationError({argument: message, ...})``.

        ``enums`` maps ``control_type``, ``priority``, ``reboot_before`` and
        ``reboot_after`` to their choices; an enum argument may be its number
        or its display name, as AFE accepts both.
        """
        checker = _Checker()
        values: dict[str, Any] = {
            "name": checker.run("name", lambda: names.validate_job_name(_stripped(raw["name"], "job name"))),
            "control_file": checker.run("control_file", lambda: _control_file(raw["control_file"])),
            "hostnames": checker.run("hosts", lambda: _hostnames(raw.get("hosts", ()), "hosts")),
            "metahosts": checker.run("meta_hosts", lambda: _metahosts(raw.get("meta_hosts", ()))),
            "one_time_hosts": checker.run(
                "one_time_hosts", lambda: _hostnames(raw.get("one_time_hosts", ()), "one_time_hosts")
            ),
            "dependencies": checker.run("dependencies", lambda: _label_names(raw.get("dependencies", ()))),
            "keyvals": checker.run("keyvals", lambda: _keyvals(raw.get("keyvals"))),
            "parent_job_id": checker.run("parent_job_id", lambda: _row_id(raw.get("parent_job"))),
            "email_list": checker.run("email_list", lambda: names.validate_email_list(raw.get("email_list") or "")),
            "drone_set": checker.run("drone_set", lambda: _optional_name(raw.get("drone_set"))),
        }
        for argument, enum in enums.items():
            optional = argument.startswith("reboot_")  # None: the owner's preference
            values[argument] = checker.run(argument, lambda v=raw.get(argument), e=enum, o=optional: _choice(e, v, o))
        for argument in ("synch_count", "timeout_mins", "max_runtime_mins"):
            upper = max_entries() if argument == "synch_count" else MAX_TIMEOUT_MINS
            values[argument] = checker.run(argument, lambda a=argument, u=upper: _count(raw.get(a), 1, u))
        for argument, default in (("hostless", False), ("run_verify", False), ("run_reset", True),
                                  ("parse_failed_repair", False), ("is_template", False)):
            values[argument] = checker.run(argument, lambda a=argument, d=default: _flag(raw.get(a, d), a))
        values["require_ssp"] = checker.run("require_ssp", lambda: _optional_flag(raw.get("require_ssp")))
        checker.raise_if_any()
        arguments = cls(**values)
        if arguments.entry_count > max_entries():
            raise ValidationError({"arguments": (
                f"The job asks for {arguments.entry_count} hosts; at most {max_entries()} "
                "(JOB_MAX_ENTRIES) are allowed in one job."
            )})
        return arguments


class _Checker:
    """Collects each argument's error under the argument's name."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def run(self, argument: str, check: Any) -> Any:
        try:
            return check()
        except ValidationError as exc:
            self.errors[argument] = "; ".join(exc.messages)
            return None

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


def _stripped(value: Any, what: str) -> str:
    if value is None:
        raise ValidationError("This field is required.")
    value = names.text(value, what).strip()
    if not value:
        raise ValidationError("This field is required.")
    return value


def _control_file(value: Any) -> str:
    if value is None:
        raise ValidationError("The control file is empty.")
    value = names.text(value, "control file")
    if not value.strip():
        raise ValidationError("The control file is empty.")
    size, limit = len(value.encode("utf-8")), control_file_max_bytes()
    if size > limit:
        raise ValidationError(f"The control file is {size} bytes; at most {limit} (CONTROL_FILE_MAX_BYTES) are allowed.")
    return value


def _sequence(value: Any, what: str) -> list[Any]:
    """A list, tuple or set of items; a bare string (which would iterate by characters) is refused."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValidationError(f"{what} must be a list, not {type(value).__name__}.")
    if len(value) > max_entries() * 2:
        raise ValidationError(f"{what} has {len(value)} items; far more than a job may have.")
    return list(value)


def _hostnames(value: Any, what: str) -> list[str]:
    """Host names (or Host rows, by their name), each following the hostname rule, no duplicates."""
    result = []
    for item in _sequence(value, what):
        hostname = getattr(item, "hostname", item) if not isinstance(item, (str, bytes)) else item
        result.append(names.validate_hostname(names.text(hostname, "hostname").strip()))
    return result


def _label_names(value: Any) -> list[str]:
    result = []
    for item in _sequence(value, "dependencies"):
        label = getattr(item, "name", item) if not isinstance(item, (str, bytes)) else item
        result.append(names.validate_label_name(names.text(label, "label name").strip()))
    return result


def _metahosts(value: Any) -> list[tuple[str, int]]:
    """``["2*board:x", "pool:y"]`` → ``[("board:x", 2), ("pool:y", 1)]``; counts checked before expanding."""
    result = []
    for spec in _sequence(value, "meta_hosts"):
        spec = names.text(spec, "metahost")
        match = _METAHOST.fullmatch(spec)
        if not match:
            raise ValidationError(f"Malformed metahost {spec[:60]!r}: use LABEL or N*LABEL.")
        count = int(match.group(1)) if match.group(1) is not None else 1
        if not 1 <= count <= max_entries():
            raise ValidationError(
                f"Metahost count {count} in {spec[:60]!r} must be between 1 and {max_entries()} (JOB_MAX_ENTRIES)."
            )
        result.append((names.validate_label_name(match.group(2)), count))
    return result


def _keyvals(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"keyvals must be a mapping of key to value, not {type(value).__name__}.")
    if len(value) > MAX_KEYVALS:
        raise ValidationError(f"A job may carry at most {MAX_KEYVALS} keyvals.")
    return {names.validate_submitted_keyval_key(k): names.validate_keyval_value(v) for k, v in value.items()}


def _row_id(value: Any) -> int | None:
    """A row given as itself or as its id (a positive int; a string of digits is refused as a string)."""
    if value is None:
        return None
    if hasattr(value, "pk") and isinstance(value.pk, int):
        return value.pk
    return _count(value, 1, MAX_ID)


def _count(value: Any, lowest: int, highest: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{value!r:.60} is not a whole number.")
    if not lowest <= value <= highest:
        raise ValidationError(f"{value} is out of range: it must be between {lowest} and {highest}.")
    return value


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValidationError(f"{what} must be true or false, not {value!r:.60}.")


def _optional_flag(value: Any) -> bool | None:
    return None if value is None else _flag(value, "require_ssp")


def _optional_name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if hasattr(value, "name") and not isinstance(value, (str, bytes)):
        value = value.name
    return names.validate_group_name(names.text(value, "name"))


def _choice(enum: type[models.IntegerChoices], value: Any, optional: bool) -> int | None:
    """An enum value given as its number or its display name (AFE accepts both)."""
    if value is None:
        if optional:
            return None
        raise ValidationError("This field is required.")
    if not isinstance(value, bool):
        for member in enum:
            if isinstance(value, int) and value == member.value:
                return member.value
            if isinstance(value, str) and value.strip().lower() == str(member.label).lower():
                return member.value
    raise ValidationError(f"{value!r:.60} is not one of {', '.join(enum.labels)}.")
