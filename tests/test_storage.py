"""Saving: atomic replacement, and parallel writers (threads and processes) lose nothing."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import httpx2
import pytest

import llmreplay


def _echo(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=b"answer to " + request.content)


def _record(path: str, worker: int, count: int) -> None:
    """One writer: records ``count`` distinct requests, saving after each."""
    cas = llmreplay.cassette(path, mode="auto")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        for index in range(count):
            client.post("https://api.openai.com/v1/x", content=f"w{worker}-{index}".encode())
            cas.save()


def _replayed_bodies(path: Path, requests: list[bytes]) -> list[bytes]:
    cas = llmreplay.cassette(path)
    with httpx2.Client(transport=cas.transport()) as client:
        return [client.post("https://api.openai.com/v1/x", content=r).content for r in requests]


def test_four_processes_recording_into_one_cassette_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.msgpack"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record, args=(str(path), w, 15)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    requests = [f"w{w}-{i}".encode() for w in range(4) for i in range(15)]
    assert _replayed_bodies(path, requests) == [b"answer to " + r for r in requests]
    assert len(llmreplay.cassette(path).interactions) == 60


def test_eight_threads_sharing_a_client_and_a_cassette(tmp_path: Path) -> None:
    path = tmp_path / "threads.msgpack"
    cas = llmreplay.cassette(path, mode="record")
    client = httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo)))

    wrong: list[bytes] = []  # asserts in threads would not fail the test: collect instead

    def work(worker: int) -> None:
        for index in range(25):
            body = f"t{worker}-{index}".encode()
            answer = client.post("https://api.openai.com/v1/x", content=body).content
            if answer != b"answer to " + body:
                wrong.append(body)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cas.save()
    client.close()
    assert cas.stats.recorded == 200

    # Replay with the same sharing: every thread gets its own recorded answers.
    replay = llmreplay.cassette(path)
    client = httpx2.Client(transport=replay.transport())
    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert replay.stats == llmreplay.Stats(played=200)
    assert wrong == []


def test_a_failed_save_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.msgpack"
    _record(str(path), 0, 1)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    cas = llmreplay.cassette(path, mode="auto")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        client.post("https://api.openai.com/v1/x", content=b"new")
    with pytest.raises(OSError, match="disk full"):
        cas.save()
    cas._pending.clear()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.msgpack"]


def test_an_unwritable_location_is_a_cassette_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cas = llmreplay.cassette(blocker / "c.msgpack", mode="record")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        client.post("https://api.openai.com/v1/x", content=b"x")
    with pytest.raises(llmreplay.CassetteError, match=r"cannot be (read|written)"):
        cas.save()
    cas._pending.clear()  # nothing left for the at-exit save to report


def test_a_corrupt_file_is_not_overwritten_by_a_save(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack"
    path.write_bytes(b"\x93\x01")
    cas = llmreplay.cassette(path, mode="record")
    with httpx2.Client(transport=cas.transport(httpx2.MockTransport(_echo))) as client:
        client.post("https://api.openai.com/v1/x", content=b"x")
    with pytest.raises(llmreplay.CassetteError, match="truncated"):
        cas.save()
    cas._pending.clear()
    assert path.read_bytes() == b"\x93\x01"
