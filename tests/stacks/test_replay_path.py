"""The replay path for bytes seen before (``Cassette._replay_seen``: no request object, no
plan) answers exactly as the planned path does, on every stack: status, repeated headers,
cookies, body, stream lines and extensions; and it is taken only when nothing but a
recording can answer. urllib3 responses replayed this way still give their connection back
to the pool, and the stack version check reads package metadata once per process.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
import requests.adapters
import urllib3
import urllib3.exceptions
from urllib3.exceptions import EmptyPoolError

import llmreplay
from llmreplay import _format, _stacks
from llmreplay._cassette import Cassette, _raw_key
from llmreplay._format import RecordedResponse
from llmreplay.faults import PASS
from tests.server import LoopbackServer
from tests.stacks.clients import body, sse_text

STACKS = ("httpx2", "httpx", "aiohttp", "requests", "urllib3")
ORIGIN = "http://127.0.0.1:9"
URL = ORIGIN + "/v1/chat/completions"
SENT = {"content-type": "application/json"}
EVENTS = [b'data: {"choices":[{"delta":{"content":"stre"}}]}\n\n', b"data: [DONE]\n\n"]


def _answer(request: httpx2.Request) -> httpx2.Response:
    """Upstream: a JSON answer with repeated headers, or an event stream."""
    if b'"stream"' in request.content:
        head = [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")]
        return httpx2.Response(200, headers=head, stream=httpx2.ByteStream(b"".join(EVENTS)))
    head = [("content-type", "application/json"), ("x-multi", "one"), ("x-multi", "two")]
    return httpx2.Response(200, headers=head, json={"choices": [{"message": {"content": "hi"}}]})


def _record(path: Path) -> None:
    with (
        llmreplay.cassette(path, mode="record"),
        httpx2.Client(transport=httpx2.MockTransport(_answer), headers=SENT) as client,
    ):
        client.post(URL, json=body("plain"))
        with client.stream("POST", URL, json=body("streamed", stream=True)) as r:
            r.read()
    # Recording drops set-cookie (a session credential); a cassette written another way
    # (imported, edited) may hold one, and every stack's cookie jar must then receive it.
    items, match = _format.decode(path.read_bytes(), path)
    assert all(k != "set-cookie" for k, _ in items[0].response.headers)
    items[0].response.headers.append(("set-cookie", "session=abc; Path=/"))
    path.write_bytes(_format.encode(items, match))


def _fetch(stack: str, stream: bool) -> dict[str, Any]:
    """One request through ``stack``'s bare client: what its caller sees of the answer."""
    payload = body("streamed" if stream else "plain", stream)
    seen: dict[str, Any] = {}
    if stack in ("httpx2", "httpx"):
        module: Any = httpx2 if stack == "httpx2" else httpx
        with module.Client(headers=SENT) as client:
            with client.stream("POST", URL, json=payload) as r:
                seen["text"] = sse_text(r.iter_lines()) if stream else r.read().decode()
            seen.update(
                status=r.status_code,
                headers=r.headers.multi_items(),
                source=r.extensions["llmreplay"]["source"],
                cookies=dict(client.cookies),
            )
        return seen
    if stack == "aiohttp":

        async def run() -> None:
            jar = aiohttp.CookieJar(unsafe=True)  # by default it refuses IP hosts' cookies
            async with aiohttp.ClientSession(headers=SENT, cookie_jar=jar) as session:
                async with session.post(URL, json=payload) as r:
                    lines = [line async for line in r.content] if stream else None
                    seen["text"] = sse_text(lines) if lines is not None else await r.text()
                    seen.update(status=r.status, headers=list(r.headers.items()))
                seen["cookies"] = {c.key: c.value for c in session.cookie_jar}

        asyncio.run(run())
        return seen
    if stack == "requests":
        with requests.Session() as session:
            r2 = session.post(URL, json=payload, headers=SENT, stream=stream)
            seen["text"] = sse_text(r2.iter_lines()) if stream else r2.text
            seen.update(
                status=r2.status_code,
                headers=list(r2.raw.headers.items()),
                cookies=session.cookies.get_dict(),
            )
        return seen
    with urllib3.PoolManager(headers=SENT) as pool:
        r3 = pool.request("POST", URL, json=payload, preload_content=not stream)
        seen["text"] = sse_text(r3.read().splitlines()) if stream else r3.data.decode()
        seen.update(status=r3.status, headers=list(r3.headers.items()))
        r3.release_conn()
    return seen


