"""Running commands on a host over SSH (paramiko).

Each command gets its own channel on one connection per host. Commands run
under ``sh -c`` like local ones. sshd starts every command in a new session,
so the command's pid is also its process group; the wrapper reports that pid
(first line on stderr, removed from the output) so that on a timeout or an
abort the whole remote process group can be killed instead of left running.

Host keys are accepted and logged, not checked: lab hosts are re-imaged all
the time (Autotest ran ssh with ``StrictHostKeyChecking=no`` for the same reason).
"""
from __future__ import annotations

import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from .errors import AuthenticationFailed, CommandTimeout, HostError, HostUnreachable
from .result import Result

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
DRAIN_SECONDS = 2.0
KILL_SECONDS = 5.0
PGID_MARKER = "__AUTOSERV_PGID__"


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in. ``key_filename`` ``None``: the agent and default keys."""

    hostname: str
    port: int
    user: str
    key_filename: str | None
    connect_timeout: float

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


class _LogNewHostKey(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        log.debug("accepting %s host key %s for %s", key.get_name(), key.fingerprint, hostname)


def wrap_command(command: str) -> str:
    """The remote command line: report the process group, then run ``command`` with ``sh -c``."""
    return f"echo {PGID_MARKER} $$ >&2; exec sh -c {shlex.quote(command)}"


class SshConnection:
    """A lazily opened, thread-safe SSH connection to one host."""

    def __init__(self, target: SshTarget, check_abort: Callable[[], None] | None = None) -> None:
        self.target = target
        self.check_abort = check_abort
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def connect(self) -> paramiko.Transport:
        """The open transport, connecting first if needed.

        Raises ``HostUnreachable`` or ``AuthenticationFailed`` with a reason that
        names the host, port and user.
        """
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._close_locked()
            self._client = self._open()
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _open(self) -> paramiko.SSHClient:
        target = self.target
        key = target.key_filename
        if key and not os.path.isfile(key):
            raise AuthenticationFailed(f"ssh {target}: private key file {key} does not exist")
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_LogNewHostKey())
        log.debug("ssh %s: connecting (key %s)", target, key or "agent/default")
        try:
            client.connect(
                target.hostname,
                port=target.port,
                username=target.user,
                key_filename=key,
                allow_agent=key is None,
                look_for_keys=key is None,
                timeout=target.connect_timeout,
                banner_timeout=target.connect_timeout,
                auth_timeout=target.connect_timeout,
                channel_timeout=target.connect_timeout,
            )
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthenticationFailed(f"ssh {target}: authentication refused ({exc})") from None
        except socket.gaierror as exc:
            client.close()
            raise HostUnreachable(f"ssh {target}: cannot resolve host name ({exc.strerror or exc})") from None
        except TimeoutError:
            client.close()
            raise HostUnreachable(
                f"ssh {target}: connection timed out after {target.connect_timeout:g}s"
            ) from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            reasons = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
            raise HostUnreachable(f"ssh {target}: cannot connect: {reasons}") from None
        except (paramiko.SSHException, OSError, EOFError, ValueError) as exc:
            client.close()
            raise HostUnreachable(f"ssh {target}: cannot connect: {type(exc).__name__}: {exc}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        log.debug("ssh %s: connected", target)
        return client

    def run(self, command: str, *, timeout: float | None, stdin: bytes | None = None,
            abortable: bool = True) -> Result:
        """Run ``command`` on the host; returns its ``Result`` (any exit status).

        Raises ``CommandTimeout`` after ``timeout`` seconds, lets ``Aborted``
        from ``check_abort`` (unless not ``abortable``) through (the remote process group is killed in
        both cases), raises ``HostUnreachable``/``AuthenticationFailed`` when
        there is no connection and ``HostError`` when the connection breaks.
        """
        started = time.monotonic()
        transport = self.connect()
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout)
            channel.exec_command(wrap_command(command))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostError(f"ssh {self.target}: cannot start command: {exc}") from None
        out = bytearray()
        err = bytearray()
        pgid: list[int] = []

        def result(exit_status: int) -> Result:
            return Result(
                command=command,
                exit_status=exit_status,
                stdout=out.decode("utf-8", "replace"),
                stderr=_strip_marker(err, pgid).decode("utf-8", "replace"),
                duration=time.monotonic() - started,
            )

        deadline = None if timeout is None else started + timeout
        try:
            if stdin:
                channel.settimeout(timeout)
                try:
                    channel.sendall(stdin)
                except TimeoutError:
                    raise CommandTimeout(f"sending input timed out after {timeout:g}s: {command}", result(-9)) from None
                channel.settimeout(None)
            channel.shutdown_write()
            exited_at: float | None = None
            while True:
                select.select([channel], [], [], POLL_SECONDS)
                self._drain(channel, out, err)
                _strip_marker(err, pgid)
                if channel.exit_status_ready():
                    exited_at = exited_at or time.monotonic()
                    eof = channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready()
                    if eof or channel.closed or time.monotonic() - exited_at > DRAIN_SECONDS:
                        break
                elif channel.closed or not transport.is_active():
                    raise HostError(f"ssh {self.target}: connection lost while running: {command}")
                if abortable and self.check_abort is not None:
                    self.check_abort()
                if deadline is not None and time.monotonic() >= deadline:
                    raise CommandTimeout(f"command timed out after {timeout:g}s: {command}", result(-9))
            # Output that arrived with the exit status and the close is still buffered: read it too.
            self._drain(channel, out, err)
            _strip_marker(err, pgid)
            exit_status = channel.recv_exit_status()
        except BaseException:
            if not channel.exit_status_ready() and pgid:
                self._kill_group(pgid[0])
            raise
        finally:
            channel.close()
        return result(exit_status)

    @staticmethod
    def _drain(channel: paramiko.Channel, out: bytearray, err: bytearray) -> None:
        while channel.recv_ready():
            out += channel.recv(65536)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)

    def _kill_group(self, pgid: int) -> None:
        """Kill the remote process group, giving up after a few seconds (runs in a helper thread)."""

        def kill() -> None:
            try:
                transport = self.connect()
                channel = transport.open_session(timeout=KILL_SECONDS)
                channel.exec_command(f"kill -KILL -- -{pgid} 2>/dev/null || kill -KILL {pgid}")
                channel.recv_exit_status()
                channel.close()
                log.debug("ssh %s: killed remote process group %d", self.target, pgid)
            except Exception as exc:  # best effort
                log.debug("ssh %s: could not kill remote process group %d: %s", self.target, pgid, exc)

        helper = threading.Thread(target=kill, name="ssh-kill", daemon=True)
        helper.start()
        helper.join(KILL_SECONDS)

    def close(self) -> None:
        """Close the connection (the next command reconnects)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _strip_marker(err: bytearray, pgid: list[int]) -> bytearray:
    """Remove the wrapper's first stderr line (recording the pgid in ``pgid``); returns ``err``."""
    if pgid or not err.startswith(PGID_MARKER.encode()[: len(err)]):
        return err
    newline = err.find(b"\n")
    if newline < 0:
        return err
    words = err[:newline].split()
    if len(words) == 2 and words[1].isdigit():
        pgid.append(int(words[1]))
    del err[: newline + 1]
    return err
