"""Host objects: run commands on a host, reboot it, wait for it.

``LocalHost`` (attribute ``connection=local``) runs commands on the drone;
``SshHost`` runs them over SSH. ``HostFactory.create_host(name)`` picks one
from the AFE database's record of the host, once per machine name: asking
again for the same name returns the same object (so one SSH connection per
machine serves the whole run). Control files get the factory as ``hosts``.
"""
from __future__ import annotations

import functools
import logging
import shlex
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from .abort import AbortController
from .config import AutoservConfig
from .errors import AuthenticationFailed, CommandFailed, HostError, HostUnreachable
from .hostinfo import HostInfo, load_host_info
from .process import run_local
from .result import Result
from .ssh import SshConnection, SshTarget

log = logging.getLogger(__name__)

#: How much of a command's output goes into the debug log.
LOG_OUTPUT_CHARS = 4000
BOOT_ID_COMMAND = "cat /proc/sys/kernel/random/boot_id"
TEMP_DIR_PREFIX = "/tmp/autoserv."


def _excerpt(text: str) -> str:
    text = text.rstrip()
    return text if len(text) <= LOG_OUTPUT_CHARS else f"{text[:LOG_OUTPUT_CHARS]}... [{len(text)} chars]"


class Host(ABC):
    """One machine autoserv works on."""

    def __init__(self, info: HostInfo, config: AutoservConfig, abort: AbortController) -> None:
        self.info = info
        self.config = config
        self.abort = abort
        self._temp_dirs: set[str] = set()
        self._temp_lock = threading.Lock()

    @property
    def hostname(self) -> str:
        return self.info.hostname

    @property
    def name(self) -> str:
        """The machine name as given (``hostname`` or ``user@hostname:port``)."""
        return self.info.name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @property
    def command_timeout(self) -> float:
        return self.info.seconds("command_timeout", self.config.command_timeout)

    @property
    def connect_timeout(self) -> float:
        return self.info.seconds("connect_timeout", self.config.connect_timeout)

    @property
    def reboot_timeout(self) -> float:
        return self.info.seconds("reboot_timeout", self.config.reboot_timeout)

    def run(
        self,
        command: str,
        timeout: float | None = None,
        ignore_status: bool = True,
        stdin: bytes | None = None,
        abortable: bool = True,
    ) -> Result:
        """Run a shell command on the host; returns its ``Result``.

        ``timeout`` defaults to the host's command timeout. A non-zero exit
        raises ``CommandFailed`` unless ``ignore_status``. Raises
        ``CommandTimeout`` when the command is killed for running too long, and
        another ``HostError`` when the host cannot be reached. Unless
        ``abortable`` is false (clean-up after an abort), raises ``Aborted``
        once the run has been aborted.
        """
        if abortable:
            self.abort.check()
        timeout = self.command_timeout if timeout is None else timeout
        log.debug("[%s] run (timeout %gs): %s", self.name, timeout, command)
        result = self._run(command, timeout, stdin, abortable)
        log.debug("[%s] exit status %d after %.2fs", self.name, result.exit_status, result.duration)
        if result.stdout.strip():
            log.debug("[%s] stdout:\n%s", self.name, _excerpt(result.stdout))
        if result.stderr.strip():
            log.debug("[%s] stderr:\n%s", self.name, _excerpt(result.stderr))
        if not ignore_status and not result.ok:
            raise CommandFailed(f"{command!r} on {self.name} failed with {result.describe()}", result)
        return result

    @abstractmethod
    def _run(self, command: str, timeout: float, stdin: bytes | None, abortable: bool = True) -> Result:
        """Run the command (no logging, no status check)."""

    def make_temp_dir(self, timeout: float | None = None) -> str:
        """A new ``/tmp/autoserv.XXXXXX`` directory on the host.

        It is removed by ``remove_temp_dir``, or else at the end of the run
        (``HostFactory.remove_temp_dirs``), also after an abort.
        """
        path = self.run(f"mktemp -d {TEMP_DIR_PREFIX}XXXXXX", timeout=timeout, ignore_status=False).stdout.strip()
        if not path.startswith(TEMP_DIR_PREFIX) or "/" in path[len(TEMP_DIR_PREFIX):]:
            raise HostError(f"mktemp on {self} gave an unexpected answer: {path!r}")
        with self._temp_lock:
            self._temp_dirs.add(path)
        return path

    def remove_temp_dir(self, path: str, timeout: float | None = None) -> bool:
        """``rm -rf`` a directory from ``make_temp_dir`` (even after an abort); returns whether it is gone."""
        try:
            result = self.run(f"rm -rf {shlex.quote(path)}", timeout=timeout, abortable=False)
        except HostError as exc:  # clean-up is best effort
            log.debug("[%s] removing %s: %s", self.name, path, exc)
            if isinstance(exc, (HostUnreachable, AuthenticationFailed)):
                with self._temp_lock:  # no use trying again at the end of the run
                    self._temp_dirs.discard(path)
            return False
        if not result.ok:
            return False
        with self._temp_lock:
            self._temp_dirs.discard(path)
        return True

    def remove_temp_dirs(self, timeout: float | None = None) -> None:
        """Remove the temporary directories still left on the host."""
        with self._temp_lock:
            left = sorted(self._temp_dirs)
        for path in left:
            self.remove_temp_dir(path, timeout)

    @abstractmethod
    def reboot(self, timeout: float | None = None) -> None:
        """Reboot the host and wait until it is back; raises ``HostError`` if it does not come back."""

    @abstractmethod
    def wait_up(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the host to answer; returns whether it did."""

    def describe_connection(self) -> str:
        """How the host is reached, for status reasons."""
        return "local"

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections (the host stays usable)."""


class LocalHost(Host):
    """A host that is the drone itself: commands run locally; reboot is a no-op."""

    def _run(self, command: str, timeout: float, stdin: bytes | None, abortable: bool = True) -> Result:
        try:
            return run_local(command, timeout=timeout, check_abort=self.abort.check if abortable else None,
                             stdin=stdin)
        except OSError as exc:
            raise HostError(f"cannot run a command on {self.name}: {exc}") from None

    def reboot(self, timeout: float | None = None) -> None:
        log.info("[%s] reboot requested: a local host is not rebooted", self.name)

    def wait_up(self, timeout: float) -> bool:
        return True


class SshHost(Host):
    """A host reached over SSH."""

    def __init__(self, info: HostInfo, config: AutoservConfig, abort: AbortController) -> None:
        super().__init__(info, config, abort)
        self.target = SshTarget(
            hostname=info.hostname,
            port=info.ssh_port(config),
            user=info.ssh_user(config),
            key_filename=info.ssh_key(config),
            connect_timeout=self.connect_timeout,
        )
        self.connection = SshConnection(self.target, abort.check)

    def describe_connection(self) -> str:
        return f"ssh {self.target}"

    def _run(self, command: str, timeout: float, stdin: bytes | None, abortable: bool = True) -> Result:
        return self.connection.run(command, timeout=timeout, stdin=stdin, abortable=abortable)

    def _boot_id(self) -> str | None:
        try:
            result = self._run(BOOT_ID_COMMAND, self.connect_timeout, None)
        except HostError:
            return None
        return result.stdout.strip() or None if result.ok else None

    def reboot(self, timeout: float | None = None) -> None:
        """Run the ``reboot_command`` attribute (default ``reboot``), then wait for a new boot.

        The host counts as rebooted once it answers with a different boot id
        (or, where it has none, answers again after having been unreachable).
        """
        timeout = self.reboot_timeout if timeout is None else timeout
        command = self.info.attribute("reboot_command", "reboot") or "reboot"
        old_boot = self._boot_id()
        log.info("[%s] rebooting: %s", self.name, command)
        try:
            self._run(command, min(self.connect_timeout, timeout), None)
        except HostError as exc:  # the connection usually drops mid-command
            log.debug("[%s] reboot command ended with: %s", self.name, exc)
        self.connection.close()
        deadline = time.monotonic() + timeout
        seen_down = False
        while time.monotonic() < deadline:
            self.abort.check()
            boot = self._boot_id()
            if boot is None:
                seen_down = True
                self.connection.close()
            elif (old_boot and boot != old_boot) or (not old_boot and seen_down):
                log.info("[%s] back after reboot", self.name)
                return
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        raise HostError(f"{self.name} did not come back from a reboot within {timeout:g}s")

    def wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.abort.check()
            try:
                if self._run("true", self.connect_timeout, None).ok:
                    return True
            except HostError as exc:
                log.debug("[%s] not up yet: %s", self.name, exc)
                self.connection.close()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(1.0, remaining))

    def close(self) -> None:
        self.connection.close()


