"""Each mode, sync and async, through ``CassetteTransport`` over a MockTransport upstream."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx2
import msgpack
import pytest

import llmreplay
from tests.helpers import close, resolve

pytestmark = pytest.mark.anyio
URL = "https://api.openai.com/v1/chat/completions"


class Upstream:
    """Answers every request with a fresh number, so replays are told apart from live calls."""

    def __init__(self) -> None:
        self.calls: list[httpx2.Request] = []
        self._numbers = itertools.count(1)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls.append(request)
        return httpx2.Response(200, json={"n": next(self._numbers)})


def _client(sync: bool, cas: llmreplay.Cassette, upstream: Upstream) -> Any:
    transport = cas.transport(httpx2.MockTransport(upstream))
    return httpx2.Client(transport=transport) if sync else httpx2.AsyncClient(transport=transport)


async def _post(client: Any, body: dict[str, Any], url: str = URL) -> httpx2.Response:
    response: httpx2.Response = await resolve(client.post(url, json=body))
    return response


def _stored(path: Path) -> list[dict[str, Any]]:
    return msgpack.unpackb(path.read_bytes())["interactions"]  # type: ignore[no-any-return]


async def test_live_forwards_and_writes_nothing(tmp_path: Path, sync: bool) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="live")
    client = _client(sync, cas, upstream)
    first = await _post(client, {"q": 1})
    second = await _post(client, {"q": 1})
    cas.save()
    assert [first.json(), second.json()] == [{"n": 1}, {"n": 2}]
    assert first.extensions["llmreplay"]["source"] == "upstream"
    assert cas.stats == llmreplay.Stats(live=2)
    assert not path.exists()
    await close(client)


async def test_record_then_replay_in_recorded_order(tmp_path: Path, sync: bool) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas, upstream)
    for body in ({"q": 1}, {"q": 1}, {"q": 2}):
        await _post(client, body)
    cas.save()
    await close(client)
    assert len(_stored(path)) == 3

    replay = llmreplay.cassette(path)
    client = _client(sync, replay, upstream)
    got = [(await _post(client, body)).json() for body in ({"q": 1}, {"q": 2}, {"q": 1})]
    assert got == [{"n": 1}, {"n": 3}, {"n": 2}]
    assert len(upstream.calls) == 3
    with pytest.raises(llmreplay.CassetteMiss, match="already played") as info:
        await _post(client, {"q": 1})
    assert info.value.reason.startswith("all 2 recorded response(s)")
    assert replay.stats == llmreplay.Stats(played=3, missed=1)  # the exhausted one
    await close(client)


async def test_allow_repeats_repeats_the_last_response(tmp_path: Path, sync: bool) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas, upstream)
    await _post(client, {"q": 1})
    await _post(client, {"q": 1})
    cas.save()
    replay = llmreplay.cassette(path, allow_repeats=True)
    client = _client(sync, replay, upstream)
    got = [(await _post(client, {"q": 1})).json()["n"] for _ in range(4)]
    assert got == [1, 2, 2, 2]
    await close(client)


async def test_replay_miss_names_cassette_request_and_closest(tmp_path: Path, sync: bool) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas, upstream)
    await _post(client, {"model": "gpt-4o-mini", "messages": [{"content": "hello"}]})
    await _post(client, {"input": "x"}, url="https://api.openai.com/v1/embeddings")
    cas.save()

    client = _client(sync, llmreplay.cassette(path), upstream)
    with pytest.raises(llmreplay.CassetteMiss) as info:
        await _post(client, {"model": "gpt-4o-mini", "messages": [{"content": "hullo"}]})
    miss = info.value
    assert miss.path == str(path)
    assert (miss.method, miss.url, miss.mode) == ("POST", "/v1/chat/completions", "replay")
    assert miss.closest == "POST /v1/chat/completions"
    assert '-body:    "content": "hello"' in miss.diff
    assert '+body:    "content": "hullo"' in miss.diff
    assert "mode='record'" in str(miss) and "--llm-mode=record" in str(miss)
    assert len(upstream.calls) == 2  # the miss reached no network
    await close(client)


async def test_auto_plays_hits_and_records_misses(tmp_path: Path, sync: bool) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    first = llmreplay.cassette(path, mode="auto")
    client = _client(sync, first, upstream)
    assert (await _post(client, {"q": 1})).json() == {"n": 1}
    first.save()
    assert first.stats == llmreplay.Stats(recorded=1)

    second = llmreplay.cassette(path, mode="auto")
    client = _client(sync, second, upstream)
    hit = await _post(client, {"q": 1})
    miss = await _post(client, {"q": 2})
    assert (hit.json(), miss.json()) == ({"n": 1}, {"n": 2})
    assert hit.extensions["llmreplay"]["source"] == "cassette"
    assert miss.extensions["llmreplay"]["source"] == "upstream"
    second.save()
    assert second.stats == llmreplay.Stats(played=1, recorded=1)
    assert [json.loads(i["request"]["body"]) for i in _stored(path)] == [{"q": 1}, {"q": 2}]
    await close(client)


async def test_record_replaces_what_it_re_records_and_keeps_the_rest(
    tmp_path: Path, sync: bool
) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = _client(sync, cas, upstream)
    await _post(client, {"q": 1})
    await _post(client, {"q": 2})
    cas.save()

    again = llmreplay.cassette(path, mode="record")
    client = _client(sync, again, upstream)
    await _post(client, {"q": 1})
    again.save()
    stored = {
        json.loads(i["request"]["body"])["q"]: json.loads(i["response"]["body"])["n"]
        for i in _stored(path)
    }
    assert stored == {1: 3, 2: 2}
    await close(client)


async def test_ignore_and_match_on_shape_the_key(tmp_path: Path, sync: bool) -> None:
    upstream, path = Upstream(), tmp_path / "c.msgpack"
    cas = llmreplay.cassette(path, mode="record", ignore=["user", "metadata.trace"])
    client = _client(sync, cas, upstream)
    await _post(client, {"q": 1, "user": "alice", "metadata": {"trace": "a", "keep": 1}})
    cas.save()

    replay = llmreplay.cassette(path, ignore=["user", "metadata.trace"])
    client = _client(sync, replay, upstream)
    got = await _post(client, {"metadata": {"keep": 1, "trace": "b"}, "user": "bob", "q": 1})
    assert got.json() == {"n": 1}
    with pytest.raises(llmreplay.CassetteMiss):
        await _post(client, {"q": 1, "user": "bob", "metadata": {"trace": "b", "keep": 2}})

    # Other settings than the ones recorded with: keys are made again, on the fly.
    by_path = llmreplay.cassette(path, match_on=["method", "path"])
    client = _client(sync, by_path, upstream)
    assert (await _post(client, {"anything": True})).json() == {"n": 1}
    host_too = llmreplay.cassette(path, match_on=["method", "host", "path"])
    client = _client(sync, host_too, upstream)
    with pytest.raises(llmreplay.CassetteMiss):
        await _post(client, {}, url="https://example.openai.azure.com/v1/chat/completions")
    await close(client)


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(llmreplay.ConfigError, match="'replya' from cassette"):
        llmreplay.cassette(tmp_path / "c.msgpack", mode="replya")
    with pytest.raises(llmreplay.ConfigError, match="'bodyy' from match_on="):
        llmreplay.cassette(tmp_path / "c.msgpack", match_on=["bodyy"])


async def test_binary_and_gzip_bodies_stay_raw_bytes(tmp_path: Path, sync: bool) -> None:
    import gzip

    payload = gzip.compress(b'{"ok": true}', mtime=0)

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("speech"):
            return httpx2.Response(200, content=bytes(range(256)))
        return httpx2.Response(200, content=payload, headers={"content-encoding": "gzip"})

    path = tmp_path / "c.msgpack"
    for mode in ("record", "replay"):
        cas = llmreplay.cassette(path, mode=mode)
        transport = cas.transport(httpx2.MockTransport(handler))
        client = (
            httpx2.Client(transport=transport) if sync else httpx2.AsyncClient(transport=transport)
        )
        speech = await resolve(client.post("https://api.openai.com/v1/audio/speech"))
        data = await resolve(client.post("https://api.openai.com/v1/data"))
        assert speech.content == bytes(range(256))
        assert data.json() == {"ok": True}
        cas.save()
        await close(client)
    bodies = [i["response"]["body"] for i in _stored(path)]
    assert bodies == [bytes(range(256)), payload]


def test_identical_bytes_skip_the_json_canonicalisation_and_still_match_like_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmreplay._match import KeySpec

    path = tmp_path / "c.msgpack"
    upstream = Upstream()
    recorder = llmreplay.cassette(path, mode="record")
    with httpx2.Client(transport=recorder.transport(httpx2.MockTransport(upstream))) as client:
        client.post(URL, content=b'{"model": "m", "input": "a"}')
        client.post(URL, content=b'{"model": "m", "input": "b"}')
    recorder.save()

    made: list[str] = []
    original = KeySpec.key

    def counted(self: KeySpec, request: Any) -> str:
        made.append(request.url)
        return original(self, request)

    monkeypatch.setattr(KeySpec, "key", counted)
    replay = llmreplay.cassette(path)
    with httpx2.Client(transport=replay.transport()) as client:
        same = client.post(URL, content=b'{"model": "m", "input": "a"}').json()
        reordered = client.post(URL, content=b'{"input":"b","model":"m"}').json()
    assert (same, reordered) == ({"n": 1}, {"n": 2})
    assert len(made) == 1  # only the re-ordered body was made canonical
    # Headers in the key: no shortcut, every request is made canonical.
    made.clear()
    headers = llmreplay.cassette(path, match_on=["method", "path", "body", "headers"])
    with (
        httpx2.Client(transport=headers.transport()) as client,
        pytest.raises(llmreplay.CassetteMiss),  # the stored requests had no x-a header
    ):
        client.post(URL, content=b'{"model": "m", "input": "a"}', headers={"x-a": "1"})
    assert len(made) >= 1 and not headers._raw_keys_apply
