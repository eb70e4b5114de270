"""No cross-talk: threads, asyncio tasks and processes each record into their own cassette,
and parallel recorders of the same request keep every answer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import httpx2
import pytest

import llmreplay
from llmreplay import _patch
from tests.server import LoopbackServer

pytestmark = pytest.mark.anyio


def _chat(client: httpx2.Client, url: str, text: str) -> httpx2.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    return client.post(url + "/chat/completions", json=body)


def test_eight_threads_each_record_into_their_own_cassette(
    tmp_path: Path, server: LoopbackServer
) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with (
                llmreplay.cassette(tmp_path / f"t{index}.msgpack", mode="record"),
                httpx2.Client() as client,
            ):
                barrier.wait()  # all eight cassettes are active at once
                for call in range(25):
                    _chat(client, server.url, f"thread {index} call {call}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(server.requests) == 200
    for index in range(8):
        items = llmreplay.cassette(tmp_path / f"t{index}.msgpack").interactions
        assert len(items) == 25
        assert all(f"thread {index} call".encode() in i.request.body for i in items)
    assert not _patch.is_patched()


async def test_eight_asyncio_tasks_each_record_into_their_own_cassette(
    tmp_path: Path, server: LoopbackServer
) -> None:
    async def task(index: int, client: httpx2.AsyncClient) -> None:
        with llmreplay.cassette(tmp_path / f"a{index}.msgpack", mode="record"):
            for call in range(10):
                body = {"model": "m", "messages": [{"role": "user", "content": f"t{index}c{call}"}]}
                await client.post(server.url + "/chat/completions", json=body)
                await anyio.sleep(0)  # interleave with the other tasks

    async with httpx2.AsyncClient() as client, anyio.create_task_group() as group:
        for index in range(8):
            group.start_soon(task, index, client)
    assert len(server.requests) == 80
    for index in range(8):
        items = llmreplay.cassette(tmp_path / f"a{index}.msgpack").interactions
        assert len(items) == 10 and all(f"t{index}c".encode() in i.request.body for i in items)


def test_a_replay_thread_never_reaches_upstream_through_another_threads_auto_cassette(
    tmp_path: Path, server: LoopbackServer
) -> None:
    auto_active, replay_done = threading.Event(), threading.Event()
    outcome: list[object] = []

    def auto_thread() -> None:
        with llmreplay.cassette(tmp_path / "auto.msgpack", mode="auto"):
            auto_active.set()
            replay_done.wait(10)

    def replay_thread() -> None:
        auto_active.wait(10)
        with llmreplay.cassette(tmp_path / "replay.msgpack"), httpx2.Client() as client:
            try:
                _chat(client, server.url, "replay me")
            except llmreplay.CassetteMiss as miss:
                outcome.append(miss)
        replay_done.set()

    threads = [threading.Thread(target=auto_thread), threading.Thread(target=replay_thread)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], llmreplay.CassetteMiss)
    assert server.requests == []
    assert not (tmp_path / "auto.msgpack").exists()


def test_worker_threads_of_a_test_use_its_one_cassette(
    tmp_path: Path, server: LoopbackServer
) -> None:
    # A thread with no cassette of its own (a pool the code under test starts) is captured
    # by the one cassette active in the process.
    from concurrent.futures import ThreadPoolExecutor

    with (
        llmreplay.cassette(tmp_path / "c.msgpack", mode="record") as cas,
        httpx2.Client() as client,
        ThreadPoolExecutor(4) as pool,
    ):
        list(pool.map(lambda i: _chat(client, server.url, f"pool {i}"), range(8)))
    assert cas.stats.recorded == 8


def test_an_ambiguous_thread_is_refused_not_guessed(tmp_path: Path, server: LoopbackServer) -> None:
    inside, release = threading.Barrier(3), threading.Event()

    def hold(name: str) -> None:
        with llmreplay.cassette(tmp_path / name, mode="record"):
            inside.wait(10)
            release.wait(10)

    holders = [threading.Thread(target=hold, args=(n,)) for n in ("a.msgpack", "b.msgpack")]
    for thread in holders:
        thread.start()
    inside.wait(10)
    try:
        with httpx2.Client() as client, pytest.raises(llmreplay.RequestRefused) as info:
            _chat(client, server.url, "whose?")
    finally:
        release.set()
        for thread in holders:
            thread.join()
    assert "ambiguous" in str(info.value) and "a.msgpack" in str(info.value)
    assert server.requests == []


WRITER = """
import sys, httpx2, llmreplay
path, url, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
with llmreplay.cassette(path, mode="record") as cas, httpx2.Client() as client:
    for _ in range(runs):
        client.post(url + "/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "same"}]})
        cas.save()
"""


def test_parallel_processes_recording_the_same_request_keep_every_answer(
    tmp_path: Path, server: LoopbackServer
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "shared.msgpack"
    processes = [
        subprocess.Popen([sys.executable, str(script), str(path), server.url, "5"])
        for _ in range(4)
    ]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0, 0]
    assert len(server.requests) == 20
    assert len(llmreplay.cassette(path).interactions) == 20
    # A later record run replaces them all: they were recorded before it started.
    subprocess.run([sys.executable, str(script), str(path), server.url, "1"], check=True)
    assert len(llmreplay.cassette(path).interactions) == 1


def test_httpx_first_imported_inside_a_replay_block_never_reaches_the_server(
    tmp_path: Path, server: LoopbackServer
) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        assert "httpx" not in sys.modules
        import llmreplay
        with llmreplay.cassette({str(tmp_path / "c.msgpack")!r}):
            import httpx
            try:
                httpx.post({server.url + "/chat/completions"!r}, json={{"model": "m"}})
            except llmreplay.LLMReplayError as exc:
                print("refused:", type(exc).__name__)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("refused:")
    assert server.requests == []


def test_a_failed_save_at_exit_exits_non_zero(tmp_path: Path, server: LoopbackServer) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = textwrap.dedent(
        f"""
        import httpx2, llmreplay
        cas = llmreplay.cassette({str(blocker / "c.msgpack")!r}, mode="record")
        with httpx2.Client(transport=cas.transport()) as client:
            client.post({server.url + "/chat/completions"!r}, json={{"model": "m"}})
        print("done")  # no save: left to the exit handler, which cannot write there
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "done"
    assert done.returncode == 1
    assert "recordings not saved at exit" in done.stderr and "c.msgpack" in done.stderr
