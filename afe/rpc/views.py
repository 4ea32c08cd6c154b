"""The JSON-RPC endpoints: identify the caller, run one method, answer HTTP 200 with the wire format.

AFE's clients POST JSON labelled as form data, with no cookie and no CSRF
token, and cannot follow a redirect; so the views are CSRF-exempt and read
the raw body, and a caller identified by a session cookie must send the
CSRF token itself (``X-CSRFToken``), as a browser page's script does.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from .. import identity
from ..permissions import AccessDenied
from . import wire
from .registry import Registry

log = logging.getLogger("afe.rpc")


class RpcEndpoint:
    """A view answering the calls of one registry (AFE's or TKO's methods)."""

    csrf_exempt = True  # read by CsrfViewMiddleware; session callers are checked in ``caller``

    def __init__(self, registry: Registry, policy: identity.IdentityPolicy | None = None) -> None:
        self.registry = registry
        self.policy = policy

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id: Any = None
        try:
            if request.method != "POST":
                raise wire.BadRequest("Send the call as a POST with a JSON body.")
            call = wire.parse_request(request.body)
            request_id = call.id
            response = wire.success(self.run(request, call), request_id)
        except Exception as exc:  # every failure is an error object, never a server error page
            response = self.failure(request, exc, request_id)
        return HttpResponse(wire.encode(response), content_type="application/json")

    def run(self, request: HttpRequest, call: wire.Call) -> Any:
        """The method's result; raises the method's error."""
        method = self.registry.get(call.method)
        caller = self.caller(request)
        bound = method.bind(caller, call.args, call.kwargs)
        if not method.writes:
            return method.function(*bound.args, **bound.kwargs)
        log.info("rpc %s by %s (%s) from %s: %s", call.method, caller.login, caller.source.value,
                 request.META.get("REMOTE_ADDR", "?"), _arguments(call))
        with transaction.atomic():  # a failing write leaves nothing half-done
            return method.function(*bound.args, **bound.kwargs)

    def caller(self, request: HttpRequest) -> identity.Caller:
        policy = self.policy or identity.IdentityPolicy.from_settings()
        try:
            caller = identity.identify(request, policy)
        except identity.NotIdentified as exc:
            raise wire.AuthenticationRequired(str(exc)) from None
        if caller.needs_csrf_check:
            refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {})
            if refused is not None:
                raise wire.AuthenticationRequired(
                    "A call made with a browser session must carry the CSRF token (X-CSRFToken header)."
                )
        return caller

    def failure(self, request: HttpRequest, exc: Exception, request_id: Any) -> dict[str, Any]:
        if isinstance(exc, AccessDenied):
            exc = wire.AclAccessViolation(str(exc))
        elif isinstance(exc, ObjectDoesNotExist):
            exc = wire.DoesNotExist(str(exc) or "The object does not exist.")
        known = isinstance(exc, (wire.RpcError, ValidationError))
        if not known:
            log.exception("rpc failed on %s", request.path)
            if isinstance(exc, DatabaseError):
                exc = wire.RpcError("The database could not complete the call; try again.")
        text = traceback.format_exc() if settings.DEBUG and not known else ""
        return wire.failure(exc, request_id, text)


def _arguments(call: wire.Call) -> str:
    text = repr([*call.args, call.kwargs])
    return text if len(text) <= 2000 else text[:2000] + "..."
