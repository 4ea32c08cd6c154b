"""What autoserv knows about a host before it connects: the AFE database, else defaults.

Host attributes autoserv reads (all optional):

- ``connection``: ``local`` runs commands on the drone itself; anything else is SSH;
- ``ssh_user``, ``ssh_port``, ``ssh_key`` (path of a private key file on the drone);
- ``connect_timeout``, ``command_timeout``, ``reboot_timeout`` (seconds);
- ``reboot_command`` (default ``reboot``);
- ``verify_command``, ``verify_label_<label>``, ``cleanup_command``,
  ``repair_command``, ``power_cycle_command``, ``provision_command``,
  ``provision_command_<prefix>``: see ``drones.autoserv.actions``.

A machine name on the command line may be ``[user@]hostname[:port]``
(``[v6addr]:port`` for IPv6); user and port then override everything else.

The database is read once per machine, when the run first needs the host.
A database that cannot be reached (Django's ``OperationalError`` or
``InterfaceError``: refused, restarting, locked, connection gone) is retried
for ``AUTOSERV_DB_RETRY_SECONDS``, the connection closed between tries and
about ``RETRY_PAUSE_SECONDS`` apart; then the host cannot be used
(``HostInfoError``: the test or host action that needed it fails, and so the
job) with a reason saying how long it tried. Other database errors are not
retried.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .config import AutoservConfig
from .errors import HostInfoError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two tries of a database read that failed to reach the database.
RETRY_PAUSE_SECONDS = 0.5

_MACHINE_RE = re.compile(r"^(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Machine:
    """A parsed ``[user@]hostname[:port]``."""

    name: str
    hostname: str
    user: str | None = None
    port: int | None = None


def parse_machine(name: str) -> Machine:
    """Split ``[user@]host[:port]``; a name that does not fit is taken whole as the hostname."""
    name = name.strip()
    match = _MACHINE_RE.match(name)
    if not match:
        return Machine(name=name, hostname=name)
    port = match["port"]
    return Machine(
        name=name,
        hostname=match["v6"] or match["host"],
        user=match["user"],
        port=int(port) if port else None,
    )


@dataclass(frozen=True)
class HostInfo:
    """A host's AFE record (or defaults) and how to reach it.

    ``protection`` is the name of its protection level (``None`` if unknown);
    ``in_database`` says whether the AFE database has the host.
    """

    name: str
    hostname: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    protection: str | None = None
    in_database: bool = False
    user_override: str | None = None
    port_override: int | None = None

    def attribute(self, name: str, default: str | None = None) -> str | None:
        """The attribute's value, or ``default`` when it is unset or blank."""
        value = self.attributes.get(name)
        return value if value not in (None, "") else default

    @property
    def is_local(self) -> bool:
        """Whether commands run on the drone itself (attribute ``connection=local``)."""
        return (self.attribute("connection") or "").strip().lower() == "local"

    def ssh_user(self, config: AutoservConfig) -> str:
        return self.user_override or self.attribute("ssh_user") or config.ssh_user

    def ssh_port(self, config: AutoservConfig) -> int:
        if self.port_override:
            return self.port_override
        return _int(self.attribute("ssh_port"), "ssh_port", self.hostname) or config.ssh_port

    def ssh_key(self, config: AutoservConfig) -> str | None:
        return self.attribute("ssh_key") or config.ssh_key

    def seconds(self, attribute: str, default: float) -> float:
        """A timeout from a host attribute, or ``default``."""
        value = self.attribute(attribute)
        if value is None:
            return default
        try:
            seconds = float(value)
        except ValueError:
            raise HostInfoError(f"host {self.hostname}: attribute {attribute}={value!r} is not a number") from None
        return seconds if seconds > 0 else default


def _int(value: str | None, name: str, hostname: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise HostInfoError(f"host {hostname}: attribute {name}={value!r} is not a number") from None


def _close_connection() -> None:
    """Drop the database connection (outside a transaction), so the next query opens a new one."""
    from django.db import connection

    if not connection.in_atomic_block:
        try:
            connection.close()
        except Exception as exc:  # closing a broken connection may fail in turn
            log.debug("closing the database connection: %s", exc)


def read_with_retry(
    read: Callable[[], T],
    what: str,
    retry_seconds: float,
    check: Callable[[], None] | None = None,
    pause: float = RETRY_PAUSE_SECONDS,
) -> T:
    """``read()``, tried again while the database cannot be reached, for up to ``retry_seconds``.

    Between tries the connection is closed and the thread sleeps ``pause``
    seconds (``check`` is called first: it raises ``Aborted`` after SIGTERM).
    After the deadline raises ``HostInfoError`` naming ``what``, the tries
    and the last error. Other exceptions propagate at once.
    """
    from django.db import InterfaceError, OperationalError

    deadline = time.monotonic() + retry_seconds
    tries = 0
    while True:
        tries += 1
        try:
            return read()
        except (OperationalError, InterfaceError) as exc:
            _close_connection()
            remaining = deadline - time.monotonic()
            error = f"{type(exc).__name__}: {exc}"
            if remaining <= 0:
                raise HostInfoError(f"cannot read {what} from the AFE database: gave up after {tries} "
                                    f"tries in {retry_seconds:g}s (AUTOSERV_DB_RETRY_SECONDS): {error}") from exc
            log.warning("reading %s from the AFE database (try %d): %s; trying again", what, tries, error)
            if check is not None:
                check()
            time.sleep(min(pause, remaining))


def load_host_info(name: str, retry_seconds: float | None = None, check: Callable[[], None] | None = None) -> HostInfo:
    """What the AFE database says about machine ``name`` (Django must be set up).

    The host is looked up by the full name, then by the hostname part of
    ``user@host:port``. A host not in the database gets empty attributes (SSH
    with the settings' defaults). A database that cannot be reached is retried
    for ``retry_seconds`` (default: setting ``AUTOSERV_DB_RETRY_SECONDS``; see
    ``read_with_retry``, ``check`` included). Raises ``HostInfoError`` if the
    database cannot be read.
    """
    from django.db import DatabaseError

    if retry_seconds is None:
        retry_seconds = AutoservConfig.from_settings().db_retry_seconds
    try:
        return read_with_retry(lambda: _read_host_info(name), f"host {name}", retry_seconds, check)
    except DatabaseError as exc:
        raise HostInfoError(f"cannot read host {name} from the AFE database: {exc}") from exc
    finally:
        _close_connection()  # do not hold a connection (or an SQLite lock) for the whole job


def _read_host_info(name: str) -> HostInfo:
    """One try at ``load_host_info``'s queries."""
    from afe.models import Host, Protection

    machine = parse_machine(name)
    host = Host.objects.filter(hostname=name).first()
    if host is None and machine.hostname != name:
        host = Host.objects.filter(hostname=machine.hostname).first()
    if host is None:
        return HostInfo(name=name, hostname=machine.hostname, user_override=machine.user, port_override=machine.port)
    return HostInfo(
        name=name,
        hostname=host.hostname if host.hostname != name else machine.hostname,
        attributes=host.attributes(),
        labels=tuple(host.labels.values_list("name", flat=True)),
        protection=Protection(host.protection).name,
        in_database=True,
        user_override=machine.user,
        port_override=machine.port,
    )
