"""Test harness for the whole repository (tests/ and examples/).

- A loopback-only network guard: any connect or name lookup outside 127.0.0.0/8, ::1 and
  localhost fails the test at once, so nothing can quietly reach the internet.
- Provider and llmreplay environment variables are removed, so a developer's real key or
  mode never leaks into a test.
- ``server``: a deterministic OpenAI/Anthropic-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server import LoopbackServer, start_server

pytest_plugins = ["pytester"]

_ENV_PREFIXES = ("OPENAI_", "AZURE_OPENAI_", "ANTHROPIC_", "LLMREPLAY_")


class NetworkBlocked(RuntimeError):
    """A test tried to reach something other than this machine."""


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlocked(f"tests may only connect to loopback, not {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and not _is_loopback(host if isinstance(host, str) else host.decode()):
        raise NetworkBlocked(f"tests may only resolve loopback names, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """A fresh loopback OpenAI/Anthropic-compatible server, stopped after the test."""
    running = start_server()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def upstream(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester
) -> LoopbackServer:
    """The loopback server as the provider of a pytester project whose ``app.ask(text)``
    makes one chat call, configured by environment as a real application is."""
    from tests.helpers import PYTESTER_APP, fake_key

    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", fake_key("sk-"))
    pytester.makepyfile(app=PYTESTER_APP)
    pytester.syspathinsert()
    return server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[True, False], ids=["sync", "async"])
def sync(request: pytest.FixtureRequest) -> bool:
    """Runs a test body once with sync clients and once with async ones."""
    return bool(request.param)
