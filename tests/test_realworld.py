"""Real traffic recorded by other projects (fixtures/realworld, Apache-2.0) replays byte for byte.

Each vcrpy cassette is imported, then every recorded request is re-sent, as recorded, through
the transport in replay mode: it must get back its recorded status and raw body bytes
(gzip still compressed, streams in their events), repeated requests in recorded order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx2
import pytest

import llmreplay
from llmreplay import _cli
from llmreplay._format import encode
from llmreplay._match import KeySpec
from llmreplay._scrub import DEFAULT_FILTER_QUERY
from llmreplay._vcr import load_vcr

REALWORLD = Path(__file__).parent.parent / "fixtures" / "realworld" / "cassettes"
CASSETTES = sorted(REALWORLD.glob("*.yaml"))


def test_the_fixture_set_is_complete() -> None:
    assert len(CASSETTES) == 97
    assert sum(len(load_vcr(p)) for p in CASSETTES) == 115


@pytest.mark.parametrize("source", CASSETTES, ids=lambda p: p.stem)
def test_every_recorded_request_replays_its_response(source: Path, tmp_path: Path) -> None:
    items = load_vcr(source)
    path = tmp_path / "imported.msgpack"
    path.write_bytes(encode(items, KeySpec.build(None, (), DEFAULT_FILTER_QUERY).describe()))

    cas = llmreplay.cassette(path)
    with httpx2.Client(transport=cas.transport()) as client:
        for item in items:
            request = client.build_request(
                item.request.method,
                item.request.url,
                headers=item.request.headers,
                content=item.request.body,
            )
            response = client.send(request, stream=True)
            raw = b"".join(response.iter_raw())
            response.close()
            assert response.status_code == item.response.status
            assert raw == item.response.content
            if response.headers.get("content-encoding") == "gzip":
                assert (
                    gzip.decompress(raw)
                    == httpx2.Response(200, headers=response.headers, content=raw).content
                )
    assert cas.stats.played == len(items)
    assert cas.stats.unused == 0


def test_reindented_json_still_matches_by_canonical_key() -> None:
    # otel-contrib re-indented its request bodies: the bytes are not what the SDK sent.
    source = REALWORLD / "otel-contrib__test_chat_completion_streaming.yaml"
    item = load_vcr(source)[0]
    assert item.request.body.startswith(b"{\n")
    compact = b'{"messages":[{"role":"user","content":"Say this is a test"}],"model":"gpt-4",'
    compact += b'"stream":true,"stream_options":{"include_usage":true}}'
    spec = KeySpec.build(None, (), DEFAULT_FILTER_QUERY)
    view = llmreplay._match.RequestView("POST", item.request.url, [], compact)
    assert spec.key(view) == item.key


def test_streams_keep_their_events_as_chunks() -> None:
    source = REALWORLD / "otel-contrib__test_chat_completion_streaming.yaml"
    response = load_vcr(source)[0].response
    assert response.chunks is not None and len(response.chunks) > 3
    assert all(chunk.startswith(b"data: ") for chunk in response.chunks)


def test_placeholder_credentials_are_scrubbed_on_import() -> None:
    for source in CASSETTES:
        for item in load_vcr(source):
            names = {name.lower() for name, _ in item.request.headers}
            assert not names & {"authorization", "x-api-key", "api-key", "cookie"}


def test_repeated_requests_replay_in_recorded_order(tmp_path: Path) -> None:
    source = REALWORLD / "openinference__test_anthropic_instrumentation_messages_token_counts.yaml"
    items = load_vcr(source)
    assert items[0].key == items[1].key
    assert items[0].response.content != items[1].response.content
    path = tmp_path / "repeat.msgpack"
    path.write_bytes(encode(items, KeySpec.build(None, (), DEFAULT_FILTER_QUERY).describe()))
    cas = llmreplay.cassette(path)
    with httpx2.Client(transport=cas.transport()) as client:
        request = items[0].request
        bodies = [
            client.request(request.method, request.url, content=request.body).content for _ in items
        ]
        with pytest.raises(llmreplay.CassetteMiss, match="already played"):
            client.request(request.method, request.url, content=request.body)
    assert bodies == [item.response.content for item in items]


def test_the_imported_set_verifies_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # verify opens base64, base64url, hex, URL-encoding, JSON escapes and nested gzip looking
    # for keys: real traffic full of base64 blobs (encrypted_content, signatures) is no alarm.
    assert _cli.main(["import-vcr", "-o", str(tmp_path / "imported"), str(REALWORLD)]) == 0
    capsys.readouterr()
    code = _cli.main(["verify", str(tmp_path / "imported")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"verified {len(CASSETTES)} cassette(s)" in out and "no problems" in out
