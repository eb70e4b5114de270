"""The suite cannot reach the network: the guard in the root conftest refuses it."""

from __future__ import annotations

import socket

import pytest

from conftest import NetworkBlocked


def test_non_loopback_connect_is_refused_before_any_packet() -> None:
    with socket.socket() as sock, pytest.raises(NetworkBlocked):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1, never reached


def test_name_lookups_outside_loopback_are_refused() -> None:
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("api.openai.com", 443)


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
    assert socket.getaddrinfo("localhost", 80)
