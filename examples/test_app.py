"""The example suite: real SDK calls, replayed from fixtures/cassettes/examples/ offline.

Run it with ``pytest examples``: no API key, no network. To re-record against the real
APIs, set OPENAI_API_KEY / ANTHROPIC_API_KEY and run ``pytest examples --llm-mode=record``.
"""

from __future__ import annotations

import math

import openai
import pytest

import llmreplay
from examples import app


def test_summarize(llm_client: openai.OpenAI, llm_cassette: llmreplay.Cassette) -> None:
    summary = app.summarize(llm_client, "llmreplay records LLM calls once and replays them.")
    assert summary.startswith("echo: ")
    stats = llm_cassette.stats
    assert stats.played + stats.recorded == 1  # one call, from the cassette or recorded


def test_stream_story(llm_client: openai.OpenAI) -> None:
    pieces = app.stream_story(llm_client, "Tell a tiny story")
    assert "".join(pieces) == "echo: Tell a tiny story"
    assert len(pieces) > 3  # the stream replays chunk by chunk


@pytest.mark.anyio
async def test_answer_async(async_llm_client: openai.AsyncOpenAI) -> None:
    assert await app.answer(async_llm_client, "What is replay?") == "echo: What is replay?"


def test_embed(llm_client: openai.OpenAI) -> None:
    first, second = app.embed(llm_client, ["cat", "dog"])
    assert len(first) == len(second) == 8
    assert not math.isclose(first[0], second[0]) or first != second


def test_ask_claude(llm_cassette: llmreplay.Cassette) -> None:
    # Any client created in the test is captured: no wiring needed.
    import anthropic

    client = anthropic.Anthropic()
    assert app.ask_claude(client, "Hello Claude") == "echo: Hello Claude"
    client.close()


@pytest.mark.llmreplay(allow_repeats=True)
def test_cached_repeats(llm_client: openai.OpenAI) -> None:
    # One recording serves every repeat of the same request.
    answers = {app.summarize(llm_client, "same text") for _ in range(3)}
    assert answers == {"echo: same text"}


def test_survives_rate_limits(
    llm_client: openai.OpenAI, llm_faults: llmreplay.faults.Injector
) -> None:
    # Rehearse production: two 429s, then the recorded answer. Each says retry-after: 20
    # and the SDK waits it out on the virtual clock, so this costs milliseconds.
    from llmreplay.faults import PASS, RateLimit

    llm_faults.use([RateLimit(), RateLimit(), PASS])
    assert app.summarize(llm_client, "retry me").startswith("echo: ")
    verdict = llm_faults.verdict()
    assert verdict.attempts == 3 and not verdict.gave_up and verdict.honoured_retry_after
    assert verdict.waits == [20.0, 20.0]  # what the SDK slept, exactly what was advertised