@pytest.mark.parametrize("stack", STACKS)
def test_a_seen_replay_answers_as_the_planned_replay_does(
    stack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.msgpack"
    _record(path)
    plans: list[object] = []
    planned = Cassette._plan

    def counted(self: Cassette, request: httpx2.Request) -> Any:
        plans.append(request)
        return planned(self, request)

    monkeypatch.setattr(Cassette, "_plan", counted)
    results = {}
    # Each request is sent twice: the first time its bytes may be new (requests and urllib3
    # serialise JSON unlike the httpx2 client that recorded it), the second time they are
    # seen. faults=[PASS] * 4, a schedule that injects nothing but must see every request,
    # makes every request take the planned path.
    for name, faults in (("seen", None), ("planned", [PASS] * 4)):
        with llmreplay.cassette(path, faults=faults, allow_repeats=True) as cas:
            _fetch(stack, stream=False), _fetch(stack, stream=True)
            plans.clear()
            results[name] = (_fetch(stack, stream=False), _fetch(stack, stream=True))
        assert cas.stats.played == 4, name
        assert len(plans) == (0 if name == "seen" else 2), name
    assert results["seen"] == results["planned"]
    plain, streamed = results["seen"]
    assert plain["status"] == 200 and '"hi"' in plain["text"]
    assert [v for k, v in plain["headers"] if k.lower() == "x-multi"] == ["one", "two"]
    if stack != "urllib3":  # urllib3 keeps no cookie jar; every other stack got the cookie
        assert plain["cookies"] == {"session": "abc"}
    assert streamed["text"] == "stre"


@pytest.mark.parametrize(
    "options",
    [{"faults": [PASS]}, {"realtime": True}, {"ignore_hosts": ["example.invalid"]}],
    ids=["faults", "realtime", "ignore_hosts"],
)
def test_only_a_recording_may_answer_seen_bytes(options: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    _record(path)
    payload = body("plain")
    seen = _raw_key(
        "POST", URL, list(SENT.items()), httpx2.Request("POST", URL, json=payload).content
    )
    unseen = _raw_key("POST", URL, list(SENT.items()), b"{}")
    with llmreplay.cassette(path) as plain:
        assert plain._replay_seen(unseen) is None
        assert plain._replay_seen(seen) is not None  # the recorded bytes: played from here
    assert plain.stats.played == 1
    with llmreplay.cassette(path, **options) as cas, httpx2.Client(headers=SENT) as client:
        # each of these needs the plan: a fault schedule to consult, pacing, a host rule
        assert cas._replay_seen(seen) is None
        assert client.post(URL, json=payload).json()["choices"][0]["message"]["content"] == "hi"
    assert cas.stats.played == 1
    for mode in ("record", "live"):  # modes that never play a recording
        with llmreplay.cassette(path, mode=mode) as other:
            assert other._replay_seen(seen) is None
        path.unlink(missing_ok=True)  # record rewrote it empty: start again
        _record(path)


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "streamed"])
def test_urllib3_replays_give_the_connection_back_to_a_blocking_pool(
    preload: bool, tmp_path: Path
) -> None:
    path = tmp_path / "c.msgpack"
    _record(path)
    data = httpx2.Request("POST", URL, json=body("plain")).content
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1, block=True)
    with llmreplay.cassette(path, allow_repeats=True) as cas:
        for _ in range(3):  # a connection never given back blocks the next request
            r = _sent(pool, data, preload=preload)
            assert b'"hi"' in (r.data if preload else r.read())
            assert pool.pool is not None and pool.pool.qsize() == 1  # back in the pool
    assert cas.stats.played == 3
    pool.close()


def test_a_connection_never_given_back_would_be_seen(tmp_path: Path) -> None:
    """The check above can fail: a pool whose connection is held raises EmptyPoolError."""
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1, block=True)
    held = pool._get_conn()
    with pytest.raises(EmptyPoolError):
        pool._get_conn(timeout=0.05)
    pool._put_conn(held)
    pool.close()


def test_a_stacks_version_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    version = importlib.metadata.version

    def counting(name: str) -> str:
        reads.append(name)
        return version(name)

    monkeypatch.setattr(importlib.metadata, "version", counting)
    monkeypatch.setattr(_stacks, "_versions", {})
    for _ in range(3):
        assert all(_stacks.available(stack) for stack in _stacks.LIBRARIES)
    assert sorted(reads) == sorted(_stacks.LIBRARIES.values())


