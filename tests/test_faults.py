"""Fault injection against the real SDKs: every kind maps to the SDK's exception, retries
are verified in milliseconds, and faults never reach the cassette."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

import llmreplay
from llmreplay import faults as f
from llmreplay._clock import real_monotonic
from llmreplay._faults import Fault
from tests.helpers import close, collect, resolve
from tests.server import LoopbackServer, start_server

pytestmark = pytest.mark.anyio
CLAUDE = "claude-opus-4-6"

# What each fault kind ends in, per SDK (max_retries=0). Malformed bodies surface as the
# JSON decoder's error in both SDKs. A cut stream is a connection error in openai (it wraps
# errors raised while iterating); anthropic wraps it the same way from 2.17.0, while 2.16.0
# and older let the raw httpx2 error through. The fault stays what the real transport
# raises, so the expectation follows the installed anthropic: .ci/run runs this module
# under the locked anthropic (2.17.x) and again in a venv holding anthropic 2.16.0.
ANTHROPIC_WRAPS_CUT_STREAMS = tuple(int(p) for p in anthropic.__version__.split(".")[:2]) >= (2, 17)
ANTHROPIC_CUT_STREAM: type[Exception] = (
    anthropic.APIConnectionError if ANTHROPIC_WRAPS_CUT_STREAMS else httpx2.RemoteProtocolError
)
EXPECTED: list[tuple[Fault, type[Exception], type[Exception]]] = [
    (f.RateLimit(), openai.RateLimitError, anthropic.RateLimitError),
    (f.ServerError(500), openai.InternalServerError, anthropic.InternalServerError),
    (f.ServerError(502), openai.InternalServerError, anthropic.InternalServerError),
    (f.ServerError(503), openai.InternalServerError, anthropic.ServiceUnavailableError),
    (f.ServerError(504), openai.InternalServerError, anthropic.GatewayTimeoutError),
    (f.Overloaded(), openai.InternalServerError, anthropic.OverloadedError),
    (f.RequestTimeout(), openai.APIStatusError, anthropic.RequestTimeoutError),
    (f.BadRequest(), openai.BadRequestError, anthropic.BadRequestError),
    (f.Unauthorized(), openai.AuthenticationError, anthropic.AuthenticationError),
    (f.ConnectTimeout(), openai.APITimeoutError, anthropic.APITimeoutError),
    (f.ReadTimeout(), openai.APITimeoutError, anthropic.APITimeoutError),
    (f.ConnectionRefused(), openai.APIConnectionError, anthropic.APIConnectionError),
    (f.ConnectionReset(), openai.APIConnectionError, anthropic.APIConnectionError),
    (f.ProtocolError(), openai.APIConnectionError, anthropic.APIConnectionError),
    (f.CutStream(after=2), openai.APIConnectionError, ANTHROPIC_CUT_STREAM),
    (f.Malformed(), json.JSONDecodeError, json.JSONDecodeError),
    (f.Latency(5.0), openai.APITimeoutError, anthropic.APITimeoutError),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cassette with one chat, one chat stream, one message and one message stream."""
    path = tmp_path_factory.mktemp("faults") / "base.msgpack"
    server = start_server()
    with llmreplay.cassette(path, mode="record"):
        oa = openai.OpenAI(api_key="sk-test", base_url=server.url)
        an = anthropic.Anthropic(api_key="sk-test", base_url=server.origin)
        _chat(oa, stream=False)
        list(_chat(oa, stream=True))
        _message(an, stream=False)
        list(_message(an, stream=True))
        oa.close()
        an.close()
    server.stop()
    yield path


def _chat(client: Any, stream: bool) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d"}], stream=stream
    )


def _message(client: Any, stream: bool) -> Any:
    return client.messages.create(
        model=CLAUDE,
        max_tokens=16,
        messages=[{"role": "user", "content": "a b c d"}],
        stream=stream,
    )


def _clients(sync: bool, retries: int, timeout: float = 10.0) -> tuple[Any, Any]:
    base = "http://127.0.0.1:9"  # nothing listens: every answer must come from the cassette
    if sync:
        return (
            openai.OpenAI(api_key="k", base_url=base + "/v1", max_retries=retries, timeout=timeout),
            anthropic.Anthropic(api_key="k", base_url=base, max_retries=retries, timeout=timeout),
        )
    return (
        openai.AsyncOpenAI(
            api_key="k", base_url=base + "/v1", max_retries=retries, timeout=timeout
        ),
        anthropic.AsyncAnthropic(api_key="k", base_url=base, max_retries=retries, timeout=timeout),
    )


