"""Hostile and heavy cassettes: every file is a CassetteError or works, with bounded work.

Each case is generated here (nothing big is shipped) and goes through the library (load,
load with recomputed keys, key of a live request, a miss with its closest match) and every
CLI command that reads cassettes (ls, show, textconv, export, diff, verify).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import msgpack
import openai
import pytest

import llmreplay
from llmreplay._cli import main
from llmreplay._format import (
    MAX_DECOMPRESSED,
    MAX_JSON_DEPTH,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    encode,
)
from llmreplay._match import _FINALISTS, KeySpec, RequestView

CHAT = "https://api.openai.com/v1/chat/completions"
DEEP = b"[" * 200_000 + b"]" * 200_000  # JSON nested 200,000 deep


def _item(
    body: bytes = b"{}",
    url: str = CHAT,
    headers: list[tuple[str, str]] | None = None,
    response: bytes = b'{"ok": true}',
    response_headers: list[tuple[str, str]] | None = None,
) -> Interaction:
    headers = [("content-type", "application/json")] if headers is None else headers
    request = RecordedRequest("POST", url, headers, body)
    key = KeySpec().key(RequestView("POST", CHAT, headers, body))
    return Interaction(key, request, RecordedResponse(200, response_headers or [], body=response))


def _write(path: Path, *items: Interaction, match: dict[str, list[str]] | None = None) -> Path:
    spec = KeySpec.build(None, (), ("api-key",)).describe()
    path.write_bytes(encode(list(items), spec if match is None else match))
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _peak_mib(run: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        run()
    except llmreplay.LLMReplayError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of ``llmreplay._match.<name>`` (it still runs): bounded work is
    asserted as a count, never as seconds."""
    from llmreplay import _match

    calls: list[int] = []
    original = getattr(_match, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_match, name, counted)
    return calls


def _echo(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, json={"echo": len(request.content)})


# -- JSON nested 200,000 deep ----------------------------------------------------------


def test_a_body_nested_200000_deep_is_keyed_as_raw_bytes() -> None:
    spec = KeySpec.build(None, ("user",), ())
    view = RequestView("POST", CHAT, [("content-type", "application/json")], DEEP)
    # Keyed as raw bytes: the same key every time, whatever the stack depth.
    assert spec.parts(view)["body"] == DEEP
    assert spec.key(view) == spec.key(view)
    # One level less deep than the limit is still JSON, canonicalised.
    shallow = b"[" * MAX_JSON_DEPTH + b" ]" + b"]" * (MAX_JSON_DEPTH - 1)
    parts = spec.parts(RequestView("POST", CHAT, [], shallow))
    assert parts["body"] == b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH


def test_a_deep_body_records_replays_and_misses_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "deep.msgpack"
    with (
        llmreplay.cassette(path, mode="record") as cas,
        httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client,
    ):
        assert client.post(CHAT, content=DEEP).json() == {"echo": len(DEEP)}
    # Replay, with the stored keys and with keys recomputed for other match settings.
    options: list[dict[str, Any]] = [{}, {"ignore": ["user"]}, {"match_on": ["method", "body"]}]
    for option in options:
        replay = llmreplay.cassette(path, **option)
        with httpx2.Client(transport=replay.transport()) as client:
            assert client.post(CHAT, content=DEEP).json() == {"echo": len(DEEP)}
            # A miss compares against the deep body: a clean CassetteMiss, not RecursionError.
            with pytest.raises(llmreplay.CassetteMiss) as miss:
                client.post(CHAT, content=DEEP[:-1] + b" ]")
            assert miss.value.closest == "POST /v1/chat/completions"


