"""openai 2.x (on legacy httpx) through llmreplay: run in its own venv by .ci/run, because
openai 2.x and 3.x cannot share one (``pytest tests/stacks/openai2_check.py``; the main run
does not collect this file). Record, replay with the server stopped, a 429 retried, a miss
unwrapped and unretried, sync, async and streaming.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import llmreplay
from llmreplay import faults
from llmreplay.faults import PASS, RateLimit, sequence
from tests.helpers import fake_key
from tests.server import LoopbackServer

KEY = fake_key("sk-", "openai2-secret-0123456789")


def ask(base_url: str, prompt: str, variant: str) -> str:
    messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
    if variant in ("sync", "stream"):
        with openai.OpenAI(api_key=KEY, base_url=base_url, max_retries=2) as client:
            if variant == "sync":
                reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
                return reply.choices[0].message.content or ""
            chunks: Any = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    async def run() -> str:
        async with openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=2) as client:
            reply = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""

    return asyncio.run(run())


def test_openai_2_runs_on_legacy_httpx() -> None:
    assert openai.__version__.startswith("2.")
    assert isinstance(openai.OpenAI(api_key=KEY)._client, httpx.Client)


@pytest.mark.parametrize("variant", ["sync", "async", "stream"])
def test_openai_2_records_replays_and_retries(
    variant: str,
    server: LoopbackServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    # Phases are noted in the JUnit report for scripts/drift.py (as in test_matrix.py).
    path = tmp_path / "c.msgpack"
    record_property("phase", "record")
    with llmreplay.cassette(path, mode="record") as cas:
        recorded = ask(server.url, f"v2 {variant}", variant)
    assert recorded == f"echo: v2 {variant}"
    assert cas.stats.recorded == 1
    assert KEY.encode() not in path.read_bytes()
    server.stop()
    record_property("phase", "replay")
    with llmreplay.cassette(path, mode="replay") as cas:
        assert ask(server.url, f"v2 {variant}", variant) == recorded
    assert cas.stats.played == 1
    record_property("phase", "retry")
    schedule = sequence([RateLimit(), PASS])
    with llmreplay.cassette(path, faults=schedule) as cas:
        assert ask(server.url, f"v2 {variant}", variant) == recorded
    assert schedule.verdict().faults == ["http_429", "pass"]
    assert cas.stats.played == 1
    assert len(server.requests) == 1


def test_openai_2_gets_a_miss_unwrapped_and_unretried(tmp_path: Path) -> None:
    schedule = sequence([])
    with (
        llmreplay.cassette(tmp_path / "none.msgpack", faults=schedule),
        pytest.raises(llmreplay.CassetteMiss, match="does not exist yet"),
    ):
        ask("http://127.0.0.1:9/v1", "never", "sync")
    assert len(schedule.log) == 1


@pytest.mark.parametrize(
    ("fault", "stream", "expected"),
    [
        (faults.RateLimit(), False, openai.RateLimitError),
        (faults.ConnectTimeout(), False, openai.APITimeoutError),
        (faults.ConnectionReset(), False, openai.APIConnectionError),
        # openai 2.x does not wrap an error raised while iterating (3.x does): httpx's own.
        (faults.CutStream(after=1), True, httpx.RemoteProtocolError),
    ],
    ids=repr,
)
def test_openai_2_maps_faults_to_its_exceptions(
    fault: Any, stream: bool, expected: type[Exception], server: LoopbackServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.msgpack"
    messages: Any = [{"role": "user", "content": "faults"}]

    def call() -> str:
        with openai.OpenAI(api_key=KEY, base_url=server.url, max_retries=0) as client:
            reply: Any = client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=stream
            )
            if stream:
                return "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
            return reply.choices[0].message.content or ""

    with llmreplay.cassette(path, mode="record"):
        call()
    with llmreplay.cassette(path, mode="replay", faults=fault), pytest.raises(expected):
        call()
