"""No credential reaches a cassette: every byte of every file written is searched for it."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

import llmreplay
from llmreplay._format import MAX_DECOMPRESSED, Interaction, RecordedRequest, RecordedResponse
from llmreplay._scrub import Scrubber, is_credential_header
from tests.helpers import close, fake_key, resolve
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio
OPENAI_KEY = fake_key("sk-proj-")
ANTHROPIC_KEY = fake_key("sk-ant-api03-")
AZURE_KEY = "0123456789abcdef0123456789abcdef"


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["record", "auto"])
async def test_credentials_never_reach_disk(
    tmp_path: Path, server: LoopbackServer, sync: bool, mode: str
) -> None:
    folder = tmp_path / "cassettes"
    echo = {"x-test-echo-auth": "1"}
    with llmreplay.cassette(folder / "all.msgpack", mode=mode) as cas:
        oa = (openai.OpenAI if sync else openai.AsyncOpenAI)(
            api_key=OPENAI_KEY,
            base_url=server.url,
            organization="org-TESTONLY123456",
            project="proj_TESTONLY123456",
            max_retries=0,
        )
        chat = await resolve(
            oa.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"my key is {OPENAI_KEY}"}],
                extra_headers=echo,
            )
        )
        assert OPENAI_KEY in (chat.choices[0].message.content or "")  # the caller sees it
        az = (openai.AzureOpenAI if sync else openai.AsyncAzureOpenAI)(
            api_key=AZURE_KEY,
            api_version="2024-10-21",
            azure_endpoint=server.origin,
            max_retries=0,
        )
        await resolve(
            az.chat.completions.create(
                model="dep", messages=[{"role": "user", "content": "hi"}], extra_headers=echo
            )
        )
        an = (anthropic.Anthropic if sync else anthropic.AsyncAnthropic)(
            api_key=ANTHROPIC_KEY, base_url=server.origin, max_retries=0
        )
        await resolve(
            an.messages.create(
                model="claude-opus-4-6",
                max_tokens=8,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers=echo,
            )
        )
        http = httpx2.Client() if sync else httpx2.AsyncClient()
        await resolve(
            http.post(server.url + "/embeddings?api-key=" + AZURE_KEY, json={"input": "x"})
        )
        await close(oa, az, an, http)
    assert cas.stats.recorded == 4

    written = _all_bytes(folder)
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, AZURE_KEY, "cookie-secret-value"):
        assert secret.encode() not in written, secret
    names = {
        name.lower()
        for item in llmreplay.cassette(folder / "all.msgpack").interactions
        for name, _ in item.request.headers + item.response.headers
    }
    assert not names & {"authorization", "api-key", "x-api-key", "set-cookie", "openai-project"}
    assert "?api-key" not in written.decode("latin-1")
    assert b"org-TESTONLY" not in written and b"org-secret-organisation" not in written
    assert b"<redacted>" in written  # where the key was echoed in a body


async def test_before_record_can_edit_or_drop(tmp_path: Path, server: LoopbackServer) -> None:
    def hook(item: Interaction) -> Interaction | None:
        if item.request.url.endswith("/embeddings"):
            return None
        item.request.body = item.request.body.replace(b"Alice", b"[name]")
        return item

    path = tmp_path / "c.msgpack"
    with llmreplay.cassette(path, mode="record", before_record=hook):
        client = openai.OpenAI(api_key="sk-test", base_url=server.url)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "I am Alice"}]
        )
        client.embeddings.create(model="text-embedding-3-small", input="x")
        client.close()
    (item,) = llmreplay.cassette(path).interactions
    assert b"[name]" in item.request.body and b"Alice" not in path.read_bytes()


async def test_filter_headers_and_query_add_to_the_defaults(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"x-session": "s-123456789"}, content=b"{}")

    path = tmp_path / "c.msgpack"
    cas = llmreplay.cassette(
        path, mode="record", filter_headers=["X-Tenant", "x-session"], filter_query=["sig"]
    )
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(handler))) as client:
        client.get("https://h/v1/models?sig=abcdefghijk&limit=2", headers={"x-tenant": "acme-corp"})
    cas.save()
    written = path.read_bytes()
    assert b"abcdefghijk" not in written and b"acme-corp" not in written
    assert b"s-123456789" not in written
    (item,) = llmreplay.cassette(path, filter_query=["sig"]).interactions
    assert item.request.url == "https://h/v1/models?limit=2"
    # The dropped parameter is not part of the key either, so the request still replays.
    replay = llmreplay.cassette(path, filter_query=["sig"])
    with httpx2.Client(transport=replay.transport()) as client:
        assert client.get("https://h/v1/models?limit=2&sig=other-signature").status_code == 200


# -- encodings, streams, URLs: each case below leaked before redaction saw decoded bytes ---

KEY = fake_key("sk-proj-", "TESTONLYunit0123456789abcdef")


class _Chunks(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response stream that arrives in exactly these chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            yield chunk


async def _record(path: Path, sync: bool, handler, url: str = "https://h/v1/chat/completions"):
    """Record one POST with ``Authorization: Bearer KEY`` through ``handler``; return what
    the caller read and the stored interaction."""
    cas = llmreplay.cassette(path, mode="record")
    transport = cas.transport(httpx2.MockTransport(handler))
    client = httpx2.Client(transport=transport) if sync else httpx2.AsyncClient(transport=transport)
    response = await resolve(
        client.post(url, headers={"authorization": f"Bearer {KEY}"}, content=b"{}")
    )
    await resolve(response.aread())
    await close(client)
    cas.save()
    (item,) = llmreplay.cassette(path).interactions
    return response.content, item


def _compress(data: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    return bytes(pytest.importorskip("brotli").compress(data))


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
async def test_compressed_body_is_redacted_decoded_and_encoded_again(
    tmp_path: Path, sync: bool, coding: str
) -> None:
    plain = json.dumps({"echo": f"you sent {KEY}", "pad": "x" * 300}).encode()
    wire = _compress(plain, coding)
    assert KEY.encode() not in wire  # the key is hidden from a search of the raw bytes

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-encoding": coding, "content-length": str(len(wire))}
        return httpx2.Response(200, headers=headers, content=wire)

    seen, item = await _record(tmp_path / "c.msgpack", sync, handler)
    assert KEY.encode() in seen  # the caller got the real answer
    body = item.response.body or b""
    assert body != wire and KEY.encode() not in _decoded(body, coding)
    assert _decoded(body, coding) == plain.replace(KEY.encode(), b"<redacted>")
    assert ("content-length", str(len(body))) in item.response.headers
    # It replays decoded by the client like any answer of that encoding.
    replay = llmreplay.cassette(tmp_path / "c.msgpack")
    with httpx2.Client(transport=replay.transport()) as client:
        answer = client.post("https://h/v1/chat/completions", content=b"{}").json()
    assert answer["echo"] == "you sent <redacted>"


def _decoded(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "deflate":
        return zlib.decompress(body)
    return bytes(pytest.importorskip("brotli").decompress(body))


async def test_compressed_body_without_secrets_keeps_its_wire_bytes(
    tmp_path: Path, sync: bool
) -> None:
    wire = gzip.compress(b'{"echo": "nothing to hide"}', mtime=123)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-encoding": "gzip"}, content=wire)

    _, item = await _record(tmp_path / "c.msgpack", sync, handler)
    assert item.response.body == wire  # not re-encoded: same mtime, same bytes


async def test_secret_split_across_stream_chunks_keeps_the_chunk_boundaries(
    tmp_path: Path, sync: bool
) -> None:
    half = len(KEY) // 2
    chunks = [
        b'data: {"a": "',
        b"x " + KEY[:half].encode(),  # the key starts here...
        KEY[half:].encode() + b' y"}\n\n',  # ...and ends here
        b'data: {"b": "' + KEY.encode() + b'"}\n\n',  # a whole one, for contrast
        b"data: [DONE]\n\n",
    ]

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_Chunks(chunks)
        )

    seen, item = await _record(tmp_path / "c.msgpack", sync, handler)
    assert KEY.encode() in seen
    assert item.response.chunks == [
        b'data: {"a": "',
        b"x ",  # the boundary moved back to where the redaction starts
        b'<redacted> y"}\n\n',
        b'data: {"b": "<redacted>"}\n\n',
        b"data: [DONE]\n\n",
    ]
    assert len(item.chunk_ms) == len(chunks)


async def test_cookie_values_are_secrets(tmp_path: Path, sync: bool) -> None:
    session, served = "s3ss10n-TESTONLY-value", "srv-TESTONLY-cookie-value"

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent = request.headers["cookie"]
        return httpx2.Response(
            200,
            headers={"set-cookie": f"id={served}; Path=/; HttpOnly"},
            content=f"cookie {sent}, short one tiny, set {served}".encode(),
        )

    path = tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    transport = cas.transport(httpx2.MockTransport(handler))
    client = httpx2.Client(transport=transport) if sync else httpx2.AsyncClient(transport=transport)
    await resolve(
        client.get("https://h/v1/models", headers={"cookie": f"sid={session}; theme=tiny"})
    )
    await close(client)
    cas.save()
    written = path.read_bytes()
    assert session.encode() not in written and served.encode() not in written
    (item,) = llmreplay.cassette(path).interactions
    # Values under 8 characters ("tiny") are not secrets: they would wreck bodies.
    assert item.response.body == b"cookie <redacted>, short one tiny, set <redacted>"


@pytest.mark.parametrize(
    "url",
    [
        f"https://gw.example/v1/keys/{KEY}/chat/completions",
        f"https://gw.example/v1/{fake_key('AIza', 'SyTESTONLY0123456789abcdefghijklmn')}/x",
        f"https://gw.example/p/{fake_key('gsk_', 'TESTONLY0123456789abcdef')}/v1/chat",
        f"https://gw.example/p/{fake_key('xai-', 'TESTONLY0123456789abcdef')}/v1/chat",
        f"https://gw.example/p/{fake_key('hf_', 'TESTONLY0123456789abcdefghijklmno')}/v1",
        f"https://gw.example/p/{fake_key('r8_', 'TESTONLY0123456789abcdef')}/v1",
        f"https://gw.example/p/{fake_key('pplx-', 'TESTONLY0123456789abcdef')}/v1",
        f"https://gw.example/p/{fake_key('AKIA', 'TESTONLY01234567')}/v1",
        f"https://gw.example/p/{fake_key('ghp_', 'TESTONLY0123456789abcdefghijklmno')}/v1",
        f"https://gw.example/p/{fake_key('sk-ant-api03-', 'TESTONLY0123456789abcdef')}/v1",
    ],
)
def test_key_shaped_path_segments_are_redacted(url: str) -> None:
    scrubber = Scrubber()
    # The key as written is among the secrets (with its encoded forms), found in the path
    (secret,) = [s for s in scrubber.secrets([], url) if s in url.split("/")]
    item = _item(url)
    scrubber.scrub(item, scrubber.secrets([], url))
    assert secret not in item.request.url and "/<redacted>/" in item.request.url


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1/chat/completions?limit=20&order=desc",
        "https://x.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
        "https://api.openai.com/v1/files/file-abc123XYZ456def789ghi012/content",
        "https://api.openai.com/v1/responses/resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "https://api.openai.com/v1/threads/thread_abc123/runs/run_abc123",
        "https://api.openai.com/v1/fine_tuning/jobs/ftjob-abc123def456ghi789jkl012",
        "https://api.anthropic.com/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d",
        "https://huggingface.co/api/models/hf_internal_testing/tiny-random-gpt2",
        # "task-…"/"desk-…" hold "sk-" mid-word: not a key (assembled, no key-shaped literal)
        "https://router.example/v1/tas"
        + "k-abcdefghijklmnopqrstuvwxyz0123/des"
        + "k-abcdefghijklmnopqrstuvw",
        "https://api.openai.com/v1/chat/completions/chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    ],
)
def test_normal_urls_are_left_alone(url: str) -> None:
    scrubber = Scrubber()
    assert scrubber.secrets([], url) == []
    item = _item(url)
    scrubber.scrub(item, [])
    assert item.request.url == url


def test_userinfo_is_removed_and_its_password_redacted() -> None:
    scrubber = Scrubber()
    url = "https://svc:p%40ss-TESTONLY-word@gw.example/v1/chat/completions"
    item = _item(url, body=b'{"echo": "p@ss-TESTONLY-word"}')
    scrubber.scrub(item, scrubber.secrets([], url))
    assert item.request.url == "https://gw.example/v1/chat/completions"
    assert item.request.body == b'{"echo": "<redacted>"}'


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("Helicone-Auth", True),
        ("x-portkey-api-key", True),
        ("cf-aig-authorization", True),
        ("x-litellm-api-key", True),
        ("api-key", True),
        ("ocp-apim-subscription-key", True),
        ("x-goog-api-key", True),
        ("x-amz-security-token", True),
        ("X-Custom-Secret", True),
        ("x-my-apikey", True),
        ("content-type", False),
        ("x-request-id", False),
        ("openai-beta", False),
        ("anthropic-version", False),
        ("idempotency-key", False),
    ],
)
def test_credential_headers(name: str, credential: bool) -> None:
    assert is_credential_header(name) is credential


def test_gateway_header_value_is_dropped_and_redacted_before_before_record_runs() -> None:
    seen: list[Interaction] = []

    def hook(item: Interaction) -> Interaction:
        seen.append(item)
        return item

    scrubber = Scrubber(before_record=hook)
    key = fake_key("sk-", "helicone-TESTONLY-abcdef")
    headers = [("Helicone-Auth", f"Bearer {key}"), ("x-trace", "t-1")]
    item = _item("https://gw.example/v1/chat", body=key.encode())
    item.request.headers = headers
    assert scrubber.scrub(item, scrubber.secrets(headers, item.request.url)) is item
    assert seen == [item]  # before_record got it already scrubbed
    assert item.request.headers == [("x-trace", "t-1")]
    assert item.request.body == b"<redacted>"


def _item(url: str, body: bytes = b"{}") -> Interaction:
    return Interaction(
        key="k",
        request=RecordedRequest("POST", url, [], body),
        response=RecordedResponse(200, [], body=b"{}"),
    )


def test_a_miss_message_prints_no_credential(tmp_path: Path) -> None:
    google = fake_key("AIza", "SyTESTONLY0123456789abcdefghijklmn")
    path = tmp_path / "c.msgpack"
    options: dict[str, Any] = {"match_on": ["method", "path", "body", "headers"]}
    cas = llmreplay.cassette(path, mode="record", **options)
    upstream = httpx2.MockTransport(lambda request: httpx2.Response(200, content=b"{}"))
    url = f"https://gw.example/v1/keys/{KEY}/chat"
    headers = {"x-goog-api-key": google, "x-tenant": "acme"}
    with httpx2.Client(transport=cas.transport(upstream)) as client:
        client.post(url, headers=headers, json={"q": 1})
    cas.save()
    with (
        httpx2.Client(transport=llmreplay.cassette(path, **options).transport()) as client,
        pytest.raises(llmreplay.CassetteMiss) as caught,
    ):
        client.post(url, headers={**headers, "x-tenant": "other"}, json={"q": f"2 {KEY}"})
    message = str(caught.value)
    assert "x-tenant: other" in message  # the header diff is still shown...
    assert google not in message and KEY not in message  # ...but no credential
    assert "x-goog-api-key" not in message and "/keys/<redacted>/chat" in message


def _scrubbed(body: bytes, coding: str, chunks: list[bytes] | None = None) -> Interaction:
    scrubber = Scrubber()
    headers = [("authorization", f"Bearer {KEY}")]
    item = _item("https://h/v1/chat")
    item.response = RecordedResponse(
        200, [("content-encoding", coding)], body=None if chunks else body, chunks=chunks
    )
    assert scrubber.scrub(item, scrubber.secrets(headers, item.request.url)) is item
    return item


def test_a_compressed_stream_cut_short_is_still_redacted() -> None:
    wire = gzip.compress(f"data: {KEY}\n\n".encode() * 50)[:-12]  # the caller stopped early
    item = _scrubbed(b"", "gzip", [wire[:40], wire[40:80], wire[80:]])
    assert item.response.chunks is not None and len(item.response.chunks) == 3
    text = zlib.decompressobj(31).decompress(b"".join(item.response.chunks))
    # What was decodable is kept, redacted; the undecodable tail was cut anyway.
    assert KEY.encode() not in text and text.count(b"<redacted>") > 40


def test_undecodable_or_oversized_bodies_fall_back_to_their_raw_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A body that says gzip but is not: redacted as the bytes it is.
    assert _scrubbed(b"plain " + KEY.encode(), "gzip").response.body == b"plain <redacted>"
    # A bomb past the decoding cap is stored as it came, without expanding it all.
    bomb = gzip.compress(b"\0" * 2**20) * (MAX_DECOMPRESSED // 2**20 + 1)  # gzip members
    assert _scrubbed(bomb, "gzip").response.body == bomb
    # br without brotli installed cannot be read (httpx2 then never asks for br).
    wire = _compress(KEY.encode() * 3, "br")
    monkeypatch.setitem(sys.modules, "brotli", None)
    monkeypatch.setitem(sys.modules, "brotlicffi", None)
    assert _scrubbed(wire, "br").response.body == wire


def test_a_basic_header_that_is_not_base64_is_still_a_credential() -> None:
    scrubber = Scrubber()
    secrets = scrubber.secrets([("authorization", "Basic not*base64*TESTONLY")], "https://h/")
    assert "not*base64*TESTONLY" in secrets


def test_header_prefixes_replacements_and_per_call_noise(
    tmp_path: Path, server: LoopbackServer
) -> None:
    # Real projects drop whole header families; the SDK's per-call noise is never stored.
    path = tmp_path / "c.msgpack"
    cas = llmreplay.cassette(
        path,
        mode="record",
        filter_headers=["anthropic-*", "X-Request-*", ("openai-beta", "BETA")],
    )
    client = cas.anthropic_client(base_url=server.origin, api_key=ANTHROPIC_KEY, max_retries=0)
    client.messages.create(
        model="claude-opus-4-6",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"openai-beta": "assistants=v2", "cf-ray": "keep-me"},
    )
    client.close()
    cas.save()
    (item,) = llmreplay.cassette(path).interactions
    sent = {k.lower(): v for k, v in item.request.headers}
    received = {k.lower() for k, _ in item.response.headers}
    assert not any(k.startswith(("anthropic-", "x-stainless-")) for k in sent)
    assert "user-agent" not in sent and sent["openai-beta"] == "BETA"
    assert sent["cf-ray"] == "keep-me" and "content-type" in sent
    assert "x-request-id" not in received and "content-type" in received