def test_every_command_handles_a_deep_body(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _write(tmp_path / "deep.msgpack", _item(DEEP, response=DEEP))
    other = _write(tmp_path / "other.msgpack", _item(DEEP[1:-1]))
    code, out, _ = _cli(capsys, "show", str(path))
    assert code == 0 and json.loads(out)[0]["request"]["body"].startswith("[[[")
    assert _cli(capsys, "textconv", str(path))[0] == 0
    assert _cli(capsys, "export", str(path), "--format", "yaml", "-o", str(tmp_path / "x"))[0] == 0
    code, out, _ = _cli(capsys, "diff", str(path), str(other))
    assert code == 1 and out.startswith("* POST /v1/chat/completions")
    code, out, _ = _cli(capsys, "ls", str(path), "--json")
    assert code == 0 and json.loads(out)[0]["interactions"] == 1
    assert _cli(capsys, "verify", str(path))[0] == 0


# -- a URL no parser accepts ---------------------------------------------------------------

BAD_URLS = ["http://[::1/v1/chat", "http://h:99999/x", "http://h:port/x", "http://exa\x01mple/v1"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_an_unparseable_stored_url_is_a_cassette_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str
) -> None:
    path = _write(tmp_path / "url.msgpack", _item(url=url))
    options: list[dict[str, Any]] = [{}, {"match_on": ["method", "host", "path"]}]
    for option in options:
        with pytest.raises(llmreplay.CassetteError) as info:
            llmreplay.cassette(path, **option)
        assert info.value.path == str(path)
        assert "interaction 0.request.url" in info.value.problem
    for command in ("show", "textconv", "export"):
        code, out, err = _cli(capsys, command, str(path))
        assert (code, out) == (2, "") and str(path) in err and "not a valid URL" in err
    code, _, err = _cli(capsys, "diff", str(path), str(path))
    assert code == 2 and str(path) in err
    code, out, _ = _cli(capsys, "ls", str(tmp_path))
    assert code == 2 and "ERROR" in out and "not a valid URL" in out
    code, out, _ = _cli(capsys, "verify", str(tmp_path))
    assert code == 1 and "1 problem(s)" in out


# -- compression bombs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """About 1 MB of gzip that expands to 1 GiB: 1,024 members of 1 MiB of zeros each."""
    member = gzip.compress(bytes(2**20), compresslevel=9)
    return member * 1024


def test_a_gzip_bomb_request_body_is_keyed_raw_in_bounded_memory(bomb: bytes) -> None:
    assert len(bomb) < 1_200_000
    view = RequestView("POST", CHAT, [("content-encoding", "gzip")], bomb)
    spec = KeySpec()
    peak = _peak_mib(lambda: spec.key(view))
    assert peak < MAX_DECOMPRESSED / 2**20 * 2.5  # never the 1 GiB it expands to
    assert spec.parts(view)["body"] == bomb  # past the limit: raw bytes, stable
    small = gzip.compress(b'{"b": 1, "a": 2}')
    assert (
        spec.parts(RequestView("POST", CHAT, [("content-encoding", "gzip")], small))["body"]
        == b'{"a":2,"b":1}'
    )


def test_a_gzip_bomb_cassette_loads_misses_and_shows_in_bounded_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bomb: bytes
) -> None:
    gz = [("content-encoding", "gzip")]
    path = _write(
        tmp_path / "bomb.msgpack",
        _item(bomb, headers=gz, response=bomb, response_headers=gz),
        match={"match_on": ["method", "path", "body"]},  # keys are recomputed on load
    )
    cas = llmreplay.cassette(path)
    assert _peak_mib(lambda: llmreplay.cassette(path)) < 200
    with (
        httpx2.Client(transport=cas.transport()) as client,
        pytest.raises(llmreplay.CassetteMiss) as miss,
    ):
        client.post(CHAT, json={"model": "m"})
    assert miss.value.closest == "POST /v1/chat/completions"
    assert len(str(miss.value)) < 20_000

    code, out, _ = _cli(capsys, "show", str(path))
    shown = json.loads(out)[0]
    assert code == 0 and "expands past the 64 MiB limit" in shown["response"]["body"]
    assert "expands past the 64 MiB limit" in _cli(capsys, "textconv", str(path))[1]
    assert _cli(capsys, "export", str(path), "--format", "yaml", "-o", str(tmp_path / "y"))[0] == 0
    assert (tmp_path / "y").stat().st_size < 1_000_000  # a summary, not the 1 GiB expanded
    # verify cannot look inside: a credential could hide there, so it is a finding.
    code, out, _ = _cli(capsys, "verify", str(path))
    assert code == 1 and "expands past the 64 MiB limit, so it cannot be checked" in out


def test_a_deflate_bomb_is_bounded_too() -> None:
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(bytes(2**20)) for _ in range(80)) + packer.flush()
    view = RequestView("POST", CHAT, [("content-encoding", "deflate")], data)
    assert KeySpec().parts(view)["body"] == data


