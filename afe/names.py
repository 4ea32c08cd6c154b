"""What a name may be: the rules for every name a job submitter controls, stated once.

Hostnames and owner logins become path components of results directories,
hostnames and labels are joined into autoserv's command line, keyvals are
written as ``key=value`` lines. Each rule below keeps a name from meaning
more than it says. The README's "Names" table is written from this module.

Every validator takes the raw value and returns it (as ``str``) or raises a
``ValidationError`` whose message says what is allowed. They are attached to
the model fields (so the admin and ``full_clean`` use them) and run again by
the models' ``save`` (so every other path does too; SQLite does not enforce
column lengths, this does).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError

HOSTNAME_MAX_LENGTH = 200
LABEL_MAX_LENGTH = 255
JOB_NAME_MAX_LENGTH = 255
LOGIN_MAX_LENGTH = 150
KEYVAL_KEY_MAX_LENGTH = 90
KEYVAL_VALUE_MAX_LENGTH = 300
ATTRIBUTE_NAME_MAX_LENGTH = 90
ATTRIBUTE_VALUE_MAX_LENGTH = 300
EMAIL_LIST_MAX_LENGTH = 250
GROUP_NAME_MAX_LENGTH = 255

# Keys the scheduler and autoserv write into a job's keyval file themselves.
RESERVED_KEYVAL_KEYS = frozenset({
    "job_queued", "job_started", "job_finished", "aborted_by", "aborted_on",
    "label", "user", "owner", "hostname", "drone", "status_version", "parent_job_id",
})

_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LOGIN = re.compile(r"\w[\w.@+-]*")  # Django's usernames, so every auth user has an AFE login
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f,*]")
_EMAIL_SEPARATORS = re.compile(r"[\s,;]+")
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


def text(value: Any, what: str = "value") -> str:
    """``value`` as text: a ``str`` that UTF-8 can encode, or UTF-8 ``bytes``; anything else is refused."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"The {what} is not valid UTF-8 text.") from None
    if not isinstance(value, str):
        raise ValidationError(f"The {what} must be text, not {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"The {what} is not valid text (it holds an unpaired surrogate).") from None
    return value


def _length(value: str, what: str, maximum: int) -> None:
    if not value:
        raise ValidationError(f"The {what} is empty.")
    if len(value) > maximum:
        raise ValidationError(f"The {what} is {len(value)} characters long; at most {maximum} are allowed.")


def validate_hostname(value: Any) -> str:
    """Letters, digits, ``.``, ``-``, ``_``; starts with a letter or digit; no ``..``; at most 200."""
    value = text(value, "hostname")
    _length(value, "hostname", HOSTNAME_MAX_LENGTH)
    if not _HOSTNAME.fullmatch(value) or ".." in value:
        raise ValidationError(
            f"{value[:60]!r} is not a valid hostname: use letters, digits, '.', '-' and '_', "
            "starting with a letter or digit, without '..'."
        )
    return value


def validate_login(value: Any) -> str:
    """Letters (any script), digits, ``_ . @ + -``; starts with a letter, digit or ``_``; no ``..``; at most 150."""
    value = text(value, "login")
    _length(value, "login", LOGIN_MAX_LENGTH)
    if not _LOGIN.fullmatch(value) or ".." in value:
        raise ValidationError(
            f"{value[:60]!r} is not a valid login: use letters, digits and '_', '.', '@', '+', '-', "
            "starting with a letter, digit or '_', without '..'."
        )
    return value


def validate_label_name(value: Any) -> str:
    """Printable text without ``,`` or ``*``, no surrounding spaces, not starting with ``-``; at most 255."""
    value = text(value, "label name")
    _length(value, "label name", LABEL_MAX_LENGTH)
    if _LABEL_FORBIDDEN.search(value) or value != value.strip() or value.startswith("-"):
        raise ValidationError(
            f"{value[:60]!r} is not a valid label name: no commas, '*', control characters, "
            "surrounding spaces or leading '-'."
        )
    return value


def validate_job_name(value: Any) -> str:
    """Printable text without control characters (tabs and newlines included); at most 255."""
    value = text(value, "job name")
    _length(value, "job name", JOB_NAME_MAX_LENGTH)
    if _CONTROL.search(value):
        raise ValidationError("The job name must not contain control characters (newlines, tabs, NUL).")
    return value


def validate_group_name(value: Any) -> str:
    """An ACL group's or drone set's name: printable text, no surrounding spaces; at most 255."""
    value = text(value, "name")
    _length(value, "name", GROUP_NAME_MAX_LENGTH)
    if _CONTROL.search(value) or value != value.strip():
        raise ValidationError("The name must not contain control characters or surrounding spaces.")
    return value


def _validate_key(value: Any, what: str, maximum: int) -> str:
    value = text(value, what)
    _length(value, what, maximum)
    if not _KEY.fullmatch(value):
        raise ValidationError(
            f"{value[:60]!r} is not a valid {what}: use letters, digits, '_', '.' and '-', "
            "starting with a letter, digit or '_'."
        )
    return value


def _validate_value(value: Any, what: str, maximum: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, bytes, int, float)):
        raise ValidationError(f"The {what} must be text or a number, not {type(value).__name__}.")
    value = text(value if isinstance(value, (str, bytes)) else str(value), what)
    if len(value) > maximum:
        raise ValidationError(f"The {what} is {len(value)} characters long; at most {maximum} are allowed.")
    if _CONTROL.search(value):
        raise ValidationError(f"The {what} must not contain control characters (newlines, tabs, NUL).")
    return value


