"""Per-stack replay rows for ``benchmarks/bench.py``: legacy httpx, aiohttp, requests and
urllib3, each against its own floor and against vcrpy on the same stack.

Every call builds a chat request, sends it and parses the JSON answer with the stack's own
client (one client, reused). The floor is that client over a canned in-memory answer, at the
cheapest point each stack offers (no socket anywhere):

- httpx: ``httpx.Client(transport=httpx.MockTransport(canned))``.
- requests and urllib3: urllib3's ``HTTPConnectionPool._make_request`` answering the canned
  bytes (where a pool would send on a connection; ``requests`` sits on it).
- aiohttp: a client middleware that returns a ``ClientResponse`` over the canned bytes (built
  with the adapter's own response builder, so the floor has that cost too).

llmreplay replays the same calls from a cassette (``with llmreplay.cassette(...)`` around the
same client: implicit capture); vcrpy replays the same interactions in its own format.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import requests
import urllib3
import vcr
from urllib3.connectionpool import HTTPConnectionPool

import llmreplay

URL = "http://127.0.0.1:9/v1/chat/completions"
CANNED = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "a benchmark reply"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
).encode()
HEADERS = [("content-type", "application/json"), ("content-length", str(len(CANNED)))]


def payload(n: int) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"prompt {n}"}]}


def best(run: Callable[[list[int]], None], calls: list[int], repeats: int = 5) -> float:
    """Seconds per call: the best of ``repeats`` passes over ``calls``."""
    results = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run(calls)
        results.append((time.perf_counter() - start) / len(calls))
    return min(results)


def paired(
    floor_run: Callable[[list[int]], None],
    ours_run: Callable[[list[int]], None],
    cassette: llmreplay.Cassette,
    floor_setup: Callable[[], Any] | None,
    calls: list[int],
    rounds: int = 15,
) -> tuple[float, float]:
    """Seconds per call of the floor and of llmreplay, measured in alternating passes (so a
    machine busy with other work slows both alike), each the best of ``rounds``."""
    floors, ours = [], []
    for _ in range(rounds):
        gc.collect()
        with floor_setup() if floor_setup is not None else _nothing():
            start = time.perf_counter()
            floor_run(calls)
            floors.append((time.perf_counter() - start) / len(calls))
        gc.collect()
        with cassette:
            start = time.perf_counter()
            ours_run(calls)
            ours.append((time.perf_counter() - start) / len(calls))
    return min(floors), min(ours)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# -- one client per stack: run(calls) sends each call and parses the answer ---------------


def httpx_runner(transport: httpx.BaseTransport | None = None) -> Callable[[list[int]], None]:
    client = httpx.Client(transport=transport)

    def run(calls: list[int]) -> None:
        for n in calls:
            client.post(URL, json=payload(n)).json()

    return run


def groq_runner() -> Callable[[list[int]], None]:
    """The groq SDK (on httpx) with a MockTransport client: what an LLM app runs."""
    import groq

    http = httpx.Client(transport=httpx.MockTransport(_canned_httpx))
    client = groq.Groq(
        api_key="gsk-bench", base_url=URL.split("/v1/")[0], http_client=http, max_retries=0
    )

    def run(calls: list[int]) -> None:
        for n in calls:
            client.chat.completions.create(model="gpt-4o-mini", messages=payload(n)["messages"])

    return run


def requests_runner() -> Callable[[list[int]], None]:
    session = requests.Session()

    def run(calls: list[int]) -> None:
        for n in calls:
            session.post(URL, json=payload(n)).json()

    return run


def urllib3_runner() -> Callable[[list[int]], None]:
    pool = urllib3.PoolManager()
    headers = {"content-type": "application/json"}

    def run(calls: list[int]) -> None:
        for n in calls:
            body = json.dumps(payload(n)).encode()
            pool.request("POST", URL, body=body, headers=headers).json()

    return run


def aiohttp_runner(middlewares: tuple[Any, ...] = ()) -> Callable[[list[int]], None]:
    def run(calls: list[int]) -> None:
        async def go() -> None:
            async with aiohttp.ClientSession(middlewares=middlewares) as session:
                for n in calls:
                    async with session.post(URL, json=payload(n)) as r:
                        await r.json()

        asyncio.run(go())

    return run


# -- the floors --------------------------------------------------------------------------


def _canned_httpx(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers=HEADERS, content=CANNED)


@contextmanager
def canned_urllib3() -> Iterator[None]:
    """urllib3 pools answer the canned bytes where they would send on a connection."""
    import io

    original = HTTPConnectionPool._make_request

    def answer(self: Any, conn: Any, method: str, url: str, *args: Any, **kw: Any) -> Any:
        return urllib3.HTTPResponse(
            body=io.BytesIO(CANNED),
            headers=dict(HEADERS),
            status=200,
            preload_content=kw.get("preload_content", True),
            decode_content=kw.get("decode_content", True),
            pool=self,
            connection=kw.get("response_conn"),
            request_method=method,
            request_url=url,
        )

    HTTPConnectionPool._make_request = answer  # type: ignore[method-assign]
    try:
        yield
    finally:
        HTTPConnectionPool._make_request = original  # type: ignore[method-assign]


async def canned_aiohttp(req: Any, handler: Any) -> Any:
    from llmreplay._stacks.aiohttp import _native

    answer = httpx2.Response(200, headers=HEADERS, stream=httpx2.ByteStream(CANNED))
    return _native(answer, req, 0, True)


# -- vcrpy -------------------------------------------------------------------------------


def _same_json(one: Any, two: Any) -> bool:
    def parsed(body: Any) -> Any:
        if isinstance(body, dict):  # vcrpy keeps aiohttp's json= argument as it was given
            return body
        return json.loads(body) if body else None

    return bool(parsed(one.body) == parsed(two.body))


def vcr_cassette(path: Path, source: Path) -> None:
    from vcr.request import Request as VcrRequest
    from vcr.serialize import serialize
    from vcr.serializers import jsonserializer

    requests_, responses = [], []
    for item in llmreplay.cassette(source).interactions:
        req = item.request
        requests_.append(VcrRequest(req.method, req.url, req.body, dict(req.headers)))
        responses.append(
            {
                "status": {"code": item.response.status, "message": "OK"},
                "headers": {k: [v] for k, v in item.response.headers},
                "body": {"string": item.response.content},
            }
        )
    path.write_text(serialize({"requests": requests_, "responses": responses}, jsonserializer))


def build(path: Path, size: int) -> None:
    """``size`` chat interactions recorded through httpx2 (a MockTransport upstream)."""

    def canned(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers=HEADERS, content=CANNED)

    with (
        llmreplay.cassette(path, mode="record"),
        httpx2.Client(transport=httpx2.MockTransport(canned)) as client,
    ):
        for n in range(size):
            client.post(URL, json=payload(n))


STACKS = ("groq", "httpx", "aiohttp", "requests", "urllib3")


def bench_stacks(
    folder: Path, size: int, sample: int, stacks: tuple[str, ...] = STACKS
) -> list[dict[str, Any]]:
    path = folder / "stacks.msgpack"
    build(path, size)
    vpath = folder / "stacks.json"
    vcr_cassette(vpath, path)
    calls = [(i * 7919) % size for i in range(sample)]
    few = calls[: max(20, sample // 10)]
    calls = calls[:100]  # per pass; passes alternate floor and llmreplay
    rows = []
    for stack in stacks:
        source, vsource = path, vpath
        setup: Callable[[], Any] | None = None
        if stack == "groq":
            source, vsource = folder / "groq.msgpack", folder / "groq.json"
            with llmreplay.cassette(source, mode="record"):
                groq_runner()(list(range(size)))
            vcr_cassette(vsource, source)
            floor_run, ours_run, vcr_run = groq_runner(), groq_runner(), groq_runner()
        elif stack == "httpx":
            floor_run = httpx_runner(httpx.MockTransport(_canned_httpx))
            ours_run = httpx_runner(httpx.MockTransport(_canned_httpx))
            vcr_run = httpx_runner()
        elif stack == "aiohttp":
            floor_run = aiohttp_runner((canned_aiohttp,))
            ours_run = vcr_run = aiohttp_runner()
        else:
            runner = requests_runner if stack == "requests" else urllib3_runner
            floor_run, ours_run, vcr_run = runner(), runner(), runner()
            setup = canned_urllib3
        cas = llmreplay.cassette(source, allow_repeats=True)
        floor, ours = paired(floor_run, ours_run, cas, setup, calls)
        assert cas.stats.played >= len(calls), (stack, cas.stats)
        # vcrpy's own body matcher tells aiohttp's JSON body apart from the recorded bytes;
        # a JSON-equality matcher (what llmreplay's key does) treats every stack alike.
        my_vcr = vcr.VCR(serializer="json", match_on=["method", "path", "json_body"])
        my_vcr.register_matcher("json_body", _same_json)
        with my_vcr.use_cassette(str(vsource), record_mode="none", allow_playback_repeats=True):
            theirs = best(vcr_run, few, 1)
        rows.append(_row(stack, size, floor, ours, theirs))
    return rows


def _row(stack: str, size: int, floor: float, ours: float, theirs: float) -> dict[str, Any]:
    return {
        "stack": stack,
        "size": size,
        "floor_ms": floor * 1e3,
        "llmreplay_ms": ours * 1e3,
        "llmreplay_ratio": ours / floor,
        "vcrpy_ms": theirs * 1e3,
        "vcrpy_ratio": theirs / floor,
    }


FLOORS = {
    "groq": "groq SDK on httpx.Client + MockTransport",
    "httpx": "httpx.Client + MockTransport",
    "aiohttp": "ClientSession + canned middleware",
    "requests": "Session + canned urllib3 pool",
    "urllib3": "PoolManager + canned pool",
}


def report_stacks(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        f"| replay per stack, per call ({rows[0]['size']:,} interactions) | floor | "
        "llmreplay | llmreplay / floor | vcrpy / floor |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['stack']} ({FLOORS[row['stack']]}) | {row['floor_ms']:.3f} ms "
            f"| {row['llmreplay_ms']:.3f} ms | {row['llmreplay_ratio']:.2f}x "
            f"| {row['vcrpy_ratio']:.2f}x |"
        )
    return lines


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = bench_stacks(Path(tmp), 1000, 500, tuple(sys.argv[1:]) or STACKS)
    sys.stdout.write("\n".join(report_stacks(out)) + "\n")
