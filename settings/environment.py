"""A small typed reader of settings from the environment.

Each setting is one call, ``setting(NAME, KIND, default, min=..., max=...)``:
the value is parsed by its kind and range-checked, and a bad one stops the
process with one line naming it, e.g.::

    settings: SCHEDULER_TICK_SECONDS must be a number between 0.01 and 3600, not 'abc'

An unset variable takes the default (the default is not checked: it is the
project's own). An empty one is a value like any other: an empty list, no
broker, no provision command; for a number or a flag it is an error.

Stopping is ``SystemExit``, raised while the settings module is imported, so
every entry point (``manage.py``, ``bin/autoserv``, ``bin/parse``, the drone
runner) prints the line and exits 1 with no traceback: none of them catches
``BaseException`` around loading settings, and ``except Exception`` blocks let
it through. Messages never repeat a secret: ``SECRET_KEY`` is not echoed and a
URL's password is shown as ``***``.
"""
from __future__ import annotations

import math
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

#: Every setting name read from the environment, in order (the tests scrub them).
NAMES: list[str] = []

#: Entry statuses (``afe.models.HostQueueEntry.Status``) that may mail the job's
#: ``email_list``; repeated here because settings load before any app can be imported.
ENTRY_STATUSES = (
    "Queued", "Starting", "Resetting", "Verifying", "Provisioning", "Pending", "Running",
    "Gathering", "Parsing", "Aborted", "Completed", "Failed", "Stopped", "Cleaning", "Template",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Django's own rule for a weak key (``security.W009``), which ``check --deploy`` applies.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
SECRET_KEY_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"

_SHOWN = 80  # characters of a bad value repeated in the message


class Invalid(ValueError):
    """A value is not of its kind; ``args[0]``, when given, is the offending part of it."""


@dataclass(frozen=True)
class Kind:
    """How to read one kind of setting: ``what`` completes "NAME must be ..."."""

    what: str
    parse: Callable[[str], Any]
    secret: bool = False  # never repeat the value in a message


def refuse(message: str) -> NoReturn:
    """Stop the process with a one-line ``settings: ...`` error (exit status 1, no traceback)."""
    raise SystemExit("settings: " + message.replace("\r", " ").replace("\n", " "))


def setting(
    name: str,
    kind: Kind,
    default: Any,
    *,
    min: float | None = None,  # noqa: A002 - reads naturally at the call sites
    max: float | None = None,  # noqa: A002
    choices: Sequence[Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """The value of environment variable ``name`` read as ``kind``, or ``default`` when unset.

    Numbers must lie within ``min``..``max``; ``choices`` restricts the parsed
    value to a list. ``env`` (for tests) replaces ``os.environ``; only names
    read from ``os.environ`` are recorded in ``NAMES``.
    """
    if env is None:
        env = os.environ
        if name not in NAMES:
            NAMES.append(name)
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = kind.parse(raw)
    except (ValueError, TypeError, KeyError, ImproperlyConfigured) as exc:
        bad = exc.args[0] if isinstance(exc, Invalid) and exc.args else raw
        refuse(f"{name} must be {allowed(kind, min, max, choices)}{_not(kind, bad)}")
    if (min is not None and value < min) or (max is not None and value > max) or (
        choices is not None and value not in choices
    ):
        refuse(f"{name} must be {allowed(kind, min, max, choices)}{_not(kind, raw)}")
    return value


def allowed(kind: Kind, low: float | None = None, high: float | None = None,
            choices: Sequence[Any] | None = None) -> str:
    """What a setting must be, e.g. ``an integer between 1 and 65535``."""
    if choices is not None:
        return "one of " + ", ".join(str(c) for c in choices)
    if low is not None and high is not None:
        return f"{kind.what} between {_number(low)} and {_number(high)}"
    if low is not None:
        return f"{kind.what} of at least {_number(low)}"
    if high is not None:
        return f"{kind.what} of at most {_number(high)}"
    return kind.what


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _not(kind: Kind, bad: str) -> str:
    if kind.secret:
        return ""
    shown = _redact(str(bad))
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + "..."
    return f", not {shown!r}"


def _redact(text: str) -> str:
    """``mysql://user:secret@host/db`` → ``mysql://user:***@host/db``."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", text)


def secret_key(debug: bool, development_key: str, env: Mapping[str, str] | None = None) -> str:
    """``SECRET_KEY``: with ``debug`` off it must be set, not ``development_key``, and strong.

    Strong is Django's rule (``security.W009``): at least 50 characters, at
    least 5 different ones, not a ``django-insecure-`` key.
    """
    key = setting("SECRET_KEY", SECRET, None, env=env)
    if debug:
        return key if key else development_key
    if key is None or not key.strip():
        refuse(f"SECRET_KEY is not set; with DEBUG=false set it to a random string of at least "
               f"{SECRET_KEY_MIN_LENGTH} characters, e.g. from {SECRET_KEY_HINT}")
    if key == development_key:
        refuse("SECRET_KEY is the development key; with DEBUG=false set your own, e.g. from "
               f"{SECRET_KEY_HINT}")
    if (len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
            or key.startswith("django-insecure-")):
        refuse(f"SECRET_KEY is too weak: with DEBUG=false it must be at least {SECRET_KEY_MIN_LENGTH} "
               f"characters with at least {SECRET_KEY_MIN_UNIQUE_CHARACTERS} different ones "
               f"(not a django-insecure- key), e.g. from {SECRET_KEY_HINT}")
    return key


def read_env_file(default: Path, env: Mapping[str, str] | None = None) -> str:
    """Read ``ENV_FILE`` (``default`` when unset; empty: none) into ``os.environ``.

    Variables already in the environment win over the file. The default file
    may be missing; a file named by ``ENV_FILE`` must exist.
    """
    path = setting("ENV_FILE", OPTIONAL_PATH, None, env=env)
    if path == "":
        return ""
    if path is None:
        if not default.is_file():
            return ""
        path = str(default)
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        refuse(f"ENV_FILE {path!r} cannot be read: {getattr(exc, 'strerror', None) or exc}")
    environ.Env.read_env(_Text(content))
    return path


class _Text:
    """What ``environ.Env.read_env`` takes for a file it should not open itself."""

    def __init__(self, content: str) -> None:
        self.content = content

    def read(self) -> str:
        return self.content


# --- parsers: each takes the raw text and raises Invalid/ValueError when it is not its kind.

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _bool(text: str) -> bool:
    # Strict, unlike environ.Env.bool (which reads any unknown word as False):
    # DEBUG=flase must not silently mean something.
    word = text.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise Invalid()


def _int(text: str) -> int:
    return int(text.strip())


def _float(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):  # nan passes every comparison, so it is refused here
        raise Invalid()
    return value


def _items(text: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _each(check: Callable[[str], bool], *, nonempty: bool = False) -> Callable[[str], list[str]]:
    """A list parser that names the first item failing ``check``."""

    def parse(text: str) -> list[str]:
        items = _items(text)
        if nonempty and not items:
            raise Invalid()
        for item in items:
            if not check(item):
                raise Invalid(item)
        return items

    return parse


# Addresses as AFE's e-mail lists take them (afe.names._EMAIL): local@domain, where
# the domain need not have a dot (ops@lab is a real address on a lab network).
_EMAIL = re.compile(
    r"[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _is_email(text: str) -> bool:
    return bool(_EMAIL.fullmatch(text))


def _sender(text: str) -> str:
    """An address, optionally with a display name (``Autotest <autotest@lab>``)."""
    text = text.strip()
    if "\n" in text or "\r" in text or not _is_email(parseaddr(text)[1]):
        raise Invalid()
    return text


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", text)


def _http_url(text: str) -> str:
    if not _is_http_url(text.strip()):
        raise Invalid()
    return text.strip()


def _is_origin(text: str) -> bool:
    # What CSRF_TRUSTED_ORIGINS takes: scheme://host[:port], "*." allowed at the start of the host.
    if not _is_http_url(text):
        return False
    parts = urlsplit(text)
    return parts.path in ("", "/") and not (parts.query or parts.fragment or parts.username)


_HOST = re.compile(r"\A(\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*|\[[0-9A-Fa-f:.]+\])\Z")


def _is_host(text: str) -> bool:
    # A bare name, ".example.com", "*" or "[::1]": never a URL, never with a port.
    return bool(_HOST.match(text))


def _absolute_path(text: str) -> str:
    # Absolute only: the scheduler, its runners and autoserv work from different
    # directories, so a relative path would name a different place in each.
    text = os.path.expanduser(text.strip())
    if not os.path.isabs(text) or "\0" in text or "\n" in text:
        raise Invalid()
    return text


def _optional_path(text: str) -> str:
    return _absolute_path(text) if text.strip() else ""


def _one_line(text: str) -> str:
    # Empty means none; otherwise one line (it is a shell template run on the host).
    if "\0" in text or "\n" in text or "\r" in text:
        raise Invalid()
    return text.strip()


_LOGIN = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]*")


def _login(text: str) -> str:
    # Handed to ssh as the user: never an option ("-oProxyCommand=..."), never spaces.
    text = text.strip()
    if text and (len(text) > 64 or not _LOGIN.fullmatch(text)):
        raise Invalid()
    return text


def _name(text: str) -> str:
    # As AFE names a drone set: printable, no surrounding spaces, at most 255 characters.
    if text != text.strip() or len(text) > 255 or not text.isprintable():
        raise Invalid()
    return text


def _database_url(text: str) -> str:
    scheme = urlsplit(text).scheme
    if scheme not in ("sqlite", "mysql"):
        raise Invalid()
    config = environ.Env.db_url_config(text)  # ValueError for a bad port
    if scheme == "sqlite" and not os.path.isabs(config["NAME"]):
        # Also :memory: and relative files: the scheduler, runners and web server share one file.
        raise Invalid()
    if scheme == "mysql" and not (config["NAME"] and config["HOST"]):
        raise Invalid()
    return text


def _email_url(text: str) -> str:
    if urlsplit(text).scheme not in environ.Env.EMAIL_SCHEMES:
        raise Invalid()
    try:
        environ.Env.email_url_config(text)
    except ImproperlyConfigured:
        raise Invalid() from None
    return text


def _broker_url(text: str) -> str:
    text = text.strip()
    if text:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - ValueError for a bad port
        if parts.scheme not in ("redis", "rediss"):
            raise Invalid()
    return text


def _time_zone(text: str) -> str:
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise Invalid() from None
    return text


def _label_commands(text: str) -> dict[str, str]:
    """``"board:x=check-x,pool:=check-pool"`` → ``{"board:x": "check-x", "pool:": "check-pool"}``."""
    pairs = {}
    for item in _items(text):
        label, equals, command = item.partition("=")
        if not (equals and label.strip() and command.strip()) or not item.isprintable():
            raise Invalid(item)
        pairs[label.strip()] = command.strip()
    return pairs


def _statuses(text: str) -> str:
    # Kept as text: scheduler.config.parse_statuses reads it (same separators).
    known = {s.lower() for s in ENTRY_STATUSES} | {"all"}
    for word in re.split(r"[\s,;:]+", text):
        if word and word.lower() not in known:
            raise Invalid(word)
    return text


def _proxy_header(text: str) -> tuple[str, str] | None:
    """``HTTP_X_FORWARDED_PROTO`` → ``("HTTP_X_FORWARDED_PROTO", "https")``; empty → ``None``."""
    if not text.strip():
        return None
    header = text.strip().upper().replace("-", "_")
    if not header.startswith("HTTP_"):
        header = "HTTP_" + header  # X-Forwarded-Proto, as a proxy's documentation spells it
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+", header):
        raise Invalid()
    return (header, "https")


BOOL = Kind("true or false", _bool)
INT = Kind("an integer", _int)
NUMBER = Kind("a number", _float)
TEXT = Kind("text", str)
UPPER = Kind("a word", lambda text: text.strip().upper())
LOWER = Kind("a word", lambda text: text.strip().lower())
SECRET = Kind("text", str, secret=True)
HOSTS = Kind("a comma-separated list of host names like afe.example.com,.example.com",
             _each(_is_host, nonempty=True))
ORIGINS = Kind("a comma-separated list of origins like https://afe.example.com", _each(_is_origin))
EMAILS = Kind("a comma-separated list of e-mail addresses", _each(_is_email))
SENDER = Kind("an e-mail address, like autotest@example.com or 'Autotest <autotest@example.com>'", _sender)
HTTP_URL = Kind("an http:// or https:// URL", _http_url)
ABSOLUTE_PATH = Kind("an absolute path", _absolute_path)
OPTIONAL_PATH = Kind("empty or an absolute path", _optional_path)
ONE_LINE = Kind("one line of text", _one_line)
LOGIN = Kind("empty or a login name (letters, digits, _ . @ -; not starting with -)", _login)
NAME = Kind("a name without control characters or surrounding spaces, at most 255 characters", _name)
DATABASE_URL = Kind("a URL like sqlite:////absolute/path/file.sqlite3 or mysql://user:password@host:3306/name",
                    _database_url)
EMAIL_URL = Kind("an e-mail URL: " + ", ".join(f"{s}://" for s in environ.Env.EMAIL_SCHEMES), _email_url)
BROKER_URL = Kind("empty or a redis:// or rediss:// URL", _broker_url)
TIME_ZONE = Kind("a time zone name like UTC or Europe/Berlin", _time_zone)
LABEL_COMMANDS = Kind("comma-separated label=command pairs", _label_commands)
STATUSES = Kind("a comma-separated list of entry statuses (" + ", ".join(ENTRY_STATUSES) + ") or all",
                _statuses)
PROXY_HEADER = Kind("empty or a request header as Django names it, like HTTP_X_FORWARDED_PROTO",
                    _proxy_header)
