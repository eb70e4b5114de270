"""The cassette file format: round trip, bytes stay bytes, and every bad file is refused clearly."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

import llmreplay
from llmreplay._format import (
    FORMAT_VERSION,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    decode,
    encode,
)

BAD = Path(__file__).parent.parent / "fixtures" / "bad"


def _item(key: str = "k" * 64, **response: object) -> Interaction:
    return Interaction(
        key=key,
        request=RecordedRequest("POST", "https://api.openai.com/v1/x", [("a", "1")], b"\x00\xff"),
        response=RecordedResponse(200, [("content-type", "audio/mpeg")], **response),  # type: ignore[arg-type]
        recorded_at="2026-11-24T00:00:00.000+00:00",
        elapsed_ms=1.5,
    )


def test_round_trip_keeps_bytes_headers_and_chunks() -> None:
    items = [
        _item(body=b"\x89PNG\r\n\x00"),
        _item("s" * 64, chunks=[b"data: 1\n\n", b"data: 2\n\n"], cut="upstream"),
    ]
    items[1].chunk_ms = [0.5, 1.25]
    data = encode(items, {"match_on": ["body"]})
    decoded, match = decode(data, "x.msgpack")
    assert decoded == items
    assert match == {"match_on": ["body"]}
    raw = msgpack.unpackb(data)
    assert raw["format"] == "llmreplay-cassette"
    assert raw["version"] == FORMAT_VERSION == 1
    # Bodies are msgpack bin, not base64 text.
    assert raw["interactions"][0]["response"]["body"] == b"\x89PNG\r\n\x00"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("empty", "the file is empty"),
        ("truncated", "truncated"),
        ("pickle", "pickle"),
        ("foreign", "not an llmreplay cassette"),
        ("not_msgpack", "looks like text"),
        ("newer_version", "format version 3 is newer than supported version 1"),
        ("trailing", "trailing bytes"),
        ("bad_interaction", "interaction 0 has no 'response'"),
        ("extension", "extension type"),
    ],
)
def test_bad_files_are_refused_naming_file_and_problem(name: str, problem: str) -> None:
    path = BAD / f"{name}.msgpack"
    with pytest.raises(llmreplay.CassetteError) as info:
        llmreplay.cassette(path)
    assert info.value.path == str(path)
    assert problem in info.value.problem
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None  # no msgpack internals in the traceback


def test_pickle_is_never_loaded(tmp_path: Path) -> None:
    import pickle

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pickle ran",))

    path = tmp_path / "evil.msgpack"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(llmreplay.CassetteError, match="pickle"):
        llmreplay.cassette(path)


@pytest.mark.parametrize(
    "mutation",
    [
        {"version": True},
        {"interactions": {}},
        {"interactions": [{"key": 1}]},
        {
            "interactions": [
                {
                    "key": "k",
                    "request": {"method": "GET", "url": "u", "headers": [["a"]], "body": b""},
                    "response": {"status": 200, "headers": [], "body": b""},
                }
            ]
        },
        {
            "interactions": [
                {
                    "key": "k",
                    "request": {"method": "GET", "url": "u", "headers": [], "body": b""},
                    "response": {"status": "200", "headers": [], "chunks": ["text"]},
                }
            ]
        },
    ],
)
def test_wrong_types_are_cassette_errors(tmp_path: Path, mutation: dict[str, object]) -> None:
    document = {"format": "llmreplay-cassette", "version": 1, "interactions": [], **mutation}
    path = tmp_path / "m.msgpack"
    path.write_bytes(msgpack.packb(document))
    with pytest.raises(llmreplay.CassetteError):
        llmreplay.cassette(path)


def test_a_directory_is_not_a_cassette(tmp_path: Path) -> None:
    with pytest.raises(llmreplay.CassetteError, match="directory"):
        llmreplay.cassette(tmp_path)


def test_bodies_decode_as_gzip_and_zlib_do_up_to_the_limit() -> None:
    import gzip
    import zlib

    from llmreplay._format import decompressed, expand

    two_members = gzip.compress(b"hello ") + gzip.compress(b"world")
    assert decompressed(two_members, "gzip") == gzip.decompress(two_members) == b"hello world"
    assert decompressed(zlib.compress(b"x" * 100), "deflate") == b"x" * 100
    assert decompressed(two_members[:-3], "GZIP") == two_members[:-3]  # truncated: as is
    assert decompressed(b"not gzip", "gzip") == b"not gzip"
    assert decompressed(two_members, "") == two_members
    assert expand(two_members, "", sniff=True) == (b"hello world", False)
    over = gzip.compress(b"y" * 1001, mtime=0)
    assert expand(over, "gzip", limit=1000) == (over, True)
    assert expand(gzip.compress(b"y" * 1000), "gzip", limit=1000) == (b"y" * 1000, False)


def test_the_smallest_possible_interactions_stay_within_the_load_limits() -> None:
    # Limits on maps and lists come from the file size; no real file can reach them.
    tiny = Interaction("", RecordedRequest("", "", [], b""), RecordedResponse(0, [], body=b""))
    tiny.recorded_at = ""
    many_headers = Interaction(
        "", RecordedRequest("", "", [("te", "x")] * 5000, b""), RecordedResponse(0, [], body=b"")
    )
    for items in ([tiny] * 5000, [many_headers], [_item(chunks=[b""] * 5000)]):
        decoded, _ = decode(encode(items, {}), "tiny.msgpack")
        assert decoded == items
