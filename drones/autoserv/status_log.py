"""``status.log`` in Autotest's format: writing it, and parsing one line.

One line per event (shown on two lines here)::

    <tabs><status>\\t<subdir>\\t<operation>\\ttimestamp=<epoch>\\tlocaltime=<%b %d %H:%M:%S>
        [\\t<key>=<value>...]\\t<reason>

- ``<tabs>``: one tab per enclosing group (nesting level);
- ``<status>``: ``START``, ``END <code>`` or a code: ``GOOD``, ``FAIL``, ``ERROR``,
  ``ABORT``, ``WARN``, ``TEST_NA``, ``INFO``, ``NOSTATUS``;
- ``<subdir>`` / ``<operation>``: ``----`` when there is none;
- extra ``key=value`` fields (``hostname=...``) follow ``localtime``;
- ``<reason>`` is always the last field, possibly empty (so a line may end in a
  tab); tabs and line breaks inside it become spaces.

A ``START`` opens a group: the lines after it are indented one more tab until
its ``END <code>``, which is written at the ``START``'s own level.

Threads: each worker thread of ``parallel_simple`` writes into its own buffer
(``StatusLog.worker``) that is appended as one block when the worker ends, so
groups of different threads never interleave.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

NONE_FIELD = "----"
LOCALTIME_FORMAT = "%b %d %H:%M:%S"
STATUS_CODES = frozenset({"GOOD", "FAIL", "ERROR", "ABORT", "WARN", "TEST_NA", "INFO", "NOSTATUS"})
#: Codes that do not make a test (or the run) a failure.
OK_CODES = frozenset({"GOOD", "WARN", "TEST_NA", "INFO", "NOSTATUS"})
FIELD_KEY_RE = re.compile(r"^[\w.-]+$")


def normalize_status(status: str) -> str:
    """``START``, ``END <code>`` or ``<code>``; raises ``ValueError`` for anything else."""
    status = " ".join(str(status).split()).upper()
    if status == "START" or status in STATUS_CODES:
        return status
    if status.startswith("END ") and status[4:] in STATUS_CODES:
        return status
    raise ValueError(f"invalid status code {status!r}")


def _clean(text: object) -> str:
    return re.sub(r"[\t\r\n]+", " ", str(text)).strip()


@dataclass(frozen=True)
class StatusLine:
    """One status.log line. ``subdir``/``operation`` are ``None`` for ``----``."""

    status: str
    subdir: str | None
    operation: str | None
    reason: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    indent: int = 0

    @property
    def code(self) -> str:
        """The status code: ``GOOD`` for both ``GOOD`` and ``END GOOD``; ``START`` for a start."""
        return self.status[4:] if self.status.startswith("END ") else self.status

    def render(self) -> str:
        """The line as written (without the newline)."""
        parts = [self.status, self.subdir or NONE_FIELD, self.operation or NONE_FIELD]
        parts += [f"{key}={value}" for key, value in self.fields.items()]
        parts.append(self.reason)
        return "\t" * self.indent + "\t".join(parts)


def make_line(
    status: str,
    subdir: str | None,
    operation: str | None,
    reason: str = "",
    fields: Mapping[str, object] | None = None,
    indent: int = 0,
    timestamp: float | None = None,
) -> StatusLine:
    """A sanitised line stamped with ``timestamp`` (now by default) and the local time."""
    timestamp = time.time() if timestamp is None else timestamp
    stamped = {
        "timestamp": str(int(timestamp)),
        "localtime": time.strftime(LOCALTIME_FORMAT, time.localtime(timestamp)),
    }
    for key, value in (fields or {}).items():
        if not FIELD_KEY_RE.match(key) or key in stamped:
            raise ValueError(f"invalid status field name {key!r}")
        stamped[key] = _clean(value)
    return StatusLine(
        status=normalize_status(status),
        subdir=_clean(subdir) or None if subdir else None,
        operation=_clean(operation) or None if operation else None,
        reason=_clean(reason),
        fields=stamped,
        indent=indent,
    )


def parse_line(text: str) -> StatusLine:
    """Parse one line; raises ``ValueError`` if it is not a status line."""
    text = text.rstrip("\n")
    body = text.lstrip("\t")
    parts = body.split("\t")
    if len(parts) < 3 or not parts[0]:
        raise ValueError(f"not a status line: {text!r}")
    rest = parts[3:]
    fields = {}
    for item in rest[:-1]:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad field {item!r} in status line {text!r}")
        fields[key] = value
    return StatusLine(
        status=normalize_status(parts[0]),
        subdir=None if parts[1] == NONE_FIELD else parts[1],
        operation=None if parts[2] == NONE_FIELD else parts[2],
        reason=rest[-1] if rest else "",
        fields=fields,
        indent=len(text) - len(body),
    )


@dataclass
class _Context:
    """What one thread is writing: its nesting and, for workers, its buffer."""

    indent: int = 0
    open: list[tuple[str | None, str | None, dict[str, object]]] = field(default_factory=list)
    buffer: list[str] | None = None
    closed: bool = False


class StatusLog:
    """Appends lines to ``<results>/status.log``, keeping each thread's nesting.

    ``failures`` counts failed top-level entries: ``END <code>`` at level 0 and
    plain lines at level 0 whose code is not in ``OK_CODES``. ``aborted`` says
    whether an ABORT was recorded. ``critical`` wraps every write (autoserv
    passes ``AbortController.shield`` so a signal never cuts a line in half).
    """

    def __init__(
        self,
        path: Path,
        critical: Callable[[], AbstractContextManager[object]] = nullcontext,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.failures = 0
        self.aborted = False
        self._critical = critical
        self._clock = clock
        self._lock = threading.RLock()
        self._contexts: dict[int, _Context] = {}
        self._file: IO[str] | None = None

    # -- writing ------------------------------------------------------------------

    def record(
        self,
        status: str,
        subdir: str | None = None,
        operation: str | None = None,
        reason: str = "",
        **fields: object,
    ) -> StatusLine | None:
        """Write one line for the calling thread; returns it (``None`` if dropped after an abort).

        ``START`` opens a group and ``END <code>`` closes the innermost one
        (``ValueError`` if none is open).
        """
        with self._critical(), self._lock:
            return self._emit(self._context(), status, subdir, operation, reason, fields)

    def indent(self) -> int:
        """The calling thread's current nesting level."""
        with self._lock:
            return self._context().indent

    def open_groups(self) -> int:
        """How many groups the calling thread has open."""
        with self._lock:
            return len(self._context().open)

    def close_open_groups(self, code: str, reason: str, keep: int = 0) -> None:
        """Close the calling thread's open groups but the outer ``keep``.

        Writes a ``code`` line inside the innermost group, then ``END <code>`` for each.
        """
        with self._critical(), self._lock:
            self._close(self._context(), code, reason, keep)

    @contextmanager
    def worker(self, base_indent: int) -> Iterator[None]:
        """Buffer the calling thread's lines, starting at ``base_indent``; append them as one block at the end."""
        ident = threading.get_ident()
        context = _Context(indent=base_indent, buffer=[])
        with self._lock:
            self._contexts[ident] = context
        try:
            yield
        finally:
            with self._lock:
                if not context.closed:
                    self._close(context, "ERROR", "group left open")
                    self._flush(context)
                    context.closed = True
                self._contexts.pop(ident, None)

    def abort_all(self, reason: str) -> None:
        """Close every thread's open groups with ABORT (workers first, then the caller's).

        Workers' buffers are written out and any later line they try to write
        is dropped. If no ABORT has been recorded at all, a top-level ``ABORT``
        line is written so the log always says the run was aborted.
        """
        with self._lock:
            mine = self._context()
            for context in list(self._contexts.values()):
                if context is mine or context.buffer is None or context.closed:
                    continue
                self._close(context, "ABORT", reason)
                self._flush(context)
                context.closed = True
            self._close(mine, "ABORT", reason)
            if not self.aborted:
                self._emit(mine, "ABORT", None, None, reason, {})

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    # -- internals ------------------------------------------------------------------

    def _context(self) -> _Context:
        return self._contexts.setdefault(threading.get_ident(), _Context())

    def _emit(
        self,
        context: _Context,
        status: str,
        subdir: str | None,
        operation: str | None,
        reason: str,
        fields: Mapping[str, object],
    ) -> StatusLine | None:
        code = normalize_status(status)
        if code.startswith("END "):
            if not context.open:
                raise ValueError(f"{code} without a matching START")
            indent = context.indent - 1
        else:
            indent = context.indent
        line = make_line(code, subdir, operation, reason, fields, indent, self._clock())
        if context.closed:
            log.debug("status line after abort dropped: %s", line.render())
            return None
        if code == "START":
            context.open.append((subdir, operation, dict(fields)))
            context.indent += 1
        elif code.startswith("END "):
            context.open.pop()
            context.indent -= 1
        if line.code == "ABORT":
            self.aborted = True
        if indent == 0 and code != "START" and line.code not in OK_CODES:
            self.failures += 1
        self._write(context, line.render())
        return line

    def _close(self, context: _Context, code: str, reason: str, keep: int = 0) -> None:
        if len(context.open) <= keep or context.closed:
            return
        subdir, operation, fields = context.open[-1]
        self._emit(context, code, subdir, operation, reason, fields)
        while len(context.open) > keep:
            subdir, operation, fields = context.open[-1]
            self._emit(context, f"END {code}", subdir, operation, "", fields)

    def _write(self, context: _Context, text: str) -> None:
        log.debug("status: %s", text.replace("\t", " | "))
        if context.buffer is not None:
            context.buffer.append(text)
        else:
            self._append([text])

    def _flush(self, context: _Context) -> None:
        if context.buffer:
            self._append(context.buffer)
            context.buffer.clear()

    def _append(self, lines: list[str]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        self._file.write("".join(f"{text}\n" for text in lines))
        self._file.flush()
