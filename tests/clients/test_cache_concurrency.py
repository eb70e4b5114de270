"""The client-layer cache under concurrency and failure: one interaction per distinct
request, and never a failure stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

import llmreplay
from llmreplay._cassette import Cassette
from llmreplay._clients import reset
from tests.server import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
THREADS, CALLS = 16, 5


def _contents(worker: int) -> list[str]:
    # Every worker's first call is the same request (a burst of 16 identical misses);
    # the other four are its own: 1 + 16 * 4 = 65 distinct requests in 80 calls.
    return ["shared"] + [f"w{worker}-c{j}" for j in range(1, CALLS)]


def _stored(path: Path) -> list[Any]:
    return Cassette(path, mode="replay").interactions


@pytest.mark.anyio
async def test_concurrent_callers_store_one_interaction_per_distinct_request(
    server: LoopbackServer, tmp_path: Path, sync: bool
) -> None:
    cache = tmp_path / "cache.msgpack"
    llmreplay.force_api_cache(True, str(cache))
    # A short real pause if the loopback server's backlog refuses a connection.
    client = llmreplay.OpenAIClient(
        base_url=server.url, sleep=lambda _: time.sleep(0.02), asleep=lambda _: anyio.sleep(0.02)
    )
    answers: list[tuple[str, str]] = []

    if sync:
        start = threading.Barrier(THREADS)

        def worker(index: int) -> None:
            start.wait()
            for text in _contents(index):
                reply = client.send_message([{"role": "user", "content": text}])
                answers.append((text, reply.content))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:

        async def task(index: int) -> None:
            for text in _contents(index):
                reply = await client.asend_message([{"role": "user", "content": text}])
                answers.append((text, reply.content))

        async with anyio.create_task_group() as group:
            for i in range(THREADS):
                group.start_soon(task, i)

    distinct = {text for i in range(THREADS) for text in _contents(i)}
    assert len(answers) == THREADS * CALLS and len(distinct) == 65
    assert all(content == f"echo: {text}" for text, content in answers)
    # The server saw each distinct request once, and the file holds each once.
    assert len(server.requests) == len(distinct)
    stored = _stored(cache)
    assert len(stored) == len(distinct)
    assert len({item.key for item in stored}) == len(distinct)
    await client.aclose()


class _Flaky(BaseHTTPRequestHandler):
    """Answers 500 to the first chat request, then a fixed completion."""

    protocol_version = "HTTP/1.1"
    seen: list[int]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        first = not self.seen
        self.seen.append(500 if first else 200)
        payload: dict[str, Any]
        if first:
            status, payload = 500, {"error": {"message": "boom", "type": "server_error"}}
        else:
            message = {"role": "assistant", "content": "the good answer", "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            payload = {
                "id": "chatcmpl-flaky",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "gpt-4o-mini",
                "choices": [choice],
            }
            status = 200
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("retry-after-ms", "1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky() -> Iterator[tuple[str, list[int]]]:
    seen: list[int] = []
    handler = type("Handler", (_Flaky,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host!s}:{port}/v1", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_failure_is_never_cached(flaky: tuple[str, list[int]], tmp_path: Path) -> None:
    url, seen = flaky
    cache = tmp_path / "cache.msgpack"
    llmreplay.force_api_cache(True, str(cache))
    client = llmreplay.OpenAIClient(base_url=url, sleep=lambda _: None)
    reply = client.send_message([{"role": "user", "content": "hello"}])
    client.close()
    assert reply.content == "the good answer" and seen == [500, 200]
    # The file holds the 200 only.
    assert [item.response.status for item in _stored(cache)] == [200]

    # A later process, with no server at all, replays the 200 from the cache.
    reset()
    script = (
        "import llmreplay\n"
        f"llmreplay.force_api_cache(True, {str(cache)!r})\n"
        f"client = llmreplay.OpenAIClient(base_url={url!r}, max_attempts=1)\n"
        "print(client.send_message([{'role': 'user', 'content': 'hello'}]).content)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMREPLAY_"))}
    env.update(OPENAI_API_KEY="test-key-for-loopback", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "the good answer"
    assert seen == [500, 200]  # nothing more reached the server
