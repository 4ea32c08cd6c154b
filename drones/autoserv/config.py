"""autoserv's knobs, read from Django settings (``AUTOSERV_*``) with defaults.

Per-host attributes override most of them (see ``hostinfo.HostInfo``).
"""
from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import AutoservError


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


@dataclass(frozen=True)
class AutoservConfig:
    """Defaults for hosts that do not set their own.

    - ``ssh_user``/``ssh_port``/``ssh_key``: how to log in (``ssh_key`` ``None``:
      the SSH agent and the user's default keys);
    - ``connect_timeout``: seconds to open an SSH connection;
    - ``command_timeout``: seconds a command may run before it is killed;
    - ``reboot_timeout``: seconds a rebooting host has to come back;
    - ``provision_command``: template run on a host to provision a label;
    - ``verify_label_commands``: label name (or ``"prefix:"``) → verify check;
    - ``db_retry_seconds``: how long start-up reads of the AFE database (a
      host's record, attributes, labels) retry a database they cannot reach.
    """

    ssh_user: str = field(default_factory=_current_user)
    ssh_port: int = 22
    ssh_key: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 3600.0
    reboot_timeout: float = 600.0
    provision_command: str | None = None
    verify_label_commands: Mapping[str, str] = field(default_factory=dict)
    db_retry_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any = None) -> AutoservConfig:
        """The configuration from Django settings (``django.conf.settings`` by default).

        Unset, ``None`` or empty settings take the defaults; a malformed one
        raises ``AutoservError`` naming it.
        """
        if settings is None:
            from django.conf import settings as django_settings

            settings = django_settings
        defaults = cls()

        def get(name: str, default: Any) -> Any:
            value = getattr(settings, name, None)
            return default if value is None or value == "" else value

        def number(name: str, kind: type[int] | type[float], default: float) -> Any:
            value = get(name, default)
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise AutoservError(f"setting {name}={value!r} is not a number") from None

        label_checks = get("AUTOSERV_VERIFY_LABEL_COMMANDS", {})
        if not isinstance(label_checks, Mapping):
            raise AutoservError("setting AUTOSERV_VERIFY_LABEL_COMMANDS must map labels to commands")
        return cls(
            ssh_user=str(get("AUTOSERV_SSH_USER", defaults.ssh_user)),
            ssh_port=number("AUTOSERV_SSH_PORT", int, defaults.ssh_port),
            ssh_key=get("AUTOSERV_SSH_KEY", None),
            connect_timeout=number("AUTOSERV_CONNECT_TIMEOUT", float, defaults.connect_timeout),
            command_timeout=number("AUTOSERV_COMMAND_TIMEOUT", float, defaults.command_timeout),
            reboot_timeout=number("AUTOSERV_REBOOT_TIMEOUT", float, defaults.reboot_timeout),
            provision_command=get("AUTOSERV_PROVISION_COMMAND", None),
            verify_label_commands=dict(label_checks),
            db_retry_seconds=max(0.0, number("AUTOSERV_DB_RETRY_SECONDS", float, defaults.db_retry_seconds)),
        )