def test_every_fault_kind_has_an_expected_sdk_exception() -> None:
    kinds = {
        value
        for name, value in vars(f).items()
        if isinstance(value, type) and issubclass(value, Fault) and name in f.__all__
    }
    covered = {type(fault) for fault, _, _ in EXPECTED}
    bases = {f.Fault, f.HTTPFault, f.TransportFault}
    assert kinds - bases == covered


@pytest.mark.parametrize(("fault", "from_openai", "from_anthropic"), EXPECTED, ids=repr)
async def test_fault_kinds_map_to_sdk_exceptions(
    recorded: Path,
    sync: bool,
    fault: Fault,
    from_openai: type[Exception],
    from_anthropic: type[Exception],
) -> None:
    stream = isinstance(fault, f.CutStream)
    oa, an = _clients(sync, retries=0, timeout=0.05)
    for client, call, expected in ((oa, _chat, from_openai), (an, _message, from_anthropic)):
        with llmreplay.cassette(recorded, faults=fault, allow_repeats=True) as cas:
            with pytest.raises(expected) as info:
                result = await resolve(call(client, stream))
                if stream:
                    await collect(result)
            assert type(info.value) is expected or expected is json.JSONDecodeError
        assert cas.stats.faults == 1
    await close(oa, an)


@pytest.mark.parametrize("retries", [0, 2, 5])
@pytest.mark.parametrize("failures", [1, 3])
async def test_sdk_retries_observed_in_milliseconds(
    recorded: Path, sync: bool, retries: int, failures: int
) -> None:
    oa, an = _clients(sync, retries)
    for client, call, error in (
        (oa, _chat, openai.RateLimitError),
        (an, _message, anthropic.RateLimitError),
    ):
        schedule = f.sequence([f.RateLimit()] * failures + [f.PASS])
        started = time.monotonic()
        with llmreplay.cassette(recorded, faults=schedule, allow_repeats=True):
            if failures <= retries:
                await resolve(call(client, False))
            else:
                with pytest.raises(error):
                    await resolve(call(client, False))
        verdict = schedule.verdict()
        assert verdict.attempts == min(failures, retries) + 1
        assert verdict.gave_up is (failures > retries)
        assert verdict.honoured_retry_after
        # retry-after: 20 each time, on the virtual clock: no real second is spent
        assert time.monotonic() - started < 2.0
    await close(oa, an)


async def test_no_retry_after_a_terminal_fault(recorded: Path, sync: bool) -> None:
    oa, an = _clients(sync, retries=5)
    for client, call, error in (
        (oa, _chat, openai.BadRequestError),
        (an, _message, anthropic.BadRequestError),
    ):
        schedule = f.sequence([f.BadRequest("bad input"), f.PASS])
        with llmreplay.cassette(recorded, faults=schedule), pytest.raises(error, match="bad input"):
            await resolve(call(client, False))
        verdict = schedule.verdict()
        assert (verdict.attempts, verdict.gave_up, verdict.retried_terminal) == (1, True, False)
    await close(oa, an)


async def test_retry_after_is_honoured_and_measured(recorded: Path) -> None:
    oa, _ = _clients(True, retries=2)
    schedule = f.sequence([f.RateLimit(retry_after_ms=60), f.PASS])
    with llmreplay.cassette(recorded, faults=schedule):
        _chat(oa, False)
    verdict = schedule.verdict()
    assert verdict.faults == ["http_429", "pass"]
    assert verdict.delays[0] >= 0.06 * 0.95
    assert verdict.honoured_retry_after
    oa.close()


async def test_fault_responses_speak_each_providers_error_shape(recorded: Path) -> None:
    oa, an = _clients(True, retries=0)
    with llmreplay.cassette(recorded, faults=f.Overloaded()):
        with pytest.raises(openai.InternalServerError) as from_openai:
            _chat(oa, False)
        with pytest.raises(anthropic.OverloadedError) as from_anthropic:
            _message(an, False)
    assert from_openai.value.body == {
        "message": "llmreplay simulated error 529",
        "type": "server_error",
        "param": None,
        "code": "server_error",
    }
    assert from_anthropic.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "llmreplay simulated error 529"},
    }
    response = from_openai.value.response
    assert "retry-after" not in response.headers  # a 529 advertises no wait: the SDK backs off
    assert "retry-after-ms" not in response.headers
    assert response.extensions["llmreplay"]["source"] == "fault"
    await close(oa, an)


