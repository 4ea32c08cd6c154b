"""Files the scheduler writes into results directories (§5.3)."""
from __future__ import annotations

import shutil
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from django.core.exceptions import ValidationError

from afe import names
from afe.paths import check_part, inside

KEYVAL = "keyval"
LOST_PROCESS_ERROR = (
    "The autoserv process of this job was lost by the scheduler: it stopped without "
    "recording an exit status. Its results may be incomplete."
)


def epoch(when: datetime) -> int:
    return int(time.mktime(when.timetuple()))


def keyval_lines(keyvals: Mapping[str, object]) -> str:
    """``key=value`` lines; raises ``ValueError`` for a key or value that would forge another line."""
    lines = []
    for key, value in keyvals.items():
        try:
            lines.append(f"{names.validate_keyval_key(key)}={names.validate_keyval_value(value)}\n")
        except ValidationError as exc:
            raise ValueError(f"keyval {str(key)[:40]!r}: {'; '.join(exc.messages)}") from None
    return "".join(lines)


def write_keyvals(directory: Path, keyvals: Mapping[str, object], append: bool = False) -> None:
    """Write ``key=value`` lines to ``<directory>/keyval`` (append after the job)."""
    text = keyval_lines(keyvals)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / KEYVAL, "a" if append else "w") as out:
        out.write(text)


def append_keyvals_once(directory: Path, keyvals: Mapping[str, object]) -> None:
    """Append the keys not already in ``<directory>/keyval``: a retried step after a crash adds nothing twice."""
    try:
        present = {line.split("=", 1)[0] for line in (directory / KEYVAL).read_text().splitlines()}
    except FileNotFoundError:
        present = set()
    missing = {key: value for key, value in keyvals.items() if key not in present}
    if missing:
        write_keyvals(directory, missing, append=True)


def host_keyvals(hostname: str, platform: str | None, labels: Iterable[str]) -> tuple[str, str]:
    """``host_keyvals/<hostname>`` (under a results directory) and its text: the platform and the
    other labels, URL-quoted and comma-joined. Raises ``UnsafePath`` for a hostname that is no plain name."""
    quoted = ",".join(urllib.parse.quote(label) for label in sorted(labels) if label != platform)
    return f"host_keyvals/{check_part(hostname)}", keyval_lines({"platform": platform or "", "labels": quoted})


def write_host_keyvals(directory: Path, hostname: str, platform: str | None, labels: Iterable[str]) -> None:
    """Write ``host_keyvals/<hostname>`` (see :func:`host_keyvals`) under ``directory``."""
    relative, text = host_keyvals(hostname, platform, labels)
    path = inside(directory, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def append_status_comment(directory: Path, comment: str) -> None:
    comment = " ".join(comment.split())  # one status.log line, whatever the comment holds
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
        # Links are copied as links: a link to a file outside the results is not followed.
        shutil.copytree(task_dir, entry_dir, dirs_exist_ok=True, symlinks=True)
