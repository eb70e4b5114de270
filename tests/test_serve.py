"""``llmreplay serve``: the loopback fake is the provider; Python, Node and curl clients reach
it only through the server (by base URL), record, and replay with the fake stopped."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic  # noqa: F401  # loaded once here, not again by each pytester run below
import httpx2
import openai
import pytest

import llmreplay
from llmreplay import _patch
from llmreplay._errors import ConfigError
from llmreplay._serve import ServeApp
from llmreplay._serve_routes import PRESETS, cassette_file, parse_upstreams, target
from llmreplay._serve_run import InProcessServer, check_host, is_loopback, serve_forever
from tests.helpers import close, collect, fake_key, resolve
from tests.server import LoopbackServer

ROOT = Path(__file__).parent.parent
CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hello proxy"}],
}

NODE_CLIENT = """
const base = process.env.OPENAI_BASE_URL;
const res = await fetch(base + "/chat/completions", {
  method: "POST",
  headers: {"content-type": "application/json",
            "authorization": "Bearer " + (process.env.OPENAI_API_KEY || "none")},
  body: JSON.stringify({model: "gpt-4o-mini",
                        messages: [{role: "user", content: "from node"}]}),
});
const data = await res.json();
console.log(res.status, res.headers.get("x-llmreplay-source"), data.choices[0].message.content);
"""


@pytest.fixture
def served(tmp_path: Path, server: LoopbackServer) -> Iterator[list[InProcessServer]]:
    """In-process servers started by ``start(served, server, mode, **options)``, all stopped
    after the test."""
    running: list[InProcessServer] = []
    yield running
    for item in running:
        item.stop()


def start(
    running: list[InProcessServer], fake: LoopbackServer, mode: str = "replay", **options: object
) -> InProcessServer:
    upstreams = parse_upstreams([f"fake={fake.origin}"])
    app = ServeApp(mode=mode, upstreams=upstreams, **options)  # type: ignore[arg-type]
    item = InProcessServer(app)
    running.append(item)
    return item


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMREPLAY_"))}
    env.update(extra)
    return env


# -- clients in other processes and languages ----------------------------------------------


@pytest.mark.anyio
async def test_the_openai_sdk_records_then_replays_with_the_fake_stopped(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer], sync: bool
) -> None:
    # Given: a server recording into a folder; the client names its cassette in the base URL
    key = fake_key("sk-")

    async def run(url: str, api_key: str) -> list[str]:
        options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": f"{url}/_c/sdk/fake/v1",
            "max_retries": 0,
        }
        client: Any = openai.OpenAI(**options) if sync else openai.AsyncOpenAI(**options)
        chat = {**CHAT, "messages": [{"role": "user", "content": "hi there"}]}
        reply = await resolve(client.chat.completions.create(**chat))
        stream = client.chat.completions.create(**CHAT, stream=True)
        events = await collect(stream)
        await close(client)
        text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
        return [reply.choices[0].message.content, text]

    proxy = start(served, server, "record", directory=tmp_path / "cas")
    first = await run(proxy.url, key)
    assert first == ["echo: hi there", "echo: hello proxy"]
    assert len(server.requests) == 2
    assert server.requests[0].headers["authorization"] == f"Bearer {key}"  # sent upstream
    cassette = tmp_path / "cas" / "sdk.msgpack"
    assert key.encode() not in cassette.read_bytes()  # ...and never stored
    # When: the provider is gone and a new server replays, with no real key at all
    server.stop()
    served.pop().stop()
    proxy = start(served, server, "replay", directory=tmp_path / "cas")
    # Then: the same answers, and the provider received nothing more
    assert await run(proxy.url, "unused") == first
    assert len(server.requests) == 2
    assert proxy.app.stats()["total"]["played"] == 2


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed on this machine")
def test_node_fetch_records_then_replays(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    script = tmp_path / "client.mjs"
    script.write_text(NODE_CLIENT)
    node = shutil.which("node")
    assert node is not None
    outputs = []
    for mode in ("record", "replay"):
        if mode == "replay":
            server.stop()
        proxy = start(served, server, mode, cassette=tmp_path / "node.msgpack")
        env = child_env(OPENAI_BASE_URL=f"{proxy.url}/fake/v1", OPENAI_API_KEY=fake_key("sk-"))
        done = subprocess.run([node, str(script)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split(" ", 2))
        served.pop().stop()
    assert outputs[0] == ["200", "upstream", "echo: from node\n"]
    assert outputs[1] == ["200", "cassette", "echo: from node\n"]
    assert len(server.requests) == 1  # none during replay


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed on this machine")
def test_curl_streams_records_then_replays_without_a_key(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    curl = shutil.which("curl")
    assert curl is not None
    body = json.dumps({**CHAT, "stream": True})
    bodies = []
    for mode in ("record", "replay"):
        if mode == "replay":
            server.stop()
        proxy = start(served, server, mode, directory=tmp_path)
        key = ["-H", f"authorization: Bearer {fake_key('sk-')}"] if mode == "record" else []
        done = subprocess.run(
            [
                curl,
                "-sS",
                "-N",
                "-D",
                "-",
                f"{proxy.url}/fake/v1/chat/completions",
                *key,
                "-H",
                "x-llmreplay-cassette: curl/stream",
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ],
            capture_output=True,
            check=True,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        bodies.append(payload)
        served.pop().stop()
    assert bodies[0] == bodies[1]
    assert bodies[0].count(b"data: ") == 6 and bodies[0].endswith(b"data: [DONE]\n\n")
    assert (tmp_path / "curl" / "stream.msgpack").is_file()
    assert len(server.requests) == 1


# -- streams, parallel cassettes, errors -----------------------------------------------------


def test_a_stream_is_passed_on_chunk_by_chunk_as_upstream_sends_it(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "record", cassette=tmp_path / "s.msgpack")
    headers = {"authorization": f"Bearer {fake_key('sk-')}", "x-test-delay-ms": "120"}
    arrivals = []
    with (
        httpx2.Client() as client,
        client.stream(
            "POST",
            f"{proxy.url}/fake/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers=headers,
        ) as response,
    ):
        started = time.monotonic()
        for chunk in response.iter_raw():
            arrivals.append((time.monotonic() - started, chunk))
    # Each event left the proxy when upstream sent it (~120 ms apart), not at the end.
    assert len(arrivals) >= 4
    assert arrivals[-1][0] - arrivals[0][0] > 0.3
    recorded = llmreplay.cassette(tmp_path / "s.msgpack").interactions[0].response
    assert recorded.chunks is not None and len(recorded.chunks) == 6
    assert b"".join(recorded.chunks) == b"".join(chunk for _, chunk in arrivals)


def test_a_compressed_recording_is_decoded_for_a_client_that_did_not_ask_for_it(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    # Recorded by a client that accepts gzip (as the SDKs do): stored compressed.
    proxy = start(served, server, "record", cassette=tmp_path / "gz.msgpack")
    chat = f"{proxy.url}/fake/v1/chat/completions"
    auth = {"authorization": f"Bearer {fake_key('sk-')}", "accept-encoding": "gzip"}
    with httpx2.Client() as client:
        recorded = client.post(chat, json=CHAT, headers=auth)
    assert recorded.headers["content-encoding"] == "gzip"
    served.pop().stop()
    proxy = start(
        served, server, "replay", cassette=tmp_path / "gz.msgpack", options={"allow_repeats": True}
    )
    chat = f"{proxy.url}/fake/v1/chat/completions"
    with httpx2.Client() as client:
        plain = client.post(chat, json=CHAT, headers={"accept-encoding": "identity"})
        raw = client.post(chat, json=CHAT, headers={"accept-encoding": "gzip, br"})
    # A client that did not ask for gzip (curl, urllib) gets plain JSON...
    assert "content-encoding" not in plain.headers
    assert plain.json()["choices"][0]["message"]["content"] == "echo: hello proxy"
    # ...and one that did gets the recorded bytes as they were.
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.json() == plain.json()
    assert len(server.requests) == 1


def test_parallel_clients_with_different_cassettes_share_one_server(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "record", directory=tmp_path)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with httpx2.Client(base_url=f"{proxy.url}/fake/v1") as client:
                for i in range(3):
                    chat = {**CHAT, "messages": [{"role": "user", "content": f"w{n} #{i}"}]}
                    reply = client.post(
                        "/chat/completions",
                        json=chat,
                        headers={
                            "x-llmreplay-cassette": f"worker-{n}",
                            "authorization": "Bearer " + fake_key("sk-"),
                            "x-test-delay-ms": "5",
                        },
                    )
                    assert reply.json()["choices"][0]["message"]["content"] == f"echo: w{n} #{i}"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for n in range(6):
        items = llmreplay.cassette(tmp_path / f"worker-{n}.msgpack").interactions
        prompts = sorted(json.loads(i.request.body)["messages"][0]["content"] for i in items)
        assert prompts == [f"w{n} #{i}" for i in range(3)]
    assert proxy.app.stats()["total"]["recorded"] == 18


def test_errors_are_json_answers_that_say_why(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    (tmp_path / "broken.msgpack").write_bytes(b"not a cassette")
    proxy = start(served, server, "replay", directory=tmp_path)
    chat = f"{proxy.url}/fake/v1/chat/completions"
    with httpx2.Client() as client:
        miss = client.post(chat, json=CHAT, headers={"x-llmreplay-cassette": "empty"})
        escape = client.post(chat, json=CHAT, headers={"x-llmreplay-cassette": "../outside"})
        escape_path = client.post(f"{proxy.url}/_c/..%2Fup/fake/v1/chat/completions", json=CHAT)
        unnamed = client.post(chat, json=CHAT)
        no_route = client.post(f"{proxy.url}/nowhere/v1/x", json=CHAT)
        broken = client.post(chat, json=CHAT, headers={"x-llmreplay-cassette": "broken"})
    assert (miss.status_code, miss.headers["x-llmreplay-error"]) == (599, "miss")
    assert miss.headers["x-should-retry"] == "false"
    assert "no recording for POST /v1/chat/completions" in miss.json()["error"]["message"]
    assert miss.json()["llmreplay"]["reason"] == "the cassette file does not exist yet"
    for refused in (escape, escape_path):
        assert (refused.status_code, refused.headers["x-llmreplay-error"]) == (400, "bad-cassette")
        assert "inside" in refused.json()["error"]["message"]
    # A request naming no cassette uses DIR/default.msgpack (not recorded yet: a miss).
    assert (unnamed.status_code, unnamed.headers["x-llmreplay-error"]) == (599, "miss")
    assert str(tmp_path / "default.msgpack") in unnamed.json()["error"]["message"]
    assert (no_route.status_code, no_route.headers["x-llmreplay-error"]) == (404, "no-route")
    assert "/anthropic" in no_route.json()["error"]["message"]
    assert (broken.status_code, broken.headers["x-llmreplay-error"]) == (599, "cassette")
    with httpx2.Client() as client:
        azure = client.post(f"{proxy.url}/azure/BAD_NAME/openai/x", json=CHAT)
    assert (azure.status_code, azure.headers["x-llmreplay-error"]) == (404, "no-route")
    single = start(served, server, "replay", cassette=tmp_path / "one.msgpack")
    with httpx2.Client() as client:
        named = client.post(f"{single.url}/_c/other/fake/v1/chat/completions", json=CHAT)
    assert (named.status_code, named.headers["x-llmreplay-error"]) == (400, "bad-cassette")
    assert "--dir" in named.json()["error"]["message"]
    assert server.requests == []
    assert not (tmp_path.parent / "up.msgpack").exists()


def test_the_sdk_sees_a_miss_at_once_with_its_message(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "replay", cassette=tmp_path / "none.msgpack")
    client = openai.OpenAI(api_key="unused", base_url=f"{proxy.url}/fake/v1")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**CHAT)
    client.close()
    assert caught.value.status_code == 599
    assert "no recording for POST /v1/chat/completions" in str(caught.value)
    assert proxy.app.counts == {"requests": 1, "errors": 1}  # not retried


def test_recording_without_a_key_and_an_unreachable_upstream_are_refused(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "record", cassette=tmp_path / "k.msgpack")
    proxy.app.upstreams["gone"] = "http://127.0.0.1:9"  # the discard port: nothing listens
    with httpx2.Client() as client:
        placeholder = {"authorization": "Bearer sk-llmreplay-no-key"}
        no_key = client.post(
            f"{proxy.url}/fake/v1/chat/completions", json=CHAT, headers=placeholder
        )
        gone = client.post(
            f"{proxy.url}/gone/v1/chat/completions",
            json=CHAT,
            headers={"authorization": f"Bearer {fake_key('sk-')}"},
        )
    assert (no_key.status_code, no_key.headers["x-llmreplay-error"]) == (599, "refused")
    assert "OPENAI_API_KEY" in no_key.json()["error"]["message"]
    assert (gone.status_code, gone.headers["x-llmreplay-error"]) == (502, "transport")
    assert gone.headers["x-should-retry"] == "true"
    assert server.requests == []


def test_a_stream_cut_upstream_is_cut_for_the_client_too(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "record", cassette=tmp_path / "cut.msgpack")
    headers = {"authorization": f"Bearer {fake_key('sk-')}", "x-test-cut-after": "2"}
    with httpx2.Client() as client, pytest.raises(httpx2.RemoteProtocolError):
        client.post(
            f"{proxy.url}/fake/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
        )


def test_a_client_hanging_up_mid_stream_still_gets_the_answer_recorded_whole(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "record", cassette=tmp_path / "hangup.msgpack")
    headers = {"authorization": f"Bearer {fake_key('sk-')}", "x-test-delay-ms": "30"}
    with (
        httpx2.Client() as client,
        client.stream(
            "POST",
            f"{proxy.url}/fake/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers=headers,
        ) as response,
    ):
        next(response.iter_raw())  # then hang up
    deadline = time.monotonic() + 10
    while not any(c.writes for c in proxy.app.cassettes()) and time.monotonic() < deadline:
        time.sleep(0.02)  # the server reads upstream to its end, then saves
    (item,) = llmreplay.cassette(tmp_path / "hangup.msgpack").interactions
    assert item.response.cut is None
    assert item.response.chunks is not None and len(item.response.chunks) == 6


def test_control_api_health_and_stats(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "auto", cassette=tmp_path / "c.msgpack")
    with httpx2.Client(base_url=proxy.url) as client:
        assert client.get("/_llmreplay/health").json() == {
            "status": "ok",
            "mode": "auto",
            "version": llmreplay.__version__,
        }
        auth = {"authorization": f"Bearer {fake_key('sk-')}"}
        for _ in range(2):
            client.post("/fake/v1/chat/completions", json=CHAT, headers=auth)
        stats = client.get("/_llmreplay/stats").json()
        assert client.get("/_llmreplay/nope").status_code == 404
    assert stats["requests"] == 2 and stats["errors"] == 0
    assert stats["cassettes"][str(tmp_path / "c.msgpack")]["recorded"] == 2
    assert stats["total"] == {"played": 0, "recorded": 2, "live": 0, "faults": 0, "unused": 0}
    assert len(server.requests) == 2


# -- pure decisions: routes, names, the listening address ----------------------------------


def test_routes_cover_the_providers_and_upstream_overrides() -> None:
    routes = parse_upstreams(["local=http://127.0.0.1:11434/", "openai=http://gw"])
    assert target(routes, "/anthropic/v1/messages", b"") == (
        None,
        f"{PRESETS['anthropic']}/v1/messages",
    )
    assert target(routes, "/openai/v1/models", b"") == (None, "http://gw/v1/models")
    assert target(routes, "/_c/team%2Fa/local/api/chat", b"x=1") == (
        "team/a",
        "http://127.0.0.1:11434/api/chat?x=1",
    )
    assert target(routes, "/azure/myres/openai/deployments/d/chat/completions", b"api-version=1")[
        1
    ] == ("https://myres.openai.azure.com/openai/deployments/d/chat/completions?api-version=1")
    assert target(routes, "/gemini/v1beta/models/g:generateContent", b"")[1] == (
        "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent"
    )
    for route in ("groq", "mistral", "openrouter"):
        assert target(routes, f"/{route}/v1/chat/completions", b"")[1].startswith("https://")
    for bad in ("local", "a b=http://x", "x=ftp://host", "x=nohost"):
        with pytest.raises(ConfigError, match="--upstream"):
            parse_upstreams([bad])


def test_cassette_names_stay_inside_the_folder(tmp_path: Path) -> None:
    assert cassette_file(tmp_path, "a") == tmp_path / "a.msgpack"
    assert cassette_file(tmp_path, "team/b.cas") == tmp_path / "team" / "b.cas"
    (tmp_path / "link").symlink_to(tmp_path.parent)
    for bad in ("", "../x", "/etc/passwd", "a/../../b", "a//b", ".hidden", "link/x", "a\\b"):
        with pytest.raises(ConfigError, match="cassette name"):
            cassette_file(tmp_path, bad)


def test_a_non_loopback_host_is_refused_without_the_flag() -> None:
    # The address decision only: nothing is bound or connected here.
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_host(host, allow_remote=False)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="--allow-remote"):
            check_host(host, allow_remote=False)
        check_host(host, allow_remote=True)


def test_the_cli_refuses_a_non_loopback_host_before_binding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmreplay import _serve_run
    from llmreplay._cli import _parser, main

    def never(host: str, port: int) -> None:
        raise AssertionError("bind() must not be reached")

    monkeypatch.setattr(_serve_run, "bind", never)
    defaults = _parser().parse_args(["serve", "--dir", str(tmp_path)])
    assert (defaults.host, defaults.port, defaults.allow_remote) == ("127.0.0.1", 8765, False)
    assert main(["serve", "--host", "0.0.0.0", "--dir", str(tmp_path)]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["serve", "--port", "0"]) == 2
    assert "--cassette FILE or --dir DIR" in capsys.readouterr().err
    assert main(["serve", "--mode", "replya", "--dir", str(tmp_path)]) == 2
    assert "'replya' from llmreplay serve --mode is not a valid mode" in capsys.readouterr().err
    with monkeypatch.context() as missing:
        missing.setitem(sys.modules, "uvicorn", None)  # as if not installed
        assert main(["serve", "--dir", str(tmp_path)]) == 2
    assert "pip install 'pytest-llmreplay[serve]'" in capsys.readouterr().err
    monkeypatch.setenv("LLMREPLAY_MODE", "nope")
    assert main(["serve", "--cassette", str(tmp_path / "c.msgpack")]) == 2
    assert "from the LLMREPLAY_MODE environment variable" in capsys.readouterr().err


# -- the command: startup line, a log line per request, clean shutdown ----------------------


def test_serve_forever_stops_cleanly_on_sigterm_in_this_process(
    tmp_path: Path,
    server: LoopbackServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given: the foreground server in this (main) thread; a helper thread waits until it
    # answers, uses it, then sends this process SIGTERM, which the server has caught
    from llmreplay import _serve_run

    bound: list[socket.socket] = []

    def bind(host: str, port: int) -> socket.socket:
        sock = real_bind(host, port)
        bound.append(sock)
        return sock

    real_bind = _serve_run.bind
    monkeypatch.setattr(_serve_run, "bind", bind)
    app = ServeApp(
        mode="record",
        cassette=tmp_path / "fg.msgpack",
        upstreams=parse_upstreams([f"fake={server.origin}"]),
    )
    answers: list[int] = []
    urls: list[str] = []

    def use_then_stop() -> None:
        deadline = time.monotonic() + 15  # a loaded machine starts slowly
        while not bound and time.monotonic() < deadline:
            time.sleep(0.01)
        urls.append(_serve_run.url_of(bound[0]))
        with httpx2.Client(base_url=urls[0]) as client:
            while time.monotonic() < deadline:
                try:
                    client.get("/_llmreplay/health")
                    break
                except httpx2.ConnectError:
                    time.sleep(0.02)
            else:
                return  # never served: no signal for a server that could not catch it
            auth = {"authorization": f"Bearer {fake_key('sk-')}"}
            _patch.pass_through(urls[0])
            try:
                answer = client.post("/fake/v1/chat/completions", json=CHAT, headers=auth)
                answers.append(answer.status_code)
            finally:
                _patch.pass_through(urls[0], on=False)
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=use_then_stop)
    helper.start()
    # When
    code = serve_forever(app, "127.0.0.1", 0)
    helper.join()
    # Then
    assert code == 0 and answers == [200]
    assert len(llmreplay.cassette(tmp_path / "fg.msgpack").interactions) == 1
    err = capsys.readouterr().err
    assert f"listening on {urls[0]} (mode=record, cassette={tmp_path / 'fg.msgpack'})" in err
    assert "stopped (SIGTERM); 1 cassette(s) written" in err


def _start_cli(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    log = tmp_path / "serve.log"
    handle = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmreplay", "serve", "--port", "0", *args],
        stderr=handle,
        env=child_env(),
    )
    handle.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return proc, found.group(1), log
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(log.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_recording_leaves_a_loadable_cassette(
    tmp_path: Path, server: LoopbackServer, sig: signal.Signals
) -> None:
    proc, url, log = _start_cli(
        tmp_path,
        "--mode",
        "record",
        "--dir",
        str(tmp_path / "cas"),
        "--upstream",
        f"fake={server.origin}",
    )
    _patch.pass_through(url)  # this test's own client may call it (the plugin's guard is on)
    auth = {"authorization": f"Bearer {fake_key('sk-')}"}
    with httpx2.Client(base_url=f"{url}/_c/run/fake/v1", headers=auth, timeout=20) as client:
        assert client.post("/chat/completions", json=CHAT).status_code == 200
        slow = {**auth, "x-test-delay-ms": "50"}
        with client.stream(
            "POST", "/chat/completions", json={**CHAT, "stream": True}, headers=slow
        ) as response:
            chunks = response.iter_raw()
            first = next(chunks)
            proc.send_signal(sig)  # while the answer is still streaming
            rest = b"".join(chunks)
    assert proc.wait(timeout=20) == 0
    _patch.pass_through(url, on=False)
    assert (first + rest).endswith(b"data: [DONE]\n\n")  # the answer in flight was finished
    items = llmreplay.cassette(tmp_path / "cas" / "run.msgpack").interactions
    assert len(items) == 2 and items[1].response.cut is None
    text = log.read_text()
    cas = tmp_path / "cas"
    assert f"mode=record, cassettes={cas}, default cassette={cas / 'default.msgpack'}" in text
    assert text.count("POST /_c/run/fake/v1/chat/completions -> 200 upstream") == 2
    assert f"stopped ({sig.name}); 1 cassette(s) written" in text


# -- the pytest fixture: llm_proxy ----------------------------------------------------------


def _readme_block(first_line: str) -> str:
    text = (ROOT / "docs" / "serve.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        if block.startswith(first_line):
            return str(block)
    raise AssertionError(f"no docs/serve.md block starting {first_line!r}")


PROXY_CONFTEST = """
import os, pytest