# Recorded answers the seen path must not play differently on urllib3 and requests: an empty
# body (a socket read once, then closed: the pool gets its connection back), a body shorter
# than its content-length (reported as urllib3 reports a short read) and header names in
# their recorded case (an imported or edited cassette).
ODD = {
    "empty": RecordedResponse(204, [("x-a", "b")], body=b""),
    "short": RecordedResponse(200, [("content-length", "100")], body=b'{"a":1}'),
    "cased": RecordedResponse(
        200, [("Content-Type", "application/json"), ("X-Id", "a")], body=b"{}"
    ),
}


def _with_answer(path: Path, answer: RecordedResponse) -> bytes:
    """A cassette whose one recording answers ``answer``; the request's bytes."""
    _record(path)
    items, match = _format.decode(path.read_bytes(), path)
    items[0].response = answer
    path.write_bytes(_format.encode(items[:1], match))
    return items[0].request.body


def _sent(
    pool: urllib3.HTTPConnectionPool, data: bytes, *, preload: bool = False, **options: Any
) -> Any:
    """The chat request through ``pool`` (its body left to read unless ``preload``); a pool
    with no connection to give fails within 2 s instead of hanging."""
    return pool.urlopen(
        "POST",
        "/v1/chat/completions",
        body=data,
        headers=SENT,
        preload_content=preload,
        pool_timeout=2,
        **options,
    )


def _through_blocking_pool(stack: str, data: bytes) -> list[Any]:
    """Three requests through a pool of one connection that blocks; what each read gave."""
    seen: list[Any] = []
    if stack == "requests":
        with requests.Session() as session:
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=1, pool_block=True)
            session.mount("http://", adapter)
            for _ in range(3):  # read as requests reads (whole, no close): what releases?
                try:
                    r = session.post(URL, data=data, headers=SENT, timeout=2)
                    seen.append((r.status_code, r.content, list(r.raw.headers.items())))
                except requests.exceptions.ChunkedEncodingError as exc:
                    seen.append((0, type(exc.args[0].args[1]).__name__, []))
                (key,) = adapter.poolmanager.pools.keys()  # the pool requests used
                pool = adapter.poolmanager.pools[key]
                back = pool.pool.qsize() if pool.pool is not None else None
                assert back == 1, "the connection was not given back: the next request hangs"
            seen.append(back)
        return seen
    pool3 = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1, block=True)
    for _ in range(3):
        r3 = _sent(pool3, data, retries=False)
        got: bytes | str
        try:
            got = b"".join(r3.stream(3, decode_content=False))
        except urllib3.exceptions.ProtocolError as exc:
            got = type(exc.args[1]).__name__  # IncompleteRead, as a short socket read gives
        seen.append((r3.status, got, list(r3.headers.items())))
        # no release_conn(): reading to the end gives the connection back, as on a socket
    seen.append(pool3.pool.qsize() if pool3.pool is not None else None)
    pool3.close()
    return seen


