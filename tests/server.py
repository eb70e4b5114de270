"""A deterministic OpenAI- and Anthropic-compatible HTTP server on 127.0.0.1, for tests
(with Cohere's ``/v2/chat`` and Gemini's ``:generateContent``/``:streamGenerateContent`` too).

Replies are pure functions of the request, so recordings are reproducible. Test-only
request headers steer it: ``x-test-status`` (reply with that error status),
``x-test-cut-after`` (drop the connection after N stream chunks), ``x-test-delay-ms``
(pause before each stream chunk), ``x-test-echo-auth`` (echo the credential in the body,
to prove redaction). ``LoopbackServer.fail_next(429, 500)`` scripts the next answers.
``x-test-echo-all`` echoes every header value, the decoded ``Basic``
credentials, the path as sent and a ``Set-Cookie`` value (``session_cookie(seed)``, seed from
``x-test-session-seed``); ``x-test-encoding`` (``identity``, ``gzip``, ``deflate``, ``br``)
compresses the body or whole stream; ``x-test-chunk-bytes`` cuts a stream into pieces of
that size. Every request it receives is kept in ``requests``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import importlib
import json
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _last_text(messages: list[dict[str, Any]] | str) -> str:
    if isinstance(messages, str):
        return messages
    content = messages[-1].get("content", "") if messages else ""
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def session_cookie(seed: str) -> str:
    """The ``Set-Cookie`` value the server sends in echo-all mode for ``x-test-session-seed``."""
    return "sess-" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def _compress(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data, mtime=0)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return bytes(importlib.import_module("brotli").compress(data))
    return data


def vector(text: str, dims: int = 8) -> list[float]:
    """The embedding the server returns for ``text``: float32-exact values in [-1, 1)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % 32] - 128) / 128.0 for i in range(dims)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment, and no Nagle: otherwise every reply waits ~40 ms
    # for a delayed ACK, which would drown what the benchmarks measure.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def handle(self) -> None:
        # The client hanging up mid-stream is the client's business.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def finish(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().finish()

    # -- plumbing ------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json", "x-request-id": "req_test"}
        headers["set-cookie"] = "__cf_bm=cookie-secret-value; path=/"
        headers["openai-organization"] = "org-secret-organisation"
        headers.update(self._echo_cookie())
        encoding = self.headers.get("x-test-encoding")
        if encoding is None and "gzip" in self.headers.get("accept-encoding", ""):
            encoding = "gzip"
        if encoding and encoding != "identity":
            body = _compress(body, encoding)
            headers["content-encoding"] = encoding
        headers.update(extra or {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_stream(self, events: list[bytes]) -> None:
        cut_after = int(self.headers.get("x-test-cut-after", "-1"))
        delay = int(self.headers.get("x-test-delay-ms", "0")) / 1000.0
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        for name, value in self._echo_cookie().items():
            self.send_header(name, value)
        encoding = self.headers.get("x-test-encoding", "identity")
        if encoding != "identity":
            events = [_compress(b"".join(events), encoding)]
            self.send_header("content-encoding", encoding)
        size = int(self.headers.get("x-test-chunk-bytes", "0"))
        if size:
            joined = b"".join(events)
            events = [joined[i : i + size] for i in range(0, len(joined), size)]
        self.end_headers()
        self.wfile.flush()
        for index, event in enumerate(events):
            if index == cut_after:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if delay:
                time.sleep(delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self._serve(self.rfile.read(length) if length else b"")

    def _serve(self, raw: bytes) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requests.append(
            Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        )
        status = int(self.headers.get("x-test-status", "200"))
        with self.server.lock:
            if self.server.fail_next:  # scripted upstream trouble: fail, then answer
                status = self.server.fail_next.pop(0)
        if status != 200:
            kind = "overloaded_error" if status == 529 else "invalid_request_error"
            retry = {"retry-after-ms": "1"} if status in (408, 409, 429) or status >= 500 else {}
            error = {"error": {"message": f"test error {status}", "type": kind}}
            self._send_json(status, error, retry)
            return
        body: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        if path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/responses"):
            self._responses(body)
        elif path.endswith("/embeddings"):
            self._embeddings(body)
        elif path.endswith("/messages"):
            self._messages(body)
        elif path.endswith("/v2/chat"):
            self._cohere_chat(body)
        elif path.endswith((":generateContent", ":streamGenerateContent")):
            self._gemini(body, path)
        elif path.endswith("/audio/speech"):
            audio = bytes(range(256)) * 8
            self.send_response(200)
            self.send_header("content-type", "audio/mpeg")
            self.send_header("content-length", str(len(audio)))
            self.end_headers()
            self.wfile.write(audio)
            self.wfile.flush()
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _reply_text(self, prompt: str) -> str:
        text = f"echo: {prompt}"
        if self.headers.get("x-test-echo-auth"):
            credential = self.headers.get("authorization") or self.headers.get("api-key") or ""
            text += f" (you sent {credential or self.headers.get('x-api-key', '')})"
        if self.headers.get("x-test-echo-all"):
            sent = [v for k, v in self.headers.items() if not k.lower().startswith("x-test-")]
            scheme, _, token = self.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "basic":
                sent.append(base64.b64decode(token).decode())
            sent += [self.path, *self._echo_cookie().values()]
            text += " (you sent " + " ".join(sent) + ")"
        return text

    def _echo_cookie(self) -> dict[str, str]:
        seed = self.headers.get("x-test-session-seed")
        if not (seed and self.headers.get("x-test-echo-all")):
            return {}
        return {"set-cookie": f"session={session_cookie(seed)}; Path=/; HttpOnly"}

    # -- OpenAI --------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> None:
        text = self._reply_text(_last_text(body.get("messages", [])))
        model = body.get("model", "gpt-4o-mini")
        usage = {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 0}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": "chatcmpl-test", "created": 1700000000, "model": model}
        text = _formatted(text, body.get("response_format"))
        tools = body.get("tools") or []
        if tools and not body.get("stream"):
            name = tools[0]["function"]["name"]
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"text": text})},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
            choice = {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
            self._send_json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        if not body.get("stream"):
            message = {"role": "assistant", "content": text, "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            self._send_json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        chunk = {**base, "object": "chat.completion.chunk"}
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": w} for w in _pieces(text)]
        events = [
            {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
        ]
        events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if body.get("stream_options", {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        self._send_stream([_data(e) for e in events] + [b"data: [DONE]\n\n"])

    def _responses(self, body: dict[str, Any]) -> None:
        text = self._reply_text(_last_text(body.get("input", "")))
        content = {"type": "output_text", "text": text, "annotations": []}
        message = {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [content],
        }
        response = {
            "id": "resp_test",
            "object": "response",
            "created_at": 1700000000,
            "model": body.get("model", "gpt-4o-mini"),
            "status": "completed",
            "output": [message],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        }
        if not body.get("stream"):
            self._send_json(200, response)
            return
        events: list[dict[str, Any]] = [{"type": "response.created", "response": response}]
        for piece in _pieces(text):
            events.append(
                {
                    "type": "response.output_text.delta",
                    "delta": piece,
                    "item_id": "msg_test",
                    "output_index": 0,
                    "content_index": 0,
                }
            )
        events.append({"type": "response.completed", "response": response})
        self._send_stream(
            [_data({**e, "sequence_number": i}, event=e["type"]) for i, e in enumerate(events)]
        )

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input", "")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        dims = int(body.get("dimensions") or 8)
        data = []
        for index, text in enumerate(inputs):
            values = vector(str(text), dims)
            embedding: Any = values
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        model = body.get("model", "text-embedding-3-small")
        self._send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    # -- Anthropic -----------------------------------------------------------------------

    def _messages(self, body: dict[str, Any]) -> None:
        text = self._reply_text(_last_text(body.get("messages", [])))
        message = {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-sonnet-4-5"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": len(text.split())},
        }
        if not body.get("stream"):
            self._send_json(200, message)
            return
        start = {**message, "content": [], "stop_reason": None}
        events: list[dict[str, Any]] = [
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ]
        for piece in _pieces(text):
            events.append(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
            )
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(text.split())},
            },
            {"type": "message_stop"},
        ]
        self._send_stream([_data(e, event=e["type"]) for e in events])

    # -- Cohere v2 and Gemini (the SDKs of other HTTP stacks) ---------------------------

    def _cohere_chat(self, body: dict[str, Any]) -> None:
        text = self._reply_text(_last_text(body.get("messages", [])))
        usage = {"tokens": {"input_tokens": 10, "output_tokens": len(text.split())}}
        if not body.get("stream"):
            message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
            reply = {"id": "chat-test", "finish_reason": "COMPLETE", "message": message}
            self._send_json(200, {**reply, "usage": usage})
            return
        events: list[dict[str, Any]] = [
            {
                "type": "message-start",
                "id": "chat-test",
                "delta": {"message": {"role": "assistant"}},
            }
        ]
        events += [
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}}
            for p in _pieces(text)
        ]
        events.append(
            {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}}
        )
        self._send_stream([_data(e, event=e["type"]) for e in events])

    def _gemini(self, body: dict[str, Any], path: str) -> None:
        parts = (body.get("contents") or [{}])[-1].get("parts") or [{}]
        text = self._reply_text(" ".join(str(p.get("text", "")) for p in parts))
        model = path.rsplit("/", 1)[-1].split(":", 1)[0]

        def reply(piece: str, done: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": piece}]},
                "index": 0,
            }
            if done:
                candidate["finishReason"] = "STOP"
            usage = {"promptTokenCount": 10, "candidatesTokenCount": len(text.split())}
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

        if path.endswith(":generateContent"):
            self._send_json(200, reply(text, True))
            return
        pieces = _pieces(text)
        self._send_stream([_data(reply(p, i == len(pieces) - 1)) for i, p in enumerate(pieces)])


