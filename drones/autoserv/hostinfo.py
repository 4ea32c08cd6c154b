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
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import AutoservConfig
from .errors import HostInfoError

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


def load_host_info(name: str) -> HostInfo:
    """What the AFE database says about machine ``name`` (Django must be set up).

    The host is looked up by the full name, then by the hostname part of
    ``user@host:port``. A host not in the database gets empty attributes (SSH
    with the settings' defaults). Raises ``HostInfoError`` if the database
    cannot be read.
    """
    from django.db import DatabaseError, connection

    from afe.models import Host, Protection

    machine = parse_machine(name)
    try:
        host = Host.objects.filter(hostname=name).first()
        if host is None and machine.hostname != name:
            host = Host.objects.filter(hostname=machine.hostname).first()
        if host is None:
            info = HostInfo(name=name, hostname=machine.hostname,
                            user_override=machine.user, port_override=machine.port)
        else:
            info = HostInfo(
                name=name,
                hostname=host.hostname if host.hostname != name else machine.hostname,
                attributes=host.attributes(),
                labels=tuple(host.labels.values_list("name", flat=True)),
                protection=Protection(host.protection).name,
                in_database=True,
                user_override=machine.user,
                port_override=machine.port,
            )
    except DatabaseError as exc:
        raise HostInfoError(f"cannot read host {name} from the AFE database: {exc}") from exc
    finally:
        if not connection.in_atomic_block:
            connection.close()  # do not hold a connection (or an SQLite lock) for the whole job
    return info
