"""One bad item never stops the lab: preparing work item by item, and what a failure means.

Starting a job, a special task or a post-job step first names its results
directory (and a job writes its files there; a task's travel with its
process record). ``prepare_each`` runs that preparation for every item
on its own: bad data (a path that would leave ``RESULTS_DIR``, a name the
filesystem refuses) fails that item for good; a file system that cannot be
written right now (a full disk, a permission) defers it to a later tick. The
others go on either way.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from afe.paths import UnsafePath

Item = TypeVar("Item")
Result = TypeVar("Result")

# Errors that say the name itself is wrong: retrying cannot help.
_BAD_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL, errno.EILSEQ})


@dataclass
class Prepared(Generic[Item, Result]):
    """What ``prepare_each`` made of a batch: ready items, items that fail for good, items to retry."""

    ready: list[tuple[Item, Result]] = field(default_factory=list)
    failed: list[tuple[Item, str]] = field(default_factory=list)
    deferred: list[tuple[Item, str]] = field(default_factory=list)


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` means the item's own data is bad (fail it) rather than a passing condition (retry)."""
    if isinstance(exc, OSError):
        return exc.errno in _BAD_NAME_ERRNOS
    return isinstance(exc, (UnsafePath, ValueError, UnicodeError, TypeError))


def describe(exc: BaseException) -> str:
    """A one-line reason for an owner: what went wrong, without a traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"cannot write its results{where}: {exc.strerror}"
    if isinstance(exc, UnsafePath):
        return f"its results directory would be outside RESULTS_DIR: {exc}"
    return f"{type(exc).__name__}: {exc}"


def prepare_each(items: Iterable[Item], prepare: Callable[[Item], Result]) -> Prepared[Item, Result]:
    """Call ``prepare`` on each item on its own; sort the items by how that went."""
    prepared: Prepared[Item, Result] = Prepared()
    for item in items:
        try:
            prepared.ready.append((item, prepare(item)))
        except (OSError, UnsafePath, ValueError, UnicodeError, TypeError) as exc:
            (prepared.failed if is_permanent(exc) else prepared.deferred).append((item, describe(exc)))
    return prepared


def best_effort(what: str, write: Callable[[], object], log: logging.Logger) -> bool:
    """Write a file that records what happened but decides nothing; a failure is logged, not raised.

    Returns whether the write succeeded. The step it belongs to goes on either
    way, so the same failure is not met (and logged) again next tick.
    """
    try:
        write()
        return True
    except (OSError, UnsafePath, ValueError, UnicodeError) as exc:
        log.warning("could not write %s: %s", what, describe(exc))
        return False
