"""Reliability: a killed writer never corrupts a cassette; the loader survives any bytes."""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import llmreplay
from llmreplay._format import Interaction, RecordedRequest, RecordedResponse, decode, encode

WRITER = """
import os, sys, time, httpx2, llmreplay
path = sys.argv[1]
if sys.argv[3:] == ["stall-in-save"]:  # hold every save between write and rename
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        print("saving", flush=True)
        time.sleep(30)
    os.fsync = fsync
body = b"x" * 20000
def answer(request):
    return httpx2.Response(200, content=body + request.content)
cas = llmreplay.cassette(path, mode="auto")
client = httpx2.Client(transport=cas.transport(httpx2.MockTransport(answer)))
print("ready", flush=True)
n = 0
while True:
    n += 1
    client.post("https://api.openai.com/v1/x", content=str(n).encode() + sys.argv[2].encode())
    cas.save()
"""


def test_sigkill_at_random_moments_never_corrupts(tmp_path: Path) -> None:
    path = tmp_path / "killed.msgpack"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(1234)
    sizes = []
    for round_ in range(6):
        process = subprocess.Popen(
            [sys.executable, str(script), str(path), f"-r{round_}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        process.kill()  # SIGKILL on POSIX: no cleanup, no atexit
        process.wait(timeout=10)
        process.stdout.close()
        # Whatever moment it died at, the file is the old cassette or the new one.
        interactions = llmreplay.cassette(path).interactions
        sizes.append(len(interactions))
        assert all(i.response.body and i.response.body.startswith(b"x" * 100) for i in interactions)
    assert sizes == sorted(sizes) and sizes[-1] > 0
    # A temporary file may survive a kill mid-save: only ever in the git-ignored folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".llmreplay",
        "killed.msgpack",
        "writer.py",
    ]
    temporary = tmp_path / ".llmreplay"
    assert all(
        p.name == ".gitignore" or p.name.startswith("killed.msgpack.") for p in temporary.iterdir()
    )

    # And one kill that certainly lands inside a save, after the new bytes are written
    # but before they replace the old file: the old cassette is what remains.
    before = _kill_mid_save(script, path)
    assert path.read_bytes() == before
    (left,) = [p for p in temporary.iterdir() if p.name != ".gitignore"]
    assert left.stat().st_size > 20000  # the whole new cassette, never moved into place


def _kill_mid_save(script: Path, path: Path) -> bytes:
    """SIGKILL a writer while it holds a save between writing and renaming; the bytes of
    the cassette before."""
    before = path.read_bytes()
    process = subprocess.Popen(
        [sys.executable, str(script), str(path), "-stall", "stall-in-save"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    assert process.stdout.readline().strip() == "saving"
    process.kill()
    process.wait(timeout=10)
    process.stdout.close()
    return before


def test_a_save_killed_midway_leaves_nothing_git_would_commit(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:  # pragma: no cover - git is part of the development setup
        pytest.skip("git is not installed")
    folder = tmp_path / "fixtures" / "cassettes"
    path = folder / "c.msgpack"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    cas = llmreplay.cassette(path, mode="record")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_answer))) as client:
        client.post("https://api.openai.com/v1/x", content=b"first")
    cas.save()

    before = _kill_mid_save(script, path)
    assert path.read_bytes() == before
    temporary = list((folder / ".llmreplay").glob("c.msgpack.*.tmp"))
    assert len(temporary) == 1 and temporary[0].stat().st_size > 20000

    # `git add fixtures/cassettes` picks up the cassette and nothing else.
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    run = functools.partial(subprocess.run, cwd=tmp_path, env=env, check=True, text=True)
    run([git, "init", "-q"])
    run([git, "add", "fixtures/cassettes"])
    staged = run([git, "diff", "--cached", "--name-only"], capture_output=True).stdout
    assert staged.split() == ["fixtures/cassettes/c.msgpack"]
    # Readers never take it for a cassette either.
    assert [Path(str(p["path"])).name for p in _ls(folder)] == ["c.msgpack"]

    # The next save of that cassette removes what the dead writer left.
    cas = llmreplay.cassette(path, mode="auto")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_answer))) as client:
        client.post("https://api.openai.com/v1/x", content=b"second")
    cas.save()
    assert [p.name for p in (folder / ".llmreplay").iterdir()] == [".gitignore"]
    assert len(llmreplay.cassette(path).interactions) == 2


def _answer(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=b"x" * 20000 + request.content)


def _ls(folder: Path) -> list[dict[str, object]]:
    import contextlib
    import io
    import json

    from llmreplay._cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["ls", str(folder), "--json"]) == 0
    rows: list[dict[str, object]] = json.loads(out.getvalue())
    return rows