@pytest.mark.parametrize("answer", ODD)
@pytest.mark.parametrize("stack", ["requests", "urllib3"])
def test_odd_answers_play_alike_on_both_paths(stack: str, answer: str, tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    data = _with_answer(path, ODD[answer])
    results = {}
    for name, faults in (("seen", None), ("planned", [PASS] * 3)):
        with llmreplay.cassette(path, faults=faults, allow_repeats=True) as cas:
            results[name] = _through_blocking_pool(stack, data)
        assert cas.stats.played == 3
    assert results["seen"] == results["planned"]
    assert results["seen"][-1] == 1  # the one connection is back in the pool
    if answer == "cased":
        assert results["seen"][0][2][:2] == [("Content-Type", "application/json"), ("X-Id", "a")]
    if answer == "short":
        assert results["seen"][0][1] == "IncompleteRead"


def test_a_header_that_is_not_ascii_is_captured_as_sent(tmp_path: Path) -> None:
    """requests sends header text as latin-1 (http.client); capture must not refuse it."""
    path = tmp_path / "c.msgpack"
    upstream = httpx2.MockTransport(lambda r: httpx2.Response(200, json={"ok": 1}))
    sent = {**SENT, "x-user": "José"}
    with (
        llmreplay.cassette(path, mode="record") as rec,
        httpx2.Client(transport=rec.transport(upstream), headers=SENT) as client,
    ):
        client.post(URL, json=body("plain"), headers=[(b"x-user", "José".encode("latin-1"))])
    for faults in (None, [PASS]):
        with llmreplay.cassette(path, faults=faults) as cas:
            r = requests.post(URL, data=json.dumps(body("plain")).encode(), headers=sent)
            assert r.json() == {"ok": 1}
        assert cas.stats.played == 1


def test_a_cassette_dropped_frees_its_recordings(tmp_path: Path) -> None:
    """What an adapter works out about a recording lives with the cassette, not the process."""
    path = tmp_path / "c.msgpack"
    data = _with_answer(path, RecordedResponse(200, [("content-length", "7")], body=b'{"a":1}'))
    cas = llmreplay.cassette(path, allow_repeats=True)
    body = cas.interactions[0].response.body
    baseline = sys.getrefcount(body)
    with cas, urllib3.PoolManager() as pool:
        for _ in range(2):  # the second is a seen replay: its body handed over whole
            assert pool.request("POST", URL, body=data, headers=SENT).data == b'{"a":1}'
    assert cas.stats.played == 2
    del cas
    gc.collect()
    assert sys.getrefcount(body) < baseline  # nothing outside the cassette holds it


def test_a_recording_replaced_while_it_plays_is_played_as_it_is_now(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    data = _with_answer(path, RecordedResponse(200, [("content-length", "7")], body=b'{"v":1}'))
    with llmreplay.cassette(path, allow_repeats=True) as cas, urllib3.PoolManager() as pool:
        first = pool.request("POST", URL, body=data, headers=SENT).data
        response = cas.interactions[0].response
        response.body = b'{"v":2}'
        response.headers = [("content-length", "7"), ("x-new", "yes")]
        again = pool.request("POST", URL, body=data, headers=SENT)
    assert (first, again.data, again.headers.get("x-new")) == (b'{"v":1}', b'{"v":2}', "yes")


@pytest.mark.parametrize("stack", STACKS)
def test_a_response_header_that_is_not_ascii_replays_on_every_stack(
    stack: str, tmp_path: Path
) -> None:
    path = tmp_path / "c.msgpack"
    _with_answer(path, RecordedResponse(200, [("x-name", "José 日本")], body=b"{}"))
    seen = {}
    for name, faults in (("seen", None), ("planned", [PASS] * 4)):
        with llmreplay.cassette(path, faults=faults, allow_repeats=True):
            _fetch(stack, stream=False)  # bytes first sent: they are seen from now on
            headers = _fetch(stack, stream=False)["headers"]
        seen[name] = [v for k, v in headers if k.lower() == "x-name"]
    assert seen["seen"] == seen["planned"] == ["José 日本"]


def test_urllib3_header_values_are_taken_as_http_client_takes_them(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """An integer is sent as its digits; None fails, as it fails on the way to a socket."""
    path = tmp_path / "c.msgpack"
    url = server.origin + "/v1/chat/completions"
    data = httpx2.Request("POST", url, json=body("plain")).content
    counted: Any = {**SENT, "x-retry": 3}  # urllib3 takes what http.client takes
    with llmreplay.cassette(path, mode="record") as rec, urllib3.PoolManager() as pool:
        assert pool.request("POST", url, body=data, headers=counted).status == 200
    assert rec.stats.recorded == 1
    server.stop()
    broken: Any = {**SENT, "x-trace": None}
    for faults in (None, [PASS] * 3):
        with (
            llmreplay.cassette(path, faults=faults, allow_repeats=True),
            urllib3.PoolManager() as pool,
        ):
            for _ in range(2):
                assert pool.request("POST", url, body=data, headers=counted).status == 200
            with pytest.raises(TypeError, match="x-trace"):
                pool.request("POST", url, body=data, headers=broken)
    assert len(server.requests) == 1


def test_urllib3_reads_a_sized_body_as_a_socket_gives_it(tmp_path: Path) -> None:
    """Reading exactly content-length bytes gives the connection back (as http.client closes
    then); read1() reads; on both paths."""
    path = tmp_path / "c.msgpack"
    payload = b'{"a":"' + b"x" * 50 + b'"}'
    answer = RecordedResponse(200, [("content-length", str(len(payload)))], body=payload)
    data = _with_answer(path, answer)
    for faults in (None, [PASS] * 4):
        pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, maxsize=1, block=True)
        with llmreplay.cassette(path, faults=faults, allow_repeats=True):
            for read in ("exact", "read1"):
                r = _sent(pool, data)
                got = r.read(len(payload)) if read == "exact" else r.read1(len(payload))
                assert got == payload, (faults, read)
                if read == "exact":
                    assert pool.pool is not None and pool.pool.qsize() == 1, faults
                r.release_conn()
        pool.close()
