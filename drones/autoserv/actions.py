"""Host actions (special tasks): verify, cleanup, reset, repair, provision.

Each action is one status.log group on its host (``hostname=`` field on every line)::

    START   ----  verify        hostname=h1
        GOOD    ----  verify.connect      ...  ssh root@h1:22: reachable
        GOOD    ----  verify.command      ...  ran: test -d /data
        FAIL    ----  verify.label.board:x ... 'check-board' failed with exit status 1: ...
    END FAIL    ----  verify        hostname=h1

What each action does (``{hostname}``, ``{label}``, ``{prefix}``, ``{value}``
in commands are replaced by the value as one shell word, quoted for where it
stands — outside quotes, inside '...' or inside "..." — so a label can never
inject a command; other braces are left alone for the shell):

- **verify**: ``true`` must run on the host; then the host attribute
  ``verify_command``; then, for each of the host's labels and the
  ``--job-labels``, the label check: host attribute ``verify_label_<label>``,
  else setting ``AUTOSERV_VERIFY_LABEL_COMMANDS[<label>]`` or
  ``[<prefix>:]``. Stops at the first failure.
- **cleanup**: host attribute ``cleanup_command`` (default ``true``).
- **reset**: cleanup, then verify (nested groups).
- **repair** (``--host-protection``, default the host's own): verify first —
  a healthy host needs nothing. ``DO_NOT_VERIFY``: nothing is done (TEST_NA,
  success). ``DO_NOT_REPAIR``: nothing but that verify. Otherwise the host
  attribute ``repair_command`` runs on the host, then verify; if that is not
  enough and the protection is ``NO_PROTECTION``, ``power_cycle_command``
  runs *on the drone* (it usually drives a power switch), the host is waited
  for (``reboot_timeout``) and verified again. ``REPAIR_SOFTWARE_ONLY`` and
  ``REPAIR_FILESYSTEM_ONLY`` never power-cycle (an ``INFO`` line says so).
- **provision**: for each ``--job-labels`` label ``<prefix>:<value>``, the
  template from host attribute ``provision_command_<prefix>``, else
  ``provision_command``, else setting ``AUTOSERV_PROVISION_COMMAND``, runs on
  the host; exit 0 is success. No template is a failure. The scheduler, not
  autoserv, then updates the host's labels.
"""
from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from .config import AutoservConfig
from .errors import Aborted, AutoservError, HostError
from .hosts import Host, HostFactory
from .status_log import StatusLog

log = logging.getLogger(__name__)

PLACEHOLDERS = ("hostname", "label", "prefix", "value")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def fill(template: str, **values: str) -> str:
    """``template`` (a shell command) with ``{hostname}``, ``{label}``, ``{prefix}``, ``{value}`` replaced.

    Each value becomes exactly one shell word with its text, whatever it
    contains: ``shlex.quote``-d outside quotes, and inside a '...' or "..."
    string the string is closed, the quoted value put in and the string
    reopened (``"v={value}"`` → ``"v="'a;b'""``). Other braces are left alone.
    """
    out: list[str] = []
    quote = ""  # the quote character of the string being scanned ("" outside)
    i = 0
    while i < len(template):
        char = template[i]
        match = _PLACEHOLDER_RE.match(template, i)
        if match and match[1] in values:
            word = shlex.quote(values[match[1]])
            out.append(f"{quote}{word}{quote}" if quote else word)
            i = match.end()
            continue
        if char == "\\" and quote != "'":  # an escaped character is taken as it is
            out.append(template[i:i + 2])
            i += 2
            continue
        if char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        out.append(char)
        i += 1
    return "".join(out)


def split_label(label: str) -> tuple[str, str]:
    """``("cros-version", "R100-1234")`` for ``cros-version:R100-1234``; ``(label, "")`` without a colon."""
    prefix, _, value = label.partition(":")
    return prefix, value


