"""``llmreplay serve``'s ASGI app: one recording endpoint for subprocesses, containers and
other languages, over the same cassettes and the same engine as in-process capture.

A request's path says where it goes and which cassette keeps it::

    [/_c/<cassette>] /<upstream> [/<azure resource>] /<rest of the provider's path>

``/openai/v1/chat/completions`` goes to ``https://api.openai.com/v1/chat/completions``;
``/azure/myres/openai/deployments/...`` to ``https://myres.openai.azure.com/openai/...``;
``--upstream NAME=URL`` adds or replaces a route (gateways, local models). The cassette is
the one named by ``/_c/<name>/`` or the ``x-llmreplay-cassette`` header (a file inside
``--dir``, or one registered in-process by the ``llm_proxy`` fixture), else ``--cassette``.

Each request becomes an ``httpx2.Request`` to the upstream URL and goes through
``CassetteTransport.handle_async_request`` of its cassette: keys, modes, faults, scrubbing
and stream teeing are the engine's, not this module's. The answer goes back chunk for chunk
as it arrives (an SSE answer is never buffered). The client's credentials go upstream and
the scrubber keeps them out of the cassette; replay needs none.

What a client sees when llmreplay itself answers (header ``x-llmreplay-error``, JSON body
``{"error": {"message", "type", "code"}, "llmreplay": {...fields}}``, readable by both the
OpenAI and Anthropic SDKs, with ``x-should-retry: false`` so no SDK retries it):

| status | x-llmreplay-error | when                                                        |
|--------|-------------------|-------------------------------------------------------------|
| 599    | miss              | replay has no (more) recording for the request              |
| 599    | refused           | the request may not be recorded (no key, credentials refused)|
| 599    | cassette          | the cassette file cannot be used (corrupt, newer format)    |
| 400    | bad-cassette      | no cassette chosen, or a name that leaves ``--dir``          |
| 404    | no-route          | the path names no upstream                                  |
| 502    | transport         | upstream unreachable, or a transport fault (retryable)      |

A stream cut upstream or by a ``CutStream`` fault is cut on the client's connection too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2

from ._cassette import Cassette
from ._errors import CassetteError, CassetteMiss, ConfigError, LLMReplayError, RequestRefused
from ._modes import Mode
from ._serve_routes import (
    CASSETTE_HEADER,
    MISS_STATUS,
    PRESETS,
    Answer,
    cassette_file,
    target,
)
from ._transport import CassetteTransport
from ._version import __version__

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("llmreplay.serve")

ERROR_HEADER = "x-llmreplay-error"
SOURCE_HEADER = "x-llmreplay-source"
CONTROL = "/_llmreplay/"
# Hop-by-hop headers (RFC 9110 7.6.1) and those the other side recomputes.
_HOP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)
# Upstream timeouts: a long generation may stream for minutes.
_TIMEOUTS = {"connect": 30.0, "read": 600.0, "write": 60.0, "pool": 30.0}


def accepts(accept_encoding: str, response: httpx2.Response) -> bool:
    """Whether a client sending ``accept-encoding: accept_encoding`` takes the response's
    ``content-encoding`` as it is.

    >>> accepts("gzip, deflate", httpx2.Response(200, headers={"content-encoding": "gzip"}))
    True
    >>> accepts("", httpx2.Response(200, headers={"content-encoding": "gzip"}))
    False
    """
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return True
    taken = set()
    for part in accept_encoding.lower().split(","):
        name, _, params = part.partition(";")
        quality = params.strip().removeprefix("q=")
        try:
            refused = bool(params.strip()) and float(quality) == 0
        except ValueError:
            refused = False
        if not refused:
            taken.add(name.strip())
    return "*" in taken or all(c in taken for c in codings)


class StreamCut(Exception):
    """Raised out of the app to make the server drop a connection whose stream was cut."""


DEFAULT_NAME = "default.msgpack"  # in --dir DIR: the cassette of requests that name none


class ServeApp:
    """The ASGI app. ``mode`` applies to every cassette it opens; ``cassette`` is the default
    cassette file (with only ``directory``: ``DEFAULT_NAME`` in it), ``directory`` the folder
    named cassettes live in; ``upstreams`` is the
    route table (``parse_upstreams``). ``register`` adds in-process cassettes by name.
    """

    def __init__(
        self,
        *,
        mode: Mode | str = Mode.REPLAY,
        cassette: str | Path | None = None,
        directory: str | Path | None = None,
        upstreams: Mapping[str, str] | None = None,
        mode_source: str = "llmreplay serve --mode",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.mode = Mode.parse(mode, source=mode_source)
        self.mode_source = mode_source
        self.directory = Path(directory) if directory is not None else None
        # A request naming no cassette uses this one: --cassette, else DIR/default.msgpack.
        self.default = (
            Path(cassette)
            if cassette is not None
            else (self.directory / DEFAULT_NAME if self.directory is not None else None)
        )
        self.upstreams = dict(upstreams if upstreams is not None else PRESETS)
        self.options = dict(options or {})
        self.counts = {"requests": 0, "errors": 0}
        self._lock = threading.Lock()
        self._cassettes: dict[Path, Cassette] = {}
        self._registered: dict[str, Cassette] = {}
        self._transports: dict[Cassette, CassetteTransport] = {}
        self._upstream: httpx2.AsyncHTTPTransport | None = None

    # -- cassettes ----------------------------------------------------------------------

    def register(self, name: str, cassette: Cassette) -> None:
        """Route ``/_c/<name>/...`` (or the header) to ``cassette`` (the pytest fixture)."""
        with self._lock:
            self._registered[name] = cassette

    def unregister(self, name: str) -> None:
        with self._lock:
            cassette = self._registered.pop(name, None)
            if cassette is not None:
                self._transports.pop(cassette, None)

    def _open(self, path: Path) -> Cassette:
        with self._lock:
            found = self._cassettes.get(path)
            if found is None:
                try:
                    found = Cassette(
                        path, mode=self.mode, mode_source=self.mode_source, **self.options
                    )
                except CassetteError as exc:
                    raise Answer(MISS_STATUS, "cassette", exc) from None
                self._cassettes[path] = found
            return found

    def select(self, name: str | None) -> Cassette:
        """The cassette for a request naming ``name`` (or none)."""
        if name:
            with self._lock:
                registered = self._registered.get(name)
            if registered is not None:
                return registered
            if self.directory is None:
                raise Answer(
                    400,
                    "bad-cassette",
                    ConfigError(
                        "cassette name",
                        name,
                        f"the {CASSETTE_HEADER} header or /_c/<name>/",
                        "a named cassette needs `llmreplay serve --dir DIR`; this server "
                        f"has {'--cassette ' + str(self.default) if self.default else 'none'}",
                    ),
                )
            try:
                return self._open(cassette_file(self.directory, name))
            except ConfigError as exc:
                raise Answer(400, "bad-cassette", exc) from None
        if self.default is None:
            raise Answer(
                400,
                "bad-cassette",
                ConfigError(
                    "cassette",
                    None,
                    "this request",
                    f"name one with the {CASSETTE_HEADER} header or a base URL starting "
                    f"with /_c/<name>/ (files inside {self.directory})",
                ),
            )
        return self._open(self.default)

    def cassettes(self) -> list[Cassette]:
        """Every cassette in use: opened by name or default, and registered ones."""
        with self._lock:
            return [*self._cassettes.values(), *self._registered.values()]

    def save_all(self) -> None:
        """Save what every opened cassette recorded (on shutdown; also after each request)."""
        for cassette in self.cassettes():
            try:
                cassette.save()
            except (LLMReplayError, OSError) as exc:  # pragma: no cover - a full disk
                log.error("llmreplay serve: could not save %s: %s", cassette.path, exc)

    def stats(self) -> dict[str, Any]:
        """What ``/_llmreplay/stats`` answers: counts per cassette and in total."""
        per: dict[str, dict[str, int]] = {}
        for cassette in self.cassettes():
            per[str(cassette.path)] = vars(cassette.stats).copy()
        keys = ("played", "recorded", "live", "faults", "unused")
        total = {key: sum(s[key] for s in per.values()) for key in keys}
        return {"mode": self.mode.value, **self.counts, "total": total, "cassettes": per}

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not an LLM API we proxy
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        if path.startswith(CONTROL):
            await self._control(path[len(CONTROL) :], send)
            return
        started = time.monotonic()
        with self._lock:
            self.counts["requests"] += 1
        method: str = scope["method"]
        where: list[str] = []
        try:
            status, source = await self._proxy(scope, receive, send, path, where)
        except Answer as answer:
            with self._lock:
                self.counts["errors"] += 1
            await self._send_error(send, answer)
            status, source = answer.status, f"error {answer.kind}"
        ms = (time.monotonic() - started) * 1000.0
        cassette = f" [{where[0]}]" if where else ""
        log.info(
            "llmreplay serve: %s %s -> %s %s%s (%.1f ms)",
            method,
            path,
            status,
            source,
            cassette,
            ms,
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Save every cassette and close the upstream connections."""
        self.save_all()
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    async def _control(self, what: str, send: Send) -> None:
        if what == "health":
            payload: dict[str, Any] = {"status": "ok", "mode": self.mode.value}
            payload["version"] = __version__
            status = 200
        elif what == "stats":
            payload, status = self.stats(), 200
        else:
            payload = {"error": f"no control endpoint {CONTROL}{what}; try health or stats"}
            status = 404
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _send_error(self, send: Send, answer: Answer) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (ERROR_HEADER.encode(), answer.kind.encode()),
            (b"x-should-retry", b"true" if answer.status == 502 else b"false"),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body()})

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, path: str, where: list[str]
    ) -> tuple[int, str]:
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        chosen = next(
            (v.decode("latin-1") for k, v in headers if k == CASSETTE_HEADER.encode()), None
        )
        named, url = target(self.upstreams, path.split("?", 1)[0], scope.get("query_string", b""))
        cassette = self.select(named or chosen)
        where.append(str(cassette.path))
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        forwarded = [
            (k, v)
            for k, v in headers
            if k.decode("latin-1").lower() not in _HOP and k != CASSETTE_HEADER.encode()
        ]
        request = httpx2.Request(
            scope["method"],
            url,
            headers=forwarded,
            content=bytes(body),
            extensions={"timeout": _TIMEOUTS},
        )
        response = await self._send(cassette, request)
        info = response.extensions.get("llmreplay", {})
        source = str(info.get("source", "upstream"))
        if "fault" in info:
            source += f"+fault:{info['fault']}"
        # Raw bytes pass through with their content-encoding, unless this client did not
        # ask for it (a cassette recorded by an SDK, replayed to curl or urllib): decoded.
        decode = not accepts(request.headers.get("accept-encoding", ""), response)
        skip = _HOP | {"content-encoding"} if decode else _HOP
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in skip
        ]
        out.append((SOURCE_HEADER.encode(), source.encode()))
        stream = response.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        try:
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            async for chunk in response.aiter_bytes() if decode else stream:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx2.RequestError as exc:  # a cut stream, or a body that does not decode
            raise StreamCut(f"{path}: {exc}") from exc
        finally:
            await stream.aclose()  # commits the recording
            if cassette.mode.writes:
                cassette.save()
        # The answer ends only once it is on disk: a client that has it all can rely on it.
        await send({"type": "http.response.body", "body": b""})
        return response.status_code, source

    async def _send(self, cassette: Cassette, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            transport = self._transports.get(cassette)
            if transport is None:
                if self._upstream is None:
                    self._upstream = httpx2.AsyncHTTPTransport()
                transport = self._transports[cassette] = CassetteTransport(cassette, self._upstream)
        try:
            return await transport.handle_async_request(request)
        except CassetteMiss as exc:
            raise Answer(MISS_STATUS, "miss", exc) from None
        except RequestRefused as exc:
            raise Answer(MISS_STATUS, "refused", exc) from None
        except CassetteError as exc:
            raise Answer(MISS_STATUS, "cassette", exc) from None
        except httpx2.TransportError as exc:
            message = f"{type(exc).__name__}: {exc} (upstream {request.url.host})"
            raise Answer(502, "transport", message) from None
