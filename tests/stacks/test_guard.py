"""The seal on every stack: under the pytest plugin, an LLM-shaped request outside every
cassette is refused before anything is sent, whichever HTTP stack or SDK sends it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server import LoopbackServer

OUTSIDE = """
import asyncio, json, os

import aiohttp, groq, httpx, pytest, requests, urllib3

import llmreplay

URL = os.environ["STACKS_LLM_URL"] + "/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "unrecorded"}]}


def refused(exc):
    while exc is not None and not isinstance(exc, llmreplay.RequestRefused):
        exc = exc.__cause__ or exc.__context__
    return exc


def test_httpx():
    with pytest.raises(llmreplay.RequestRefused, match="outside every cassette"):
        httpx.post(URL, json=BODY)


def test_httpx_async():
    async def run():
        async with httpx.AsyncClient() as client:
            await client.post(URL, json=BODY)

    with pytest.raises(llmreplay.RequestRefused):
        asyncio.run(run())


def test_aiohttp():
    async def run():
        async with aiohttp.ClientSession() as session, session.post(URL, json=BODY) as r:
            await r.read()

    with pytest.raises(llmreplay.RequestRefused):
        asyncio.run(run())


def test_requests():
    with pytest.raises(llmreplay.RequestRefused):
        requests.post(URL, json=BODY)


def test_urllib3():
    with pytest.raises(llmreplay.RequestRefused):
        urllib3.request("POST", URL, body=json.dumps(BODY).encode())


def test_groq():
    client = groq.Groq(api_key="gsk", base_url=URL.rsplit("/v1/", 1)[0], max_retries=2)
    with pytest.raises(groq.APIStatusError, match="outside every cassette") as info:
        client.chat.completions.create(model="m", messages=BODY["messages"])
    assert isinstance(info.value.response.extensions["llmreplay_error"], llmreplay.RequestRefused)
"""


def test_every_stack_is_refused_outside_a_cassette(
    pytester: pytest.Pytester, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKS_LLM_URL", server.url)
    pytester.makepyfile(test_outside=OUTSIDE)
    for mode in ("replay", "record"):
        result = pytester.runpytest(f"--llm-mode={mode}")
        result.assert_outcomes(passed=6)
    assert server.requests == []  # nothing reached the server, in any mode


INSIDE = """
import asyncio, json, os

import aiohttp, httpx, requests, urllib3

URL = os.environ["STACKS_LLM_URL"] + "/chat/completions"


def body(name):
    return {"model": "m", "messages": [{"role": "user", "content": name}]}


def text(payload):
    return payload["choices"][0]["message"]["content"]


def test_httpx(llm_cassette):
    assert text(httpx.post(URL, json=body("httpx")).json()) == "echo: httpx"


def test_aiohttp(llm_cassette):
    async def run():
        async with aiohttp.ClientSession() as s, s.post(URL, json=body("aiohttp")) as r:
            return await r.json()

    assert text(asyncio.run(run())) == "echo: aiohttp"


def test_requests(llm_cassette):
    assert text(requests.post(URL, json=body("requests")).json()) == "echo: requests"


def test_urllib3(llm_cassette):
    data = json.dumps(body("urllib3")).encode()
    assert text(urllib3.request("POST", URL, body=data).json()) == "echo: urllib3"
"""


def test_the_plugins_cassettes_capture_every_stack(
    pytester: pytest.Pytester, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKS_LLM_URL", server.url)
    pytester.makepyfile(test_inside=INSIDE)
    pytester.runpytest("--llm-mode=record").assert_outcomes(passed=4)
    assert len(server.requests) == 4
    assert len(list(pytester.path.rglob("*.msgpack"))) == 4
    server.stop()
    pytester.runpytest().assert_outcomes(passed=4)  # replay, the server stopped
    assert len(server.requests) == 4


def test_vcrpy_cassettes_on_every_stack_are_left_to_vcrpy(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # Given the guard on (this suite runs under the plugin) and vcrpy patching the stacks
    import asyncio
    import json

    import aiohttp
    import httpx
    import requests
    import urllib3
    import vcr

    from llmreplay import _patch
    from tests.stacks.clients import body, reply_text

    assert _patch.guarded()
    url = server.url + "/chat/completions"

    def calls() -> list[str]:
        async def aio() -> object:
            async with aiohttp.ClientSession() as s, s.post(url, json=body("aiohttp")) as r:
                return await r.json()

        data = json.dumps(body("urllib3")).encode()
        answers = [
            asyncio.run(aio()),
            requests.post(url, json=body("requests")).json(),
            httpx.post(url, json=body("httpx")).json(),
            urllib3.request("POST", url, body=data).json(),
        ]
        return [reply_text(a) for a in answers]

    # When vcrpy records them, then replays them with the server stopped
    path = str(tmp_path / "vcr.yaml")
    with vcr.use_cassette(path, match_on=["method", "path", "body"]):
        recorded = calls()
    assert len(server.requests) == 4
    server.stop()
    with vcr.use_cassette(path, record_mode="none", match_on=["method", "path", "body"]):
        replayed = calls()
    # Then the guard refused none of them: vcrpy, not the network, answered
    assert (
        replayed == recorded == [f"echo: {n}" for n in ("aiohttp", "requests", "httpx", "urllib3")]
    )
    assert len(server.requests) == 4