@dataclass
class HostAction:
    """Runs host actions on ``host`` and records them in ``status``."""

    status: StatusLog
    host: Host
    hosts: HostFactory
    config: AutoservConfig
    job_labels: tuple[str, ...] = ()
    protection: str = "NO_PROTECTION"

    def run(self, action: str) -> bool:
        """Run ``verify``, ``cleanup``, ``reset``, ``repair`` or ``provision``; returns whether it succeeded."""
        steps: dict[str, Callable[[], bool]] = {
            "verify": self._verify,
            "cleanup": self._cleanup,
            "reset": self._reset,
            "repair": self._repair,
            "provision": self._provision,
        }
        return self._group(action, steps[action])

    # -- recording -----------------------------------------------------------------

    def _record(self, code: str, operation: str, reason: str = "") -> None:
        self.status.record(code, None, operation, reason, hostname=self.host.name)

    def _group(self, operation: str, body: Callable[[], bool]) -> bool:
        depth = self.status.open_groups()
        self.status.record("START", None, operation, hostname=self.host.name)
        code = "FAIL"
        try:
            if body():
                code = "GOOD"
        except Aborted as exc:
            self.status.close_open_groups("ABORT", str(exc) or "aborted", keep=depth)
            raise
        except AutoservError as exc:
            self._record("FAIL", operation, str(exc))
        except Exception as exc:
            log.exception("%s on %s", operation, self.host)
            code = "ERROR"
            self._record("ERROR", operation, f"{type(exc).__name__}: {exc}")
        if self.status.open_groups() > depth + 1:
            self.status.close_open_groups("ERROR", "group left open", keep=depth + 1)
        self.status.record(f"END {code}", None, operation, hostname=self.host.name)
        return code == "GOOD"

    def _step(self, operation: str, command: str, host: Host | None = None,
              timeout: float | None = None, success: str | None = None) -> bool:
        """Run one command as one status line: GOOD if it exits 0, otherwise FAIL with the reason."""
        target = host or self.host
        try:
            result = target.run(command, timeout=timeout)
        except HostError as exc:
            self._record("FAIL", operation, str(exc))
            return False
        if result.ok:
            self._record("GOOD", operation, success or f"ran: {command}")
            return True
        self._record("FAIL", operation, f"{command!r} failed with {result.describe()}")
        return False

    def _fill(self, template: str, label: str = "") -> str:
        prefix, value = split_label(label)
        return fill(template, hostname=self.host.hostname, label=label, prefix=prefix, value=value)

    # -- actions -------------------------------------------------------------------

    def _verify(self) -> bool:
        host = self.host
        if not self._step("verify.connect", "true", timeout=host.connect_timeout + 30,
                          success=f"{host.describe_connection()}: reachable"):
            return False
        command = host.info.attribute("verify_command")
        if command and not self._step("verify.command", self._fill(command)):
            return False
        for label, check in self._label_checks():
            if not self._step(f"verify.label.{label}", self._fill(check, label)):
                return False
        return True

    def _label_checks(self) -> list[tuple[str, str]]:
        checks = []
        for label in sorted(set(self.host.info.labels) | set(self.job_labels)):
            prefix, _ = split_label(label)
            check = (
                self.host.info.attribute(f"verify_label_{label}")
                or self.config.verify_label_commands.get(label)
                or self.config.verify_label_commands.get(f"{prefix}:")
            )
            if check:
                checks.append((label, check))
        return checks

    def _cleanup(self) -> bool:
        command = self.host.info.attribute("cleanup_command", "true") or "true"
        return self._step("cleanup.command", self._fill(command))

    def _reset(self) -> bool:
        return self._group("cleanup", self._cleanup) and self._group("verify", self._verify)

    def _repair(self) -> bool:
        protection = self.protection
        if protection == "DO_NOT_VERIFY":
            self._record("TEST_NA", "repair", "host protection DO_NOT_VERIFY: not verified, not repaired")
            return True
        if self._group("verify", self._verify):
            self._record("GOOD", "repair", "host verified: nothing to repair")
            return True
        if protection == "DO_NOT_REPAIR":
            self._record("FAIL", "repair",
                         "host protection DO_NOT_REPAIR: the host fails verify and may not be repaired")
            return False
        info = self.host.info
        repair_command = info.attribute("repair_command")
        power_cycle = info.attribute("power_cycle_command")
        tried = False
        if repair_command:
            tried = True
            if self._step("repair.command", self._fill(repair_command)) and self._group("verify", self._verify):
                return True
        if power_cycle and protection != "NO_PROTECTION":
            # INFO, not TEST_NA: TKO ranks TEST_NA worst, and it would hide the repair's FAIL.
            self._record("INFO", "repair.power_cycle", f"skipped: not allowed by host protection {protection}")
        elif power_cycle:
            tried = True
            if (
                self._step("repair.power_cycle", self._fill(power_cycle), host=self.hosts.drone())
                and self._wait_up()
                and self._group("verify", self._verify)
            ):
                return True
        if not tried:
            self._record("FAIL", "repair", f"no repair method allowed by host protection {protection}: "
                                           "set the host attribute repair_command or power_cycle_command")
        else:
            self._record("FAIL", "repair", "repair did not make the host pass verify")
        return False

    def _wait_up(self) -> bool:
        timeout = self.host.reboot_timeout
        if self.host.wait_up(timeout):
            self._record("GOOD", "repair.wait_up", "host is up")
            return True
        self._record("FAIL", "repair.wait_up", f"host did not come up within {timeout:g}s")
        return False

    def _provision(self) -> bool:
        if not self.job_labels:
            self._record("TEST_NA", "provision", "no labels to provision")
            return True
        info = self.host.info
        for label in self.job_labels:
            prefix, _ = split_label(label)
            template = (
                info.attribute(f"provision_command_{prefix}")
                or info.attribute("provision_command")
                or self.config.provision_command
            )
            if not template:
                self._record("FAIL", f"provision.{label}",
                             f"no provision command for {prefix}: set the host attribute "
                             f"provision_command_{prefix} or provision_command, or AUTOSERV_PROVISION_COMMAND")
                return False
            if not self._step(f"provision.{label}", self._fill(template, label)):
                return False
        return True