def validate_keyval_key(value: Any) -> str:
    """Letters, digits, ``_ . -``; starts with a letter, digit or ``_``; at most 90."""
    return _validate_key(value, "keyval key", KEYVAL_KEY_MAX_LENGTH)


def validate_submitted_keyval_key(value: Any) -> str:
    """A keyval key a submitter may set: a valid key that the scheduler does not write itself."""
    value = validate_keyval_key(value)
    if value in RESERVED_KEYVAL_KEYS:
        raise ValidationError(f"The keyval key {value!r} is written by the scheduler and cannot be set.")
    return value


def validate_keyval_value(value: Any) -> str:
    """Text or a number; no control characters; at most 300 characters."""
    return _validate_value(value, "keyval value", KEYVAL_VALUE_MAX_LENGTH)


def validate_attribute_name(value: Any) -> str:
    """Printable text without ``=``, no surrounding spaces; at most 90 (``verify_label_<label>`` must fit a label)."""
    value = text(value, "attribute name")
    _length(value, "attribute name", ATTRIBUTE_NAME_MAX_LENGTH)
    if _CONTROL.search(value) or "=" in value or value != value.strip():
        raise ValidationError(
            f"{value[:60]!r} is not a valid attribute name: no '=', control characters or surrounding spaces."
        )
    return value


def validate_attribute_value(value: Any) -> str:
    """A host attribute's value: the same rule as a keyval value."""
    return _validate_value(value, "attribute value", ATTRIBUTE_VALUE_MAX_LENGTH)


def email_addresses(value: str) -> list[str]:
    """The addresses of an e-mail list (separated by commas, semicolons or spaces)."""
    return [a for a in _EMAIL_SEPARATORS.split(value or "") if a]


def validate_email_list(value: Any) -> str:
    """``local@domain`` addresses separated by commas, semicolons or spaces; at most 250 characters in all."""
    value = text(value, "e-mail list")
    if len(value) > EMAIL_LIST_MAX_LENGTH:
        raise ValidationError(
            f"The e-mail list is {len(value)} characters long; at most {EMAIL_LIST_MAX_LENGTH} are allowed."
        )
    bad = [address for address in email_addresses(value) if not _EMAIL.fullmatch(address)]
    if bad:
        raise ValidationError(f"Not valid e-mail addresses: {', '.join(repr(a[:60]) for a in bad)}.")
    return value


def check_fields(instance: Any, validators: dict[str, Callable[[Any], str]]) -> None:
    """Run ``validators`` on ``instance``'s fields; raises one ValidationError naming every bad field."""
    errors: dict[str, list[str]] = {}
    for field_name, validate in validators.items():
        try:
            setattr(instance, field_name, validate(getattr(instance, field_name)))
        except ValidationError as exc:
            errors[field_name] = exc.messages
    if errors:
        raise ValidationError(errors)