@pytest.fixture(scope="session")
def llm_proxy_upstreams():
    return {"openai": os.environ["FAKE_ORIGIN"], "anthropic": os.environ["FAKE_ORIGIN"]}
"""

PROXY_TESTS = """
import anthropic, openai, os
from llmreplay.faults import PASS, ConnectTimeout, RateLimit

def test_in_process_clients_go_through_the_proxy_once(llm_proxy):
    assert os.environ["OPENAI_BASE_URL"] == llm_proxy.base_url("openai/v1")
    assert os.environ["ANTHROPIC_BASE_URL"] == llm_proxy.base_url("anthropic")
    client = openai.OpenAI(max_retries=0)  # configured by the environment llm_proxy set
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "in process"}])
    assert reply.choices[0].message.content == "echo: in process"
    client.close()
    claude = anthropic.Anthropic(max_retries=0)
    message = claude.messages.create(
        model="claude-opus-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "echo: hi"
    claude.close()
    assert len(llm_proxy.cassette.interactions) == 2

def test_faults_apply_to_proxied_calls(llm_proxy, llm_faults):
    llm_faults.use([RateLimit(), ConnectTimeout(), PASS])  # the timeout arrives as a 502
    client = openai.OpenAI(max_retries=2)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "retried"}])
    assert reply.choices[0].message.content == "echo: retried"
    client.close()
    verdict = llm_faults.verdict()  # the child's SDK saw the 429 and retried at once
    assert verdict.faults == ["http_429", "connect_timeout", "pass"] and not verdict.gave_up
    assert verdict.honoured_retry_after
