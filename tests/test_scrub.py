"""No credential reaches a cassette: every byte of every file written is searched for it."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

import llmreplay
from llmreplay._format import Interaction
from tests.helpers import close, fake_key, resolve
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio
OPENAI_KEY = fake_key("sk-proj-")
ANTHROPIC_KEY = fake_key("sk-ant-api03-")
AZURE_KEY = "0123456789abcdef0123456789abcdef"


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("mode", ["record", "auto"])
async def test_credentials_never_reach_disk(
    tmp_path: Path, server: LoopbackServer, sync: bool, mode: str
) -> None:
    folder = tmp_path / "cassettes"
    echo = {"x-test-echo-auth": "1"}
    with llmreplay.cassette(folder / "all.msgpack", mode=mode) as cas:
        oa = (openai.OpenAI if sync else openai.AsyncOpenAI)(
            api_key=OPENAI_KEY,
            base_url=server.url,
            organization="org-TESTONLY123456",
            project="proj_TESTONLY123456",
            max_retries=0,
        )
        chat = await resolve(
            oa.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"my key is {OPENAI_KEY}"}],
                extra_headers=echo,
            )
        )
        assert OPENAI_KEY in (chat.choices[0].message.content or "")  # the caller sees it
        az = (openai.AzureOpenAI if sync else openai.AsyncAzureOpenAI)(
            api_key=AZURE_KEY,
            api_version="2024-10-21",
            azure_endpoint=server.origin,
            max_retries=0,
        )
        await resolve(
            az.chat.completions.create(
                model="dep", messages=[{"role": "user", "content": "hi"}], extra_headers=echo
            )
        )
        an = (anthropic.Anthropic if sync else anthropic.AsyncAnthropic)(
            api_key=ANTHROPIC_KEY, base_url=server.origin, max_retries=0
        )
        await resolve(
            an.messages.create(
                model="claude-opus-4-6",
                max_tokens=8,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers=echo,
            )
        )
        http = httpx2.Client() if sync else httpx2.AsyncClient()
        await resolve(
            http.post(server.url + "/embeddings?api-key=" + AZURE_KEY, json={"input": "x"})
        )
        await close(oa, az, an, http)
    assert cas.stats.recorded == 4

    written = _all_bytes(folder)
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, AZURE_KEY, "cookie-secret-value"):
        assert secret.encode() not in written, secret
    names = {
        name.lower()
        for item in llmreplay.cassette(folder / "all.msgpack").interactions
        for name, _ in item.request.headers + item.response.headers
    }
    assert not names & {"authorization", "api-key", "x-api-key", "set-cookie", "openai-project"}
    assert "?api-key" not in written.decode("latin-1")
    assert b"org-TESTONLY" not in written and b"org-secret-organisation" not in written
    assert b"<redacted>" in written  # where the key was echoed in a body


async def test_before_record_can_edit_or_drop(tmp_path: Path, server: LoopbackServer) -> None:
    def hook(item: Interaction) -> Interaction | None:
        if item.request.url.endswith("/embeddings"):
            return None
        item.request.body = item.request.body.replace(b"Alice", b"[name]")
        return item

    path = tmp_path / "c.msgpack"
    with llmreplay.cassette(path, mode="record", before_record=hook):
        client = openai.OpenAI(api_key="sk-test", base_url=server.url)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "I am Alice"}]
        )
        client.embeddings.create(model="text-embedding-3-small", input="x")
        client.close()
    (item,) = llmreplay.cassette(path).interactions
    assert b"[name]" in item.request.body and b"Alice" not in path.read_bytes()


async def test_filter_headers_and_query_add_to_the_defaults(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"x-session": "s-123456789"}, content=b"{}")

    path = tmp_path / "c.msgpack"
    cas = llmreplay.cassette(
        path, mode="record", filter_headers=["X-Tenant", "x-session"], filter_query=["sig"]
    )
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(handler))) as client:
        client.get("https://h/v1/models?sig=abcdefghijk&limit=2", headers={"x-tenant": "acme-corp"})
    cas.save()
    written = path.read_bytes()
    assert b"abcdefghijk" not in written and b"acme-corp" not in written
    assert b"s-123456789" not in written
    (item,) = llmreplay.cassette(path, filter_query=["sig"]).interactions
    assert item.request.url == "https://h/v1/models?limit=2"
    # The dropped parameter is not part of the key either, so the request still replays.
    replay = llmreplay.cassette(path, filter_query=["sig"])
    with httpx2.Client(transport=replay.transport()) as client:
        assert client.get("https://h/v1/models?limit=2&sig=other-signature").status_code == 200
