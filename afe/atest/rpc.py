"""The JSON-RPC transport atest uses: exactly what AFE's own clients send.

* ``POST <server>/afe/server/noauth/rpc/?method=<name>``;
* a bare-login ``Authorization: <login>`` header and urllib's default
  ``Content-Type: application/x-www-form-urlencoded`` (the body is JSON anyway);
* body ``{"method": <name>, "params": [{<keyword arguments>}], "id": "jsonrpc"}``.

Nothing here imports Django or the project: atest is a plain HTTP client.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import urllib.parse
import urllib.request
from typing import Any

AFE_RPC_PATH = "/afe/server/noauth/rpc/"
DEFAULT_SERVER = "localhost:8000"
#: Seconds to wait for an answer; ``None`` waits as long as the server takes (as atest did).
DEFAULT_TIMEOUT: float | None = None


class JSONRPCException(Exception):
    """An error answer (or an answer that is not JSON-RPC), rendered as atest printed it.

    ``str()`` is ``"<name>: <message>\\n<traceback>"`` for an error object.
    """

    def __init__(self, text: str, name: str = "", message: str = "", traceback: str = "") -> None:
        super().__init__(text)
        self.name = name
        self.message = message
        self.traceback = traceback


def add_protocol(server: str) -> str:
    """``host[:port]`` gets ``http://`` in front; an explicit ``http://``/``https://`` is kept."""
    if server.startswith(("http://", "https://")):
        return server
    return "http://" + server


def get_autotest_server(web_server: str | None = None) -> str:
    """The server: ``-w/--web``, else ``$AUTOTEST_WEB``, else ``localhost:8000``."""
    if not web_server:
        web_server = os.environ.get("AUTOTEST_WEB") or DEFAULT_SERVER
    return add_protocol(web_server)


def get_login(username: str | None = None) -> str:
    """Who the calls are made as: ``$AUTOTEST_USER``, else the Unix login (``getpass.getuser()``)."""
    return username or os.environ.get("AUTOTEST_USER") or getpass.getuser()


class AfeComm:
    """One AFE server; ``run(op, **kwargs)`` makes one call and returns its ``result``."""

    def __init__(self, web_server: str | None = None, username: str | None = None,
                 rpc_path: str = AFE_RPC_PATH, timeout: float | None = None) -> None:
        self.web_server = get_autotest_server(web_server)
        self.username = get_login(username)
        # The path is appended to the server string exactly as given, as the clients do.
        self.url = self.web_server + rpc_path
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT

    def authorization(self) -> str:
        """``Token <key>`` when ``$AUTOTEST_TOKEN`` is set (an API token), else the bare login as atest sent."""
        token = os.environ.get("AUTOTEST_TOKEN", "").strip()
        return f"Token {token}" if token else self.username

    @staticmethod
    def encode(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        return json.dumps({"method": op, "params": [*args, kwargs], "id": "jsonrpc"}).encode("utf-8")

    def run(self, op: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``op``; raises :class:`JSONRPCException` for an error answer, urllib errors as they come."""
        if "AUTOTEST_CLI_DEBUG" in os.environ:
            print(self.web_server, op, args, kwargs)
        request = urllib.request.Request(
            self.url + "?" + urllib.parse.urlencode({"method": op}),
            data=self.encode(op, args, kwargs),
            headers={"Authorization": self.authorization()},
            method="POST",
        )
        timeout = self.timeout if self.timeout is not None else socket.getdefaulttimeout()
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        result = self.decode(body)
        if "AUTOTEST_CLI_DEBUG" in os.environ:
            print("result:", result)
        return result

    @staticmethod
    def decode(body: bytes) -> Any:
        text = body.decode("utf-8", errors="replace")
        try:
            answer = json.loads(text)
        except ValueError:
            raise JSONRPCException("Error decoding JSON response:\n" + text[:2000]) from None
        if not isinstance(answer, dict) or "error" not in answer:
            raise JSONRPCException("Malformed JSON-RPC response (no 'error' key):\n" + text[:2000])
        error = answer["error"]
        if error is None:
            return answer.get("result")
        if not isinstance(error, dict):
            raise JSONRPCException(f"JSONRPCException: {error}\n")
        name = str(error.get("name", ""))
        message = str(error.get("message", ""))
        traceback = str(error.get("traceback") or "")
        return_text = f"{name}: {message}\n{traceback}"
        raise JSONRPCException(return_text, name=name, message=message, traceback=traceback)
