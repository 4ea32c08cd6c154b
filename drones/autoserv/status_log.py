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

Threads (``parallel_simple`` workers, ``StatusLog.worker``): groups of
different threads never interleave, and nothing waits for a worker to end.

- A worker's line that is not inside one of its own groups (a plain line at
  its level, or the ``END`` that closes its outermost open group) is passed,
  together with the group it closes, to the thread that started the worker
  as soon as it is written; the main thread's lines go straight to
  ``status.log``. So ``status.log`` receives each worker group as one block
  the moment its ``END`` is written (one write, under a lock), correctly
  indented inside whatever the main thread has open. A group of a nested
  worker goes into the enclosing worker's open group the same way.
- Every line a worker records (and every group its own nested workers pass
  to it) is also appended and flushed at once to the worker's own file,
  ``<results>/<dir>/status.log``, indented relative to the worker (its level
  is 0 there), so each is a complete, standalone status log. ``<dir>`` is the
  machine name made safe as a directory name (``job.safe_path_part``); for a
  nested worker, ``<outer dir>/<machine>``. Two workers of the same name
  running at once: the second writes ``status.log.1`` (and so on). The path
  goes through ``afe.paths.inside``: if it is refused (a name too long, a
  symlink out of the results) the worker has no file of its own.
- After a SIGKILL, ``status.log`` therefore holds everything written by the
  main thread and every worker group that had ended; the groups workers
  still had open are missing from it (they were in memory) but are in the
  workers' own files, as a trailing group without its ``END``. A group is
  passed up before its ``END`` is added to the worker's own file, so if the
  kill falls between the two writes, that trailing group is also the last
  block of the parent (identical ``START`` line text apart from the tabs).

Codes in ``END`` lines: ``END INFO`` is never written (it becomes ``END GOOD``).
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

from afe.paths import UnsafePath, inside

log = logging.getLogger(__name__)

NONE_FIELD = "----"
LOCALTIME_FORMAT = "%b %d %H:%M:%S"
STATUS_CODES = frozenset({"GOOD", "FAIL", "ERROR", "ABORT", "WARN", "TEST_NA", "INFO", "NOSTATUS"})
#: Codes that do not make a test (or the run) a failure.
OK_CODES = frozenset({"GOOD", "WARN", "TEST_NA", "INFO", "NOSTATUS"})
FIELD_KEY_RE = re.compile(r"^[\w.-]+$")


#: How bad a code is, for the outcome of a group: ``ABORT`` > ``ERROR`` > ``FAIL`` >
#: ``WARN`` > ``TEST_NA`` > ``GOOD`` = ``NOSTATUS`` (``INFO`` says nothing about it).
SEVERITY = {"INFO": -1, "NOSTATUS": 0, "GOOD": 0, "TEST_NA": 1, "WARN": 2, "FAIL": 3, "ERROR": 4, "ABORT": 5}


def worse(code: str, other: str) -> bool:
    """Whether ``code`` is strictly worse than ``other`` (``SEVERITY``)."""
    return SEVERITY.get(code, 0) > SEVERITY.get(other, 0)


def normalize_status(status: str) -> str:
    """``START``, ``END <code>`` or ``<code>``; raises ``ValueError`` for anything else.

    ``END INFO`` becomes ``END GOOD``.
    """
    status = " ".join(str(status).split()).upper()
    if status == "START" or status in STATUS_CODES:
        return status
    if status == "END INFO":  # not a group outcome (and not a line TKO's parser accepts)
        return "END GOOD"
    if status.startswith("END ") and status[4:] in STATUS_CODES:
        return status
    raise ValueError(f"invalid status code {status!r}")


