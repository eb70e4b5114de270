"""Every HTTP stack and SDK x {sync, async, stream}: record through the loopback server,
replay with the server stopped (identical text, nothing received), and a 429 injected in
replay that the client retries. Secrets never reach the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import llmreplay
from llmreplay.faults import PASS, RateLimit, sequence
from tests.server import LoopbackServer
from tests.stacks.clients import CASES, CLIENTS, KEY

pytestmark = [
    # Warnings of the SDKs themselves, not of llmreplay: litellm's pydantic models and
    # google-genai's aiohttp session class.
    pytest.mark.filterwarnings("ignore:Item '\\w+' on TypedDict"),
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession"),
]


@pytest.mark.parametrize(("name", "variant"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_records_replays_offline_and_retries_a_429(
    name: str,
    variant: str,
    server: LoopbackServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    # Each phase is noted in the JUnit report, so scripts/drift.py can say which behaviour
    # (record, replay, retry) a newer SDK broke.
    client = CLIENTS[name]
    path = tmp_path / "cassette.msgpack"
    prompt = f"{name} {variant}"

    # Given a recording made through the real client and the loopback server
    record_property("phase", "record")
    with llmreplay.cassette(path, mode="record") as cas:
        recorded = client.call(server.origin, prompt, variant)
    assert recorded.startswith(f"echo: {prompt}")
    assert len(server.requests) == 1
    assert cas.stats.recorded == 1
    assert path.exists()
    assert KEY.encode() not in path.read_bytes()

    # When it replays with the server stopped
    record_property("phase", "replay")
    server.stop()
    with llmreplay.cassette(path, mode="replay") as cas:
        replayed = client.call(server.origin, prompt, variant)
    # Then the answer is identical and nothing reached the network
    assert replayed == recorded
    assert cas.stats.played == 1
    assert len(server.requests) == 1

    # And a 429 injected in replay is retried by the client, in milliseconds
    record_property("phase", "retry")
    schedule = sequence([RateLimit(), PASS])
    with llmreplay.cassette(path, mode="replay", faults=schedule) as cas:
        if variant in client.no_retry:  # the client's own rate-limit error, once
            with pytest.raises(Exception, match="429") as info:
                client.call(server.origin, prompt, variant)
            assert not isinstance(info.value, llmreplay.LLMReplayError)
            assert schedule.verdict().faults == ["http_429"]
            return
        retried = client.call(server.origin, prompt, variant)
    assert retried == recorded
    verdict = schedule.verdict()
    assert verdict.faults == ["http_429", "pass"]
    record_property("waits", verdict.waits)
    # retry-after: 20, waited out on the virtual clock (or, for two clients, not at all)
    told = f"waited {verdict.waits}, told {verdict.advertised}"
    assert verdict.honoured_retry_after is client.honours_retry_after, told
    assert cas.stats.played == 1
    assert len(server.requests) == 1
