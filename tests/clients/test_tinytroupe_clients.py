"""TinyTroupe-style custom clients, per-call retry arguments, retry logs and deadline, and
what happens without an API key."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import openai
import pytest

import llmreplay
from llmreplay import faults as f
from tests.clients.conftest import FakeClock
from tests.helpers import resolve
from tests.server import LoopbackServer

HELLO = [{"role": "user", "content": "hello"}]


class EchoBackend(llmreplay.OpenAIClient):
    """A custom client the TinyTroupe way: it overrides the raw call and the extractor."""

    def __init__(self, failures: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _raw_model_call(self, model: str, chat_api_params: dict[str, Any]) -> Any:
        self.calls.append((model, chat_api_params))
        if len(self.calls) <= self.failures:
            raise llmreplay.NonTerminalError("backend busy")
        return {"text": "custom: " + chat_api_params["messages"][-1]["content"]}

    def _raw_model_response_extractor(self, response: Any) -> Any:
        return {"role": "assistant", "content": response["text"]}

    def _raw_embedding_model_call(self, text: str | list[str], model: str) -> Any:
        self.calls.append((model, {"input": text}))
        return {"vectors": [[float(len(text))]]}

    def _raw_embedding_model_response_extractor(self, response: Any) -> Any:
        return response["vectors"]


def test_a_custom_client_gets_the_retry_loop_and_its_hooks_are_called(clock: FakeClock) -> None:
    backend = EchoBackend(failures=2, sleep=clock.sleep, model="my-model", temperature=0.2)
    llmreplay.register_client("echo_backend", backend)
    llmreplay.force_api_type("echo_backend")
    reply = llmreplay.client().send_message(HELLO, max_attempts=3, waiting_time=0.5)
    assert reply["content"] == "custom: hello" and reply.content == "custom: hello"
    assert len(backend.calls) == 3  # two NonTerminalErrors retried, then the answer
    model, params = backend.calls[-1]
    assert model == "my-model" and params["temperature"] == 0.2
    assert params["messages"] == HELLO
    assert clock.waits[0] == pytest.approx(0.5, rel=0.11)  # WAITING_TIME given per call

    assert backend.get_embedding("four") == [4.0]
    assert backend.calls[-1] == ("text-embedding-3-small", {"input": "four"})

    failing = EchoBackend(failures=5, sleep=clock.sleep)
    with pytest.raises(llmreplay.NonTerminalError) as info:
        failing.send_message(HELLO, max_attempts=2)
    assert info.value.attempts == 2 and len(failing.calls) == 2


def test_setup_from_config_sets_the_sdk_client_the_default_call_uses(
    server: LoopbackServer, clock: FakeClock
) -> None:
    class OwnSDK(llmreplay.OpenAIClient):
        setups = 0

        def _setup_from_config(self) -> None:
            OwnSDK.setups += 1
            self.client = openai.OpenAI(api_key="own-key", base_url=server.url, max_retries=0)

    client = OwnSDK(base_url="http://127.0.0.1:9/unused", sleep=clock.sleep)
    assert client.send_message(HELLO).content == "echo: hello"
    assert client.get_embedding("cat") == pytest.approx([v for v in _vector("cat")])
    assert OwnSDK.setups == 2
    assert server.requests[0].headers["authorization"] == "Bearer own-key"
    client.client.close()


def _vector(text: str) -> list[float]:
    from tests.server import vector

    return vector(text)


def test_unsupported_hooks_are_refused_at_registration() -> None:
    class PickleCache(llmreplay.OpenAIClient):
        def _save_cache(self) -> None:
            pass

    with pytest.raises(llmreplay.ConfigError, match=r"PickleCache\._save_cache") as info:
        llmreplay.register_client("pickly", PickleCache)
    assert "msgpack cassette" in str(info.value)


def test_set_api_cache_and_count_tokens_exist_on_clients(
    server: LoopbackServer, tmp_path: Path
) -> None:
    client = llmreplay.OpenAIClient(base_url=server.url)
    client.set_api_cache(True, str(tmp_path / "own.msgpack"))
    client.send_message(HELLO)
    client.send_message(HELLO)
    assert len(server.requests) == 1 and (tmp_path / "own.msgpack").exists()
    client.set_api_cache(False)
    client.send_message(HELLO)
    assert len(server.requests) == 2
    assert client._count_tokens(HELLO, "gpt-4o") == llmreplay.count_tokens(HELLO, "gpt-4o")
    assert client._count_tokens(HELLO, "no-such-model") is None  # TinyTroupe: None, logged
    client.close()


@pytest.mark.anyio
async def test_retries_log_each_attempt_and_wait(
    server: LoopbackServer, clock: FakeClock, sync: bool, caplog: pytest.LogCaptureFixture
) -> None:
    client = llmreplay.OpenAIClient(base_url=server.url, sleep=clock.sleep, asleep=clock.asleep)
    # A 429 advertising 1 ms: the per-call waiting_time is what the client waits.
    schedule = f.sequence([f.RateLimit(retry_after_ms=1), f.ServerError(503), f.PASS])
    call = client.send_message if sync else client.asend_message
    with (
        caplog.at_level(logging.WARNING, logger="llmreplay"),
        llmreplay.cassette("c.msgpack", mode="live", faults=schedule),
    ):
        reply = await resolve(
            call(HELLO, max_attempts=4, waiting_time=2, exponential_backoff_factor=3)
        )
    assert reply.content == "echo: hello"
    lines = [r.getMessage() for r in caplog.records if r.name == "llmreplay"]
    assert len(lines) == 2
    assert lines[0].startswith("attempt 1/4 failed (RateLimitError, status 429); retrying in")
    assert lines[1].startswith("attempt 2/4 failed (InternalServerError, status 503)")
    # Per-call waiting_time and backoff factor: 2 then 2*3 (plus at most 10% jitter).
    assert 2 <= clock.waits[0] <= 2.2 and 6 <= clock.waits[1] <= 6.6
    await client.aclose()


@pytest.mark.anyio
async def test_max_total_wait_bounds_all_the_waits_of_a_call(
    server: LoopbackServer, clock: FakeClock, sync: bool, caplog: pytest.LogCaptureFixture
) -> None:
    llmreplay.force_default_value("MAX_TOTAL_WAIT", 10)
    llmreplay.force_default_value("JITTER", 0)
    client = llmreplay.OpenAIClient(base_url=server.url, sleep=clock.sleep, asleep=clock.asleep)
    call = client.send_message if sync else client.asend_message
    with (
        caplog.at_level(logging.ERROR, logger="llmreplay"),
        llmreplay.cassette("c.msgpack", mode="live", faults=f.ServerError()),
        pytest.raises(llmreplay.NonTerminalError, match="MAX_TOTAL_WAIT=10") as info,
    ):
        await resolve(call(HELLO, max_attempts=10, waiting_time=2, exponential_backoff_factor=2))
    # Waits 2 + 4 = 6; the next (8) would make 14 > 10, so the call stops after attempt 3.
    assert clock.waits == [2, 4] and info.value.attempts == 3
    assert any("MAX_TOTAL_WAIT" in r.getMessage() for r in caplog.records)
    await client.aclose()


def test_per_call_arguments_are_validated_and_name_themselves(server: LoopbackServer) -> None:
    client = llmreplay.OpenAIClient(base_url=server.url)
    with pytest.raises(llmreplay.ConfigError, match=r"send_message\(max_attempts=...\)"):
        client.send_message(HELLO, max_attempts=0)
    assert server.requests == []
    client.close()


@pytest.mark.anyio
async def test_without_a_key_the_sdk_says_so_and_nothing_is_sent(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, sync: bool
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    client = llmreplay.OpenAIClient(base_url=server.url)
    call = client.send_message if sync else client.asend_message
    with pytest.raises(openai.OpenAIError, match="Missing credentials"):
        await resolve(call(HELLO))
    assert server.requests == []


@pytest.mark.anyio
async def test_without_a_key_the_cache_still_answers_what_it_holds(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sync: bool
) -> None:
    cache = tmp_path / "cache.msgpack"
    llmreplay.force_api_cache(True, str(cache))
    keyed = llmreplay.OpenAIClient(base_url=server.url)
    assert keyed.send_message(HELLO).content == "echo: hello"
    keyed.close()

    monkeypatch.delenv("OPENAI_API_KEY")
    keyless = llmreplay.OpenAIClient(base_url=server.url)
    call = keyless.send_message if sync else keyless.asend_message
    assert (await resolve(call(HELLO))).content == "echo: hello"  # a hit needs no key
    with pytest.raises(llmreplay.ConfigError, match="set OPENAI_API_KEY") as info:
        await resolve(call([{"role": "user", "content": "not cached"}]))
    assert str(cache) in str(info.value)
    assert len(server.requests) == 1  # the miss was not sent with a placeholder key
    await keyless.aclose()


def test_inside_a_replay_cassette_no_key_is_needed(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cassette = tmp_path / "c.msgpack"
    with llmreplay.cassette(cassette, mode="record"):
        client = llmreplay.OpenAIClient(base_url=server.url)
        client.send_message(HELLO)
        client.close()
    monkeypatch.delenv("OPENAI_API_KEY")
    with llmreplay.cassette(cassette, mode="replay"):
        client = llmreplay.OpenAIClient(base_url=server.url)
        assert client.send_message(HELLO).content == "echo: hello"
        client.close()
    assert len(server.requests) == 1
    sent = json.loads(server.requests[0].body)
    assert sent["messages"] == HELLO


def test_tinytroupe_azure_variable_names_work(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_KEY", "tinytroupe-azure-key")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.origin)
    client = llmreplay.AzureClient(azure_deployment="dep")
    assert client.send_message(HELLO).content == "echo: hello"
    assert server.requests[0].headers["api-key"] == "tinytroupe-azure-key"
    assert server.requests[0].path.startswith("/openai/deployments/dep/chat/completions")
    client.close()


def test_tinytroupe_call_spellings(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import pydantic

    class Answer(pydantic.BaseModel):
        answer: str

    # TinyTroupe's constructor took (cache_api_calls, cache_file_name) positionally; an old
    # pickle beside the name is pointed out, never read.
    (tmp_path / "old.pickle").write_bytes(b"\x80\x04N.")
    with caplog.at_level(logging.WARNING, logger="llmreplay"):
        client = llmreplay.OpenAIClient(True, str(tmp_path / "old.pickle"), base_url=server.url)
        # API defaults TinyTroupe always passed are not sent; timeout is the SDK's option.
        client.send_message(HELLO, stop=[], n=1, timeout=30)
    assert "llmreplay import-pickle" in caplog.text and str(tmp_path / "old.msgpack") in caplog.text
    sent = json.loads(server.requests[0].body)
    assert not {"stop", "n", "timeout"} & set(sent)
    assert (tmp_path / "old.msgpack").exists()
    assert (tmp_path / "old.pickle").read_bytes() == b"\x80\x04N."  # untouched

    parsed = client.send_message(HELLO, response_format=Answer, enable_pydantic_model_return=True)
    assert parsed == Answer(answer="echo: hello")

    # One token limit per request: the call's own wins over MAX_COMPLETION_TOKENS.
    llmreplay.force_default_value("MAX_COMPLETION_TOKENS", 500)
    client.send_message([{"role": "user", "content": "limits"}], max_tokens=50)
    client.send_message([{"role": "user", "content": "limits 2"}])
    first, second = (json.loads(r.body) for r in server.requests[-2:])
    assert first["max_tokens"] == 50 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 500 and "max_tokens" not in second
    client.close()


@pytest.mark.anyio
async def test_every_chat_hook_is_honoured_sync_and_async(
    server: LoopbackServer, sync: bool, caplog: pytest.LogCaptureFixture
) -> None:
    class Shouting(llmreplay.OpenAIClient):
        counted: ClassVar[list[str]] = []
        cache_calls: ClassVar[list[tuple[bool, Any]]] = []

        def _raw_model_response_extractor(self, response: Any) -> Any:
            message = response.choices[0].message
            return {"role": message.role, "content": message.content.upper()}

        def _count_tokens(self, messages: Any, model: str) -> int | None:
            Shouting.counted.append(model)
            return 42

        def set_api_cache(self, cache_api_calls: bool, cache_file_name: str | None = None) -> None:
            Shouting.cache_calls.append((cache_api_calls, cache_file_name))
            super().set_api_cache(cache_api_calls, cache_file_name)

    client = Shouting(base_url=server.url)
    llmreplay.register_client("shouting", client)
    llmreplay.force_api_cache(False)  # TinyTroupe called set_api_cache on every client
    assert Shouting.cache_calls == [(False, None)]
    call = client.send_message if sync else client.asend_message
    with caplog.at_level(logging.DEBUG, logger="llmreplay"):
        reply = await resolve(call(HELLO))
    assert reply["content"] == "ECHO: HELLO"  # the SDK call, then the subclass's extractor
    assert Shouting.counted == ["gpt-4o-mini"] and "42 tokens" in caplog.text

    backend = EchoBackend()
    call = backend.send_message if sync else backend.asend_message
    assert (await resolve(call(HELLO))).content == "custom: hello"
    embed = backend.get_embedding if sync else backend.aget_embedding
    assert await resolve(embed("abc")) == [3.0]
    client.close()


def test_reasoning_model_hook_is_refused_with_what_to_do_instead() -> None:
    class Reasoning(llmreplay.OpenAIClient):
        def _is_reasoning_model(self, model: str) -> bool:
            return model.startswith("o")

    with pytest.raises(llmreplay.ConfigError, match="MAX_COMPLETION_TOKENS"):
        llmreplay.register_client("reasoning", Reasoning)
    with pytest.raises(llmreplay.ConfigError, match=r"Reasoning\._is_reasoning_model"):
        Reasoning()
