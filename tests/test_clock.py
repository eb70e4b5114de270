"""The virtual clock (``llmreplay._clock``): inside a cassette with faults, waits cost no
real time and the clocks the code reads move by them; outside it, and in other threads and
the event loop's own scheduling, time is real. And replay order under concurrency: answers
go out in the order requests reach the cassette."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx2
import openai
import pytest

import llmreplay
from llmreplay import _clock, faults as f
from llmreplay._transport import CassetteTransport

pytestmark = pytest.mark.anyio
URL = "http://127.0.0.1:9/v1/chat/completions"


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "c.msgpack"
    mock = httpx2.MockTransport(lambda _: httpx2.Response(200, json={"ok": True}))
    with llmreplay.cassette(path, mode="record"), httpx2.Client(transport=mock) as client:
        client.post(URL, json={"n": 1})
    return path


async def test_deadline_logic_sees_the_waits_and_nothing_else_does(
    recorded: Path, sync: bool
) -> None:
    real_started = _clock.real_monotonic()
    with llmreplay.cassette(recorded, faults=[f.RateLimit(), f.PASS]):
        before = (time.monotonic(), time.time(), time.perf_counter(), time.monotonic_ns())
        if sync:
            time.sleep(90.0)
        else:
            await asyncio.sleep(90.0)
        after = (time.monotonic(), time.time(), time.perf_counter(), time.monotonic_ns())
    assert _clock.real_monotonic() - real_started < 1.0
    for then, now in zip(before[:3], after[:3], strict=True):
        assert 90.0 <= now - then < 91.0
    assert 90e9 <= after[3] - before[3] < 91e9
    # After the block the real functions are back, and real time reads real.
    assert time.sleep is _clock.real_sleep and asyncio.sleep is _clock.real_asleep
    assert abs(time.time() - _clock.real_time()) < 1.0


async def test_anyio_sleep_is_virtual_too(recorded: Path) -> None:
    import anyio

    real_started = _clock.real_monotonic()
    with llmreplay.cassette(recorded, faults=f.RateLimit()) as cas:
        await anyio.sleep(30.0)  # what openai's and anthropic's async retries call
    assert _clock.real_monotonic() - real_started < 1.0
    assert cas.clock.waits == [30.0]


async def test_a_virtual_wait_fires_no_timeout_of_another_task_early(recorded: Path) -> None:
    ready = asyncio.Event()

    async def waiter() -> str:
        await asyncio.wait_for(ready.wait(), timeout=5.0)  # the loop's own (real) time
        return "in time"

    with llmreplay.cassette(recorded, faults=f.RateLimit()):
        other = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        await asyncio.sleep(60.0)  # virtual: 60 s pass for this code, not for the loop
        ready.set()
        assert await other == "in time"


def test_other_threads_and_cassettes_without_faults_keep_real_time(recorded: Path) -> None:
    seen: dict[str, float] = {}

    def elsewhere() -> None:  # a thread started without the block's context
        started = _clock.real_monotonic()
        time.sleep(0.05)
        seen["slept"] = _clock.real_monotonic() - started
        seen["skew"] = time.monotonic() - _clock.real_monotonic()

    with llmreplay.cassette(recorded, faults=f.RateLimit()):
        time.sleep(120.0)
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert seen["slept"] >= 0.05 and abs(seen["skew"]) < 1.0
    with llmreplay.cassette(recorded):  # no faults: no virtual clock
        assert time.sleep is _clock.real_sleep


def test_virtual_clock_false_is_taken_from_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time, pytest
        from llmreplay import _clock
        from llmreplay.faults import RateLimit

        @pytest.mark.llmreplay(faults=[RateLimit()], virtual_clock=False)
        def test_real(llm_cassette):
            assert time.sleep is _clock.real_sleep

        @pytest.mark.llmreplay(faults=[RateLimit()])
        def test_virtual(llm_cassette):
            assert time.sleep is not _clock.real_sleep

        def test_with_llm_faults(llm_cassette, llm_faults):
            started = _clock.real_monotonic()
            time.sleep(45)
            assert _clock.real_monotonic() - started < 1
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=3)


# -- replay order under concurrency ------------------------------------------------------


class _Arrivals(CassetteTransport):
    """The cassette's transport, noting which task's request reaches it, in order."""

    def __init__(self, cassette: llmreplay.Cassette, order: list[str]) -> None:
        super().__init__(cassette)
        self.order = order

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.order.append(request.headers["x-task"])
        return await super().handle_async_request(request)


async def test_concurrent_identical_requests_replay_in_arrival_order(tmp_path: Path) -> None:
    path = tmp_path / "seven.msgpack"
    answers = iter(range(1, 8))

    def answer(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=_completion(f"#{next(answers)}"))

    with llmreplay.cassette(path, mode="record"):
        recording = openai.OpenAI(
            api_key="k", http_client=httpx2.Client(transport=httpx2.MockTransport(answer))
        )
        for _ in range(7):
            _ask_sync(recording)
    for _ in range(50):
        order: list[str] = []
        with llmreplay.cassette(path) as cas:
            http = httpx2.AsyncClient(transport=_Arrivals(cas, order))
            client = openai.AsyncOpenAI(
                api_key="k", base_url="http://127.0.0.1:9/v1", http_client=http
            )
            firsts = [await _ask(client, "first") for _ in range(4)]
            replies = await asyncio.gather(*(_ask(client, f"t{i}") for i in range(3)))
            await http.aclose()
        assert firsts == ["#1", "#2", "#3", "#4"]
        by_task = dict(zip([f"t{i}" for i in range(3)], replies, strict=True))
        assert [by_task[task] for task in order[4:]] == ["#5", "#6", "#7"]


def _completion(text: str) -> dict[str, object]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
    }


MESSAGES = [{"role": "user", "content": "same question"}]


def _ask_sync(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    return str(reply.choices[0].message.content)


async def _ask(client: openai.AsyncOpenAI, task: str) -> str:
    reply = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"x-task": task},
    )
    return str(reply.choices[0].message.content)


@pytest.fixture
def completion(tmp_path: Path) -> Path:
    path = tmp_path / "one.msgpack"
    answer = httpx2.MockTransport(lambda _: httpx2.Response(200, json=_completion("hi")))
    with llmreplay.cassette(path, mode="record"):
        _ask_sync(openai.OpenAI(api_key="k", http_client=httpx2.Client(transport=answer)))
    return path


async def test_a_poller_and_another_tasks_sleeps_are_not_the_retrys_wait(
    completion: Path,
) -> None:
    polls = 0
    done = asyncio.Event()

    async def poller() -> None:  # short sleeps are real: it polls, it does not spin
        nonlocal polls
        while not done.is_set():
            await asyncio.sleep(0.01)
            polls += 1

    async def sleeper() -> None:  # another task's long waits, virtual, on the same clock
        for _ in range(5):
            await asyncio.sleep(3.0)

    real_started = _clock.real_monotonic()
    with llmreplay.cassette(completion, faults=[f.RateLimit(), f.PASS]) as cas:
        client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")
        background = [asyncio.ensure_future(poller()), asyncio.ensure_future(sleeper())]
        assert await _ask(client, "main") == "hi"
        done.set()
        await asyncio.gather(*background)
        await client.close()
    real = _clock.real_monotonic() - real_started
    verdict = cas.faults.verdict()  # type: ignore[union-attr]
    assert verdict.waits == [20.0]  # the SDK's own wait, not the sleeper's 15 s
    assert verdict.honoured_retry_after
    assert real < 5.0 and polls <= real / 0.01 + 1  # real 10 ms polls, no busy loop
    assert 0.01 not in cas.clock.waits and sorted(cas.clock.waits) == [3.0] * 5 + [20.0]


def test_a_short_sleep_is_real_and_not_a_wait(recorded: Path) -> None:
    with llmreplay.cassette(recorded, faults=f.RateLimit()) as cas:
        started = _clock.real_monotonic()
        time.sleep(0.02)
        assert _clock.real_monotonic() - started >= 0.02
    assert cas.clock.waits == []


async def test_nested_cassettes_never_move_time_back(recorded: Path, sync: bool) -> None:
    async def wait(seconds: float) -> None:
        if sync:
            time.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    readings = [time.monotonic()]
    with llmreplay.cassette(recorded, faults=f.RateLimit()) as outer:
        await wait(40.0)
        readings.append(time.monotonic())
        with llmreplay.cassette(recorded, faults=f.RateLimit()) as inner:
            readings.append(time.monotonic())
            await wait(5.0)
            readings.append(time.monotonic())
        readings.append(time.monotonic())
    assert readings == sorted(readings)
    assert readings[-1] - readings[0] >= 45.0
    assert outer.clock.waits == [40.0, 5.0] and inner.clock.waits == [5.0]


def test_a_request_from_a_thread_outside_the_block_is_timed_on_its_clock(
    completion: Path,
) -> None:
    with llmreplay.cassette(completion, faults=[f.ServerError(), f.PASS]) as cas:
        client = openai.OpenAI(
            api_key="k", max_retries=0, http_client=httpx2.Client(transport=CassetteTransport(cas))
        )
        with pytest.raises(openai.InternalServerError):
            _ask_sync(client)
        time.sleep(30.0)  # virtual, in the block's context only

        def elsewhere() -> None:  # a plain thread: real clocks, no context
            assert _ask_sync(client) == "hi"

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    verdict = cas.faults.verdict()  # type: ignore[union-attr]
    assert verdict.attempts == 2
    assert 30.0 <= verdict.delays[0] < 31.0  # not minus 30: one clock for both