def _mock_client(cas: llmreplay.Cassette) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"ok": True})

    return httpx2.Client(transport=cas.transport(httpx2.MockTransport(handler)))


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (f.every(3, f.ServerError()), [200, 200, 500, 200, 200, 500]),
        (f.first(2, f.RateLimit()), [429, 429, 200, 200, 200, 200]),
        ([f.PASS, f.BadRequest()], [200, 400, 200, 200, 200, 200]),
        (f.ServerError(503), [503] * 6),
        (f.chance(0.5, f.ServerError(), seed=7), None),
    ],
)
def test_schedules(tmp_path: Path, schedule: Any, expected: list[int] | None) -> None:
    cas = llmreplay.cassette(tmp_path / "c.msgpack", mode="live", faults=schedule)
    with _mock_client(cas) as client:
        got = [client.get("https://api.openai.com/v1/models").status_code for _ in range(6)]
    if expected is None:  # seeded: the same seed, the same outcome
        again = llmreplay.cassette(
            tmp_path / "d.msgpack", mode="live", faults=f.chance(0.5, f.ServerError(), seed=7)
        )
        with _mock_client(again) as client:
            assert got == [client.get("https://x/v1/models").status_code for _ in range(6)]
        assert set(got) == {200, 500}
    else:
        assert got == expected


def test_path_filter_and_stats(tmp_path: Path) -> None:
    schedule = f.every(1, f.ServerError(), path="/v1/chat/*")
    cas = llmreplay.cassette(tmp_path / "c.msgpack", mode="live", faults=schedule)
    with _mock_client(cas) as client:
        assert client.post("https://api.openai.com/v1/chat/completions").status_code == 500
        assert client.post("https://api.openai.com/v1/embeddings").status_code == 200
    assert cas.stats.faults == 1 and cas.stats.live == 1
    assert [a.path for a in schedule.log] == ["/v1/chat/completions"]


def test_bad_schedules_are_config_errors() -> None:
    with pytest.raises(llmreplay.ConfigError, match="fault schedule entry"):
        f.sequence(["429"])  # type: ignore[list-item]
    with pytest.raises(llmreplay.ConfigError):
        f.every(0, f.RateLimit())
    with pytest.raises(llmreplay.ConfigError):
        f.chance(1.5, f.RateLimit())
    with pytest.raises(llmreplay.ConfigError):
        f.HTTPFault(200)


