"""Files the scheduler writes into results directories (§5.3)."""
from __future__ import annotations

import shutil
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

KEYVAL = "keyval"
LOST_PROCESS_ERROR = (
    "The autoserv process of this job was lost by the scheduler: it stopped without "
    "recording an exit status. Its results may be incomplete."
)


def epoch(when: datetime) -> int:
    return int(time.mktime(when.timetuple()))


def write_keyvals(directory: Path, keyvals: Mapping[str, object], append: bool = False) -> None:
    """Write ``key=value`` lines to ``<directory>/keyval`` (append after the job)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / KEYVAL, "a" if append else "w") as out:
        for key, value in keyvals.items():
            out.write(f"{key}={value}\n")


def append_keyvals_once(directory: Path, keyvals: Mapping[str, object]) -> None:
    """Append the keys not already in ``<directory>/keyval``: a retried step after a crash adds nothing twice."""
    try:
        present = {line.split("=", 1)[0] for line in (directory / KEYVAL).read_text().splitlines()}
    except FileNotFoundError:
        present = set()
    missing = {key: value for key, value in keyvals.items() if key not in present}
    if missing:
        write_keyvals(directory, missing, append=True)


def write_host_keyvals(directory: Path, hostname: str, platform: str | None, labels: Iterable[str]) -> None:
    """``host_keyvals/<hostname>``: the platform and the other labels, URL-quoted and comma-joined."""
    host_dir = directory / "host_keyvals"
    host_dir.mkdir(parents=True, exist_ok=True)
    quoted = ",".join(urllib.parse.quote(label) for label in sorted(labels) if label != platform)
    (host_dir / hostname).write_text(f"platform={platform or ''}\nlabels={quoted}\n")


def append_status_comment(directory: Path, comment: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "status.log", "a") as out:
        out.write(f"INFO\t----\t----\t{comment}\n")


def write_lost_process_error(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "job_failure").write_text(LOST_PROCESS_ERROR + "\n")


def write_control_file(path: Path, contents: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(contents)


def copy_task_results(task_dir: Path, entry_dir: Path) -> None:
    """Copy a failed pre-job task's results into the entry's directory, so the parser reads them."""
    entry_dir.mkdir(parents=True, exist_ok=True)
    if task_dir.is_dir():
        shutil.copytree(task_dir, entry_dir, dirs_exist_ok=True)