def test_bodies_larger_than_the_show_limit_are_summarised(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = json.dumps({"input": "x" * 9 * 2**20}).encode()
    long_string = json.dumps({"input": "y" * 300_000}).encode()
    path = _write(tmp_path / "big.msgpack", _item(big, response=long_string))
    (shown,) = json.loads(_cli(capsys, "show", str(path))[1])
    assert "larger than 8 MiB, not shown" in shown["request"]["body"]
    assert "300,000 characters, sha256" in shown["response"]["body"]["input"]
    assert len(shown["response"]["body"]["input"]) < 400


# -- a miss against big recordings is cheap ------------------------------------------------


def test_one_miss_against_twenty_2mb_image_requests_does_bounded_work(
    tmp_path: Path, server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.url  # type: ignore[attr-defined]
    path = tmp_path / "images.msgpack"

    def ask(client: openai.OpenAI, n: int, prompt: str = "describe") -> None:
        image = f"data:image/png;base64,{str(n) * 10}" + "A" * 2_000_000
        content: list[dict[str, Any]] = [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": image}},
        ]
        messages: Any = [{"role": "user", "content": content}]
        client.chat.completions.create(model="m", messages=messages)

    cas = llmreplay.cassette(path, mode="record")
    with cas.openai_client(base_url=url, api_key="sk-test", max_retries=0) as client:
        for n in range(20):
            ask(client, n)
    cas.save()
    assert len(server.requests) == 20  # type: ignore[attr-defined]
    assert path.stat().st_size > 40_000_000
    replay = llmreplay.cassette(path)
    # Work, not seconds (timings are in benchmarks/hostile.py): count the bodies made
    # canonical on the miss path; only the key and the few finalists may be.
    canonical = _counting(monkeypatch, "canonical_body")
    with (
        replay.openai_client(base_url=url, api_key="sk-test", max_retries=0) as client,
        pytest.raises(llmreplay.CassetteMiss) as miss,
    ):
        ask(client, 7, prompt="describe it in French")
    assert 0 < len(canonical) <= 1 + _FINALISTS + 1  # the key, the finalists, the diff
    assert len(server.requests) == 20  # type: ignore[attr-defined]
    lines = [" ".join(line.split()) for line in miss.value.diff.splitlines()]
    assert '-body: "text": "describe",' in lines
    assert '+body: "text": "describe it in French",' in lines
    assert len(miss.value.diff) < 5_000  # the 2 MB image is not in the message


# -- allocation bombs in the file itself ---------------------------------------------------


TEN_MB = 10 * 2**20


def _bomb(element: bytes, where: str = "interactions", size: int = 3 * 2**20) -> bytes:
    """A cassette whose ``where`` holds ``element`` repeated to fill ``size`` bytes."""
    count = size // len(element)
    head = msgpack.packb({"format": "llmreplay-cassette", "version": 1})
    return (
        b"\x83"
        + head[1:]
        + msgpack.packb(where)
        + b"\xdd"
        + count.to_bytes(4, "big")
        + (element * count)
    )


# No list may be longer than half the file, so each bomb nests its tiny containers.
MAP_BOMBS = {
    "empty maps": _bomb(b"\x9f" + b"\x80" * 15, size=TEN_MB),  # the issue's: 739 MB before
    "empty maps, flat": _bomb(b"\x80"),
    "empty maps in match": _bomb(b"\x9f" + b"\x80" * 15, where="match"),
    "one-entry maps": _bomb(b"\x95" + b"\x81\xa0\xc0" * 5),
    "empty lists": _bomb(b"\x9f" + b"\x90" * 15),
    "pairs of nothing": _bomb(b"\x95" + b"\x92\xc0\xc0" * 5),
}


@pytest.mark.parametrize("name", sorted(MAP_BOMBS))
def test_megabytes_of_tiny_containers_are_refused_in_bounded_memory(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / f"{name}.msgpack"
    path.write_bytes(MAP_BOMBS[name])
    peak = _peak_mib(lambda: llmreplay.cassette(path))
    # 10 MB of empty maps: 32 MiB (715 MiB before); the worst, 3 MB of pairs: ~40 MiB
    assert peak < 15 * path.stat().st_size / 2**20 + 10, f"{peak:.0f} MiB"
    with pytest.raises(llmreplay.CassetteError) as info:
        llmreplay.cassette(path)
    assert info.value.path == str(path)
