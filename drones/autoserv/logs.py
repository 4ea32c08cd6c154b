"""The debug log: ``<results>/debug/autoserv.DEBUG`` (appended), plus stderr."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s| %(message)s"
DEBUG_LOG = Path("debug") / "autoserv.DEBUG"


def setup_logging(results_dir: Path, verbose: bool) -> OSError | None:
    """Log everything to the debug file and INFO (DEBUG with ``verbose``) to stderr.

    Paramiko's own chatter is kept to warnings. If the debug file cannot be
    opened (say ``<results>/debug`` is a file), logging goes to stderr only and
    the error is returned instead of raised, for the caller to record.
    """
    path = results_dir / DEBUG_LOG
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    error: OSError | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a message with a lone surrogate is logged, not a logging error
        to_file = logging.FileHandler(path, mode="a", encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        error = exc
    else:
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(formatter)
        handlers.append(to_file)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    to_stderr.setFormatter(formatter)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in [*handlers, to_stderr]:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return error
