"""Raw keys (``_cassette._raw_key``): the parts a key of method, URL and body is made from,
as sent. Equal parts must mean an equal key, whichever form the headers come in (stored
text, a native stack's text, httpx's raw bytes), and the table of live requests is bounded.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

import llmreplay
from llmreplay import _cassette
from llmreplay._cassette import _raw_key
from llmreplay._match import KeySpec, RequestView

URL = "http://127.0.0.1:9/v1/chat/completions"
BODY = b'{"model":"m","input":"a"}'


def test_text_and_byte_headers_give_the_same_raw_key() -> None:
    text = [("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("x-a", "1")]
    raw = [(k.encode(), v.encode()) for k, v in text]
    assert _raw_key("POST", URL, text, BODY) == _raw_key("POST", URL, raw, BODY)
    assert _raw_key("POST", URL, text, BODY) == ("POST", URL, "application/json", "gzip", BODY)
    # headers other than the two that decode the body do not take part
    assert _raw_key("POST", URL, text[:2], BODY) == _raw_key("POST", URL, text, BODY)


def test_the_first_value_is_read_as_the_key_reads_it() -> None:
    """A request sent with two content-types is keyed by the first (``RequestView.header``);
    its raw key says so, so it never shares a raw key with one sent ``"a, b"``."""
    twice = [("content-type", "application/json"), ("content-type", "text/plain")]
    joined = [("content-type", "application/json, text/plain")]
    assert _raw_key("POST", URL, twice, BODY) == _raw_key("POST", URL, twice[:1], BODY)
    assert _raw_key("POST", URL, twice, BODY) != _raw_key("POST", URL, joined, BODY)
    view = RequestView("POST", URL, twice, BODY)
    assert view.header("content-type") == "application/json"


def test_a_non_ascii_byte_header_has_no_raw_key() -> None:
    """Bytes that text could decode more than one way take the full path instead."""
    assert _raw_key("POST", URL, [(b"content-type", "application/json; é".encode())], BODY) is None
    assert _raw_key("POST", URL, [(b"content-encoding", b"\xff")], BODY) is None
    assert _raw_key("POST", URL, [("content-type", "application/json; é")], BODY) is not None


def test_equal_raw_keys_are_equal_keys() -> None:
    """Whatever the raw parts, the key the spec makes from them is the same: here with the
    content headers that change how the body is read (JSON or not, compressed or not)."""
    spec = KeySpec.build(["method", "path", "body"], [], (), ())
    for headers in (
        [("content-type", "application/json")],
        [("content-type", "text/plain")],
        [],
        [("content-type", "application/json"), ("content-type", "text/plain")],
    ):
        raw = [(k.encode(), v.encode()) for k, v in headers]
        more = [*headers, ("x-other", "1")]
        keys = {spec.key(RequestView("POST", URL, h, BODY)) for h in (headers, more)}
        assert len(keys) == 1, headers
        assert _raw_key("POST", URL, headers, BODY) == _raw_key("POST", URL, raw, BODY)


def test_live_raw_keys_are_bounded_by_count_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cassette, "_MAX_RAW_BYTES", 2_000)
    answer = httpx2.MockTransport(lambda r: httpx2.Response(200, json={}))
    kept = {}
    for mode in ("auto", "record", "live"):
        cas = llmreplay.cassette(tmp_path / f"{mode}.msgpack", mode=mode)
        with httpx2.Client(transport=cas.transport(answer)) as client:
            for n in range(20):
                client.post(URL, content=b'{"n": %d, "pad": "%s"}' % (n, b"x" * 400))
        kept[mode] = (len(cas._raw_keys or {}), cas._raw_bytes)
        assert cas.stats.recorded + cas.stats.live == 20  # bounded memory, not fewer answers
    entries, size = kept["auto"]
    assert 0 < size <= 2_000
    assert entries == size // (len(URL) + 411)  # then no more were kept
    # record and live never look a request up, so they keep none
    assert kept["record"] == kept["live"] == (0, 0)
