"""The seal on every stack: under the pytest plugin, an LLM-shaped request outside every
cassette is refused before anything is sent, whichever HTTP stack or SDK sends it."""

from __future__ import annotations

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
