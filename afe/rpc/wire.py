"""AFE's JSON-RPC wire format, as the real clients speak it (``spec/afe-rpc-wire.md`` §2–§3).

A request is ``{"method": name, "params": [positional..., {keywords}], "id": x}``
sent as a JSON body (labelled as form data by urllib). Every answer is HTTP
200 with ``result``, ``id`` and ``error``; an error has ``name``, ``message``
and ``traceback``, and a ``ValidationError``'s message is the Python dict
literal that the client ``eval``\\ s.
"""
from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

#: AFE's datetime rendering: no fraction, no ``T``, no zone (clients parse it with exactly this).
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Largest request body read (a control file is at most CONTROL_FILE_MAX_BYTES; this leaves room).
MAX_BODY_BYTES = 32 * 1024 * 1024


class RpcError(Exception):
    """An error answered to the caller as ``{"name": name, "message": message}``.

    Subclasses carry the names AFE's clients know (``ValidationError``,
    ``AclAccessViolation``, ``NoEligibleHostException``, ...).
    """

    name = "RpcError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RpcError):
    """The body is not a JSON-RPC request (AFE's ``BadServiceRequest``)."""

    name = "BadServiceRequest"


class UnknownMethod(RpcError):
    name = "UnknownMethod"


class AuthenticationRequired(RpcError):
    """No trusted identity came with the request."""

    name = "AuthenticationRequired"


class AclAccessViolation(RpcError):
    """The caller may not do this (AFE's ``model_logic.AclAccessViolation``)."""

    name = "AclAccessViolation"


class DoesNotExist(RpcError):
    """Named rows do not exist; ``Name: text: a, b`` lets atest retry with the rest."""

    name = "DoesNotExist"


class NoEligibleHostException(RpcError):
    name = "NoEligibleHostException"


class UnmodifiableLabelException(RpcError):
    name = "UnmodifiableLabelException"


class InvalidArguments(RpcError):
    """A ValidationError built from plain text: ``{field: text}``."""

    name = "ValidationError"

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = {str(k): str(v) for k, v in errors.items()}
        super().__init__(repr(self.errors))


@dataclass(frozen=True)
class Call:
    """One decoded request."""

    method: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: Any = None


def parse_request(body: bytes) -> Call:
    """The call in ``body``; raises ``BadRequest`` naming what is wrong with it."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"The request is larger than {MAX_BODY_BYTES} bytes.")
    try:
        request = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"The request body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(request, dict):
        raise BadRequest("The request must be a JSON object with 'method', 'params' and 'id'.")
    method = request.get("method")
    if not isinstance(method, str) or not method:
        raise BadRequest("The request has no 'method' (a string).")
    params = request.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        raise BadRequest("'params' must be a list whose last element holds the keyword arguments.")
    args, kwargs = list(params), {}
    if args and isinstance(args[-1], dict):
        kwargs = args.pop()
    for key in kwargs:
        if not key.isidentifier():
            raise BadRequest(f"{key[:60]!r} is not a valid keyword argument name.")
    request_id = request.get("id")
    if not isinstance(request_id, (str, int, float, type(None))) or isinstance(request_id, bool):
        request_id = None
    return Call(method=method, args=args, kwargs=kwargs, id=request_id)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def success(result: Any, request_id: Any) -> dict[str, Any]:
    return {"result": prepare(result), "id": request_id, "error": None}


def failure(exc: BaseException, request_id: Any, traceback_text: str = "") -> dict[str, Any]:
    name, message = describe(exc)
    return {"result": None, "id": request_id,
            "error": {"name": name, "message": message, "traceback": traceback_text}}


def describe(exc: BaseException) -> tuple[str, str]:
    """``(name, message)`` of an error as AFE's clients read them."""
    if isinstance(exc, RpcError):
        return exc.name, exc.message
    if isinstance(exc, ValidationError):
        return "ValidationError", repr(validation_errors(exc))
    return type(exc).__name__, str(exc)


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """``{field: 'text'}`` (plain ``str`` values, so the repr is a literal the client can ``eval``)."""
    if hasattr(exc, "error_dict"):
        return {str(k): "; ".join(str(m) for m in ValidationError(v).messages) for k, v in exc.error_dict.items()}
    return {"": "; ".join(str(m) for m in exc.messages)}


def prepare(value: Any) -> Any:
    """``value`` as JSON data the way AFE renders it (datetimes without fractions, sets as lists)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, datetime.datetime):
        return None if value == datetime.datetime.max else value.strftime(DATETIME_FORMAT)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): prepare(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [prepare(v) for v in value]
    return str(value)


def encode(response: dict[str, Any]) -> str:
    return json.dumps(response, ensure_ascii=False)