def _valid() -> bytes:
    items = [
        Interaction(
            "k" * 64,
            RecordedRequest("POST", "https://api.openai.com/v1/x", [("a", "b")], b'{"q":1}'),
            RecordedResponse(200, [("content-type", "text/event-stream")], chunks=[b"data: 1\n\n"]),
            "2026-01-01T00:00:00Z",
            1.0,
            [0.5],
        ),
        Interaction(
            "j" * 64,
            RecordedRequest("GET", "https://api.openai.com/v1/models", [], b""),
            RecordedResponse(200, [], body=b"{}"),
        ),
    ]
    return encode(items, {"match_on": ["method"]})


VALID = _valid()


def _survives(data: bytes) -> None:
    try:
        decode(data, "fuzz.msgpack")
    except llmreplay.CassetteError as exc:
        assert exc.path == "fuzz.msgpack"


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_cassette_error(data: bytes) -> None:
    _survives(data)


@settings(max_examples=300, deadline=2000)
@given(st.integers(min_value=0, max_value=len(VALID) - 1))
def test_every_truncation_is_refused(cut: int) -> None:
    try:
        decode(VALID[:cut], "fuzz.msgpack")
    except llmreplay.CassetteError:
        return
    raise AssertionError(f"a cassette truncated at {cut} bytes loaded")


@settings(max_examples=500, deadline=2000)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_cassettes_load_or_raise_cassette_error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    _survives(bytes(data))


@settings(max_examples=200, deadline=2000)
@given(st.integers(min_value=2**20, max_value=2**32 - 1))
def test_huge_declared_lengths_allocate_nothing(length: int) -> None:
    # A header claiming a gigabyte string in a tiny file must not allocate a gigabyte.
    data = b"\xdb" + length.to_bytes(4, "big") + b"abc"
    _survives(data)
    _survives(msgpack.packb({"format": "llmreplay-cassette", "version": 1})[:-1] + data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


@st.composite
def _hostile_items(draw: st.DrawFn) -> list[Interaction]:
    """Structurally valid interactions with hostile contents: odd URLs, bodies that claim
    an encoding they do not have, deep or broken JSON, binary, huge-looking headers."""
    items = []
    for _ in range(draw(st.integers(1, 3))):
        url = draw(
            st.sampled_from(["https://api.openai.com/v1/chat/completions", "http://[::1/v1"])
            | st.text(max_size=40)
            | st.text(max_size=10).map(lambda t: "https://h/" + t)
        )
        depth = draw(st.integers(0, 3000))
        body = draw(
            st.binary(max_size=200)
            | _JSON.map(lambda v: json.dumps(v).encode())
            | st.just(b"[" * depth + b"]" * depth)
            | st.just(b'{"a": ' * depth)
            | st.just(gzip.compress(b'{"model": "m"}'))
        )
        encoding = draw(st.sampled_from(["", "gzip", "deflate", "br", "GZIP"]))
        headers = [("content-encoding", encoding)] if encoding else []
        headers += draw(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3))
        chunks = draw(st.none() | st.lists(st.binary(max_size=30), max_size=4))
        items.append(
            Interaction(
                draw(st.text(min_size=1, max_size=64)),
                RecordedRequest(draw(st.text(max_size=8)), url, headers, body),
                RecordedResponse(
                    draw(st.integers(0, 999)),
                    headers,
                    body=None if chunks is not None else body,
                    chunks=chunks,
                ),
            )
        )
    return items


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile_items(), st.booleans())
def test_hostile_contents_load_or_refuse_and_never_crash_a_reader(
    items: list[Interaction], other_match: bool
) -> None:
    from llmreplay import _inspect
    from llmreplay._match import KeySpec, RequestView, closest

    data = encode(items, {} if other_match else KeySpec().describe())
    try:
        loaded, _ = decode(data, "fuzz.msgpack")
    except llmreplay.CassetteError as exc:
        assert exc.path == "fuzz.msgpack"
        return
    spec = KeySpec.build(None, ("user",), ())
    views = [RequestView("POST", "https://h/v1/x", [], b'{"model": "m"}')]
    for item in loaded:
        json.dumps(_inspect.render(item))  # what show, export and textconv print
        list(_inspect.secrets_in(item))
        list(_inspect.unchecked(item))
        _inspect.model(item)
        view = RequestView(
            item.request.method, item.request.url, item.request.headers, item.request.body
        )
        spec.key(view)
        views.append(view)
    _inspect.textconv(loaded)
    closest(views[0], views[1:], spec)
