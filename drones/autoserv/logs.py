"""The debug log: ``<results>/debug/autoserv.DEBUG`` (appended), plus stderr."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s| %(message)s"
DEBUG_LOG = Path("debug") / "autoserv.DEBUG"


def setup_logging(results_dir: Path, verbose: bool) -> Path:
    """Log everything to the debug file and INFO (DEBUG with ``verbose``) to stderr.

    Returns the debug log's path. Paramiko's own chatter is kept to warnings.
    """
    path = results_dir / DEBUG_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(FORMAT)
    to_file = logging.FileHandler(path, mode="a", encoding="utf-8")
    to_file.setLevel(logging.DEBUG)
    to_file.setFormatter(formatter)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    to_stderr.setFormatter(formatter)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(to_file)
    root.addHandler(to_stderr)
    root.setLevel(logging.DEBUG)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return path