def _formatted(text: str, response_format: Any) -> str:
    """The reply as JSON when the request asked for it: each schema property gets a value."""
    if not isinstance(response_format, dict):
        return text
    if response_format.get("type") == "json_object":
        return json.dumps({"echo": text})
    if response_format.get("type") != "json_schema":
        return text
    schema = response_format["json_schema"].get("schema", {})
    samples = {"string": text, "integer": len(text), "number": 1.5, "boolean": True, "array": []}
    values = {
        name: samples.get(spec.get("type", "string"), text)
        for name, spec in schema.get("properties", {}).items()
    }
    return json.dumps(values)


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _data(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[Seen]
    fail_next: list[int]  # statuses the next requests get instead of an answer
    lock: threading.Lock


@dataclass
class LoopbackServer:
    """A running server; ``url`` is its OpenAI-style base URL (``.../v1``)."""

    httpd: _Server
    thread: threading.Thread
    requests: list[Seen] = field(default_factory=list)

    @property
    def origin(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.origin + "/v1"

    def fail_next(self, *statuses: int) -> None:
        """Answer the next requests with these error statuses (``retry-after-ms: 1`` on
        retryable ones), then as usual: upstream trouble that a retry gets past."""
        with self.httpd.lock:
            self.httpd.fail_next.extend(statuses)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def start_server() -> LoopbackServer:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    httpd.fail_next = []
    httpd.lock = threading.Lock()
    thread = threading.Thread(
        target=httpd.serve_forever, args=(0.02,), name="llm-test-server", daemon=True
    )
    thread.start()
    return LoopbackServer(httpd, thread, httpd.requests)
