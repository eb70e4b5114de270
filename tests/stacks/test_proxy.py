"""Nothing leaves through a proxy in replay: a recorded request opens no connection of any
kind, on every stack, with ``HTTP(S)_PROXY``/``ALL_PROXY`` set or an explicit ``proxy=``.

A loopback proxy counts every connection it accepts (a ``CONNECT`` tunnel or an
absolute-form request alike); replay must leave it at 0. urllib3 opens a ``CONNECT`` tunnel
in ``urlopen`` before ``_make_request`` (where llmreplay intercepts), so its adapter defers
the tunnel until the request is really sent: recording through the proxy still opens
exactly one tunnel, to a loopback TLS server the proxy pipes it to, and the SDKs verify
that server's certificate for the provider's host. The root ``conftest.py`` guard fails
any lookup of a provider host, so a DNS query would fail these tests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx
import httpx2
import openai
import pytest
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import llmreplay
from llmreplay import _format
from tests.server import _Handler, _Server
from tests.stacks.clients import KEY, body, reply_text

HOST = "api.openai.com"
URL = f"https://{HOST}/v1/chat/completions"
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "from the cassette"}}]}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


@dataclass
class CountingProxy:
    """A forward proxy on 127.0.0.1 that counts what reaches it. A ``CONNECT`` is piped to
    ``tunnel_to`` (a loopback port) when set, whatever host it names, and refused
    otherwise; nothing it receives ever goes further than this machine."""

    server: socketserver.ThreadingTCPServer
    tunnel_to: int | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    state: dict[str, CountingProxy] = {}

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            counting = state["proxy"]
            head = b""
            while b"\r\n\r\n" not in head and (data := self.request.recv(4096)):
                head += data
            counting.lines.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            if not head.startswith(b"CONNECT ") or counting.tunnel_to is None:
                self.request.sendall(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                return
            with socket.create_connection(("127.0.0.1", counting.tunnel_to)) as upstream:
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
                back.start()
                _pipe(self.request, upstream)
                back.join(timeout=5)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["proxy"] = CountingProxy(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state["proxy"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied(proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch) -> CountingProxy:
    """Every proxy variable a CI runner may set, pointing at the counting proxy."""
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return proxy


def _recorded(path: Path) -> Path:
    """A cassette holding one chat answer from ``https://api.openai.com``."""
    mock = httpx2.MockTransport(lambda _: httpx2.Response(200, json=ANSWER))
    with llmreplay.cassette(path, mode="record"), httpx2.Client(transport=mock) as c:
        c.post(URL, json=body("through a proxy"), headers={"authorization": f"Bearer {KEY}"})
    return path


def _ask(stack: str, proxy_url: str, explicit: bool, verify: Any = True) -> str:
    """One chat call to ``api.openai.com`` through ``stack``, its proxy taken from the
    environment or, when ``explicit``, given to the client."""
    payload = body("through a proxy")
    head = {"authorization": f"Bearer {KEY}"}
    chosen = proxy_url if explicit else None
    context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
    if stack == "openai":  # httpx2 under the SDK: trust_env, or a client with proxy=
        http = httpx2.Client(proxy=chosen, verify=context) if explicit else None
        sdk = openai.OpenAI(api_key=KEY, http_client=http, max_retries=0)
        answer = sdk.chat.completions.create(model=payload["model"], messages=payload["messages"])
        return str(answer.choices[0].message.content)
    if stack in ("httpx2", "httpx"):
        module: Any = httpx2 if stack == "httpx2" else httpx
        with module.Client(proxy=chosen, verify=context) as client:
            return reply_text(client.post(URL, json=payload, headers=head).json())
    if stack == "aiohttp":

        async def run() -> str:
            session = aiohttp.ClientSession(trust_env=not explicit)
            async with session, session.post(URL, json=payload, headers=head, proxy=chosen) as r:
                return reply_text(await r.json())

        return asyncio.run(run())
    if stack == "requests":
        with requests.Session() as session:
            proxies = {"https": proxy_url} if explicit else None
            sent = session.post(URL, json=payload, headers=head, proxies=proxies, verify=verify)
            return reply_text(sent.json())
    pool = urllib3.ProxyManager(proxy_url, ca_certs=verify if isinstance(verify, str) else None)
    with pool:
        return reply_text(pool.request("POST", URL, json=payload, headers=head).json())


