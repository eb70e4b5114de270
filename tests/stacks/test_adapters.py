"""What every stack adapter guarantees besides record/replay: a cassette recorded through one
stack replays through any other; faults and cut streams arrive as the stack's own exception
types; misses reach the caller unretried with their message; streams are teed chunk for chunk
as they arrive; gzip and repeated headers survive; explicit wiring; lazy imports.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError as Urllib3ProtocolError,
    ReadTimeoutError,
)

import llmreplay
from llmreplay import faults
from llmreplay.faults import sequence
from tests.server import LoopbackServer
from tests.stacks.clients import (
    CLIENTS,
    HEADERS,
    KEY,
    body,
    litellm,
    litellm_call,
    reply_text,
    sse_text,
)

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("httpx2", "httpx", "aiohttp", "requests", "urllib3")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Item '\\w+' on TypedDict"),
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession"),
]


def send(stack: str, origin: str, prompt: str, stream: bool, headers: Any = None) -> str:
    """One chat request through ``stack``'s bare client, no retries; the reply text."""
    url = origin + "/v1/chat/completions"
    payload = body(prompt, stream)
    sent = {**HEADERS, **(headers or {})}
    if stack in ("httpx2", "httpx"):
        module: Any = httpx2 if stack == "httpx2" else httpx
        with module.Client(headers=sent) as client, client.stream("POST", url, json=payload) as r:
            return sse_text(r.iter_lines()) if stream else reply_text(json.loads(r.read()))
    if stack == "aiohttp":

        async def run() -> str:
            async with (
                aiohttp.ClientSession(headers=sent) as session,
                session.post(url, json=payload) as r,
            ):
                if stream:
                    return sse_text([line async for line in r.content])
                return reply_text(await r.json())

        return asyncio.run(run())
    if stack == "requests":
        with requests.Session() as session:
            r = session.post(url, json=payload, headers=sent, stream=stream)
            return sse_text(r.iter_lines()) if stream else reply_text(r.json())
    with urllib3.PoolManager(retries=False) as pool:
        data = json.dumps(payload).encode()
        r = pool.request("POST", url, body=data, headers=sent, preload_content=not stream)
        if not stream:
            return reply_text(r.json())
        text = sse_text(b"".join(r.stream(None)).splitlines())
        r.release_conn()
        return text