def _clean(text: object) -> str:
    """One line of text that can be encoded: tabs and line breaks become spaces, lone
    surrogates (undecodable bytes) become ``\\udcXX``."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return re.sub(r"[\t\r\n]+", " ", text).strip()


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


@dataclass(frozen=True)
class Outcome:
    """The worst code recorded inside a group so far, with the name and reason that came with it."""

    code: str = "GOOD"
    name: str = ""
    reason: str = ""


@dataclass(eq=False)
class _Group:
    """One open ``START``."""

    subdir: str | None
    operation: str | None
    fields: dict[str, object]
    worst: Outcome = field(default_factory=Outcome)


@dataclass(eq=False)
class _Context:
    """What one thread is writing: its nesting and, for a worker, where its lines go.

    A worker (``buffer`` is not ``None``) keeps the lines of its open groups in
    ``buffer`` until the outermost one ends, then passes them to ``parent``
    (the context of the thread that started it); it also appends every line to
    its own file at once. Any other thread writes straight to status.log.
    """

    indent: int = 0
    open: list[_Group] = field(default_factory=list)
    parent: _Context | None = None
    buffer: list[str] | None = None
    base_indent: int = 0
    directory: str = ""
    path: Path | None = None
    file: IO[str] | None = None
    file_broken: bool = False
    closed: bool = False

    @property
    def depth(self) -> int:
        """How many workers deep (0: not a worker)."""
        depth, context = 0, self.parent
        while context is not None:
            depth, context = depth + 1, context.parent
        return depth

    def descends_from(self, other: _Context) -> bool:
        context = self.parent
        while context is not None:
            if context is other:
                return True
            context = context.parent
        return False


def _open_append(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # backslashreplace: a lone surrogate in a line must never stop the run
    return open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 (kept open)


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
        self._worker_paths: set[Path] = set()

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
        with self._critical(), self._lock:
            return self._context().indent

    def open_groups(self) -> int:
        """How many groups the calling thread has open."""
        with self._critical(), self._lock:
            return len(self._context().open)

    def nested_outcome(self) -> Outcome | None:
        """The worst code recorded so far inside the calling thread's innermost open group.

        Counts the group's status lines and the ``END`` codes of the groups
        nested in it, including those of ``parallel_simple`` workers started
        inside it; ``None`` if the thread has no open group.
        """
        with self._critical(), self._lock:
            context = self._context()
            return context.open[-1].worst if context.open else None

    def close_open_groups(self, code: str, reason: str, keep: int = 0) -> None:
        """Close the calling thread's open groups but the outer ``keep``.

        Writes a ``code`` line inside the innermost group, then ``END <code>`` for each.
        """
        with self._critical(), self._lock:
            self._close(self._context(), code, reason, keep)

    def current(self) -> object:
        """The calling thread's context, for ``worker(parent=...)`` in the threads it starts."""
        with self._critical(), self._lock:
            return self._context()

    @contextmanager
    def worker(self, parent: object, name: str) -> Iterator[None]:
        """Record the calling thread's lines as a worker started from ``parent`` (see the module doc).

        ``parent`` is what ``current()`` returned in the starting thread, which
        must not write while its workers run (``parallel_simple`` waits for
        them); ``name`` is the directory of the worker's own status.log.
        """
        assert isinstance(parent, _Context)
        ident = threading.get_ident()
        with self._lock:
            directory = f"{parent.directory}/{name}" if parent.directory else name
            context = _Context(indent=parent.indent, parent=parent, buffer=[], base_indent=parent.indent,
                               directory=directory, path=self._claim(directory))
            self._contexts[ident] = context
        try:
            yield
        finally:
            with self._lock:
                if not context.closed:
                    self._close(context, "ERROR", "group left open")
                    self._retire(context)
                if self._contexts.get(ident) is context:
                    del self._contexts[ident]

    def abort_workers(self, reason: str) -> None:
        """Close with ABORT the open groups of the workers the calling thread started (and theirs).

        For a ``parallel_simple`` that gives up waiting for its workers: their
        groups are written before the caller closes its own, and anything they
        write later is dropped.
        """
        with self._critical(), self._lock:
            mine = self._context()
            self._abort([c for c in self._contexts.values() if c.descends_from(mine)], reason)

    def abort_all(self, reason: str) -> None:
        """Close every thread's open groups with ABORT (workers first, innermost first, then the caller's).

        Any later line a worker tries to write is dropped. If no ABORT has been
        recorded at all, a top-level ``ABORT`` line is written so the log always
        says the run was aborted.
        """
        with self._lock:
            mine = self._context()
            self._abort([c for c in self._contexts.values() if c is not mine and c.buffer is not None], reason)
            self._close(mine, "ABORT", reason)
            if not self.aborted:
                self._emit(mine, "ABORT", None, None, reason, {})

    def touch(self) -> None:
        """Create status.log now if it does not exist (nothing is written)."""
        with self._lock:
            self._append([])

    def close(self) -> None:
        with self._lock:
            for context in self._contexts.values():
                self._close_worker_file(context)
            if self._file is not None:
                self._file.close()
                self._file = None

    # -- internals ------------------------------------------------------------------

    def _context(self) -> _Context:
        return self._contexts.setdefault(threading.get_ident(), _Context())

    def _claim(self, directory: str) -> Path | None:
        """``<results>/<directory>/status.log``, or ``status.log.<n>`` if a running worker has it.

        ``None`` (no file of its own; its lines still reach status.log) if
        ``afe.paths.inside`` refuses the path: the directory is named after a
        machine, so it may be too long, or a symlink pointing out of the results.
        """
        try:
            base = inside(self.path.parent, directory, "status.log")
        except UnsafePath as exc:
            log.warning("worker %.60s gets no status.log of its own: results path refused: %s", directory, exc)
            return None
        path, number = base, 0
        while path in self._worker_paths:
            number += 1
            path = base.with_name(f"status.log.{number}")
        self._worker_paths.add(path)
        return path

    def _abort(self, workers: list[_Context], reason: str) -> None:
        for context in sorted(workers, key=lambda c: c.depth, reverse=True):
            if not context.closed:
                self._close(context, "ABORT", reason)
                self._retire(context)

    def _retire(self, context: _Context) -> None:
        """A worker is done: nothing it writes later is kept."""
        context.closed = True
        self._close_worker_file(context)
        if context.path is not None:
            self._worker_paths.discard(context.path)

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
        ended: _Group | None = None
        if code == "START":
            context.open.append(_Group(subdir, operation, dict(fields)))
            context.indent += 1
        elif code.startswith("END "):
            ended = context.open.pop()
            context.indent -= 1
        if line.code == "ABORT":
            self.aborted = True
        if indent == 0 and code != "START" and line.code not in OK_CODES:
            self.failures += 1
        if code != "START" and line.code != "INFO":
            why = line.reason
            if ended is not None:
                why = ended.worst.reason if ended.worst.code == line.code else ""
            self._note(context, Outcome(line.code, line.subdir or line.operation or "", why))
        self._deliver(context, [line.render()])
        return line

    @staticmethod
    def _note(context: _Context | None, outcome: Outcome) -> None:
        """Count ``outcome`` in the innermost group that encloses the line (maybe another thread's)."""
        while context is not None and not context.open:
            context = context.parent
        if context is not None and worse(outcome.code, context.open[-1].worst.code):
            context.open[-1].worst = outcome

    def _close(self, context: _Context, code: str, reason: str, keep: int = 0) -> None:
        if len(context.open) <= keep or context.closed:
            return
        group = context.open[-1]
        self._emit(context, code, group.subdir, group.operation, reason, group.fields)
        while len(context.open) > keep:
            group = context.open[-1]
            self._emit(context, f"END {code}", group.subdir, group.operation, "", group.fields)

    def _deliver(self, context: _Context, lines: list[str]) -> None:
        """Lines written in ``context`` (or passed up from its workers) go where they belong."""
        for text in lines:
            log.debug("status: %s", text.replace("\t", " | "))
        self._pass(context, lines)

    def _pass(self, context: _Context, lines: list[str]) -> None:
        if context.buffer is None:
            self._append(lines)
            return
        if context.closed:
            log.debug("status lines for a finished worker dropped: %d", len(lines))
            return
        if context.open:
            context.buffer.extend(lines)
        else:  # its outermost group just ended (or it has none): the whole block goes up now
            block = [*context.buffer, *lines]
            context.buffer.clear()
            assert context.parent is not None
            self._pass(context.parent, block)
        self._append_worker(context, lines)

    def _append(self, lines: list[str]) -> None:
        if self._file is None:
            self._file = _open_append(self.path)
        self._file.write("".join(f"{text}\n" for text in lines))
        self._file.flush()

    def _append_worker(self, context: _Context, lines: list[str]) -> None:
        """Append to the worker's own status.log, indented relative to the worker; flushed at once."""
        if context.path is None or context.file_broken:
            return
        try:
            if context.file is None:
                context.file = _open_append(context.path)
            context.file.write("".join(f"{text[context.base_indent:]}\n" for text in lines))
            context.file.flush()
        except OSError as exc:  # status.log has the lines; the worker's own copy is a bonus
            log.warning("cannot write %s: %s; not written again", context.path, exc)
            self._close_worker_file(context)
            context.file_broken = True

    @staticmethod
    def _close_worker_file(context: _Context) -> None:
        if context.file is not None:
            try:
                context.file.close()
            except OSError as exc:
                log.debug("closing %s: %s", context.path, exc)
            context.file = None
