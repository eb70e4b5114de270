"""Implicit capture: one patch point, nested cassettes, restored even after errors."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

import llmreplay
from llmreplay import _patch
from tests.helpers import close, resolve

pytestmark = pytest.mark.anyio
ORIGINAL_SYNC = httpx2.Client._transport_for_url
ORIGINAL_ASYNC = httpx2.AsyncClient._transport_for_url


def _handler(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=request.url.path.encode())


async def test_nested_cassettes_innermost_wins_then_all_restored(
    tmp_path: Path, sync: bool
) -> None:
    client = (httpx2.Client if sync else httpx2.AsyncClient)(
        transport=httpx2.MockTransport(_handler)
    )
    with llmreplay.cassette(tmp_path / "outer.msgpack", mode="record") as outer:
        await resolve(client.get("https://api.openai.com/outer"))
        with llmreplay.cassette(tmp_path / "inner.msgpack", mode="record") as inner:
            await resolve(client.get("https://api.openai.com/inner"))
        await resolve(client.get("https://api.openai.com/outer-again"))
    assert (outer.stats.recorded, inner.stats.recorded) == (2, 1)
    assert httpx2.Client._transport_for_url is ORIGINAL_SYNC
    assert httpx2.AsyncClient._transport_for_url is ORIGINAL_ASYNC
    assert not _patch.is_patched()
    await close(client)


def test_patch_is_restored_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), llmreplay.cassette(tmp_path / "c.msgpack"):
        assert _patch.is_patched()
        raise RuntimeError("boom")
    assert httpx2.Client._transport_for_url is ORIGINAL_SYNC
    assert not _patch.is_patched()


def test_the_same_cassette_entered_twice_is_reference_counted(tmp_path: Path) -> None:
    cas = llmreplay.cassette(tmp_path / "c.msgpack")
    with cas:
        with cas:
            assert _patch.is_patched()
        assert _patch.is_patched()
    assert not _patch.is_patched()


async def test_async_with_works_like_with(tmp_path: Path) -> None:
    mock = httpx2.MockTransport(_handler)
    async with (
        llmreplay.cassette(tmp_path / "c.msgpack", mode="record") as cas,
        httpx2.AsyncClient(transport=mock) as client,
    ):
        response = await client.get("https://api.openai.com/x")
    assert response.extensions["llmreplay"]["source"] == "upstream"
    assert cas.stats.recorded == 1
    assert (tmp_path / "c.msgpack").exists()


def test_an_explicit_cassette_transport_is_not_wrapped_twice(tmp_path: Path) -> None:
    explicit = llmreplay.cassette(tmp_path / "explicit.msgpack", mode="record")
    transport = explicit.transport(httpx2.MockTransport(_handler))
    with (
        llmreplay.cassette(tmp_path / "ambient.msgpack", mode="record") as ambient,
        httpx2.Client(transport=transport) as client,
    ):
        client.get("https://api.openai.com/x")
    assert (explicit.stats.recorded, ambient.stats.recorded) == (1, 0)


def test_replay_without_a_recording_never_opens_a_socket(tmp_path: Path) -> None:
    # The default transport would resolve api.openai.com; the guard in conftest would fail
    # the test if anything tried. Replay must stop before that.
    with (
        llmreplay.cassette(tmp_path / "none.msgpack"),
        httpx2.Client() as client,
        pytest.raises(llmreplay.CassetteMiss, match="does not exist yet"),
    ):
        client.post("https://api.openai.com/v1/chat/completions", json={})


def test_legacy_httpx_clients_are_captured_not_leaked(tmp_path: Path) -> None:
    import httpx  # the legacy package (adapter: llmreplay/_stacks/httpx.py, tests/stacks/)
    import openai

    calls: list[object] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    legacy = httpx.Client(transport=httpx.MockTransport(answer))
    client = openai.OpenAI(api_key="k", http_client=legacy, max_retries=0)  # type: ignore[arg-type]
    with (
        llmreplay.cassette(tmp_path / "c.msgpack"),
        pytest.raises(llmreplay.CassetteMiss, match="does not exist yet") as info,
    ):
        client.models.list()
    assert info.value.path.endswith("c.msgpack")
    assert calls == []  # nothing went out
    assert not _patch.is_patched()
    legacy.get("https://api.openai.com/v1/models")  # outside a cassette: untouched
    assert len(calls) == 1
    legacy.close()
