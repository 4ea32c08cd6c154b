"""``--collect-crashinfo``: gather what a host can still tell after a job went wrong.

For each host, ``<results>/<hostname>/crashinfo/<name>.txt`` holds the output
of each command in ``COMMANDS`` (with its exit status when it failed). A host
that cannot be reached gets ``unreachable.txt`` with the reason instead.
A host's problems never fail the run: collection is best effort. Every path
goes through ``afe.paths.inside``: a host whose crashinfo directory would
leave the results (a symlink planted there, a name too long) is skipped with
a warning and makes the run exit 1; a single file refused the same way is
skipped.
"""
from __future__ import annotations

import logging
from pathlib import Path

from afe.paths import UnsafePath, inside

from .errors import AuthenticationFailed, HostError, HostUnreachable
from .hosts import Host

log = logging.getLogger(__name__)

COMMANDS = {
    "uptime": "uptime",
    "uname": "uname -a",
    "dmesg": "dmesg",
    "df": "df -h",
    "free": "free -m",
    "ps": "ps -ef",
    "messages": "tail -n 2000 /var/log/messages 2>/dev/null || tail -n 2000 /var/log/syslog",
}
COMMAND_TIMEOUT = 60.0


def collect_crashinfo(host: Host, dest: Path) -> dict[str, bool]:
    """Collect into ``dest``; returns which commands succeeded (empty if the host is unreachable)."""
    dest.mkdir(parents=True, exist_ok=True)
    collected: dict[str, bool] = {}
    timeout = min(COMMAND_TIMEOUT, host.command_timeout)
    for name, command in COMMANDS.items():
        try:
            result = host.run(command, timeout=timeout)
        except (HostUnreachable, AuthenticationFailed) as exc:
            save(dest, "unreachable.txt", f"{exc}\n")
            log.info("crashinfo: %s is unreachable: %s", host, exc)
            return {}
        except HostError as exc:
            save(dest, f"{name}.txt", f"$ {command}\n{exc}\n")
            collected[name] = False
            continue
        text = result.stdout
        if not result.ok:
            text += f"\n$ {command}\n{result.describe()}\n{result.stderr}"
        save(dest, f"{name}.txt", text)
        collected[name] = result.ok
    log.info("crashinfo from %s: %s", host, ", ".join(f"{k}={'ok' if v else 'failed'}" for k, v in collected.items()))
    return collected


def save(dest: Path, filename: str, text: str) -> bool:
    """Write ``dest/filename`` unless ``afe.paths.inside`` refuses it (say, a symlink out); returns whether written."""
    try:
        path = inside(dest, filename)
    except UnsafePath as exc:
        log.warning("crashinfo: %s not written: results path refused: %s", filename, exc)
        return False
    path.write_text(text, encoding="utf-8")
    return True
