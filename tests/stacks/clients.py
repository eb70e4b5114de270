"""One chat call per HTTP stack and SDK, for the stack tests and benchmarks.

``CLIENTS[name]`` is a ``Client``: the stack it runs on, the variants it has (``sync``,
``async``, ``stream``, ``astream``) and ``call(origin, prompt, variant) -> str``, the reply
text. Each client retries a 429 the way it does in production: the SDKs by themselves,
urllib3 and requests with urllib3's ``Retry(status_forcelist=[429])``, and the bare httpx
and aiohttp clients (which never retry by themselves) with the few lines an application
adds, honouring ``retry-after-ms`` / ``retry-after``. Each sends ``KEY`` as its credential,
so tests can check it never reaches a cassette.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.helpers import fake_key

KEY = fake_key("sk-", "stack-secret-0123456789abcdef")
MODEL = "gpt-4o-mini"
VARIANTS = ("sync", "async", "stream", "astream")


@dataclass(frozen=True)
class Client:
    name: str
    stack: str  # the HTTP stack the request goes out on
    variants: tuple[str, ...]
    call: Callable[[str, str, str], str]
    # Variants whose client never retries a 429 (it raises its own rate-limit error).
    no_retry: tuple[str, ...] = ()
    # Whether it waits what a 429's Retry-After says (the verdict checks it, both ways).
    honours_retry_after: bool = True


def body(prompt: str, stream: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        payload["stream"] = True
    return payload


HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}


def sse_text(lines: Iterable[bytes | str]) -> str:
    """The reply text of an OpenAI chat completion event stream, from its lines."""
    text = []
    for line in lines:
        raw = line.decode() if isinstance(line, bytes) else line
        raw = raw.strip()
        if not raw.startswith("data: ") or raw == "data: [DONE]":
            continue
        for choice in json.loads(raw[6:])["choices"]:
            text.append(choice["delta"].get("content") or "")
    return "".join(text)


def reply_text(payload: dict[str, Any]) -> str:
    return str(payload["choices"][0]["message"]["content"])


def _wait(status: int, headers: Any) -> float | None:
    """What an application waits after ``status``: Retry-After (``retry-after-ms`` first,
    as the SDKs read it), or None when it does not retry."""
    if status != 429:
        return None
    if headers.get("retry-after-ms"):
        return float(headers["retry-after-ms"]) / 1000.0
    return float(headers.get("retry-after") or 1.0)


# -- bare clients ----------------------------------------------------------------------


def _httpx(origin: str, prompt: str, variant: str) -> str:
    import httpx

    url = origin + "/v1/chat/completions"
    stream = variant in ("stream", "astream")
    if variant in ("sync", "stream"):
        with httpx.Client(headers=HEADERS) as client:
            for _ in range(3):
                with client.stream("POST", url, json=body(prompt, stream)) as r:
                    if (delay := _wait(r.status_code, r.headers)) is not None:
                        time.sleep(delay)
                        continue
                    return sse_text(r.iter_lines()) if stream else reply_text(json.loads(r.read()))
        raise AssertionError("still 429")

    async def run() -> str:
        async with httpx.AsyncClient(headers=HEADERS) as client:
            for _ in range(3):
                async with client.stream("POST", url, json=body(prompt, stream)) as r:
                    if (delay := _wait(r.status_code, r.headers)) is not None:
                        await asyncio.sleep(delay)
                        continue
                    if stream:
                        return sse_text([line async for line in r.aiter_lines()])
                    return reply_text(json.loads(await r.aread()))
        raise AssertionError("still 429")

    return asyncio.run(run())


def _aiohttp(origin: str, prompt: str, variant: str) -> str:
    import aiohttp

    url = origin + "/v1/chat/completions"
    stream = variant == "astream"

    async def run() -> str:
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            for _ in range(3):
                async with session.post(url, json=body(prompt, stream)) as r:
                    if (delay := _wait(r.status, r.headers)) is not None:
                        await asyncio.sleep(delay)
                        continue
                    if stream:
                        return sse_text([line async for line in r.content])
                    return reply_text(await r.json())
        raise AssertionError("still 429")

    return asyncio.run(run())


def _retry() -> Any:
    from urllib3.util import Retry

    return Retry(total=3, status_forcelist=[429], allowed_methods=None, backoff_factor=0)


def _requests(origin: str, prompt: str, variant: str) -> str:
    import requests
    from requests.adapters import HTTPAdapter

    stream = variant == "stream"
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=_retry()))
        r = session.post(
            origin + "/v1/chat/completions",
            json=body(prompt, stream),
            headers=HEADERS,
            stream=stream,
        )
        r.raise_for_status()
        return sse_text(r.iter_lines()) if stream else reply_text(r.json())


def _urllib3(origin: str, prompt: str, variant: str) -> str:
    import urllib3

    stream = variant == "stream"
    with urllib3.PoolManager(retries=_retry()) as pool:
        r = pool.request(
            "POST",
            origin + "/v1/chat/completions",
            body=json.dumps(body(prompt, stream)).encode(),
            headers=HEADERS,
            preload_content=not stream,
        )
        assert r.status == 200, r.status
        if not stream:
            return reply_text(r.json())
        lines = b"".join(r.stream(None)).splitlines()
        r.release_conn()
        return sse_text(lines)


# -- SDKs ------------------------------------------------------------------------------


def _groq(origin: str, prompt: str, variant: str) -> str:
    import groq

    messages: Any = [{"role": "user", "content": prompt}]
    if variant in ("sync", "stream"):
        with groq.Groq(api_key=KEY, base_url=origin, max_retries=2) as client:
            if variant == "sync":
                reply = client.chat.completions.create(model=MODEL, messages=messages)
                return reply.choices[0].message.content or ""
            chunks = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks)

    async def run() -> str:
        async with groq.AsyncGroq(api_key=KEY, base_url=origin, max_retries=2) as client:
            if variant == "async":
                reply = await client.chat.completions.create(model=MODEL, messages=messages)
                return reply.choices[0].message.content or ""
            chunks = await client.chat.completions.create(
                model=MODEL, messages=messages, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks])

    return asyncio.run(run())


def _mistral(origin: str, prompt: str, variant: str) -> str:
    # mistralai 3.x (Speakeasy-generated, on httpx2) retries only when given a RetryConfig,
    # as its README shows; with one it honours retry-after-ms as-is.
    from mistralai.client import Mistral
    from mistralai.client.utils import BackoffStrategy, RetryConfig

    retries = RetryConfig("backoff", BackoffStrategy(1, 50, 1.1, 2000), False)
    messages: Any = [{"role": "user", "content": prompt}]
    client = Mistral(api_key=KEY, server_url=origin, retry_config=retries)
    with client:
        if variant == "sync":
            message = client.chat.complete(model=MODEL, messages=messages).choices[0].message
            assert message is not None
            return str(message.content or "")
        if variant == "stream":
            events = client.chat.stream(model=MODEL, messages=messages)
            return "".join(str(e.data.choices[0].delta.content or "") for e in events)

    async def run() -> str:
        async with Mistral(api_key=KEY, server_url=origin, retry_config=retries) as client:
            if variant == "async":
                reply = await client.chat.complete_async(model=MODEL, messages=messages)
                assert reply.choices[0].message is not None
                return str(reply.choices[0].message.content or "")
            events = await client.chat.stream_async(model=MODEL, messages=messages)
            return "".join([str(e.data.choices[0].delta.content or "") async for e in events])

    return asyncio.run(run())


def _cohere(origin: str, prompt: str, variant: str) -> str:
    import cohere
    import httpx

    messages: Any = [{"role": "user", "content": prompt}]

    def delta(event: Any) -> str:
        return str(event.delta.message.content.text) if event.type == "content-delta" else ""

    def text(reply: Any) -> str:
        return "".join(part.text for part in reply.message.content or [])

    if variant in ("sync", "stream"):
        with httpx.Client() as http:
            client = cohere.ClientV2(api_key=KEY, base_url=origin, httpx_client=http)
            if variant == "sync":
                return text(client.chat(model="command-a", messages=messages))
            events = client.chat_stream(model="command-a", messages=messages)
            return "".join(delta(e) for e in events)

    async def run() -> str:
        async with httpx.AsyncClient() as http:
            client = cohere.AsyncClientV2(api_key=KEY, base_url=origin, httpx_client=http)
            if variant == "async":
                return text(await client.chat(model="command-a", messages=messages))
            events = client.chat_stream(model="command-a", messages=messages)
            return "".join([delta(e) async for e in events])

    return asyncio.run(run())


def litellm() -> Any:
    """litellm, imported once (slow) and offline (no price list fetched at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    module.telemetry = False
    return module


def litellm_call(provider: str, retries: int | None = None) -> Callable[[str, str, str], str]:
    """litellm through ``provider`` (``openai``: the openai SDK, on httpx2; ``hosted_vllm``:
    litellm's own handler, on httpx over aiohttp); ``retries`` is its ``num_retries``."""

    def call(origin: str, prompt: str, variant: str) -> str:
        llm = litellm()
        options: dict[str, Any] = {
            "model": f"{provider}/{MODEL}",
            "api_base": origin + "/v1",
            "api_key": KEY,
            "messages": [{"role": "user", "content": prompt}],
        }
        if retries is not None:  # litellm's own handler retries a 429 only when asked
            options["num_retries"] = retries
        if variant == "sync":
            return str(llm.completion(**options).choices[0].message.content)
        if variant == "stream":
            chunks = llm.completion(stream=True, **options)
            return "".join(c.choices[0].delta.content or "" for c in chunks)

        async def run() -> str:
            if variant == "async":
                reply = await llm.acompletion(**options)
                return str(reply.choices[0].message.content)
            chunks = await llm.acompletion(stream=True, **options)
            return "".join([c.choices[0].delta.content or "" async for c in chunks])

        return asyncio.run(run())

    return call


def genai_client(origin: str) -> Any:
    from google import genai
    from google.genai import types

    retry = types.HttpRetryOptions(attempts=3)  # its own default waits: virtual in a cassette
    options = types.HttpOptions(base_url=origin, retry_options=retry)
    return genai.Client(api_key=KEY, http_options=options)


def _genai(origin: str, prompt: str, variant: str) -> str:
    client = genai_client(origin)
    model = "gemini-2.5-flash"
    if variant == "sync":
        return str(client.models.generate_content(model=model, contents=prompt).text)
    if variant == "stream":
        chunks = client.models.generate_content_stream(model=model, contents=prompt)
        return "".join(c.text or "" for c in chunks)

    async def run() -> str:
        # With aiohttp installed, google-genai's async path runs on aiohttp.
        assert client._api_client._use_aiohttp()
        try:
            if variant == "async":
                reply = await client.aio.models.generate_content(model=model, contents=prompt)
                return str(reply.text)
            stream = client.aio.models.generate_content_stream
            chunks = await stream(model=model, contents=prompt)
            return "".join([c.text or "" async for c in chunks])
        finally:
            await client.aio.aclose()

    return asyncio.run(run())


CLIENTS = {
    c.name: c
    for c in (
        Client("httpx", "httpx", VARIANTS, _httpx),
        Client("groq", "httpx", VARIANTS, _groq),
        Client("mistralai", "httpx2", VARIANTS, _mistral),
        # cohere 7.x retries 429 on chat but not on chat_stream.
        Client("cohere", "httpx", VARIANTS, _cohere, no_retry=("stream", "astream")),
        # litellm's own handler retries at once (~20 ms), whatever the 429 advertises.
        Client(
            "litellm-vllm",
            "httpx",
            VARIANTS,
            litellm_call("hosted_vllm", retries=2),
            honours_retry_after=False,
        ),
        Client("litellm-openai", "httpx2", VARIANTS, litellm_call("openai")),
        # google-genai backs off by its own exponential schedule (~1-2 s), not Retry-After.
        Client("genai", "httpx2", ("sync", "stream"), _genai, honours_retry_after=False),
        Client("genai-aiohttp", "aiohttp", ("async", "astream"), _genai, honours_retry_after=False),
        Client("aiohttp", "aiohttp", ("async", "astream"), _aiohttp),
        Client("requests", "requests", ("sync", "stream"), _requests),
        Client("urllib3", "urllib3", ("sync", "stream"), _urllib3),
    )
}

CASES = [(name, variant) for name, client in CLIENTS.items() for variant in client.variants]
