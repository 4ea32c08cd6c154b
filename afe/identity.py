"""Who is calling: one answer for the JSON-RPC, the pages and the admin.

The caller is taken from the first of these that the request carries:

1. a Django session (a browser that logged in); an RPC made with it must
   carry the CSRF token, so a page elsewhere cannot make the browser call;
2. HTTP Basic authentication (a Django user's login and password);
3. an API token, ``Authorization: Token <key>`` (``afe.models.ApiToken``);
4. ``REMOTE_USER`` set by the front end, when ``RPC_TRUST_REMOTE_USER`` is on;
5. the bare login AFE's own clients send, ``Authorization: <login>``,
   trusted per ``RPC_TRUST_LOGIN_HEADER``: ``loopback`` (only from 127.0.0.1
   and ::1, the default), ``always`` (behind a front end that sets it),
   ``never``.

A login from a trusted source (4, 5) that AFE does not know is created, as
AFE did; anything else without an identity is refused.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass
from enum import Enum

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from . import names
from .models import ApiToken, User


class Source(str, Enum):
    SESSION = "session"
    BASIC = "basic"
    TOKEN = "token"
    REMOTE_USER = "remote_user"
    LOGIN_HEADER = "login_header"


class LoginHeaderTrust(str, Enum):
    LOOPBACK = "loopback"
    ALWAYS = "always"
    NEVER = "never"


class NotIdentified(Exception):
    """The request names no caller that may be trusted; the message says why, for the caller."""


@dataclass(frozen=True)
class Caller:
    """An identified caller: the AFE user and where the identity came from."""

    user: User
    source: Source

    @property
    def login(self) -> str:
        return self.user.login

    @property
    def needs_csrf_check(self) -> bool:
        """A session rides on a cookie any page can make the browser send; the others do not."""
        return self.source is Source.SESSION


@dataclass(frozen=True)
class IdentityPolicy:
    """How far the request's own claims are trusted (``RPC_TRUST_*`` settings)."""

    trust_login_header: LoginHeaderTrust = LoginHeaderTrust.LOOPBACK
    trust_remote_user: bool = False

    @classmethod
    def from_settings(cls) -> IdentityPolicy:
        return cls(
            trust_login_header=LoginHeaderTrust(getattr(settings, "RPC_TRUST_LOGIN_HEADER", "loopback")),
            trust_remote_user=bool(getattr(settings, "RPC_TRUST_REMOTE_USER", False)),
        )


def identify(request: HttpRequest, policy: IdentityPolicy) -> Caller:
    """The caller of ``request``; raises ``NotIdentified`` saying what to send instead."""
    django_user = getattr(request, "user", None)
    if django_user is not None and django_user.is_authenticated:
        return Caller(User.for_django_user(django_user), Source.SESSION)
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() == "basic" and credentials:
        return Caller(_basic(request, credentials), Source.BASIC)
    if scheme.lower() == "token" and credentials:
        user = ApiToken.objects.user_for_key(credentials.strip())
        if user is None:
            raise NotIdentified("The API token is unknown or revoked.")
        return Caller(user, Source.TOKEN)
    remote_user = request.META.get("REMOTE_USER", "")
    if remote_user and policy.trust_remote_user:
        return Caller(_known_or_new(remote_user), Source.REMOTE_USER)
    if scheme and not credentials:
        return Caller(_trusted_login(request, scheme, policy), Source.LOGIN_HEADER)
    raise NotIdentified(
        "Not logged in: send HTTP Basic credentials or 'Authorization: Token <key>'"
        + (", or the bare login from this machine" if policy.trust_login_header is LoginHeaderTrust.LOOPBACK else "")
        + "."
    )


def _basic(request: HttpRequest, credentials: str) -> User:
    try:
        login, _, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NotIdentified("Malformed HTTP Basic credentials.") from None
    django_user = authenticate(request, username=login, password=password)
    if django_user is None or not django_user.is_active:
        raise NotIdentified("Wrong login or password.")
    return User.for_django_user(django_user)


def _trusted_login(request: HttpRequest, login: str, policy: IdentityPolicy) -> User:
    if policy.trust_login_header is LoginHeaderTrust.NEVER:
        raise NotIdentified("This server does not accept a bare login (RPC_TRUST_LOGIN_HEADER=never); "
                            "send HTTP Basic credentials or 'Authorization: Token <key>'.")
    if policy.trust_login_header is LoginHeaderTrust.LOOPBACK and not _is_loopback(request):
        raise NotIdentified("A bare login is trusted only from this machine (RPC_TRUST_LOGIN_HEADER=loopback); "
                            "send HTTP Basic credentials or 'Authorization: Token <key>'.")
    return _known_or_new(login)


def _is_loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _known_or_new(login: str) -> User:
    """The AFE user ``login``, created (level 0, in Everyone) if it is new, as AFE did."""
    try:
        login = names.validate_login(login)
    except ValidationError as exc:
        raise NotIdentified("; ".join(exc.messages)) from None
    user = User.objects.filter(login=login).first()
    return user if user is not None else User.objects.get_or_create(login=login)[0]