@pytest.mark.parametrize("recorder", STACKS)
def test_a_cassette_recorded_through_one_stack_replays_through_every_other(
    recorder: str, server: LoopbackServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.msgpack"
    with llmreplay.cassette(path, mode="record"):
        plain = send(recorder, server.origin, "shared", stream=False)
        streamed = send(recorder, server.origin, "shared stream", stream=True)
    assert (plain, streamed) == ("echo: shared", "echo: shared stream")
    server.stop()
    for stack in STACKS:
        with llmreplay.cassette(path, mode="replay") as cas:
            assert send(stack, server.origin, "shared", stream=False) == plain, stack
            assert send(stack, server.origin, "shared stream", stream=True) == streamed, stack
        assert cas.stats.played == 2
    assert len(server.requests) == 2


def _expected() -> dict[str, dict[str, type[BaseException]]]:
    return {
        "httpx": {
            "connect_timeout": httpx.ConnectTimeout,
            "read_timeout": httpx.ReadTimeout,
            "connection_refused": httpx.ConnectError,
            "connection_reset": httpx.ReadError,
            "protocol_error": httpx.RemoteProtocolError,
            "cut_stream": httpx.RemoteProtocolError,
        },
        "aiohttp": {
            "connect_timeout": aiohttp.ConnectionTimeoutError,
            "read_timeout": aiohttp.SocketTimeoutError,
            "connection_refused": aiohttp.ClientConnectorError,
            "connection_reset": aiohttp.ClientOSError,
            "protocol_error": aiohttp.ServerDisconnectedError,
            "cut_stream": aiohttp.ClientPayloadError,
        },
        "requests": {
            "connect_timeout": requests.ConnectTimeout,
            "read_timeout": requests.ReadTimeout,
            "connection_refused": requests.ConnectionError,
            "connection_reset": requests.ConnectionError,
            "protocol_error": requests.ConnectionError,
            "cut_stream": requests.exceptions.ChunkedEncodingError,
        },
        "urllib3": {
            "connect_timeout": ConnectTimeoutError,
            "read_timeout": ReadTimeoutError,
            "connection_refused": NewConnectionError,
            "connection_reset": Urllib3ProtocolError,
            "protocol_error": Urllib3ProtocolError,
            "cut_stream": Urllib3ProtocolError,
        },
    }


FAULTS = {
    "connect_timeout": faults.ConnectTimeout,
    "read_timeout": faults.ReadTimeout,
    "connection_refused": faults.ConnectionRefused,
    "connection_reset": faults.ConnectionReset,
    "protocol_error": faults.ProtocolError,
}


@pytest.mark.parametrize("stack", ["httpx", "aiohttp", "requests", "urllib3"])
def test_faults_raise_the_stacks_own_exception_types(
    stack: str, server: LoopbackServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.msgpack"
    with llmreplay.cassette(path, mode="record"):
        recorded = send(stack, server.origin, "cut me", stream=True)
    server.stop()
    expected = _expected()[stack]
    for kind, fault in FAULTS.items():
        with (
            llmreplay.cassette(path, mode="replay", faults=[fault()]),
            pytest.raises(expected[kind]) as info,
        ):
            send(stack, server.origin, "cut me", stream=False)
        assert type(info.value) is expected[kind], (kind, type(info.value))
        assert "llmreplay fault" in repr(info.value) + repr(info.value.__cause__), kind
    # A stream cut after two events: the events before the cut arrive, then the error.
    with (
        llmreplay.cassette(path, mode="replay", faults=[faults.CutStream(after=2)]) as cas,
        pytest.raises(expected["cut_stream"]) as info,
    ):
        send(stack, server.origin, "cut me", stream=True)
    assert type(info.value) is expected["cut_stream"]
    assert cas.stats.played == 1
    assert recorded == "echo: cut me"
    assert len(server.requests) == 1


MISS_CASES = [
    ("httpx", "sync"),
    ("httpx", "async"),
    ("aiohttp", "async"),
    ("requests", "sync"),
    ("urllib3", "sync"),
    ("groq", "sync"),
    ("groq", "async"),
    ("cohere", "sync"),
    ("cohere", "astream"),
    ("litellm-vllm", "sync"),
    ("litellm-vllm", "async"),
    ("litellm-openai", "stream"),
    ("genai-aiohttp", "async"),
    ("mistralai", "sync"),
    ("mistralai", "astream"),
]


@pytest.mark.parametrize(("name", "variant"), MISS_CASES, ids=[f"{n}-{v}" for n, v in MISS_CASES])
def test_a_miss_reaches_the_caller_once_with_its_message(
    name: str, variant: str, tmp_path: Path
) -> None:
    call = CLIENTS[name].call
    if name.startswith("litellm"):
        litellm()  # imported once, outside the timing
        # litellm as configured by default: its num_retries retries every error, a miss too.
        call = litellm_call(name.removeprefix("litellm-").replace("vllm", "hosted_vllm"))
    schedule = sequence([])  # notes every attempt, injects nothing
    path = tmp_path / "empty.msgpack"
    started = time.monotonic()
    with (
        llmreplay.cassette(path, mode="replay", faults=schedule),
        pytest.raises(Exception, match="no recording for POST") as info,
    ):
        call("http://127.0.0.1:9", "never recorded", variant)
    assert len(schedule.log) == 1  # not retried
    assert "empty.msgpack" in str(info.value)
    assert "does not exist yet" in str(info.value)
    if name in ("httpx", "aiohttp", "requests", "urllib3", "cohere", "mistralai"):
        assert isinstance(info.value, llmreplay.CassetteMiss)  # unwrapped
    if name == "groq":  # it would wrap and retry an exception: an answer instead
        cause = info.value.response.extensions["llmreplay_error"]  # type: ignore[attr-defined]
        assert isinstance(cause, llmreplay.CassetteMiss)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("stack", ["httpx", "aiohttp", "requests", "urllib3"])
def test_streams_are_teed_chunk_for_chunk_as_they_arrive(
    stack: str, server: LoopbackServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.msgpack"
    arrivals: list[float] = []
    started = time.monotonic()

    def note(line: Any) -> bool:
        arrivals.append(time.monotonic() - started)
        return True

    # Six events 40 ms apart: the caller sees the first long before the last is sent.
    slow = {"x-test-delay-ms": "40"}
    with llmreplay.cassette(path, mode="record") as cas:
        url = server.origin + "/v1/chat/completions"
        if stack == "httpx":
            with (
                httpx.Client() as client,
                client.stream("POST", url, json=body("a b c d", True), headers=slow) as r,
            ):
                text = sse_text(line for line in r.iter_lines() if note(line))
        elif stack == "aiohttp":

            async def run() -> str:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(url, json=body("a b c d", True), headers=slow) as r,
                ):
                    return sse_text([line async for line in r.content if note(line)])

            text = asyncio.run(run())
        elif stack == "requests":
            r2 = requests.post(url, json=body("a b c d", True), headers=slow, stream=True)
            text = sse_text(line for line in r2.iter_lines() if note(line))
        else:
            with urllib3.PoolManager() as pool:
                data = json.dumps(body("a b c d", True)).encode()
                r3 = pool.request("POST", url, body=data, headers=slow, preload_content=False)
                text = sse_text(c for c in r3.stream(None) if note(c))
                r3.release_conn()
    assert text == "echo: a b c d"
    assert arrivals[0] < arrivals[-1] - 0.1  # the first came ~200 ms before the last
    (item,) = cas.interactions
    chunks = item.response.chunks
    assert chunks is not None
    # role, 5 words, stop, [DONE]: 8 server writes 40 ms apart, recorded as they were read
    # (about one chunk per write: a starved reader may read two writes at once, and a
    # write may arrive in two reads), never as one buffered body.
    assert b"".join(chunks).count(b"data: ") == 8
    assert len(chunks) >= 4
    assert len(item.chunk_ms) == len(chunks)
    assert item.chunk_ms[-1] - item.chunk_ms[0] > 150


@pytest.mark.parametrize("stack", STACKS)
def test_gzip_and_repeated_headers_survive_on_every_stack(stack: str, tmp_path: Path) -> None:
    payload = json.dumps({"choices": [{"message": {"content": "zipped"}}]}).encode()
    import gzip

    def answer(request: httpx2.Request) -> httpx2.Response:
        headers = [
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("x-multi", "one"),
            ("x-multi", "two"),
        ]
        return httpx2.Response(200, headers=headers, content=gzip.compress(payload, mtime=0))

    path = tmp_path / "c.msgpack"
    with (
        llmreplay.cassette(path, mode="record"),
        httpx2.Client(transport=httpx2.MockTransport(answer)) as client,
    ):
        client.post("http://127.0.0.1:9/v1/chat/completions", json=body("z"))
    with llmreplay.cassette(path, mode="replay") as cas:
        url = "http://127.0.0.1:9/v1/chat/completions"
        if stack in ("httpx2", "httpx"):
            module: Any = httpx2 if stack == "httpx2" else httpx
            with module.Client() as c:
                r = c.post(url, json=body("z"))
                got, multi = r.json(), r.headers.get_list("x-multi")
        elif stack == "aiohttp":

            async def run() -> tuple[Any, list[str]]:
                async with aiohttp.ClientSession() as s, s.post(url, json=body("z")) as r:
                    return await r.json(), r.headers.getall("x-multi")

            got, multi = asyncio.run(run())
        elif stack == "requests":
            r2 = requests.post(url, json=body("z"))
            got, multi = r2.json(), r2.raw.headers.getlist("x-multi")
        else:
            r3 = urllib3.request("POST", url, json=body("z"))
            got, multi = r3.json(), r3.headers.getlist("x-multi")
    assert reply_text(got) == "zipped"
    assert multi == ["one", "two"]
    assert cas.stats.played == 1
    (item,) = cas.interactions
    assert dict(item.response.headers)["content-encoding"] == "gzip"  # stored raw


def test_explicit_wiring_of_a_legacy_httpx_client(server: LoopbackServer, tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    with httpx.Client(transport=cas.httpx_transport(), headers=HEADERS) as client:
        r = client.post(server.url + "/chat/completions", json=body("wired"))
    cas.save()
    assert reply_text(r.json()) == "echo: wired"
    assert r.extensions["llmreplay"]["source"] == "upstream"
    server.stop()
    replay = llmreplay.cassette(path)

    async def run() -> Any:
        async with httpx.AsyncClient(transport=replay.httpx_transport()) as client:
            return await client.post(server.url + "/chat/completions", json=body("wired"))

    again = asyncio.run(run())
    assert again.json() == r.json()
    assert again.extensions["llmreplay"]["source"] == "cassette"
    assert KEY.encode() not in path.read_bytes()
    assert len(server.requests) == 1


LAZY = """
import sys
import llmreplay
stacks = {"httpx", "aiohttp", "urllib3", "requests"}
assert not stacks & set(sys.modules), stacks & set(sys.modules)
from tests.server import start_server
server = start_server()
with llmreplay.cassette(sys.argv[1], mode="record") as cas:
    import httpx  # first imported inside the block: captured all the same
    httpx.post(server.url + "/chat/completions", json={"model": "m", "messages": []})
assert cas.stats.recorded == 1, cas.stats
assert len(server.requests) == 1
server.stop()
print("ok")
"""


def test_stacks_are_imported_only_when_capture_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LAZY, str(tmp_path / "c.msgpack")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_urllib3_bodies_of_every_kind_are_keyed_by_their_bytes(
    server: LoopbackServer, tmp_path: Path
) -> None:
    import io

    url = server.url + "/chat/completions"
    raw = json.dumps(body("any body")).encode()

    def kinds() -> list[Any]:
        # bytes, str, a file, and an iterable (sent chunked, as urllib3 does with one)
        return [raw, raw.decode(), io.BytesIO(raw), iter([raw[:10], raw[10:]])]

    path = tmp_path / "c.msgpack"
    with llmreplay.cassette(path, mode="record") as cas, urllib3.PoolManager() as pool:
        replies = [pool.request("POST", url, body=kind, headers=HEADERS).json() for kind in kinds()]
    assert {reply_text(r) for r in replies} == {"echo: any body"}
    assert [seen.body for seen in server.requests] == [raw] * 4  # what went out is intact
    assert cas.stats.recorded == 4
    server.stop()
    with llmreplay.cassette(path) as cas, urllib3.PoolManager() as pool:
        again = [pool.request("POST", url, body=kind, headers=HEADERS).json() for kind in kinds()]
    assert again == replies
    assert cas.stats.played == 4


def test_only_supported_versions_of_a_stack_are_patched() -> None:
    from llmreplay._stacks import MINIMUM, available, supported

    assert all(available(stack) for stack in MINIMUM)  # the dev extra's versions
    # urllib3 1.26's _make_request and aiohttp 3.11 (no client middlewares) are left alone:
    # patching them would break their requests, inside a cassette or not.
    assert not supported("1.26.20", MINIMUM["urllib3"])
    assert not supported("3.11.18", MINIMUM["aiohttp"])
    assert supported("2.0.0", MINIMUM["urllib3"])
    assert supported("3.12.0rc1", MINIMUM["aiohttp"])
    assert supported("0.28.1", MINIMUM["httpx"])