class HostFactory:
    """Makes host objects from machine names (one per name) and closes them all at the end.

    Control files see it as ``hosts`` (``hosts.create_host("host1")``).
    """

    def __init__(
        self,
        config: AutoservConfig,
        abort: AbortController,
        load_info: Callable[[str], HostInfo] | None = None,
    ) -> None:
        self.config = config
        self.abort = abort
        self._load_info = load_info or functools.partial(
            load_host_info, retry_seconds=config.db_retry_seconds, check=abort.check)
        self._created: dict[str, Host] = {}
        self._making: dict[str, threading.Lock] = {}  # one per name: the database is read once, unlocked
        self._lock = threading.Lock()

    def create_host(self, hostname: str) -> Host:
        """The host object for ``hostname`` (``[user@]host[:port]``); raises ``HostInfoError`` on database errors.

        Made (and its AFE record read) on the first call for that name; later
        calls return the same object, whatever the thread.
        """
        with self._lock:
            host = self._created.get(hostname)
            making = self._making.setdefault(hostname, threading.Lock())
        if host is not None:
            return host
        with making:
            with self._lock:
                host = self._created.get(hostname)
            if host is None:
                host = self._make_host(hostname)
                with self._lock:
                    self._created[hostname] = host
        return host

    def _make_host(self, hostname: str) -> Host:
        info = self._load_info(hostname)
        host: Host = LocalHost(info, self.config, self.abort) if info.is_local else SshHost(
            info, self.config, self.abort
        )
        log.debug("host %s: %s (%s, attributes %s, labels %s, protection %s)", hostname,
                  host.describe_connection(), "in the AFE database" if info.in_database else "not in the AFE database",
                  dict(info.attributes), list(info.labels), info.protection)
        return host

    def drone(self) -> Host:
        """The drone itself, as a local host (for commands that run next to autoserv)."""
        info = HostInfo(name="localhost", hostname="localhost", attributes={"connection": "local"})
        return LocalHost(info, self.config, self.abort)

    # Autotest-style aliases, so control files written for it keep working.
    def SSHHost(self, hostname: str) -> Host:  # noqa: N802
        return self.create_host(hostname)

    def remove_temp_dirs(self) -> None:
        """Remove the temporary directories left on the hosts (after an abort), best effort."""
        with self._lock:
            created = list(self._created.values())
        for host in created:
            try:
                host.remove_temp_dirs(timeout=host.connect_timeout + 10)
            except Exception as exc:  # clean-up must never fail the run
                log.debug("removing temporary directories on %s: %s", host, exc)

    def close_all(self) -> None:
        """Close every host this factory made."""
        with self._lock:
            created = list(self._created.values())
            self._created = {}
        for host in created:
            try:
                host.close()
            except Exception as exc:  # closing must never fail the run
                log.debug("closing %s: %s", host, exc)