async def test_faults_are_never_written_to_the_cassette(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    path = tmp_path / "c.msgpack"
    schedule = f.sequence([f.RateLimit(), f.ServerError(503), f.PASS, f.CutStream(after=1)])
    client = (openai.OpenAI if sync else openai.AsyncOpenAI)(
        api_key="sk-test", base_url=server.url, max_retries=2
    )
    with llmreplay.cassette(path, mode="record", faults=schedule) as cas:
        reply = await resolve(_chat(client, False))
        with pytest.raises(openai.APIConnectionError):
            await collect(_chat(client, True))
    await close(client)
    assert reply.choices[0].message.content == "echo: a b c d"
    # The cut stream's whole upstream answer is stored: only the caller's view was cut.
    assert cas.stats.faults == 3 and cas.stats.recorded == 2
    plain, stream = llmreplay.cassette(path).interactions
    assert plain.response.status == 200 and b"rate_limit" not in path.read_bytes()
    assert stream.response.cut is None and stream.response.content.endswith(b"data: [DONE]\n\n")
    # So the next replay plays the stream in full.
    server.stop()
    client = (openai.OpenAI if sync else openai.AsyncOpenAI)(
        api_key="sk-test", base_url=server.url, max_retries=0
    )
    with llmreplay.cassette(path) as again:
        events = await collect(_chat(client, True))
    await close(client)
    assert again.stats.played == 1 and events[-1].choices[0].finish_reason == "stop"


def test_llm_faults_fixture_and_marker(pytester: pytest.Pytester, server: LoopbackServer) -> None:
    pytester.makepyfile(
        f"""
        import openai, pytest
        from llmreplay.faults import PASS, RateLimit, ServerError

        BASE = {server.url!r}

        def test_fixture(llm_cassette, llm_faults):
            llm_faults.use([RateLimit(), ServerError(502), PASS])
            client = openai.OpenAI(api_key="k", base_url=BASE, max_retries=3)
            client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "x"}}])
            verdict = llm_faults.verdict()
            assert verdict.faults == ["http_429", "http_502", "pass"]
            assert llm_cassette.stats.faults == 2
            client.close()

        @pytest.mark.llmreplay(faults=[RateLimit()])
        def test_marker(llm_cassette, llm_faults):
            client = openai.OpenAI(api_key="k", base_url=BASE, max_retries=0)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(
                    model="m", messages=[{{"role": "user", "content": "x"}}]
                )
            assert llm_faults.verdict().gave_up
            client.close()
        """
    )
    result = pytester.runpytest("--llm-mode=live")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*3 faults injected*"])


async def test_cut_stream_counts_events_of_a_stream_written_in_one_piece(
    tmp_path: Path, server: LoopbackServer, sync: bool
) -> None:
    # The server writes the whole stream in one network write: CutStream still cuts after
    # two events, records the whole answer in record mode, and the next replay plays it.
    path = tmp_path / "c.msgpack"
    one_piece = {"x-test-chunk-bytes": "1000000"}
    client = (openai.OpenAI if sync else openai.AsyncOpenAI)(
        api_key="sk-test", base_url=server.url, max_retries=0, default_headers=one_piece
    )
    cut = f.CutStream(after=2)
    with llmreplay.cassette(path, mode="record", faults=cut) as cas:
        stream = await resolve(_chat(client, True))
        seen = []
        with pytest.raises(openai.APIConnectionError):
            if sync:
                for event in stream:
                    seen.append(event)
            else:
                async for event in stream:
                    seen.append(event)
    assert len(seen) == 2  # exactly two events reached the caller
    assert cas.faults is not None and cas.faults.verdict().faults == ["cut_stream"]
    (item,) = llmreplay.cassette(path).interactions
    assert item.response.cut is None and item.response.content.endswith(b"data: [DONE]\n\n")
    assert len(item.response.chunks or []) == 1  # as upstream wrote it
    await close(client)
    server.stop()

    replay = (openai.OpenAI if sync else openai.AsyncOpenAI)(
        api_key="sk-test", base_url=server.url, max_retries=0
    )
    with llmreplay.cassette(path) as again:
        events = await collect(_chat(replay, True))
    await close(replay)
    assert again.stats.played == 1 and events[-1].choices[0].finish_reason == "stop"
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == "echo: a b c d"


# -- the verdict: per retry, what the code waited against what the fault advertised --------


async def test_the_sdks_pass_the_verdict_on_realistic_waits_in_no_real_time(
    recorded: Path, sync: bool
) -> None:
    oa, an = _clients(sync, retries=3)
    for client, call in ((oa, _chat), (an, _message)):
        schedule = f.sequence([f.RateLimit(), f.ServerError(503), f.ServerError(502), f.PASS])
        started = real_monotonic()
        with llmreplay.cassette(recorded, faults=schedule, allow_repeats=True):
            await resolve(call(client, False))
        verdict = schedule.verdict()
        assert real_monotonic() - started < 2.0  # 20 s + the SDK's back-off, virtually
        assert verdict.attempts == 4 and not verdict.gave_up
        assert verdict.advertised == [20.0, None, None]  # retry-after: 20 on the 429
        assert verdict.waits[0] == 20.0  # the SDK slept exactly what it was told
        # then its own back-off, 0.5 s doubling per retry taken, times a jitter of 0.75-1
        assert verdict.backoff == verdict.waits[1:]
        assert 0.75 <= verdict.backoff[0] <= 1.0 and 1.5 <= verdict.backoff[1] <= 2.0
        assert verdict.backed_off and verdict.honoured_retry_after
    await close(oa, an)


def _correct(attempt: int, headers: httpx2.Headers) -> float:
    said = headers.get("retry-after")
    return float(said) if said else 0.5 * 2**attempt


WRONG_RETRY_LOOPS = {
    "no sleep": lambda attempt, headers: 0.0,
    "fixed sleep": lambda attempt, headers: 0.002,
    "ignores Retry-After": lambda attempt, headers: 0.5 * 2**attempt,
    "no backoff": lambda attempt, headers: float(headers.get("retry-after") or 1.0),
}


async def _retrying(recorded: Path, sync: bool, wait_for: Any, faults: list[Any]) -> f.Verdict:
    """A hand-written retry loop over httpx2 (up to 4 attempts, waiting ``wait_for(attempt,
    headers)`` between them), against ``faults`` in front of the recording."""
    schedule = f.sequence(faults)
    url = "http://127.0.0.1:9/v1/chat/completions"
    messages = [{"role": "user", "content": "a b c d"}]
    payload = {"model": "gpt-4o-mini", "messages": messages, "stream": False}  # as _chat sends
    with llmreplay.cassette(recorded, faults=schedule, allow_repeats=True):
        for attempt in range(4):
            if sync:
                with httpx2.Client() as client:
                    answer = client.post(url, json=payload)
            else:
                async with httpx2.AsyncClient() as aclient:
                    answer = await aclient.post(url, json=payload)
            if answer.status_code < 400:
                break
            wait = wait_for(attempt, answer.headers)
            if sync:
                time.sleep(wait)
            else:
                await asyncio.sleep(wait)
    return schedule.verdict()


FAULTS = [f.RateLimit(), f.ServerError(503), f.ServerError(502), f.PASS]


async def test_a_correct_retry_loop_passes_the_verdict(recorded: Path, sync: bool) -> None:
    started = real_monotonic()
    verdict = await _retrying(recorded, sync, _correct, FAULTS)
    assert real_monotonic() - started < 2.0  # 23 s of waits, none of them real
    assert verdict.waits == [20.0, 1.0, 2.0]
    assert verdict.advertised == [20.0, None, None] and verdict.backoff == [1.0, 2.0]
    assert verdict.honoured_retry_after and verdict.backed_off and not verdict.gave_up


@pytest.mark.parametrize("wrong", WRONG_RETRY_LOOPS)
async def test_each_wrong_retry_loop_fails_the_verdict(
    recorded: Path, sync: bool, wrong: str
) -> None:
    verdict = await _retrying(recorded, sync, WRONG_RETRY_LOOPS[wrong], FAULTS)
    assert verdict.attempts == 4 and not verdict.gave_up  # it did get its answer
    assert not verdict.honoured_retry_after
    if wrong == "ignores Retry-After":
        assert verdict.waits[0] < verdict.advertised[0]  # type: ignore[operator]
        assert verdict.backed_off  # its back-off alone is fine
        assert not verdict.waited_as_advertised
    if wrong == "no backoff":
        assert verdict.waits[0] == 20.0 and verdict.backoff == [1.0, 1.0]
        assert not verdict.backed_off and verdict.waited_as_advertised


async def test_full_jitter_is_judged_on_retry_after_alone(recorded: Path, sync: bool) -> None:
    # Full jitter (tenacity's wait_random_exponential, backoff's default) draws each wait
    # from [0, 0.5 * 2**attempt]: one run cannot show a back-off, but every run can show
    # that Retry-After was waited for.
    for seed in range(10):
        draw = random.Random(seed)

        def full_jitter(attempt: int, headers: httpx2.Headers, draw: Any = draw) -> float:
            said = headers.get("retry-after")
            return float(said) if said else draw.uniform(0, 0.5 * 2**attempt)

        verdict = await _retrying(recorded, sync, full_jitter, FAULTS)
        assert verdict.waits[0] == 20.0 and verdict.waited_as_advertised, seed


async def test_without_a_virtual_clock_the_waits_are_real(recorded: Path) -> None:
    schedule = f.sequence([f.RateLimit(retry_after=0.05), f.PASS])
    started = real_monotonic()
    with llmreplay.cassette(recorded, faults=schedule, virtual_clock=False):
        _chat(openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1"), False)
    assert real_monotonic() - started >= 0.05
    verdict = schedule.verdict()
    assert verdict.advertised == [0.05] and verdict.waits[0] >= 0.05 * 0.95
    assert verdict.honoured_retry_after


def test_the_readme_retry_example_fails_the_wrong_loop(
    pytester: pytest.Pytester, upstream: LoopbackServer
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "docs" / "faults.md").read_text()
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", readme, re.S)
        if b.startswith("# test_retries.py")
    ]
    pytester.makepyfile(test_retries=block)
    for mode in ("record", "replay"):
        started = real_monotonic()
        result = pytester.runpytest_inprocess("-p", "no:randomly", f"--llm-mode={mode}")
        assert real_monotonic() - started < 10.0  # 23 s of advertised waits, all virtual
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(["*test_retries[[]ignores_retry_after[]]*"])
        assert "assert verdict.honoured_retry_after" in result.stdout.str()
    assert len(upstream.requests) == 2  # one recording per test; replay sent nothing
