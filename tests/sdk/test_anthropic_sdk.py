"""The real anthropic SDK end to end: messages and streams, recorded then replayed."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

import llmreplay
from tests.helpers import close, collect, fake_key, resolve
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio
KEY = fake_key("sk-ant-")
MODEL = "claude-opus-4-6"


def _client(sync: bool, base_url: str) -> anthropic.Anthropic | anthropic.AsyncAnthropic:
    cls = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
    return cls(api_key=KEY, base_url=base_url, max_retries=0)


async def _exercise(client: anthropic.Anthropic | anthropic.AsyncAnthropic) -> dict[str, object]:
    message = await resolve(
        client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hello Claude"}]
        )
    )
    events = await collect(
        client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": "Stream a reply"}],
            stream=True,
        )
    )
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    return {"message": message.content[0].text, "stream": text, "types": [e.type for e in events]}


async def test_messages_and_streams_record_then_replay(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "anthropic.msgpack"
    with llmreplay.cassette(path, mode="record") as cas:
        client = _client(sync, server.origin)
        live = await _exercise(client)
        await close(client)
    assert cas.stats.recorded == 2
    assert live["message"] == "echo: Hello Claude"
    assert live["stream"] == "echo: Stream a reply"
    assert KEY.encode() not in path.read_bytes()

    server.stop()
    with llmreplay.cassette(path) as cas:
        client = _client(sync, server.origin)
        replayed = await _exercise(client)
        await close(client)
    assert replayed == live
    assert cas.stats.played == 2
    assert len(server.requests) == 2


async def test_miss_reaches_the_caller_unwrapped_and_unretried(tmp_path: Path, sync: bool) -> None:
    # The anthropic SDK wraps transport exceptions in APIConnectionError and retries them;
    # a miss must instead surface at once as itself.
    cls = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
    client = cls(api_key=KEY, base_url="http://127.0.0.1:9", max_retries=5)
    with (
        llmreplay.cassette(tmp_path / "empty.msgpack") as cas,
        pytest.raises(llmreplay.CassetteMiss) as info,
    ):
        await resolve(
            client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        )
    assert info.value.reason == "the cassette file does not exist yet"
    assert cas.stats.played == 0
    await close(client)
