"""One line of an Autotest ``status.log`` (spec afe-frontend.md §6.3), parsed tolerantly.

Grammar (``<TAB>`` is one tab character; ``*`` repeats; ``[]`` is optional)::

    line       := <TAB>* word <TAB> subdir <TAB> test [<TAB> field]* [<TAB> reason]
    word       := "START" | "END " status | "END INFO" | "INFO" | status
    status     := TEST_NA | ABORT | ERROR | FAIL | WARN | GOOD | ALERT | RUNNING | NOSTATUS
    subdir     := "----" (none) | any text without a tab
    test       := "----" (none) | any text without a tab
    field      := key "=" value          key := [letters digits _ . -]+ (what autoserv allows)
    reason     := the rest of the line (it may contain tabs and "=")

- The number of leading tabs is the nesting level (one per open START).
- The writer's format (drones/autoserv/status_log.py): every line carries
  ``timestamp=`` and ``localtime=`` fields and its *last* field is always the
  reason, possibly empty. So when the fields before the last include both
  ``timestamp`` and ``localtime``, the last field is the reason whatever it
  looks like (``hostname=lh2 did not answer`` is a reason, not a field).
- Lines of other writers (without those two fields) are read as before:
  fields follow the test name for as long as they look like ``key=value``;
  the first field that does not starts the reason, which runs to the end of
  the line. The last field is the reason even when it contains ``=``, unless
  its key is one autoserv writes (``timestamp``, ``localtime``, ``hostname``,
  ``kernel``, ``patch<N>``, ``job_abort_reason``): ``...\\ttimestamp=5`` has
  an empty reason.
- In both, a field before the last that is not ``key=value`` starts the
  reason (a reason with a tab in it).
- ``END INFO`` ends its group like ``END GOOD``: INFO is not a status, so the
  group's status is the worst nested one (GOOD if there is none).
- ``timestamp`` is seconds since the epoch (a decimal fraction is truncated).
- An empty subdir or test name counts as ``----``.

A line with fewer than three fields or an unknown status word is a
``BadLine``; a good line with a bad ``timestamp`` keeps ``timestamp=None`` and
carries a warning.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

#: Status words, worst first (TKO's ``job_statuses``); a worse status overrides a better one.
STATUSES: Final = ("TEST_NA", "ABORT", "ERROR", "FAIL", "WARN", "GOOD", "ALERT", "RUNNING", "NOSTATUS")
BEST: Final = STATUSES[-1]
NONE_NAME: Final = "----"
#: The latest epoch accepted: 9999-12-30 UTC, so that it is still a ``datetime`` in every time
#: zone (9999-12-31 23:59:59 UTC is year 10000 east of Greenwich, and would fail the write).
MAX_TIMESTAMP: Final = 253402214399

#: ``key=value``; keys as autoserv's writer allows them (``FIELD_KEY_RE``).
_FIELD = re.compile(r"^([\w.-]+)=(.*)$", re.DOTALL)
#: The fields autoserv's writer puts on every line; with both, the last field is the reason.
_WRITER_KEYS: Final = frozenset({"timestamp", "localtime"})
_TRAILING_FIELD_KEY = re.compile(r"^(timestamp|localtime|hostname|kernel|patch\d+|job_abort_reason)$")


class Kind(Enum):
    START = "START"
    END = "END"
    STATUS = "STATUS"
    INFO = "INFO"


def worse(a: str, b: str) -> str:
    """The worse of two status words (``worse("GOOD", "FAIL") == "FAIL"``)."""
    return a if STATUSES.index(a) <= STATUSES.index(b) else b


def is_worse_or_equal(a: str, b: str) -> bool:
    """Whether status ``a`` is as bad as ``b`` or worse."""
    return STATUSES.index(a) <= STATUSES.index(b)


@dataclass(frozen=True)
class StatusLine:
    lineno: int
    indent: int
    kind: Kind
    status: str | None  # the status of END and STATUS lines; None for START and INFO
    subdir: str | None
    testname: str | None
    fields: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    timestamp: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def hostname(self) -> str | None:
        return self.fields.get("hostname") or None


@dataclass(frozen=True)
class BadLine:
    """A line that is not a status line; ``problem`` says why."""

    lineno: int
    text: str
    problem: str


def _name(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", NONE_NAME) else text


def parse_timestamp(value: str) -> int | None:
    """Whole seconds since the epoch for ``value``; None if it is not a usable epoch."""
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or not 0 <= number <= MAX_TIMESTAMP:
        return None
    return int(number)


def _kind(word: str) -> tuple[Kind, str | None] | None:
    if word == "START":
        return Kind.START, None
    if word == "INFO":
        return Kind.INFO, None
    if word.startswith("END "):
        status = word[4:].strip()
        if status == "INFO":  # autoserv may close a group with INFO: no status of its own
            return Kind.END, "GOOD"
        return (Kind.END, status) if status in STATUSES else None
    return (Kind.STATUS, word) if word in STATUSES else None


def _split_fields(rest: list[str]) -> tuple[dict[str, str], str]:
    """The ``key=value`` fields after the test name, and the reason."""
    fields: dict[str, str] = {}
    if not rest:
        return fields, ""
    for i, part in enumerate(rest[:-1]):
        match = _FIELD.match(part)
        if not match:  # not a field: the reason starts here (it has a tab in it)
            return fields, "\t".join(rest[i:])
        fields[match.group(1)] = match.group(2)
    last = rest[-1]
    if _WRITER_KEYS <= fields.keys():  # autoserv's format: the last field is the reason, always
        return fields, last
    match = _FIELD.match(last)
    if match and _TRAILING_FIELD_KEY.match(match.group(1)):  # another writer's line without a reason
        fields[match.group(1)] = match.group(2)
        return fields, ""
    return fields, last


def parse_status_line(text: str, lineno: int) -> StatusLine | BadLine:
    """Parse one line (without its newline); a ``BadLine`` if it is not a status line."""
    body = text.lstrip("\t")
    indent = len(text) - len(body)
    parts = body.split("\t")
    if len(parts) < 3:
        return BadLine(lineno, text, f"expected at least 3 tab-separated fields, found {len(parts)}")
    kind = _kind(parts[0].strip())
    if kind is None:
        return BadLine(lineno, text, f"unknown status {parts[0].strip()[:40]!r}")
    fields, reason = _split_fields(parts[3:])
    timestamp = None
    warnings: tuple[str, ...] = ()
    if "timestamp" in fields:
        timestamp = parse_timestamp(fields["timestamp"])
        if timestamp is None:
            warnings = (f"bad timestamp {fields['timestamp'][:40]!r} ignored",)
    return StatusLine(
        lineno=lineno, indent=indent, kind=kind[0], status=kind[1],
        subdir=_name(parts[1]), testname=_name(parts[2]),
        fields=fields, reason=reason.strip(), timestamp=timestamp, warnings=warnings,
    )

