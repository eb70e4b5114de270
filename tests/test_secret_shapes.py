"""Credentials that no header names, and credentials in disguise, stay off disk.

A key can travel with no credential header at all (in a JSON body, a form, a URL path), and
an upstream can echo one back encoded (base64 of the ``Authorization`` value, base64url,
URL-encoding, hex, JSON ``\\u`` escapes, a body gzip-compressed twice, base64 split across
the chunks of a stream). Each form is sent through a real client (openai, anthropic, httpx2,
requests) to a loopback upstream that echoes what it received in that form; the test then
greps the raw cassette, every body decoded layer by layer, and the output of ``show``,
``export`` and ``textconv`` for the key and each of its encodings. ``verify`` must find each
form in a cassette written without scrubbing (an old recording), and nothing in the clean one.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import importlib
import json
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx2
import openai
import pytest
import requests

import llmreplay
from llmreplay import _cli
from llmreplay._format import Interaction, RecordedRequest, RecordedResponse, encode
from tests.helpers import close, collect, fake_key, resolve

OPENAI_KEY = fake_key("sk-proj-", "TESTONLYbodykey0123456789abcdefXYZ")
ANTHROPIC_KEY = fake_key("sk-ant-api03-", "TESTONLYbodykey0123456789abcdefXYZ")
GROQ_KEY = fake_key("gsk_", "TESTONLYpathkey0123456789abcdefXYZ")
CREATED_KEY = fake_key("sk-proj-", "TESTONLYcreated0123456789abcdefXYZ")  # made upstream
# Words in a prompt or an answer that are not keys: no digit after sk-, or longer than an
# AWS access key id (20 characters).
PROSE = "use an sk-learn-compatible-estimator-interface in ASIAPACIFICHEADQUARTERS"
brotli: Any = importlib.import_module("brotli")  # in the dev extra; no type stubs
KEY_SHAPE = re.compile(rb"(?:sk-(?:proj|ant-api03)-|gsk_)TESTONLY[A-Za-z0-9]+")


def _forms(secret: str) -> dict[str, bytes]:
    """Every encoding of ``secret`` the test looks for."""
    raw = secret.encode()
    return {
        "plain": raw,
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "base64 of Bearer": base64.b64encode(b"Bearer " + raw).rstrip(b"="),
        "url-encoded": quote(secret, safe="").encode(),
        "hex": binascii.hexlify(raw),
        "json escapes": secret.replace("-", "\\u002d").replace("_", "\\u005f").encode(),
    }


def _echo(secret: str, form: str) -> bytes:
    """What the upstream writes back for ``form``: the key (or its header) encoded."""
    raw = secret.encode()
    if form == "b64auth":
        return base64.b64encode(b"Bearer " + raw)
    if form == "b64url":
        return base64.urlsafe_b64encode(raw)
    if form == "urlencoded":
        return quote(secret, safe="").encode()
    if form == "hex":
        return binascii.hexlify(raw)
    if form == "uescape":
        return secret.replace("-", "\\u002d").replace("_", "\\u005f").encode()
    if form == "prose":
        return PROSE.encode()
    if form == "newline":  # after a JSON \n escape: "my key:\nsk-..."
        return b"my key:\\n" + raw
    return raw


class _Echo(BaseHTTPRequestHandler):
    """Finds the key in what it received (header, path, body) and echoes it as asked."""

    protocol_version = "HTTP/1.1"
    seen: list[bytes]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received = b" ".join([str(self.headers).encode(), self.path.encode(), body])
        self.server.seen.append(received)  # type: ignore[attr-defined]
        match = KEY_SHAPE.search(received)
        secret = match.group(0).decode() if match else ""
        form = self.headers.get("x-echo", "plain")
        echoed = _echo(secret, form).decode()
        if form == "sse-b64":
            self._stream(base64.b64encode(secret.encode()).decode())
            return
        if "/messages" in self.path:
            payload = (
                '{"id":"msg_1","type":"message","role":"assistant","model":"claude",'
                '"content":[{"type":"text","text":"you sent ' + echoed + '"}],'
                '"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}'
            )
        else:
            payload = (
                '{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":'
                '[{"index":0,"message":{"role":"assistant","content":"you sent '
                + echoed
                + '"},"finish_reason":"stop"}]}'
            )
        data = payload.encode()
        headers = {"content-type": "application/json"}
        if form == "gzip2":
            data = gzip.compress(gzip.compress(data, mtime=0), mtime=0)
            headers["content-encoding"] = "gzip"
        if form == "br-gzip":  # two codings, applied in the order named
            data = gzip.compress(brotli.compress(data), mtime=0)
            headers["content-encoding"] = "br, gzip"
        if form == "created-header":  # a key the API just made, only in a header
            headers["x-created-key"] = CREATED_KEY
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, text: str) -> None:
        events = b"".join(
            b"data: "
            + json.dumps(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"content": piece}}],
                }
            ).encode()
            + b"\n\n"
            for piece in ("you sent ", text, ".")  # the base64 in one event...
        )
        events += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i in range(0, len(events), 7):  # ...cut into 7-byte chunks: it straddles many
            piece = events[i : i + 7]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def echo() -> Iterator[tuple[str, list[bytes]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Case:
    name: str
    secret: str
    echo: str  # how the upstream echoes it


CASES = [
    Case("openai key in the JSON body, no header", OPENAI_KEY, "plain"),
    Case("anthropic key in the JSON body, no header", ANTHROPIC_KEY, "plain"),
    Case("key in the URL path", GROQ_KEY, "plain"),
    Case("authorization echoed as base64", OPENAI_KEY, "b64auth"),
    Case("key echoed with JSON unicode escapes", OPENAI_KEY, "uescape"),
    Case("key echoed in a body gzip-compressed twice", OPENAI_KEY, "gzip2"),
    Case("key echoed as base64url", OPENAI_KEY, "b64url"),
    Case("key echoed URL-encoded", OPENAI_KEY, "urlencoded"),
    Case("key echoed as hex", OPENAI_KEY, "hex"),
    Case("key split across SSE chunks inside base64", OPENAI_KEY, "sse-b64"),
    Case("key in a multipart form", OPENAI_KEY, "plain"),
    Case("key echoed in a body coded br, gzip", OPENAI_KEY, "br-gzip"),
    Case("openai key after a newline in the JSON body, no header", OPENAI_KEY, "newline"),
    Case("a new key only in a response header", CREATED_KEY, "created-header"),
]


async def _send(case: Case, origin: str, sync: bool) -> None:
    """``case`` through the real client it names, sync or async (requests: sync only)."""
    echo = {"x-echo": case.echo}
    messages: Any = [{"role": "user", "content": "hi"}]
    if case.name.startswith("anthropic"):
        maker: Any = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
        client: Any = maker(api_key="none", base_url=origin, max_retries=0)
        await resolve(
            client.messages.create(
                model="claude",
                max_tokens=8,
                messages=messages,
                extra_body={"api_key": case.secret},
                extra_headers=echo,
            )
        )
        await close(client)
        return
    if "multipart" in case.name:  # requests, and httpx2 for the async run
        form = {"purpose": "batch", "api_key": case.secret}
        files = {"file": ("a.jsonl", b"{}\n")}
        if sync:
            with requests.Session() as session:
                answer = session.post(f"{origin}/v1/files", files=files, data=form, headers=echo)
                assert answer.status_code == 200
            return
        async with httpx2.AsyncClient() as multipart:
            sent = await multipart.post(f"{origin}/v1/files", files=files, data=form, headers=echo)
            assert sent.status_code == 200
        return
    if case.echo in ("gzip2", "br-gzip"):  # no SDK reads these bodies: the bare client
        http: Any = httpx2.Client() if sync else httpx2.AsyncClient()
        reply = await resolve(
            http.post(
                f"{origin}/v1/chat/completions",
                headers={"authorization": f"Bearer {case.secret}", **echo},
                json={"model": "m", "messages": messages},
            )
        )
        if case.echo == "gzip2":
            assert gzip.decompress(reply.content)  # one layer left for the caller
        else:
            assert b"you sent" in reply.content  # httpx2 decodes "br, gzip" itself
        await close(http)
        return
    if case.echo == "created-header":  # the request holds no key at all
        case = Case(case.name, "", case.echo)
    in_body = "JSON body" in case.name
    base_url = f"{origin}/keys/{case.secret}/v1" if "path" in case.name else f"{origin}/v1"
    api_key = "none" if in_body or "path" in case.name or not case.secret else case.secret
    maker = openai.OpenAI if sync else openai.AsyncOpenAI
    client = maker(api_key=api_key, base_url=base_url, max_retries=0)
    extra = {"api_key": case.secret} if in_body else None
    if case.echo == "newline":
        extra = None
        messages = [{"role": "user", "content": "my key:\n" + case.secret}]
    if case.echo == "sse-b64":
        chunks = await collect(
            client.chat.completions.create(
                model="m", messages=messages, stream=True, extra_headers=echo
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert base64.b64decode(text.split()[-1].rstrip(".")) == case.secret.encode()
    else:
        reply = await resolve(
            client.chat.completions.create(
                model="m", messages=messages, extra_body=extra, extra_headers=echo
            )
        )
        assert reply.choices[0].message.content
    await close(client)


def _layers(body: bytes) -> bytes:
    """``body`` and every layer of compression under it (gzip, then brotli), joined."""
    out = [body]
    for _ in range(4):
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        else:
            try:
                body = brotli.decompress(body)
            except brotli.error:
                break
        out.append(body)
    return b"\n".join(out)


def _cli_output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = _cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_key_without_a_header_or_in_disguise_never_reaches_disk(
    case: Case,
    echo: tuple[str, list[bytes]],
    sync: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    origin, seen = echo
    path = tmp_path / "c.msgpack"
    # Given the key sent through a real client, and echoed back by the upstream
    with llmreplay.cassette(path, mode="record") as cas:
        await _send(case, origin, sync)
    assert cas.stats.recorded == 1
    assert len(seen) == 1
    if case.echo != "created-header":
        assert case.secret.encode() in seen[0]  # it did travel

    # Then no form of it is in the file, in any body decoded layer by layer, nor in what
    # the commands print
    raw = path.read_bytes()
    (item,) = llmreplay.cassette(path).interactions
    response = item.response
    stored = b"\n".join(
        [
            raw,
            item.request.url.encode(),
            _layers(item.request.body),
            _layers(response.content),
            b"".join(response.chunks or []),
        ]
    )
    stored += b"\n".join(f"{k}: {v}".encode() for k, v in response.headers)
    outputs = {
        command: _cli_output(capsys, *argv)[1]
        for command, argv in {
            "show": ("show", str(path)),
            "export": ("export", str(path)),
            "textconv": ("textconv", str(path)),
        }.items()
    }
    for form, needle in _forms(case.secret).items():
        assert needle not in stored, form
        for command, output in outputs.items():
            assert needle.decode() not in output, (command, form)
    assert b"<redacted>" in stored
    # And verify calls the scrubbed file clean
    code, report = _cli_output(capsys, "verify", str(path))
    assert code == 0, report


def _unscrubbed(secret: str, form: str) -> Interaction:
    """An interaction as an older llmreplay could have written it: the echo left in."""
    body = b'{"content":"you sent ' + _echo(secret, form) + b'"}'
    headers = [("content-type", "application/json")]
    if form == "gzip2":
        body = gzip.compress(gzip.compress(body, mtime=0), mtime=0)
        headers.append(("content-encoding", "gzip"))
    if form == "br-gzip":
        body = gzip.compress(brotli.compress(body), mtime=0)
        headers.append(("content-encoding", "br, gzip"))
    if form == "created-header":
        body = b'{"content":"made one"}'
        headers.append(("x-created-key", secret))
    request = RecordedRequest("POST", "http://127.0.0.1/v1/chat/completions", [], b"{}")
    if form == "sse-b64":  # base64 cut across the stream's chunks
        stream = b"data: " + base64.b64encode(secret.encode()) + b"\n\n"
        chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
        response = RecordedResponse(200, [("content-type", "text/event-stream")], chunks=chunks)
        return Interaction("k" * 64, request, response)
    return Interaction("k" * 64, request, RecordedResponse(200, headers, body))


@pytest.mark.parametrize(
    ("form", "secret"),
    [
        ("plain", OPENAI_KEY),
        ("plain", ANTHROPIC_KEY),
        ("b64auth", OPENAI_KEY),
        ("b64url", OPENAI_KEY),
        ("urlencoded", OPENAI_KEY),
        ("hex", OPENAI_KEY),
        ("uescape", OPENAI_KEY),
        ("gzip2", OPENAI_KEY),
        ("sse-b64", OPENAI_KEY),
        ("br-gzip", OPENAI_KEY),
        ("newline", OPENAI_KEY),
        ("created-header", CREATED_KEY),
    ],
)
def test_verify_finds_every_form_in_an_old_cassette(
    form: str, secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.msgpack"
    path.write_bytes(encode([_unscrubbed(secret, form)], {}))
    code, report = _cli_output(capsys, "verify", str(path))
    assert code == 1, report
    assert "old.msgpack" in report
    assert ("response header" if form == "created-header" else "response body") in report
    assert secret not in report  # named, not shown


def test_verify_does_not_flag_base64_that_merely_holds_sk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A base64 blob (an image, encrypted_content) can hold "sk-" and twenty letters by chance.
    blob = base64.b64encode(bytes(range(256)) * 4).decode()
    blob = blob[:100] + "ask-abcdefghijklmnopqrstuvwxyz" + blob[100:]
    body = json.dumps(
        {"encrypted_content": blob, "image": base64.b64encode(zlib.compress(b"x" * 99)).decode()}
    )
    request = RecordedRequest("POST", "http://127.0.0.1/v1/responses", [], b"{}")
    response = RecordedResponse(200, [("content-type", "application/json")], body.encode())
    item = Interaction("k" * 64, request, response)
    path = tmp_path / "blob.msgpack"
    path.write_bytes(encode([item], {}))
    code, report = _cli_output(capsys, "verify", str(path))
    assert code == 0, report


def test_prose_that_looks_like_a_key_is_left_alone(
    echo: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    origin, seen = echo
    path = tmp_path / "prose.msgpack"
    with llmreplay.cassette(path, mode="record"):
        client = openai.OpenAI(api_key="none", base_url=f"{origin}/v1", max_retries=0)
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": PROSE}],
            extra_headers={"x-echo": "prose"},
        )
    assert len(seen) == 1
    (item,) = llmreplay.cassette(path).interactions
    assert PROSE.encode() in item.request.body and PROSE.encode() in item.response.content
