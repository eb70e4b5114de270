"""send_message, embeddings, retries, cache and Azure, against the loopback server."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pydantic
import pytest

import llmreplay
from llmreplay import faults as f
from llmreplay._clients import reset
from tests.clients.conftest import FakeClock
from tests.helpers import resolve
from tests.server import LoopbackServer, vector

pytestmark = pytest.mark.anyio
HELLO = [{"role": "user", "content": "hello"}]


_made: list[llmreplay._clients.BaseClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> object:
    yield
    while _made:
        await _made.pop().aclose()
    await llmreplay.client().aclose()


def _track(client: llmreplay._clients.BaseClient) -> llmreplay._clients.BaseClient:
    _made.append(client)
    return client


def _client(server: LoopbackServer, clock: FakeClock, **settings: Any) -> llmreplay.OpenAIClient:
    policy = llmreplay.RetryPolicy(
        max_attempts=4, waiting_time=1, backoff_factor=2, max_backoff=5, jitter=0
    )
    client = llmreplay.OpenAIClient(
        base_url=server.url, sleep=clock.sleep, asleep=clock.asleep, policy=policy, **settings
    )
    _track(client)
    return client


async def _send(client: llmreplay.OpenAIClient, sync: bool, messages: object = HELLO, **kw: object):
    call = client.send_message if sync else client.asend_message
    return await resolve(call(messages, **kw))  # type: ignore[arg-type]


async def test_send_message_returns_the_assistant_message(
    server: LoopbackServer, clock: FakeClock, sync: bool
) -> None:
    reply = await _send(_client(server, clock), sync)
    assert reply.content == "echo: hello"
    assert reply.as_dict() == {"role": "assistant", "content": "echo: hello"}
    sent = json.loads(server.requests[0].body)
    # Configured parameters are sent; optional ones left unset are not.
    assert sent["model"] == "gpt-4o-mini" and sent["max_tokens"] == 1024
    assert sent["temperature"] == 0.3
    assert not {"top_p", "frequency_penalty", "presence_penalty"} & set(sent)


class Answer(pydantic.BaseModel):
    answer: str
    length: int


async def test_response_format_tools_and_streaming(
    server: LoopbackServer, clock: FakeClock, sync: bool
) -> None:
    client = _client(server, clock)
    parsed = await _send(client, sync, response_format=Answer)
    assert parsed.parsed == Answer(answer="echo: hello", length=11)
    as_json = await _send(client, sync, response_format={"type": "json_object"})
    assert as_json.parsed == {"echo": "echo: hello"}

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    called = await _send(client, sync, tools=[tool])
    assert called.content is None
    assert called.tool_calls[0].function.name == "lookup"
    assert called.as_dict()["tool_calls"][0]["function"]["name"] == "lookup"

    pieces: list[str] = []
    streamed = await _send(client, sync, stream=True, on_chunk=pieces.append)
    assert streamed.content == "echo: hello" == "".join(pieces)
    assert len(pieces) > 1


async def test_retries_follow_the_policy_and_honour_retry_after(
    server: LoopbackServer, clock: FakeClock, sync: bool, tmp_path: Path
) -> None:
    client = _client(server, clock)
    messages = [{"role": "user", "content": "hello"}]
    # (the first 429 advertises 1 ms: the policy's longer backoff wins)
    first = f.RateLimit(retry_after_ms=1)
    schedule = f.sequence([first, f.ServerError(503), f.RateLimit(retry_after=4.5), f.PASS])
    with llmreplay.cassette(tmp_path / "c.msgpack", mode="live", faults=schedule):
        reply = await _send(client, sync, messages)
    assert reply.content == "echo: hello"
    assert clock.waits == [1, 2, 4.5]  # 1 * 2**n backoff, Retry-After wins when longer
    assert schedule.verdict().attempts == 4
    assert messages == [{"role": "user", "content": "hello"}]  # never mutated
    # The SDK's own retries are off: one server hit, for the attempt that passed.
    assert len(server.requests) == 1


async def test_backoff_is_capped_and_jitter_bounded(server: LoopbackServer, sync: bool) -> None:
    clock = FakeClock()
    policy = llmreplay.RetryPolicy(
        max_attempts=6, waiting_time=1, backoff_factor=3, max_backoff=5, jitter=0.5
    )
    client = llmreplay.OpenAIClient(
        base_url=server.url, sleep=clock.sleep, asleep=clock.asleep, policy=policy
    )
    _track(client)
    with llmreplay.cassette("c.msgpack", mode="live", faults=f.first(5, f.ServerError())):
        await _send(client, sync)
    bases = [1, 3, 5, 5, 5]
    assert all(b <= w <= min(5, b * 1.5) for b, w in zip(bases, clock.waits, strict=True))


async def test_terminal_errors_raise_at_once(
    server: LoopbackServer, clock: FakeClock, sync: bool
) -> None:
    client = _client(server, clock)
    for fault, status in ((f.BadRequest(), 400), (f.Unauthorized(), 401), (f.HTTPFault(404), 404)):
        schedule = f.sequence([fault, f.PASS])
        with (
            llmreplay.cassette("c.msgpack", mode="live", faults=schedule),
            pytest.raises(llmreplay.InvalidRequestError) as info,
        ):
            await _send(client, sync)
        assert info.value.status == status
        assert schedule.verdict().attempts == 1
    assert clock.waits == []


async def test_persistent_failures_end_in_non_terminal_error(
    server: LoopbackServer, clock: FakeClock, sync: bool
) -> None:
    client = _client(server, clock)
    with (
        llmreplay.cassette("c.msgpack", mode="live", faults=f.ReadTimeout()),
        pytest.raises(llmreplay.NonTerminalError) as info,
    ):
        await _send(client, sync)
    assert info.value.attempts == 4
    assert clock.waits == [1, 2, 4]


async def test_cache_first(
    server: LoopbackServer, clock: FakeClock, sync: bool, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.msgpack"
    llmreplay.force_api_cache(True, str(cache))
    client = _client(server, clock)
    first = await _send(client, sync)
    again = await _send(client, sync)
    assert first.content == again.content
    assert len(server.requests) == 1  # the second call was a hit
    assert cache.read_bytes()[:1] == b"\x84"  # msgpack, not pickle

    # Another client (another process, later) hits the same cache without the network.
    server.stop()
    reset()
    llmreplay.force_api_cache(True, str(cache))
    await client.aclose()
    later = _client(server, clock)
    assert (await _send(later, sync)).content == first.content

    # Inside an active cassette, its mode rules instead of the cache.
    with llmreplay.cassette(tmp_path / "empty.msgpack"), pytest.raises(llmreplay.CassetteMiss):
        await _send(later, sync)


async def test_embeddings(server: LoopbackServer, clock: FakeClock, sync: bool) -> None:
    client = _client(server, clock)
    call = client.get_embedding if sync else client.aget_embedding
    one = await resolve(call("cat"))
    many = await resolve(call(["cat", "dog"], model="text-embedding-3-large"))
    assert one == pytest.approx(vector("cat"))
    assert many == [pytest.approx(vector("cat")), pytest.approx(vector("dog"))]
    assert json.loads(server.requests[1].body)["model"] == "text-embedding-3-large"
    assert llmreplay.get_embedding is not None


async def test_azure_key_and_entra_token_on_the_wire_and_scrubbed(
    server: LoopbackServer, clock: FakeClock, sync: bool, tmp_path: Path
) -> None:
    settings: Any = {
        "azure_endpoint": server.origin,
        "azure_deployment": "chat-dep",
        "azure_api_version": "2024-10-21",
    }
    keyed = llmreplay.AzureClient(
        api_key="azure-key-0123456789abcdef", sleep=clock.sleep, **settings
    )
    tokened = llmreplay.AzureClient(
        token_provider=lambda: "entra-token-0123456789", sleep=clock.sleep, **settings
    )
    _track(keyed)
    _track(tokened)
    with llmreplay.cassette(tmp_path / "azure.msgpack", mode="record"):
        for client in (keyed, tokened):
            call = client.send_message if sync else client.asend_message
            assert (await resolve(call(HELLO))).content == "echo: hello"
    key_request, token_request = server.requests
    assert (
        key_request.path == "/openai/deployments/chat-dep/chat/completions?api-version=2024-10-21"
    )
    assert key_request.headers["api-key"] == "azure-key-0123456789abcdef"
    assert token_request.headers["authorization"] == "Bearer entra-token-0123456789"
    written = (tmp_path / "azure.msgpack").read_bytes()
    assert b"azure-key-0123456789abcdef" not in written and b"entra-token" not in written


async def test_azure_without_endpoint_or_key_says_what_to_set() -> None:
    with pytest.raises(llmreplay.ConfigError, match="AZURE_ENDPOINT"):
        llmreplay.AzureClient(api_key="k").sdk()
    with pytest.raises(llmreplay.ConfigError, match="AZURE_OPENAI_API_KEY"):
        llmreplay.AzureClient(azure_endpoint="https://x.openai.azure.com").sdk()


async def test_registry_and_forcing(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMREPLAY_BASE_URL", server.url)
    shared: list[llmreplay._clients.BaseClient] = []
    threads = [threading.Thread(target=lambda: shared.append(llmreplay.client())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in shared}) == 1 and isinstance(shared[0], llmreplay.OpenAIClient)
    assert shared[0].sdk() is shared[0].sdk()  # one SDK client, reused

    llmreplay.force_default_value("MODEL", "gpt-4.1-mini")
    llmreplay.client().send_message(HELLO)
    assert json.loads(server.requests[-1].body)["model"] == "gpt-4.1-mini"
    with pytest.raises(llmreplay.ConfigError, match="TEMPERATURE"):
        llmreplay.force_default_value("TEMPERATURE", "warm")

    custom = llmreplay.OpenAIClient(base_url=server.url, model="custom-model")
    _track(shared[0])
    with pytest.raises(llmreplay.ConfigError, match="already registered"):
        llmreplay.register_client("openai", custom)
    llmreplay.register_client("local", custom)
    llmreplay.force_api_type("local")
    assert llmreplay.client() is custom
    with pytest.raises(llmreplay.ConfigError):
        llmreplay.force_api_type("nope")
