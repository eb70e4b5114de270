"""The real openai SDK end to end: record against the loopback server, stop it, replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import llmreplay
from tests.helpers import close, collect, fake_key, resolve
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio
KEY = fake_key("sk-")
MESSAGES: Any = [{"role": "user", "content": "Say this is a test"}]


def _client(sync: bool, base_url: str, **kwargs: object) -> openai.OpenAI | openai.AsyncOpenAI:
    cls = openai.OpenAI if sync else openai.AsyncOpenAI
    return cls(api_key=KEY, base_url=base_url, max_retries=0, **kwargs)  # type: ignore[arg-type]


async def _exercise(client: openai.OpenAI | openai.AsyncOpenAI) -> dict[str, object]:
    """Every endpoint family once; returns what the caller saw."""
    chat = await resolve(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    chunks = await collect(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    responses = await resolve(client.responses.create(model="gpt-4o-mini", input="Hello there"))
    events = await collect(
        client.responses.create(model="gpt-4o-mini", input="Stream it", stream=True)
    )
    embedding = await resolve(
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    )
    speech = await resolve(
        client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")
    )
    return {
        "chat": chat.choices[0].message.content,
        "stream": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "usage": chunks[-1].usage.total_tokens,
        "responses": responses.output_text,
        "events": [e.type for e in events],
        "embedding": [d.embedding for d in embedding.data],
        "speech": speech.content,
    }


async def test_record_then_replay_every_endpoint(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "openai.msgpack"
    # Given: a recording made against the live loopback server
    with llmreplay.cassette(path, mode="record") as cas:
        client = _client(sync, server.url)
        recorded = await _exercise(client)
        await close(client)
    assert cas.stats.recorded == 6
    assert recorded["chat"] == "echo: Say this is a test"
    assert recorded["speech"] == bytes(range(256)) * 8
    assert len(server.requests) == 6

    # When: the server is gone and the same calls replay
    server.stop()
    with llmreplay.cassette(path) as cas:
        client = _client(sync, server.url)
        replayed = await _exercise(client)
        await close(client)

    # Then: the caller sees exactly what it saw live, and nothing reached the network
    assert replayed == recorded
    assert cas.stats == llmreplay.Stats(played=6)
    assert len(server.requests) == 6


async def test_explicit_clients_without_patching(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "explicit.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    make = cas.openai_client if sync else cas.async_openai_client
    client = make(base_url=server.url, api_key=KEY)
    reply = await resolve(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    cas.save()
    await close(client)
    server.stop()

    replay = llmreplay.cassette(path)
    again = (replay.openai_client if sync else replay.async_openai_client)(base_url=server.url)
    raw = await resolve(
        again.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    )
    assert raw.parse().choices[0].message.content == reply.choices[0].message.content
    assert raw.http_response.extensions["llmreplay"]["source"] == "cassette"
    await close(again)


async def test_azure_openai_records_deployment_path_and_scrubs_api_key(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "azure.msgpack"
    cls = openai.AzureOpenAI if sync else openai.AsyncAzureOpenAI
    kwargs: Any = {
        "api_key": "azure-secret-key-0123456789",
        "api_version": "2024-10-21",
        "azure_endpoint": server.origin,
        "azure_deployment": "my-gpt",
        "max_retries": 0,
    }
    with llmreplay.cassette(path, mode="record"):
        client = cls(**kwargs)
        live = await resolve(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        await close(client)
    seen = server.requests[0]
    assert seen.path == "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"
    assert seen.headers["api-key"] == "azure-secret-key-0123456789"
    assert b"azure-secret-key-0123456789" not in path.read_bytes()

    server.stop()
    with llmreplay.cassette(path) as cas:
        client = cls(**kwargs)
        again = await resolve(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
        await close(client)
    assert again.choices[0].message.content == live.choices[0].message.content
    assert cas.stats.played == 1


@pytest.mark.llmreplay(mode="live")  # its second call is deliberately live
async def test_clients_created_before_the_block_are_captured(
    tmp_path: Path, server: LoopbackServer
) -> None:
    client = openai.OpenAI(api_key=KEY, base_url=server.url, max_retries=0)
    with llmreplay.cassette(tmp_path / "c.msgpack", mode="record") as cas:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert cas.stats.recorded == 1
    # Outside the block the client talks to the network directly again.
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert cas.stats.recorded == 1
    assert len(server.requests) == 2
    client.close()


async def test_custom_http_client_transport_is_kept_as_upstream(tmp_path: Path, sync: bool) -> None:
    calls: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        return httpx2.Response(200, json={"object": "list", "data": [], "model": "m"})

    http = (httpx2.Client if sync else httpx2.AsyncClient)(transport=httpx2.MockTransport(handler))
    client = (openai.OpenAI if sync else openai.AsyncOpenAI)(
        api_key=KEY,
        base_url="https://api.openai.com/v1",
        http_client=http,  # type: ignore[arg-type]
    )
    with llmreplay.cassette(tmp_path / "m.msgpack", mode="record") as cas:
        await resolve(client.embeddings.create(model="m", input="x", encoding_format="float"))
    assert len(calls) == 1
    assert cas.stats.recorded == 1
    with llmreplay.cassette(tmp_path / "m.msgpack") as cas:
        await resolve(client.embeddings.create(model="m", input="x", encoding_format="float"))
    assert len(calls) == 1
    assert cas.stats.played == 1
    await close(client)
