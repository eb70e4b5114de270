"""vcrpy users can store cassettes as llmreplay msgpack: a record/replay round trip."""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai
import pytest
import vcr

import llmreplay
import llmreplay.vcr
from tests.helpers import fake_key
from tests.server import LoopbackServer


def _ask(base_url: str) -> str:
    client = openai.OpenAI(api_key=fake_key("sk-"), base_url=base_url, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "via vcrpy"}]
    )
    client.close()
    return reply.choices[0].message.content or ""


def test_vcrpy_round_trip_in_msgpack(tmp_path: Path, server: LoopbackServer) -> None:
    path = tmp_path / "vcr.msgpack"
    my_vcr = llmreplay.vcr.register(vcr.VCR(match_on=["method", "path", "body"]))
    with my_vcr.use_cassette(str(path), serializer="llmreplay", record_mode="once"):
        recorded = _ask(server.url)
    assert path.read_bytes()[:1] == b"\x84"  # a msgpack map, not YAML text
    assert fake_key("sk-").encode() not in path.read_bytes()
    server.stop()

    with my_vcr.use_cassette(str(path), serializer="llmreplay", record_mode="none") as cas:
        assert _ask(server.url) == recorded
    assert cas.play_count == 1

    # The same file is an llmreplay cassette too.
    with llmreplay.cassette(path) as ours:
        assert _ask(server.url) == recorded
    assert ours.stats.played == 1


def test_the_persister_still_reads_yaml_cassettes(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, text="hello")

    my_vcr = llmreplay.vcr.register(vcr.VCR())
    path = tmp_path / "plain.yaml"
    transport = httpx2.MockTransport(handler)
    with my_vcr.use_cassette(str(path)), httpx2.Client(transport=transport) as client:
        client.get("https://example.invalid/x")
    assert path.read_text().startswith("interactions:")
    with my_vcr.use_cassette(str(path), record_mode="none") as cas:
        assert len(cas.data) == 1


def test_a_corrupt_msgpack_vcr_cassette_is_a_cassette_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.msgpack"
    path.write_bytes(b"\x93\x01")
    my_vcr = llmreplay.vcr.register(vcr.VCR())
    with (
        pytest.raises(llmreplay.CassetteError),
        my_vcr.use_cassette(str(path), serializer="llmreplay"),
    ):
        pass
