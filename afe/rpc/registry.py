"""RPC methods by name: plain functions marked with ``@rpc``, collected from their topic modules.

A method takes the caller (``afe.identity.Caller``) first and the request's
arguments after it::

    @rpc(writes=True)
    def delete_host(caller: Caller, id: int | str) -> None: ...

``writes`` marks a method that changes data: it runs in one transaction and
its call is logged with the caller and the arguments.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .wire import InvalidArguments, UnknownMethod

_MARK = "_rpc_method"


@dataclass(frozen=True)
class Method:
    """One registered method."""

    name: str
    function: Callable[..., Any]
    writes: bool

    def bind(self, caller: Any, args: list[Any], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        """The call's arguments bound to the function; ``InvalidArguments`` when they do not fit."""
        try:
            return inspect.signature(self.function).bind(caller, *args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments({"arguments": f"{self.name}: {exc}"}) from None


def rpc(function: Callable[..., Any] | None = None, *, writes: bool = False) -> Any:
    """Mark ``function`` as an RPC method (``@rpc`` or ``@rpc(writes=True)``)."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, _MARK, writes)
        return f

    return mark(function) if function is not None else mark


class Registry:
    """The methods of one endpoint, by name; built once from topic modules."""

    def __init__(self, modules: Iterable[ModuleType]) -> None:
        methods: dict[str, Method] = {}
        for module in modules:
            for name, function in vars(module).items():
                if callable(function) and hasattr(function, _MARK) and function.__module__ == module.__name__:
                    if name in methods:
                        raise ValueError(f"RPC method {name} is defined twice")
                    methods[name] = Method(name, function, getattr(function, _MARK))
        self._methods = methods

    def __contains__(self, name: str) -> bool:
        return name in self._methods

    def names(self) -> list[str]:
        return sorted(self._methods)

    def get(self, name: str) -> Method:
        try:
            return self._methods[name]
        except KeyError:
            raise UnknownMethod(f"No such method: {name[:100]}") from None
