"""A request that is not an LLM call and has no recording is, to the library that sent
it, the network being down: the stack's own connection error, never a ``CassetteMiss``
out of a library's import (litellm fetches its price list when imported, and falls back
to its bundled copy when the fetch fails to connect). An LLM call still misses loudly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
import urllib3

import llmreplay
from tests.server import LoopbackServer

PRICES = "/BerriAI/litellm/main/model_prices_and_context_window.json"  # what litellm fetches


def _get(stack: str, url: str) -> Any:
    if stack == "httpx2":
        return httpx2.get(url)
    if stack == "httpx":
        return httpx.get(url)
    if stack == "requests":
        return requests.get(url, timeout=5)
    if stack == "urllib3":
        return urllib3.PoolManager(retries=False).request("GET", url)

    async def fetch() -> int:
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            return answer.status

    return asyncio.run(fetch())


CONNECT_ERRORS: dict[str, type[BaseException]] = {
    "httpx2": httpx2.ConnectError,
    "httpx": httpx.ConnectError,
    "requests": requests.ConnectionError,
    "urllib3": urllib3.exceptions.NewConnectionError,
    "aiohttp": aiohttp.ClientConnectorError,
}


@pytest.mark.parametrize("stack", CONNECT_ERRORS)
def test_an_unrecorded_non_llm_fetch_is_an_unreachable_host(
    stack: str, server: LoopbackServer, tmp_path: Path
) -> None:
    with llmreplay.cassette(tmp_path / "c.msgpack", mode="replay") as cas:
        with pytest.raises(CONNECT_ERRORS[stack]) as raised:
            _get(stack, server.origin + PRICES)
        assert "not an LLM call" in str(raised.value)
        # An LLM call is still a miss, by name, and so is a POST to a path no rule knows
        # (a gateway's own route is more likely an LLM call than a fetch).
        with pytest.raises(llmreplay.CassetteMiss):
            httpx2.post(server.url + "/chat/completions", json={"model": "m"})
        with pytest.raises(llmreplay.CassetteMiss):
            httpx2.post(server.origin + "/gateway/run", json={"model": "m"})
    assert server.requests == [] and cas.stats.missed == 3
    assert not (tmp_path / "c.msgpack").exists()


def test_litellm_imports_inside_a_replay_cassette(tmp_path: Path) -> None:
    # A fresh interpreter, so that the import really happens inside the cassette.
    # litellm retries the fetch later from a thread of its own, outside the cassette: the
    # interpreter refuses every lookup and connection beyond loopback, as this suite does.
    script = (
        "import socket\n"
        "real_lookup, real_connect = socket.getaddrinfo, socket.socket.connect\n"
        "LOOPBACK = ('127.0.0.1', '::1', 'localhost')\n"
        "def lookup(host, *a, **k):\n"
        "    if host not in LOOPBACK:\n"
        "        raise socket.gaierror(-2, 'test: no lookups beyond loopback')\n"
        "    return real_lookup(host, *a, **k)\n"
        "def connect(sock, address):\n"
        "    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:\n"
        "        raise OSError('test: no connections beyond loopback')\n"
        "    return real_connect(sock, address)\n"
        "socket.getaddrinfo, socket.socket.connect = lookup, connect\n"
        "import llmreplay\n"
        f"with llmreplay.cassette({str(tmp_path / 'c.msgpack')!r}, mode='replay') as cas:\n"
        "    import litellm\n"
        "assert len(litellm.model_cost) > 100, len(litellm.model_cost)\n"
        "assert cas.stats.missed >= 1, cas.stats\n"  # it did try, inside the cassette
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
    assert "CassetteMiss" not in done.stderr