"""


def test_llm_proxy_fixture_records_then_replays_the_readme_example(
    pytester: pytest.Pytester, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: the README's CLI and test, verbatim, and a conftest routing openai to the fake
    pytester.makepyfile(
        summarize=_readme_block("# summarize.py"),
        test_summarize=_readme_block("# test_summarize.py"),
        test_more=PROXY_TESTS,
    )
    pytester.makeconftest(PROXY_CONFTEST)
    monkeypatch.setenv("FAKE_ORIGIN", server.origin)
    monkeypatch.setenv("OPENAI_API_KEY", fake_key("sk-"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", fake_key("sk-ant-"))
    # When: recorded, then replayed with the provider stopped and no key
    recorded = pytester.runpytest("--llm-mode=record")
    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines(["0 replayed, 4 recorded, 0 live, 2 faults injected*"])
    assert len(server.requests) == 4
    cassette = pytester.path / "fixtures/cassettes/test_summarize/test_summarize_cli.msgpack"
    assert fake_key("sk-").encode() not in cassette.read_bytes()
    (item,) = llmreplay.cassette(cassette).interactions
    assert json.loads(item.request.body)["messages"][0]["content"] == "hello"
    server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    replayed = pytester.runpytest()
    # Then: every test passes from its own cassette and the provider saw nothing more
    replayed.assert_outcomes(passed=3)
    replayed.stdout.fnmatch_lines(["4 replayed, 0 recorded, 0 live, 2 faults injected*"])
    assert len(server.requests) == 4
    assert "OPENAI_BASE_URL" not in os.environ  # the fixture's environment was undone


def test_the_readme_compose_service_is_a_valid_serve_invocation() -> None:
    # No docker daemon here: the README says so. What can be checked without one is checked:
    # the YAML parses, the command parses as `llmreplay serve`, its address is allowed, and
    # the app's base URL routes to the provider with the cassette it names.
    import yaml

    from llmreplay._cli import _parser

    text = (ROOT / "docs" / "serve.md").read_text()
    (block,) = re.findall(r"```yaml\n(services:.*?)```", text, re.S)
    services = yaml.safe_load(block)["services"]
    shell, flag, script = shlex.split(services["llm"]["command"])
    assert (shell, flag) == ("sh", "-c")
    command = shlex.split(script.split("&&")[1])
    assert command[0] == "llmreplay"
    args = _parser().parse_args(command[1:])
    check_host(args.host, allow_remote=args.allow_remote)
    assert args.dir == services["llm"]["volumes"][0].split(":")[1]
    port = int(args.port)
    base = services["app"]["environment"]["OPENAI_BASE_URL"]
    assert base.startswith(f"http://llm:{port}/_c/")
    path = httpx2.URL(base).path + "/chat/completions"
    assert target(PRESETS, path, b"") == ("app", "https://api.openai.com/v1/chat/completions")


def test_a_directory_server_records_unnamed_requests_into_its_default_cassette(
    tmp_path: Path, server: LoopbackServer, served: list[InProcessServer]
) -> None:
    proxy = start(served, server, "record", directory=tmp_path)
    with httpx2.Client() as client:
        answer = client.post(f"{proxy.url}/fake/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200
    proxy.stop()
    served.remove(proxy)
    assert len(llmreplay.cassette(tmp_path / "default.msgpack").interactions) == 1
    again = start(served, server, "replay", directory=tmp_path)
    with httpx2.Client() as client:
        replayed = client.post(f"{again.url}/fake/v1/chat/completions", json=CHAT)
    assert replayed.json() == answer.json() and len(server.requests) == 1
