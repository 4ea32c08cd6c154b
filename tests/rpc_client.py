"""A test client that talks to the JSON-RPC endpoints exactly as AFE's own clients do.

Bare-login ``Authorization`` header, a JSON body labelled as form data, no
cookie, no CSRF token, ``params`` as ``[{keywords}]`` and ``id`` ``"jsonrpc"``.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from django.test import Client


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error['name']}: {error['message']}")
        self.name = error["name"]
        self.message = error["message"]
        self.error = error

    @property
    def problem_keys(self) -> dict[str, str]:
        """What AFE's client library does with a ValidationError's message: ``eval`` it."""
        assert self.name == "ValidationError", self
        return ast.literal_eval(self.message)


@dataclass
class AfeRpc:
    client: Client
    login: str | None = "alice"
    path: str = "/afe/server/noauth/rpc/"
    remote_addr: str = "127.0.0.1"
    headers: dict[str, str] | None = None

    def raw(self, body: bytes | str, method: str = "x", **extra: Any) -> dict[str, Any]:
        """POST ``body``; asserts the HTTP answer is what every AFE client needs, returns the decoded JSON."""
        meta = {"REMOTE_ADDR": self.remote_addr, **(self.headers or {}), **extra}
        if self.login is not None:
            meta.setdefault("HTTP_AUTHORIZATION", self.login)
        response = self.client.post(f"{self.path}?method={method}", data=body,
                                    content_type="application/x-www-form-urlencoded", **meta)
        assert response.status_code == 200, (response.status_code, response.content[:500])
        answer = json.loads(response.content.decode("utf-8"))
        assert set(answer) >= {"result", "id", "error"}, answer
        if answer["error"] is not None:
            assert set(answer["error"]) >= {"name", "message", "traceback"}, answer
        return answer

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        body = json.dumps({"method": method, "params": [*args, kwargs], "id": "jsonrpc"})
        answer = self.raw(body, method)
        if answer["error"] is not None:
            raise RpcFailed(answer["error"])
        return answer["result"]

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)
