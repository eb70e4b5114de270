"""Streams: teed as they arrive, stored with their boundaries, cut streams recorded as cut."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

import llmreplay
from tests.helpers import close, collect
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio
BODY = {
    "model": "gpt-4o-mini",
    "stream": True,
    "messages": [{"role": "user", "content": "a b c d"}],
}


def _client(sync: bool, cas: llmreplay.Cassette) -> Any:
    transport = cas.transport()
    return httpx2.Client(transport=transport) if sync else httpx2.AsyncClient(transport=transport)


async def _read(
    client: Any, url: str, headers: dict[str, str] | None = None, stop_after: int | None = None
) -> tuple[list[bytes], list[float]]:
    """The raw chunks as the caller got them, and when (seconds since the request)."""
    chunks: list[bytes] = []
    times: list[float] = []
    start = time.monotonic()
    request = client.build_request("POST", url, json=BODY, headers=headers or {})
    if isinstance(client, httpx2.Client):
        response = client.send(request, stream=True)
        try:
            for chunk in response.iter_raw():
                chunks.append(chunk)
                times.append(time.monotonic() - start)
                if stop_after is not None and len(chunks) >= stop_after:
                    break
        finally:
            response.close()
    else:
        response = await client.send(request, stream=True)
        try:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                times.append(time.monotonic() - start)
                if stop_after is not None and len(chunks) >= stop_after:
                    break
        finally:
            await response.aclose()
    return chunks, times


async def test_record_hands_chunks_on_as_they_arrive(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    cas = llmreplay.cassette(tmp_path / "s.msgpack", mode="record")
    client = _client(sync, cas)
    url = server.url + "/chat/completions"
    chunks, times = await _read(client, url, headers={"x-test-delay-ms": "120"})
    await close(client)
    # 8 events, 120 ms apart: a buffering recorder would deliver the first at the end.
    assert len(chunks) >= 4
    assert times[0] < times[-1] / 2
    (item,) = cas.interactions
    assert item.response.chunks == chunks
    assert item.response.cut is None
    assert len(item.chunk_ms) == len(chunks)
    assert item.chunk_ms == sorted(item.chunk_ms)


async def test_replay_keeps_chunk_boundaries(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "s.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas)
    recorded, _ = await _read(client, server.url + "/chat/completions")
    await close(client)
    cas.save()
    server.stop()

    replay = llmreplay.cassette(path)
    client = _client(sync, replay)
    replayed, _ = await _read(client, server.url + "/chat/completions")
    await close(client)
    assert replayed == recorded
    assert b"".join(replayed).endswith(b"data: [DONE]\n\n")


async def test_a_stream_upstream_cuts_is_not_kept_by_default(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    # A transport error is not an answer: the retry's answer is what belongs on disk.
    path = tmp_path / "s.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas)
    with pytest.raises(httpx2.RemoteProtocolError):
        await _read(client, server.url + "/chat/completions", headers={"x-test-cut-after": "3"})
    await close(client)
    cas.save()
    assert cas.interactions == [] and not path.exists()
    assert (cas.stats.recorded, cas.stats.live) == (0, 1)


async def test_a_stream_upstream_cuts_is_recorded_and_replayed_as_cut(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "s.msgpack"
    cas = llmreplay.cassette(path, mode="record", record_errors=True)
    client = _client(sync, cas)
    with pytest.raises(httpx2.RemoteProtocolError):
        await _read(client, server.url + "/chat/completions", headers={"x-test-cut-after": "3"})
    await close(client)
    cas.save()
    (item,) = cas.interactions
    assert item.response.cut == "upstream"
    assert item.response.content.count(b"data: ") == 3

    replay = llmreplay.cassette(path)
    client = _client(sync, replay)
    with pytest.raises(httpx2.RemoteProtocolError, match="upstream cut it"):
        await _read(client, server.url + "/chat/completions")
    await close(client)


async def test_a_stream_the_caller_abandons_is_recorded_as_cut(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    cas = llmreplay.cassette(tmp_path / "s.msgpack", mode="record")
    client = _client(sync, cas)
    chunks, _ = await _read(
        client, server.url + "/chat/completions", headers={"x-test-delay-ms": "20"}, stop_after=1
    )
    await close(client)
    (item,) = cas.interactions
    assert item.response.cut == "caller"
    assert item.response.chunks == chunks


async def test_realtime_replay_follows_recorded_timing(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "s.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas)
    await _read(client, server.url + "/chat/completions", headers={"x-test-delay-ms": "40"})
    await close(client)
    cas.save()
    (item,) = cas.interactions

    replay = llmreplay.cassette(path, realtime=True)
    client = _client(sync, replay)
    _, times = await _read(client, server.url + "/chat/completions")
    await close(client)
    assert times[-1] >= (item.elapsed_ms + item.chunk_ms[-1]) / 1000.0 * 0.9


async def test_a_stream_read_to_its_last_event_is_not_labelled_cut(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    # openai's sync Stream stops at "data: [DONE]" and closes with the chunked terminator
    # unread; the answer is whole, so neither the recording nor its replay says "caller".
    path = tmp_path / "s.msgpack"
    messages: Any = [{"role": "user", "content": "a b c"}]

    async def both() -> list[str]:
        oa: Any = (openai.OpenAI if sync else openai.AsyncOpenAI)(
            api_key="sk-test", base_url=server.url
        )
        an: Any = (anthropic.Anthropic if sync else anthropic.AsyncAnthropic)(
            api_key="sk-test", base_url=server.origin
        )
        chat = await collect(
            oa.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        )
        message = await collect(
            an.messages.create(model="claude", max_tokens=8, messages=messages, stream=True)
        )
        await close(oa, an)
        text = "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
        return [
            text,
            "".join(
                getattr(e.delta, "text", "") for e in message if e.type == "content_block_delta"
            ),
        ]

    with llmreplay.cassette(path, mode="record") as cas:
        recorded = await both()
    assert [item.response.cut for item in cas.interactions] == [None, None]
    with llmreplay.cassette(path, mode="replay") as cas:
        assert await both() == recorded
    assert [item.response.cut for item in cas.played] == [None, None]
    assert recorded[0] == "echo: a b c" and recorded[1]


def test_an_older_recording_read_to_its_last_event_loads_whole(tmp_path: Path) -> None:
    # Recorded before the fix: the openai stream of the example suite says "caller".
    from llmreplay._format import Interaction, RecordedRequest, RecordedResponse, encode

    def stored(chunks: list[bytes]) -> str | None:
        request = RecordedRequest("POST", "http://127.0.0.1/v1/chat/completions", [], b"{}")
        response = RecordedResponse(200, [], chunks=chunks, cut="caller")
        path = tmp_path / "old.msgpack"
        path.write_bytes(encode([Interaction("k" * 64, request, response)], {}))
        (item,) = llmreplay.cassette(path).interactions
        return item.response.cut

    assert stored([b'data: {"a": 1}\n\n', b"data: [DONE]\n\n"]) is None
    assert stored([b"event: message_stop\ndata: {}\n\n"]) is None
    assert stored([b'data: {"a": 1}\n\n', b'data: {"a": 2}\n\n']) == "caller"
    assert (
        stored([b'data: {"text": "data: [DONE] was said"}\n\n', b'data: {"a": 2}\n\n']) == "caller"
    )