STACKS = ("openai", "httpx2", "httpx", "aiohttp", "requests", "urllib3")


@pytest.mark.parametrize("explicit", [False, True], ids=["env", "explicit"])
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("mode", ["replay", "once"])
def test_a_replayed_request_opens_nothing_through_a_proxy(
    stack: str, explicit: bool, mode: str, proxied: CountingProxy, tmp_path: Path
) -> None:
    if stack == "urllib3" and not explicit:
        pytest.skip("urllib3 alone never reads the proxy variables")
    path = _recorded(tmp_path / "c.msgpack")
    with llmreplay.cassette(path, mode=mode, allow_repeats=True):
        assert _ask(stack, proxied.url, explicit) == "from the cassette"
        assert _ask(stack, proxied.url, explicit) == "from the cassette"  # a pooled conn too
    assert proxied.lines == []


def test_anthropic_replays_through_a_proxy_variable_without_a_connection(
    proxied: CountingProxy, tmp_path: Path
) -> None:
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "from the cassette"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    path = tmp_path / "a.msgpack"
    messages = [{"role": "user", "content": "hi"}]
    ask: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": messages}
    with llmreplay.cassette(path, mode="record"):
        mock = httpx2.Client(
            transport=httpx2.MockTransport(lambda _: httpx2.Response(200, json=answer))
        )
        anthropic.Anthropic(api_key="sk-ant-test", http_client=mock).messages.create(**ask)
    with llmreplay.cassette(path, mode="replay"):
        reply = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0).messages.create(**ask)
    assert reply.content[0].text == "from the cassette"
    assert proxied.lines == []


# -- recording through the proxy: the tunnel is opened once the request is really sent ----


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """The loopback test server over TLS, with a certificate for ``api.openai.com``; yields
    its port and the certificate file to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.fail_next, httpd.lock = [], [], threading.Lock()
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], str(cert_file)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("stack", ["requests", "urllib3", "httpx2", "aiohttp"])
def test_recording_through_a_proxy_opens_one_tunnel_and_replay_none(
    stack: str,
    proxied: CountingProxy,
    tls_upstream: tuple[int, str],
    tmp_path: Path,
) -> None:
    port, cert = tls_upstream
    proxied.tunnel_to = port
    path = tmp_path / "c.msgpack"
    with llmreplay.cassette(path, mode="record"):
        if stack == "aiohttp":
            recorded = _aiohttp_tls(proxied.url, cert)
        else:
            recorded = _ask(stack, proxied.url, explicit=True, verify=cert)
    (line,) = proxied.lines  # http.client says HTTP/1.0 in its CONNECT, others 1.1
    assert line.startswith(f"CONNECT {HOST}:443 HTTP/1.")
    (item,) = _format.decode(path.read_bytes(), path)[0]
    assert item.request.url == URL
    with llmreplay.cassette(path, mode="replay"):
        assert _ask(stack, proxied.url, explicit=True) == recorded
    assert len(proxied.lines) == 1  # replay added nothing


def _aiohttp_tls(proxy_url: str, cert: str) -> str:
    async def run() -> str:
        context = ssl.create_default_context(cafile=cert)
        async with aiohttp.ClientSession() as session:
            sent = session.post(
                URL,
                json=body("through a proxy"),
                proxy=proxy_url,
                ssl=context,
                headers={"authorization": f"Bearer {KEY}"},
            )
            async with sent as r:
                return reply_text(json.loads(await r.read()))

    return asyncio.run(run())
